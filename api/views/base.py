"""What every API view shares: body limits, the idempotency header, image querysets."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions, status

from cases import permissions
from inference.selectors import clinical_predictions_prefetch

from .. import idempotency
from ..errors import RequestTooLarge

JSON_BODY_LIMIT = 256 * 1024
# Room for the multipart framing and the small fields around the file.
MULTIPART_OVERHEAD = 64 * 1024

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description="Send the same key when retrying: the first result is returned again (docs/api.md).",
)


class ApiMixin:
    """Checks the declared body size before anything reads the body."""

    def body_limit(self):
        return JSON_BODY_LIMIT

    def initial(self, request, *args, **kwargs):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise exceptions.ParseError("Invalid Content-Length header.") from None
        limit = self.body_limit()
        if length > limit:
            raise RequestTooLarge(f"The request body is {length} bytes; the limit is {limit} bytes.")
        super().initial(request, *args, **kwargs)


def created_response(serializer_class, instance, request):
    return status.HTTP_201_CREATED, serializer_class(instance, context={"request": request}).data


def create_idempotently(request, serializer_class, create, *, payload=None):
    """Validate the body with ``serializer_class``, then ``create(data)`` once per Idempotency-Key.

    ``create`` calls a service and returns the new row; a retry with the same
    key gets the first answer again (api/idempotency.py). ``payload(data)``
    turns the validated data into what the key's fingerprint is computed from
    (default: the data itself).
    """
    key = idempotency.key_from(request)
    serializer = serializer_class(data=request.data, context={"request": request})
    serializer.is_valid(raise_exception=True)
    data = serializer.validated_data

    def perform():
        return created_response(serializer_class, create(data), request)

    fingerprint = payload(data) if payload else data
    return idempotency.idempotent(request, key=key, payload=fingerprint, perform=perform)


def images_visible_with_predictions(user):
    return (
        permissions.images_visible_to(user)
        .select_related("lesion", "uploaded_by")
        .prefetch_related(clinical_predictions_prefetch())
        .order_by("captured_at", "id")
    )
