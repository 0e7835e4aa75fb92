"""Reads of the clinical record that pages and the API share. Every one starts from cases.permissions.

Reads that show predictions beside the records (the worklist, a patient's
timeline) are in ``inference.selectors``: they need the prediction rows.
"""

import re

from django.db.models import Count, Q

from . import permissions
from .models import LesionImage


def patient_search(query):
    """A filter for a patient search box: part of the MRN, or names in any order.

    "Ada Lovelace", "lovelace ada" and "Lovelace, Ada" (the portal's own
    display format) all find Ada Lovelace: every word must be part of the
    given or family name. Case never matters. None for an empty query.
    """
    query = query.replace("\x00", "").strip()  # PostgreSQL text cannot hold NUL: never a 500
    if not query:
        return None
    words = [word for word in re.split(r"[\s,]+", query) if word]
    if not words:
        return None
    names = Q()
    for word in words:
        names &= Q(given_name__icontains=word) | Q(family_name__icontains=word)
    return Q(medical_record_number__icontains=query) | names


def patients_for(user, *, query=""):
    patients = permissions.patients_visible_to(user).select_related("clinic")
    search = patient_search(query)
    if search is not None:
        patients = patients.filter(search)
    return patients.annotate(
        lesion_count=Count("lesions", distinct=True), image_count=Count("lesions__images", distinct=True)
    ).order_by("family_name", "given_name", "pk")


def device_models_of(clinic, *, limit=50) -> list[str]:
    """The device models a clinic's images were taken with, most used first (the upload form's suggestions)."""
    rows = (
        LesionImage.objects.filter(lesion__patient__clinic=clinic)
        .exclude(device_model="")
        .values("device_model")
        .annotate(n=Count("pk"))
        .order_by("-n", "device_model")[:limit]
    )
    return [row["device_model"] for row in rows]
