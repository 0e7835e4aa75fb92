"""What every API view shares: body limits, the idempotency header, image querysets."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions, status

from cases import permissions
from inference.selectors import clinical_predictions_prefetch

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


def images_visible_with_predictions(user):
    return (
        permissions.images_visible_to(user)
        .select_related("lesion", "uploaded_by")
        .prefetch_related(clinical_predictions_prefetch())
        .order_by("captured_at", "id")
    )
