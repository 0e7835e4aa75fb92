from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from .views import images, records, reviews, tokens

app_name = "api"

v1 = [
    path("auth/tokens", tokens.TokenListCreateView.as_view(), name="tokens"),
    path("auth/tokens/<uuid:token_id>", tokens.TokenDetailView.as_view(), name="token-detail"),
    path("clinics", records.ClinicListView.as_view(), name="clinics"),
    path("patients", records.PatientListCreateView.as_view(), name="patients"),
    path("patients/<uuid:patient_id>", records.PatientDetailView.as_view(), name="patient-detail"),
    path("patients/<uuid:patient_id>/lesions", records.LesionListCreateView.as_view(), name="patient-lesions"),
    path("lesions/<uuid:lesion_id>", records.LesionDetailView.as_view(), name="lesion-detail"),
    path("lesions/<uuid:lesion_id>/images", images.ImageListCreateView.as_view(), name="lesion-images"),
    path("images/<uuid:image_id>", images.ImageDetailView.as_view(), name="image-detail"),
    path("images/<uuid:image_id>/file", images.ImageFileView.as_view(), name="image-file"),
    path("images/<uuid:image_id>/reviews", reviews.ReviewListCreateView.as_view(), name="image-reviews"),
    path("predictions/<uuid:prediction_id>/heatmap", images.PredictionHeatmapView.as_view(), name="prediction-heatmap"),
]

# The schema and its viewers are public (they hold no clinical data) and
# served from local static files (drf-spectacular-sidecar): no CDN.
docs = {"authentication_classes": [], "permission_classes": []}
urlpatterns = [
    path("v1/", include(v1)),
    path("schema/", SpectacularAPIView.as_view(**docs), name="schema"),
    # The split view serves Swagger UI's start-up script as a file: no inline script (CSP).
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema", **docs), name="docs"),
    path(
        "redoc/",
        SpectacularRedocView.as_view(url_name="api:schema", template_name="api/redoc.html", **docs),
        name="redoc",
    ),
]
