"""The one way stored clinical bytes leave the server: a private, uncacheable response.

Portal, API and admin views check who may see a record, then answer through
``private_file_response``; none of them builds its own file response, so the
headers that keep clinical images out of shared caches are set in one place.
"""

from django.core.files.base import ContentFile
from django.http import FileResponse, Http404, HttpResponse

from .imagemeta import strip_metadata
from .images import media_type_of


def private_file_response(field_file, *, content_type, transform=None):
    """The bytes of ``field_file`` (a stored FieldFile), never cached; 404 when there is none.

    ``transform(data) -> bytes`` rewrites the bytes on their way out (for
    example to drop metadata); without it the file is streamed as stored.
    The caller has already checked that the user may see the record.
    """
    if not field_file:
        raise Http404("There is no such file.")
    if transform is None:
        response = FileResponse(field_file.open("rb"), content_type=content_type)
    else:
        with field_file.open("rb") as fh:
            response = HttpResponse(transform(fh.read()), content_type=content_type)
    # Clinical images (and anything derived from them) must not linger in
    # shared or proxy caches, nor be sniffed into another type.
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def private_image_response(field_file, image_format):
    """A stored clinical image without its metadata (EXIF GPS, device serials, XMP, comments)."""
    return private_file_response(
        field_file,
        content_type=media_type_of(image_format),
        transform=lambda data: strip_metadata(data, image_format),
    )


def private_bytes_response(data: bytes, *, content_type, filename):
    """Bytes made for this request (a PDF report, a DICOM export), as privately as stored ones.

    Sent as a download named ``filename``; the caller has already checked
    that the user may see the record.
    """
    response = private_file_response(ContentFile(data, name=filename), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
