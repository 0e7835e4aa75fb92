"""FHIR R4 REST endpoints under /api/v1/fhir/: read, search, Patient/$everything, metadata.

Token-authenticated and throttled like the rest of the API (the REST
framework's defaults), scoped by ``cases.permissions`` /
``inference.permissions``: another clinic's record is "not found". Every
error is an OperationOutcome. Left out of the OpenAPI schema (FHIR is
described by its own CapabilityStatement, /api/v1/fhir/metadata).
"""

import uuid

from django.core.exceptions import ValidationError
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from cases import permissions
from core.audit import mark_listed
from inference.models import ModelVersion, Prediction
from inference.permissions import predictions_visible_to

from ..record import case_of
from . import resources
from .capability import SEARCH_PARAMETERS, capability_statement


class FhirJSONRenderer(JSONRenderer):
    media_type = "application/fhir+json"
    format = "fhir"


class BadRequest(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "not-supported"


ISSUE_CODES = {
    status.HTTP_400_BAD_REQUEST: "invalid",
    status.HTTP_401_UNAUTHORIZED: "login",
    status.HTTP_403_FORBIDDEN: "forbidden",
    status.HTTP_404_NOT_FOUND: "not-found",
    status.HTTP_405_METHOD_NOT_ALLOWED: "not-supported",
    status.HTTP_406_NOT_ACCEPTABLE: "not-supported",
    status.HTTP_429_TOO_MANY_REQUESTS: "throttled",
}


def fhir_exception_handler(exc, context):
    """Every refusal as an OperationOutcome (the API's own error shape is for the REST API)."""
    if isinstance(exc, Http404 | ValidationError):
        exc = exceptions.NotFound("No such resource.")
    if not isinstance(exc, exceptions.APIException):
        return None  # a server error: handler500 answers
    code = "not-supported" if isinstance(exc, BadRequest) else ISSUE_CODES.get(exc.status_code, "processing")
    message = exc.detail if isinstance(exc.detail, str) else "Request refused."
    response = Response(resources.operation_outcome(code, str(message)), status=exc.status_code)
    if getattr(exc, "auth_header", None):
        response["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        response["Retry-After"] = str(int(exc.wait) + 1)
    return response


@extend_schema(exclude=True)
class FhirView(APIView):
    renderer_classes = [FhirJSONRenderer, JSONRenderer]

    def get_exception_handler(self):
        return fhir_exception_handler

    def base(self):
        return self.request.build_absolute_uri("/api/v1/fhir/")

    def fhir(self, body):
        response = Response(body)
        response["Cache-Control"] = "private, no-store"
        return response


def _uuid(value):
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _get(queryset, pk):
    pk = _uuid(pk)
    if pk is None:
        raise exceptions.NotFound("No such resource.")
    found = queryset.filter(pk=pk).first()
    if found is None:
        raise exceptions.NotFound("No such resource.")
    return found


# --- what each resource type reads, scoped to the user ---------------------


def patients(user):
    return permissions.patients_visible_to(user).select_related("clinic")


def lesions(user):
    return permissions.lesions_visible_to(user).select_related("patient")


def images(user):
    return permissions.images_visible_to(user).select_related("lesion__patient", "uploaded_by")


def observations(user):
    return (
        predictions_visible_to(user)
        .filter(status=Prediction.Status.SUCCEEDED)
        .select_related("model_version", "image__lesion__patient")
        .order_by("queued_at", "id")
    )


def devices(user):
    """Models that made a prediction this user may see (never a shadow model alone)."""
    return ModelVersion.objects.filter(pk__in=predictions_visible_to(user).values("model_version"))


READERS = {
    "Patient": (patients, lambda row, view: resources.patient(row)),
    "BodyStructure": (lesions, lambda row, view: resources.body_structure(row)),
    "Media": (images, lambda row, view: resources.media(row, base=view.base())),
    "Observation": (observations, lambda row, view: resources.observation(row)),
    "DiagnosticReport": (images, lambda row, view: resources.diagnostic_report(case_of(row))),
    "Device": (devices, lambda row, view: resources.device(row)),
}
# How each searchable type reaches its patient.
PATIENT_PATH = {
    "BodyStructure": "patient",
    "Media": "lesion__patient",
    "Observation": "image__lesion__patient",
    "DiagnosticReport": "lesion__patient",
}


class ReadView(FhirView):
    """GET /fhir/{type}/{id}."""

    resource_type = None

    def get(self, request, **kwargs):
        reader, build = READERS[self.resource_type]
        (pk,) = kwargs.values()
        return self.fhir(build(_get(reader(request.user), pk), self))


class SearchView(FhirView):
    """GET /fhir/{type}?patient=...&status=... : a searchset Bundle (not paged)."""

    def get(self, request, resource_type):
        if resource_type not in READERS:
            raise exceptions.NotFound(f"Resource type {resource_type!r} is not supported here.")
        allowed = SEARCH_PARAMETERS[resource_type]
        params = {k: v for k, v in request.query_params.items() if k not in ("_format", "format")}
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise BadRequest(
                f"Unsupported search parameter(s) for {resource_type}: {', '.join(unknown)}. "
                f"Supported: {', '.join(sorted(allowed))}."
            )
        reader, build = READERS[resource_type]
        rows = reader(request.user)
        if "_id" in params:
            ids = [i for i in (_uuid(v) for v in params["_id"].split(",")) if i]
            rows = rows.filter(pk__in=ids)
        patient_ref = params.get("patient") or params.get("subject")
        if patient_ref is not None:
            patient_id = _uuid(patient_ref.removeprefix("Patient/"))
            rows = rows.filter(**{PATIENT_PATH[resource_type]: patient_id}) if patient_id else rows.none()
        if "identifier" in params:
            rows = rows.filter(medical_record_number=params["identifier"].split("|")[-1])
        rows = list(rows)
        mark_listed(request, rows)
        found = [build(row, self) for row in rows]
        if "status" in params:
            wanted = set(params["status"].split(","))
            found = [r for r in found if r["status"] in wanted]
        return self.fhir(resources.bundle(found, base=self.base(), self_url=request.build_absolute_uri()))


class EverythingView(FhirView):
    """GET /fhir/Patient/{id}/$everything: the patient and every resource about them."""

    def get(self, request, patient_id):
        user = request.user
        patient = _get(patients(user), patient_id)
        base = self.base()
        found = [resources.patient(patient)]
        found += [resources.body_structure(lesion) for lesion in lesions(user).filter(patient=patient)]
        patient_images = list(images(user).filter(lesion__patient=patient).order_by("captured_at", "id"))
        found += [resources.media(image, base=base) for image in patient_images]
        predictions = list(observations(user).filter(image__lesion__patient=patient))
        found += [resources.observation(p) for p in predictions]
        found += [resources.diagnostic_report(case_of(image)) for image in patient_images]
        model_ids = {p.model_version_id for p in predictions}
        found += [resources.device(m) for m in ModelVersion.objects.filter(pk__in=model_ids).order_by("created_at")]
        return self.fhir(resources.bundle(found, base=base, self_url=request.build_absolute_uri()))


class MetadataView(FhirView):
    """GET /fhir/metadata: what this server supports (public: it holds no clinical data)."""

    authentication_classes = []
    permission_classes = []

    def get(self, request):
        return self.fhir(capability_statement(base=self.base()))


class UnknownView(FhirView):
    def get(self, request, rest):
        raise exceptions.NotFound(f"No FHIR endpoint at {rest!r}.")
