from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    # The model monitoring page: an admin page of its own, ahead of the admin's URLs.
    path("admin/inference/monitoring/", include("inference.admin.monitoring")),
    # The local validation report of a model version at one clinic (site models).
    path("admin/inference/site-validation/", include("inference.admin.site_validation")),
    path("admin/", admin.site.urls),
    path("api/", include("api.urls")),
    path("", include("portal.urls")),
]

# JSON errors under /api/ (docs/api.md), Django's pages elsewhere.
handler404 = "api.errors.not_found"
handler500 = "api.errors.server_error"
