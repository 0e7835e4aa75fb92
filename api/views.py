"""API views. Every queryset starts from cases.permissions (outsiders: 404);
every write calls cases.services. See docs/api.md."""

import hashlib
import json

from django.conf import settings
from django.contrib.auth import authenticate
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Q
from django.http import HttpResponseNotModified
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, generics, parsers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response

from cases import permissions, services
from core.files import NO_STORE, private_file_response
from core.images import media_type_of
from inference.permissions import get_prediction_or_404
from inference.selectors import clinical_predictions_prefetch

from . import idempotency
from .authentication import DeviceTokenAuthentication
from .errors import RequestTooLarge
from .models import DeviceToken
from .serializers import (
    ClinicSerializer,
    ImageSerializer,
    ImageUploadSerializer,
    LesionSerializer,
    NewTokenSerializer,
    PatientSerializer,
    ReviewSerializer,
    TokenCreateSerializer,
    TokenSerializer,
)
from .throttling import AuthThrottle, UploadThrottle
from .tokens import issue_token, revoke_token

JSON_BODY_LIMIT = 256 * 1024
# Room for the multipart framing and the small fields around the file.
MULTIPART_OVERHEAD = 64 * 1024

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description="Send the same key when retrying: the first result is returned again (docs/api.md).",
)


class ApiMixin:
    """Checks the declared body size before anything reads the body."""

    def body_limit(self):
        return JSON_BODY_LIMIT

    def initial(self, request, *args, **kwargs):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise exceptions.ParseError("Invalid Content-Length header.") from None
        limit = self.body_limit()
        if length > limit:
            raise RequestTooLarge(f"The request body is {length} bytes; the limit is {limit} bytes.")
        super().initial(request, *args, **kwargs)


def _created(serializer_class, instance, request):
    return status.HTTP_201_CREATED, serializer_class(instance, context={"request": request}).data


