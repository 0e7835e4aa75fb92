"""Reads that pages and the API share. Every one starts from cases.permissions."""

from django.db.models import Prefetch

from inference.models import Prediction

from . import permissions


def recent_images_for(user, *, limit=50):
    """The latest images in ``user``'s clinics, each with its predictions."""
    return (
        permissions.images_visible_to(user)
        .select_related("lesion__patient")
        .prefetch_related(
            Prefetch(
                "predictions",
                queryset=Prediction.objects.select_related("model_version").order_by("-queued_at"),
            )
        )
        .order_by("-uploaded_at")[:limit]
    )
