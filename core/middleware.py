"""Every read of patient data leaves one audit row, whichever door it came through.

One place rather than a call in every view: the URL says what was read (its
``patient_id``, ``image_id``, ... keyword, mapped to a model by the
``SKINCARE_AUDITED_URL_KWARGS`` setting; an admin change page's
``object_id``), the response says whether it was read (200) or refused
(401, 403, 404), and list views name the rows they showed with
``core.audit.mark_listed`` (the API's paginator and the admin's changelist
do it for every list). Only GET and HEAD are reads; writes are audited by
their own code.
"""

import logging

from django.conf import settings

from .audit import log_read
from .http import client_address
from .models import AuditEvent

logger = logging.getLogger(__name__)

REFUSED_STATUSES = {401, 403, 404}
CHANNELS = {
    "admin": AuditEvent.Channel.ADMIN,
    "api": AuditEvent.Channel.API,
    "portal": AuditEvent.Channel.PORTAL,
    # interop/ (FHIR, PDF, DICOM) serves through both doors.
    "interop_api": AuditEvent.Channel.API,
    "interop_portal": AuditEvent.Channel.PORTAL,
}


class ReadAuditMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.method in ("GET", "HEAD"):
            read = _what_was_read(request, response)
            if read is not None:
                model, object_id, object_ids, refused = read
                log_read(
                    user=getattr(request, "user", None),
                    channel=CHANNELS.get(request.resolver_match.namespace, AuditEvent.Channel.OTHER),
                    address=client_address(request),
                    model=model,
                    object_id=object_id,
                    object_ids=object_ids,
                    refused=refused,
                )
        return response


def _what_was_read(request, response):
    """``(model label, object id, listed ids, refused)``, or None when no patient data was asked for."""
    match = request.resolver_match
    if match is None:
        return None
    refused = response.status_code in REFUSED_STATUSES
    if response.status_code != 200 and not refused:
        return None
    listed = getattr(request, "audit_listed", None)
    if listed is not None and not refused:
        label, ids = listed
        # A list of clinics or tokens is no patient data; an empty page shows none.
        if ids and label in _audited_labels():
            return (label, "", ids, False)
        return None
    if match.namespace == "admin":
        return _admin_read(match, response, refused)
    for kwarg, label in settings.SKINCARE_AUDITED_URL_KWARGS.items():
        if kwarg in match.kwargs:
            return (label, match.kwargs[kwarg], [], refused)
    return None


def _audited_labels():
    return set(settings.SKINCARE_AUDITED_URL_KWARGS.values()) | set(settings.SKINCARE_AUDITED_ADMIN_MODELS)


def _admin_read(match, response, refused):
    name = match.url_name or ""
    for label in settings.SKINCARE_AUDITED_ADMIN_MODELS:
        prefix = label.replace(".", "_")
        if name == f"{prefix}_change" and "object_id" in match.kwargs:
            return (label, match.kwargs["object_id"], [], refused)
        if name == f"{prefix}_changelist" and not refused:
            changelist = (getattr(response, "context_data", None) or {}).get("cl")
            rows = [str(row.pk) for row in changelist.result_list] if changelist is not None else []
            return (label, "", rows, False) if rows else None
    return None
