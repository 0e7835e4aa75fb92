from django.contrib import admin
from django.urls import include, path

from interop.urls import api_urlpatterns as interop_api
from interop.urls import portal_urlpatterns as interop_portal

urlpatterns = [
    # The model monitoring page: an admin page of its own, ahead of the admin's URLs.
    path("admin/inference/monitoring/", include("inference.admin.monitoring")),
    # The local validation report of a model version at one clinic (site models).
    path("admin/inference/site-validation/", include("inference.admin.site_validation")),
    path("admin/", admin.site.urls),
    # FHIR, PDF reports and DICOM (interop/): under the API's /api/v1/ and the portal's /.
    path("api/v1/", include((interop_api, "interop_api"))),
    path("api/", include("api.urls")),
    path("", include((interop_portal, "interop_portal"))),
    path("", include("portal.urls")),
]

# JSON errors under /api/ (docs/api.md), Django's pages elsewhere.
handler400 = "api.errors.bad_request"
handler403 = "api.errors.permission_denied"
handler404 = "api.errors.not_found"
handler500 = "api.errors.server_error"
