"""One JSON error shape for every failure under /api/:

    {"error": {"code": "validation_error", "message": "...", "fields": {...}}}

``fields`` is present for validation errors only (field name -> list of
messages; "non_field_errors" for the request as a whole).
"""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import (
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "request_too_large"


class TooManyParts(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The request has too many fields or files."
    default_code = "too_many_parts"


class IdempotencyKeyReused(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "This Idempotency-Key was already used with a different request."
    default_code = "idempotency_key_reused"


# DRF's exception codes, renamed where a clearer name helps app developers.
CODES = {
    exceptions.ValidationError: "validation_error",
    exceptions.ParseError: "parse_error",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
}


def is_api(request) -> bool:
    """Whether ``request`` is for the API, whose every answer (errors included) is JSON."""
    return request.path == "/api" or request.path.startswith("/api/")


def error_body(code, message, fields=None):
    error = {"code": code, "message": message}
    if fields is not None:
        error["fields"] = fields
    return {"error": error}


def _django_validation_fields(exc: DjangoValidationError):
    if hasattr(exc, "error_dict"):
        return {("non_field_errors" if k == "__all__" else k): v for k, v in exc.message_dict.items()}
    return {"non_field_errors": exc.messages}


def exception_handler(exc, context):
    # Writes raise Django's errors (cases.services): map them onto DRF's.
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(_django_validation_fields(exc))
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound("No such record.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, SuspiciousOperation):
        exc = _suspicious(exc)

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a server error: Django's handler500 (server_error below) answers
    code = next((c for cls, c in CODES.items() if type(exc) is cls), None) or getattr(exc, "default_code", "error")
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        fields = _plain(detail)
        name, first = next(iter(fields.items()), ("non_field_errors", ["Invalid input."]))
        where = "" if name == "non_field_errors" else f"{name}: "
        message = f"Invalid input: {where}{_first_message(first)}"
        response.data = error_body("validation_error", message, fields)
    else:
        message = str(exc.detail) if not isinstance(exc.detail, dict | list) else "Request refused."
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            message = f"Too many requests; retry in {int(exc.wait) + 1} seconds."
        response.data = error_body(code, message)
    _render_as_json(context)
    return response


def _render_as_json(context):
    """Errors are JSON whatever was negotiated (the browsable API, the schema's YAML, the docs' HTML)."""
    request = context.get("request")
    if request is not None:
        request.accepted_renderer = JSONRenderer()
        request.accepted_media_type = JSONRenderer.media_type


def _suspicious(exc):
    """Django's refusals while reading a body (too big, too many parts) as the API's errors, not a 400 page."""
    if isinstance(exc, RequestDataTooBig):
        return RequestTooLarge()
    if isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        return TooManyParts()
    logger.warning("Suspicious API request refused: %s", type(exc).__name__)
    return exceptions.ParseError("The request is malformed.")


def _plain(detail):
    if isinstance(detail, dict):
        return {str(k): _plain(v) for k, v in detail.items()}
    if isinstance(detail, list):
        return [_plain(v) for v in detail]
    return str(detail)


def _first_message(value):
    while isinstance(value, list | dict):
        if not value:
            return "Invalid input."
        value = next(iter(value.values())) if isinstance(value, dict) else value[0]
    return value


def server_error(request, *args, **kwargs):
    """handler500: JSON under /api/, Django's plain page elsewhere."""
    if is_api(request):
        return JsonResponse(error_body("server_error", "Internal server error."), status=500)
    from django.views.defaults import server_error as default

    return default(request, *args, **kwargs)


def json_response(status_code, code, message):
    return Response(error_body(code, message), status=status_code)


def not_found(request, exception=None, *args, **kwargs):
    """handler404: JSON under /api/, Django's plain page elsewhere."""
    if is_api(request):
        return JsonResponse(error_body("not_found", "No such endpoint or record."), status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception, *args, **kwargs)


def bad_request(request, exception=None, *args, **kwargs):
    """handler400 (Django's refusals outside a DRF view): JSON under /api/."""
    if is_api(request):
        if isinstance(exception, RequestDataTooBig):
            body = error_body("request_too_large", RequestTooLarge.default_detail)
            return JsonResponse(body, status=413)
        if isinstance(exception, TooManyFieldsSent | TooManyFilesSent):
            return JsonResponse(error_body("too_many_parts", TooManyParts.default_detail), status=400)
        return JsonResponse(error_body("bad_request", "The request is malformed."), status=400)
    from django.views.defaults import bad_request as default

    return default(request, exception, *args, **kwargs)


def permission_denied(request, exception=None, *args, **kwargs):
    """handler403 (a CSRF or Django-level refusal): JSON under /api/."""
    if is_api(request):
        return JsonResponse(error_body("permission_denied", "You may not do this."), status=403)
    from django.views.defaults import permission_denied as default

    return default(request, exception, *args, **kwargs)


def lockout_response(request, original_response=None, credentials=None):
    """django-axes' answer once sign-in is locked: the API's JSON shape under /api/.

    Elsewhere the portal's lockout page. (axes calls this for the token
    endpoint too, which signs in with username and password.)
    """
    from axes.helpers import get_cool_off
    from django.conf import settings
    from django.shortcuts import render

    cool_off = get_cool_off(request)
    seconds = int(cool_off.total_seconds()) if cool_off else None
    if is_api(request):
        wait = f" Try again in {seconds // 60} minutes." if seconds else ""
        response = JsonResponse(error_body("locked_out", "Too many failed sign-ins." + wait), status=429)
        if seconds:
            response["Retry-After"] = str(seconds)
        return response
    context = {"cooloff_time": f"{seconds // 60} minutes" if seconds else None}
    return render(request, settings.AXES_LOCKOUT_TEMPLATE, context, status=429)
