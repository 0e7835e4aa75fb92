"""The PDF case report and the DICOM export of one image, through both doors.

API: ``GET /api/v1/images/{image_id}/report.pdf`` and ``.../dicom`` (token
authentication, the API's JSON errors). Portal: the same under
``/images/{image_id}/`` for signed-in clinicians. Either way the image is
read through ``cases.permissions`` (404 outside the user's clinics) and the
bytes leave through ``core.files``.
"""

from django.contrib.auth.decorators import login_required
from django.views.decorators.http import require_GET
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics

from cases import permissions
from core.files import private_bytes_response

from . import dicom, report
from .record import case_of

PDF = "application/pdf"
DICOM = "application/dicom"


def report_response(user, image_id):
    case = case_of(permissions.get_image_or_404(user, image_id))
    return private_bytes_response(
        report.render_report_pdf(case, user=user), content_type=PDF, filename=report.report_filename(case)
    )


def dicom_response(user, image_id):
    case = case_of(permissions.get_image_or_404(user, image_id))
    return private_bytes_response(dicom.export_bytes(case), content_type=DICOM, filename=dicom.export_filename(case))


class _BinaryApiView(generics.GenericAPIView):
    def perform_content_negotiation(self, request, force=False):
        # The answer is a file whatever the Accept header asks for; errors stay JSON.
        return super().perform_content_negotiation(request, force=True)


class ImageReportView(_BinaryApiView):
    @extend_schema(
        summary="The image's case report (PDF, A4)",
        responses={(200, PDF): OpenApiResponse(OpenApiTypes.BINARY, description="The PDF.")},
    )
    def get(self, request, image_id):
        return report_response(request.user, image_id)


class ImageDicomView(_BinaryApiView):
    @extend_schema(
        summary="The image as a DICOM VL Photographic Image object",
        responses={(200, DICOM): OpenApiResponse(OpenApiTypes.BINARY, description="The DICOM Part 10 file.")},
    )
    def get(self, request, image_id):
        return dicom_response(request.user, image_id)


@login_required
@require_GET
def portal_image_report(request, image_id):
    return report_response(request.user, image_id)


@login_required
@require_GET
def portal_image_dicom(request, image_id):
    return dicom_response(request.user, image_id)
