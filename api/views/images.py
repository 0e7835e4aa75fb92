"""Images: upload (idempotent), detail with its prediction (ETag polling), bytes and heatmaps."""

import hashlib
import json

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponseNotModified
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, generics, parsers, status
from rest_framework.response import Response

from cases import dicom, permissions
from core.files import NO_STORE, private_file_response
from core.images import media_type_of
from inference.permissions import get_prediction_or_404

from .. import idempotency
from ..serializers import (
    ImageSerializer,
    ImageUploadSerializer,
)
from ..throttling import UploadThrottle
from .base import (
    IDEMPOTENCY_PARAMETER,
    MULTIPART_OVERHEAD,
    ApiMixin,
    images_visible_with_predictions,
)

# --- images ----------------------------------------------------------------


class ImageListCreateView(ApiMixin, generics.ListCreateAPIView):
    serializer_class = ImageSerializer
    parser_classes = [parsers.MultiPartParser]

    def body_limit(self):
        return settings.SKINCARE_MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD

    def get_throttles(self):
        return [*super().get_throttles(), UploadThrottle()]

    def get_lesion(self):
        return permissions.get_lesion_or_404(self.request.user, self.kwargs["lesion_id"])

    def get_queryset(self):
        return images_visible_with_predictions(self.request.user).filter(lesion=self.get_lesion())

    @extend_schema(
        summary="Upload an image of the lesion (multipart); its prediction is queued",
        request={"multipart/form-data": ImageUploadSerializer},
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={201: ImageSerializer},
    )
    def post(self, request, lesion_id):
        lesion = self.get_lesion()
        serializer = ImageUploadSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        client_id = data.get("client_id")
        key = idempotency.key_from(request, fallback=f"client-id:{client_id}" if client_id else None)
        upload = data["file"]
        digest = hashlib.sha256()
        for chunk in upload.chunks():
            digest.update(chunk)
        payload = {
            "lesion": lesion.pk,
            "modality": data["modality"],
            "captured_at": data.get("captured_at"),
            "client_id": client_id,
            "file_sha256": digest.hexdigest(),
        }
        device = {name: data[name] for name in ("device_make", "device_model") if data.get(name)}
        payload.update(device)  # only when given: keys stored before these fields existed still match

        def perform():
            # JPEG, PNG or a single-frame DICOM file (cases.dicom), one ingest path.
            image = dicom.add_image_upload(
                uploader=request.user,
                lesion=lesion,
                file=upload,
                modality=data["modality"],
                captured_at=data.get("captured_at"),
                **device,
            )
            # The image as the service stored it, with its lesion, uploader and
            # near-duplicate matches attached: the detail view's body without
            # fetching the row again (a test compares the two).
            return status.HTTP_201_CREATED, ImageSerializer(image).data

        return idempotency.idempotent(request, key=key, payload=payload, perform=perform)


def _etag(body) -> str:
    text = json.dumps(body, sort_keys=True, cls=DjangoJSONEncoder)
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'


def _matches(if_none_match: str, etag: str) -> bool:
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


class ImageDetailView(ApiMixin, generics.RetrieveAPIView):
    serializer_class = ImageSerializer

    def get_object(self):
        image = images_visible_with_predictions(self.request.user).filter(pk=self.kwargs["image_id"]).first()
        if image is None:
            raise exceptions.NotFound("No such record.")
        return image

    @extend_schema(
        summary="An image with its prediction; poll with If-None-Match",
        parameters=[
            OpenApiParameter(
                "If-None-Match",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=False,
                description="The ETag of your last copy: 304 while nothing changed.",
            )
        ],
        responses={200: ImageSerializer, 304: OpenApiResponse(description="Not modified since your ETag.")},
    )
    def get(self, request, image_id):
        body = self.get_serializer(self.get_object()).data
        etag = _etag(body)
        if _matches(request.headers.get("If-None-Match", ""), etag):
            response = HttpResponseNotModified()
        else:
            response = Response(body)
        response["ETag"] = etag
        # Patient data: no cache keeps it; the app keeps the ETag itself (docs/api.md).
        response["Cache-Control"] = NO_STORE
        response["Vary"] = "Authorization, Cookie"
        return response


BINARY = {(200, "image/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The bytes.")}


class ImageFileView(ApiMixin, generics.GenericAPIView):
    @extend_schema(summary="The image's bytes (JPEG or PNG)", responses=BINARY)
    def get(self, request, image_id):
        image = permissions.get_image_or_404(request.user, image_id)
        return private_file_response(image.image, content_type=media_type_of(image.image_format))


class PredictionHeatmapView(ApiMixin, generics.GenericAPIView):
    @extend_schema(summary="A prediction's saliency heatmap (PNG), when there is one", responses=BINARY)
    def get(self, request, prediction_id):
        prediction = get_prediction_or_404(request.user, prediction_id)
        if not prediction.heatmap:
            raise exceptions.NotFound("This prediction has no heatmap.")
        return private_file_response(prediction.heatmap, content_type="image/png")
