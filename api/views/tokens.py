"""Device tokens: issued by signing in with a password, listed and revoked by their owner."""

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, generics, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response

from ..authentication import DeviceTokenAuthentication
from ..models import DeviceToken
from ..serializers import (
    NewTokenSerializer,
    TokenCreateSerializer,
    TokenSerializer,
)
from ..throttling import AuthThrottle
from ..tokens import issue_token, revoke_token
from .base import (
    ApiMixin,
)

# --- device tokens ---------------------------------------------------------


class TokenListCreateView(ApiMixin, generics.ListAPIView):
    serializer_class = TokenSerializer

    def get_authenticators(self):
        if getattr(self.request, "method", None) == "POST":
            return []  # username and password are the credentials here
        return super().get_authenticators()

    def get_authenticate_header(self, request):
        # Wrong credentials are a 401 with the Bearer challenge, like a bad token.
        return DeviceTokenAuthentication().authenticate_header(request)

    def get_permissions(self):
        if getattr(self.request, "method", None) == "POST":
            return [AllowAny()]
        return [IsAuthenticated()]

    def get_throttles(self):
        if getattr(self.request, "method", None) == "POST":
            return [AuthThrottle()]
        return super().get_throttles()

    def get_queryset(self):
        return DeviceToken.objects.filter(user=self.request.user, revoked_at__isnull=True)

    @extend_schema(
        summary="Sign in a device: exchange username and password for a device token",
        request=TokenCreateSerializer,
        responses={201: NewTokenSerializer},
        auth=[],
    )
    def post(self, request):
        serializer = TokenCreateSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        # Two-factor sign-in does not exist yet: "otp" is accepted and ignored.
        user = authenticate(request._request, username=data["username"], password=data["password"])
        if user is None or not user.is_active:
            raise exceptions.AuthenticationFailed("Wrong username or password.")
        row, token = issue_token(user=user, name=data["device_name"])
        row.token = token
        return Response(NewTokenSerializer(row).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Your device tokens that are not revoked")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class TokenDetailView(ApiMixin, generics.RetrieveDestroyAPIView):
    serializer_class = TokenSerializer
    lookup_url_kwarg = "token_id"

    def get_queryset(self):
        return DeviceToken.objects.filter(user=self.request.user, revoked_at__isnull=True)

    @extend_schema(summary="Revoke one of your tokens (it stops working at once)")
    def delete(self, request, *args, **kwargs):
        return super().delete(request, *args, **kwargs)

    def perform_destroy(self, instance):
        revoke_token(instance)
