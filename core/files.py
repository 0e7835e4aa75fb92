"""The one way stored clinical bytes leave the server: a private, uncacheable response.

Portal, API and admin views check who may see a record, then answer through
``private_file_response``; none of them builds its own file response, so the
headers that keep clinical images out of shared caches are set in one place.

Files are served exactly as stored. Images were sanitized when they were
uploaded (``core.imagemeta``: no EXIF, XMP, comments, extra frames or
trailing data), so no door rewrites bytes on the way out and every door
serves the same bytes with the same headers.
"""

import logging
from datetime import timedelta

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404
from django.utils import timezone

# A stored file is only ever an image: if a browser is ever tricked into
# rendering one as a document, it may run nothing, load nothing and act as
# its own origin.
FILE_CONTENT_SECURITY_POLICY = "default-src 'none'; sandbox"
# What Django's never_cache sends (the admin wraps every view in it), so the
# same file carries the same header whichever door served it.
NO_STORE = "private, no-store, max-age=0, no-cache, must-revalidate"


def private_file_response(field_file, *, content_type):
    """The stored bytes of ``field_file`` (a FieldFile), never cached; 404 when there is none.

    The caller has already checked that the user may see the record.
    """
    if not field_file:
        raise Http404("There is no such file.")
    response = FileResponse(field_file.open("rb"), content_type=content_type)
    # Clinical images (and anything derived from them) must not linger in
    # shared or proxy caches, nor be sniffed into another type, nor be
    # embedded by another site.
    response["Cache-Control"] = NO_STORE
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = FILE_CONTENT_SECURITY_POLICY
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    response["Content-Disposition"] = "inline"
    return response


def private_bytes_response(data: bytes, *, content_type, filename):
    """Bytes made for this request (a PDF report, a DICOM export), as privately as stored ones.

    Sent as a download named ``filename``; the caller has already checked
    that the user may see the record.
    """
    response = private_file_response(ContentFile(data, name=filename), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


logger = logging.getLogger(__name__)


def delete_orphan_files(*, folder: str, referenced, older_than: timedelta) -> list[str]:
    """Delete files in ``folder`` that no row names, once older than ``older_than``.

    ``referenced(paths) -> set`` answers which of ``paths`` a row still
    names. Storage has no rollback hook, so a write whose transaction rolled
    back (or whose run was killed before its UPDATE) leaves its file; the age
    guard keeps this away from writes still in flight.
    """
    try:
        _, names = default_storage.listdir(folder)
    except FileNotFoundError:
        return []
    cutoff = timezone.now() - older_than
    paths = [f"{folder}/{name}" for name in names]
    known = referenced(paths)
    deleted = []
    for path in paths:
        if path in known or default_storage.get_modified_time(path) > cutoff:
            continue
        default_storage.delete(path)
        deleted.append(path)
    if deleted:
        logger.warning("Deleted %d orphan files from %s", len(deleted), folder)
    return deleted
