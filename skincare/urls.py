from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    # The model monitoring page: an admin page of its own, ahead of the admin's URLs.
    path("admin/inference/monitoring/", include("inference.admin.monitoring")),
    path("admin/", admin.site.urls),
    path("api/", include("api.urls")),
    path("", include("portal.urls")),
]

# JSON errors under /api/ (docs/api.md), Django's pages elsewhere.
handler400 = "api.errors.bad_request"
handler403 = "api.errors.permission_denied"
handler404 = "api.errors.not_found"
handler500 = "api.errors.server_error"
