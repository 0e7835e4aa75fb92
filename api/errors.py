"""One JSON error shape for every failure under /api/:

    {"error": {"code": "validation_error", "message": "...", "fields": {...}}}

``fields`` is present for validation errors only (field name -> list of
messages; "non_field_errors" for the request as a whole).
"""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "request_too_large"


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
    return response


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
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("server_error", "Internal server error."), status=500)
    from django.views.defaults import server_error as default

    return default(request, *args, **kwargs)


def json_response(status_code, code, message):
    return Response(error_body(code, message), status=status_code)


def not_found(request, exception=None, *args, **kwargs):
    """handler404: JSON under /api/, Django's plain page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("not_found", "No such endpoint or record."), status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception, *args, **kwargs)


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
    if request.path.startswith("/api/"):
        wait = f" Try again in {seconds // 60} minutes." if seconds else ""
        response = JsonResponse(error_body("locked_out", "Too many failed sign-ins." + wait), status=429)
        if seconds:
            response["Retry-After"] = str(seconds)
        return response
    context = {"cooloff_time": f"{seconds // 60} minutes" if seconds else None}
    return render(request, settings.AXES_LOCKOUT_TEMPLATE, context, status=429)