def _images(user):
    return (
        permissions.images_visible_to(user)
        .select_related("lesion", "uploaded_by")
        .prefetch_related(clinical_predictions_prefetch())
        .order_by("captured_at", "id")
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


# --- clinics and patients -------------------------------------------------


class ClinicListView(ApiMixin, generics.ListAPIView):
    serializer_class = ClinicSerializer

    def get_queryset(self):
        return permissions.clinics_of(self.request.user).order_by("name", "id")


@extend_schema(
    parameters=[OpenApiParameter("search", OpenApiTypes.STR, description="Part of a name or medical record number.")]
)
class PatientListCreateView(ApiMixin, generics.ListCreateAPIView):
    serializer_class = PatientSerializer

    def get_queryset(self):
        queryset = permissions.patients_visible_to(self.request.user).order_by("family_name", "given_name", "id")
        # PostgreSQL text cannot hold NUL: drop it rather than fail with a 500.
        search = self.request.query_params.get("search", "").replace("\x00", "").strip()
        if search:
            queryset = queryset.filter(
                Q(given_name__icontains=search)
                | Q(family_name__icontains=search)
                | Q(medical_record_number__icontains=search)
            )
        return queryset

    @extend_schema(parameters=[IDEMPOTENCY_PARAMETER], responses={201: PatientSerializer})
    def post(self, request):
        key = idempotency.key_from(request)
        serializer = PatientSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data

        def perform():
            patient = services.create_patient(user=request.user, **data)
            return _created(PatientSerializer, patient, request)

        payload = {**data, "clinic": data["clinic"].pk}
        return idempotency.idempotent(request, key=key, payload=payload, perform=perform)


class PatientDetailView(ApiMixin, generics.RetrieveAPIView):
    serializer_class = PatientSerializer

    def get_object(self):
        return permissions.get_patient_or_404(self.request.user, self.kwargs["patient_id"])


# --- lesions ---------------------------------------------------------------


class LesionListCreateView(ApiMixin, generics.ListCreateAPIView):
    serializer_class = LesionSerializer

    def get_patient(self):
        return permissions.get_patient_or_404(self.request.user, self.kwargs["patient_id"])

    def get_queryset(self):
        patient = self.get_patient()
        return permissions.lesions_visible_to(self.request.user).filter(patient=patient).order_by("created_at", "id")

    @extend_schema(parameters=[IDEMPOTENCY_PARAMETER], responses={201: LesionSerializer})
    def post(self, request, patient_id):
        patient = self.get_patient()
        key = idempotency.key_from(request)
        serializer = LesionSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data

        def perform():
            lesion = services.create_lesion(user=request.user, patient=patient, **data)
            return _created(LesionSerializer, lesion, request)

        return idempotency.idempotent(request, key=key, payload=data, perform=perform)


class LesionDetailView(ApiMixin, generics.RetrieveAPIView):
    serializer_class = LesionSerializer

    def get_object(self):
        return permissions.get_lesion_or_404(self.request.user, self.kwargs["lesion_id"])


# --- images ----------------------------------------------------------------


class ImageListCreateView(ApiMixin, generics.ListCreateAPIView):
    serializer_class = ImageSerializer
    parser_classes = [parsers.MultiPartParser]

    def body_limit(self):
        return settings.SKINCARE_MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD

    def get_throttles(self):
        return [*super().get_throttles(), UploadThrottle()]

    def get_lesion(self):
        return permissions.get_lesion_or_404(self.request.user, self.kwargs["lesion_id"])

    def get_queryset(self):
        return _images(self.request.user).filter(lesion=self.get_lesion())

    @extend_schema(
        summary="Upload an image of the lesion (multipart); its prediction is queued",
        request={"multipart/form-data": ImageUploadSerializer},
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={201: ImageSerializer},
    )
    def post(self, request, lesion_id):
        lesion = self.get_lesion()
        serializer = ImageUploadSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        client_id = data.get("client_id")
        key = idempotency.key_from(request, fallback=f"client-id:{client_id}" if client_id else None)
        upload = data["file"]
        digest = hashlib.sha256()
        for chunk in upload.chunks():
            digest.update(chunk)
        payload = {
            "lesion": lesion.pk,
            "modality": data["modality"],
            "captured_at": data.get("captured_at"),
            "client_id": client_id,
            "file_sha256": digest.hexdigest(),
        }

        def perform():
            image = services.add_lesion_image(
                uploader=request.user,
                lesion=lesion,
                file=upload,
                modality=data["modality"],
                captured_at=data.get("captured_at"),
            )
            return status.HTTP_201_CREATED, ImageSerializer(_images(request.user).get(pk=image.pk)).data

        return idempotency.idempotent(request, key=key, payload=payload, perform=perform)


def _etag(body) -> str:
    text = json.dumps(body, sort_keys=True, cls=DjangoJSONEncoder)
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'


def _matches(if_none_match: str, etag: str) -> bool:
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


class ImageDetailView(ApiMixin, generics.RetrieveAPIView):
    serializer_class = ImageSerializer

    def get_object(self):
        image = _images(self.request.user).filter(pk=self.kwargs["image_id"]).first()
        if image is None:
            raise exceptions.NotFound("No such record.")
        return image

    @extend_schema(
        summary="An image with its prediction; poll with If-None-Match",
        parameters=[
            OpenApiParameter(
                "If-None-Match",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=False,
                description="The ETag of your last copy: 304 while nothing changed.",
            )
        ],
        responses={200: ImageSerializer, 304: OpenApiResponse(description="Not modified since your ETag.")},
    )
    def get(self, request, image_id):
        body = self.get_serializer(self.get_object()).data
        etag = _etag(body)
        if _matches(request.headers.get("If-None-Match", ""), etag):
            response = HttpResponseNotModified()
        else:
            response = Response(body)
        response["ETag"] = etag
        # Patient data: no cache keeps it; the app keeps the ETag itself (docs/api.md).
        response["Cache-Control"] = NO_STORE
        response["Vary"] = "Authorization, Cookie"
        return response


BINARY = {(200, "image/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The bytes.")}


class ImageFileView(ApiMixin, generics.GenericAPIView):
    @extend_schema(summary="The image's bytes (JPEG or PNG)", responses=BINARY)
    def get(self, request, image_id):
        image = permissions.get_image_or_404(request.user, image_id)
        return private_file_response(image.image, content_type=media_type_of(image.image_format))


class PredictionHeatmapView(ApiMixin, generics.GenericAPIView):
    @extend_schema(summary="A prediction's saliency heatmap (PNG), when there is one", responses=BINARY)
    def get(self, request, prediction_id):
        prediction = get_prediction_or_404(request.user, prediction_id)
        if not prediction.heatmap:
            raise exceptions.NotFound("This prediction has no heatmap.")
        return private_file_response(prediction.heatmap, content_type="image/png")


# --- reviews ---------------------------------------------------------------


class ReviewListCreateView(ApiMixin, generics.ListCreateAPIView):
    serializer_class = ReviewSerializer

    def get_image(self):
        return permissions.get_image_or_404(self.request.user, self.kwargs["image_id"])

    def get_queryset(self):
        image = self.get_image()
        return (
            permissions.reviews_visible_to(self.request.user)
            .filter(image=image)
            .select_related("reviewer")
            .order_by("created_at", "id")
        )

    @extend_schema(
        summary="Add a review (earlier reviews are never changed)",
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={201: ReviewSerializer},
    )
    def post(self, request, image_id):
        image = self.get_image()
        key = idempotency.key_from(request)
        serializer = ReviewSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data

        def perform():
            review = services.add_review(reviewer=request.user, image=image, **data)
            return _created(ReviewSerializer, review, request)

        return idempotency.idempotent(request, key=key, payload=data, perform=perform)
