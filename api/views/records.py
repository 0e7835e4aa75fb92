"""Clinics, patients and lesions."""

from django.db.models import Q
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics

from cases import permissions, services

from .. import idempotency
from ..serializers import (
    ClinicSerializer,
    LesionSerializer,
    PatientSerializer,
)
from .base import (
    IDEMPOTENCY_PARAMETER,
    ApiMixin,
    created_response,
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
        search = self.request.query_params.get("search", "").strip()
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
            return created_response(PatientSerializer, patient, request)

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
            return created_response(LesionSerializer, lesion, request)

        return idempotency.idempotent(request, key=key, payload=data, perform=perform)


class LesionDetailView(ApiMixin, generics.RetrieveAPIView):
    serializer_class = LesionSerializer

    def get_object(self):
        return permissions.get_lesion_or_404(self.request.user, self.kwargs["lesion_id"])
