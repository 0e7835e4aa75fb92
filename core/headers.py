"""Headers every response carries (docs/security.md).

- ``Content-Security-Policy``: scripts, styles, images and connections from
  this origin only; no inline script or style anywhere (the portal's and the
  admin's templates keep theirs in static files), no plugins, no framing.
  The API's documentation viewers (Swagger UI, Redoc) inject their own
  styles and Redoc runs a web worker, so those two pages alone also allow
  inline styles and blob: workers; they hold no patient data. A response
  that brought its own policy (a stored file's, ``core.files``) keeps it.
- ``Permissions-Policy``: no camera, microphone, position or other device
  features for any page (uploads use the file picker, which needs none).
- ``Cache-Control: no-store`` on everything but static files: portal pages,
  API answers and admin pages all show patient data, or could after the
  next change; a shared or browser cache must keep none of it.
"""

from django.conf import settings

from .files import NO_STORE

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
DOCS_CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
DOCS_PATHS = ("/api/docs/", "/api/redoc/")
PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer",
        "autoplay",
        "browsing-topics",
        "camera",
        "display-capture",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "publickey-credentials-get",
        "screen-wake-lock",
        "usb",
        "xr-spatial-tracking",
    )
)


class SecurityHeadersMiddleware:
    """Outermost, so that every response (static files and errors too) passes through it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            docs = request.path.startswith(DOCS_PATHS)
            response["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY if docs else CONTENT_SECURITY_POLICY
        response["Permissions-Policy"] = PERMISSIONS_POLICY
        if not _is_static(request) and "no-store" not in response.get("Cache-Control", ""):
            response["Cache-Control"] = NO_STORE
        return response


def _is_static(request) -> bool:
    return request.path.startswith("/" + settings.STATIC_URL.lstrip("/"))
