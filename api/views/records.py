"""Clinics, patients and lesions."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics

from cases import permissions, selectors, services

from ..serializers import (
    ClinicSerializer,
    LesionSerializer,
    PatientSerializer,
)
from .base import (
    IDEMPOTENCY_PARAMETER,
    ApiMixin,
    create_idempotently,
)

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
        search = selectors.patient_search(self.request.query_params.get("search", ""))
        return queryset if search is None else queryset.filter(search)

    @extend_schema(parameters=[IDEMPOTENCY_PARAMETER], responses={201: PatientSerializer})
    def post(self, request):
        return create_idempotently(
            request,
            PatientSerializer,
            lambda data: services.create_patient(user=request.user, **data),
            payload=lambda data: {**data, "clinic": data["clinic"].pk},
        )


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
        return create_idempotently(
            request, LesionSerializer, lambda data: services.create_lesion(user=request.user, patient=patient, **data)
        )


class LesionDetailView(ApiMixin, generics.RetrieveAPIView):
    serializer_class = LesionSerializer

    def get_object(self):
        return permissions.get_lesion_or_404(self.request.user, self.kwargs["lesion_id"])
