"""Clinicians' reviews of an image."""

from drf_spectacular.utils import extend_schema
from rest_framework import generics

from cases import permissions, services

from ..serializers import (
    ReviewSerializer,
)
from .base import (
    IDEMPOTENCY_PARAMETER,
    ApiMixin,
    create_idempotently,
)

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
        return create_idempotently(
            request, ReviewSerializer, lambda data: services.add_review(reviewer=request.user, image=image, **data)
        )
