"""Routes: the API side (under /api/v1/) and the portal side (under /)."""

from django.urls import path

from . import views
from .fhir import views as fhir

READ = {
    "Patient": "patient_id",
    "BodyStructure": "lesion_id",
    "Media": "image_id",
    "DiagnosticReport": "image_id",
    "Observation": "prediction_id",
    "Device": "device_id",
}

# The URL keywords name the record read (core.middleware audits patient_id,
# lesion_id, image_id and prediction_id). Ids are strings, so that a
# malformed one is a FHIR "not found", not the API's.
api_urlpatterns = [
    path("fhir/metadata", fhir.MetadataView.as_view(), name="fhir-metadata"),
    path("fhir/Patient/<str:patient_id>/$everything", fhir.EverythingView.as_view(), name="fhir-everything"),
    *[
        path(f"fhir/{kind}/<str:{kwarg}>", fhir.ReadView.as_view(resource_type=kind), name=f"fhir-{kind.lower()}")
        for kind, kwarg in READ.items()
    ],
    path("fhir/<str:resource_type>", fhir.SearchView.as_view(), name="fhir-search"),
    path("fhir/<path:rest>", fhir.UnknownView.as_view(), name="fhir-unknown"),
    path("fhir/", fhir.UnknownView.as_view(), {"rest": ""}, name="fhir-base"),
    path("images/<uuid:image_id>/report.pdf", views.ImageReportView.as_view(), name="image-report"),
    path("images/<uuid:image_id>/dicom", views.ImageDicomView.as_view(), name="image-dicom"),
]

portal_urlpatterns = [
    path("images/<uuid:image_id>/report.pdf", views.portal_image_report, name="image-report"),
    path("images/<uuid:image_id>/dicom", views.portal_image_dicom, name="image-dicom"),
]
