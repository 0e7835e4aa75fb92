from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("cases.api.urls")),
    path("", include("cases.urls")),
]

# JSON errors under /api/ (docs/api.md), Django's pages elsewhere.
handler404 = "cases.api.errors.not_found"
handler500 = "cases.api.errors.server_error"
