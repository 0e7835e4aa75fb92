"""Facts about a request that several apps need, computed one way."""

import ipaddress

from django.conf import settings


def client_address(request) -> str | None:
    """The caller's IP address, trusting ``SKINCARE_TRUSTED_PROXIES`` hops of X-Forwarded-For.

    With no trusted proxy (the default) the header is ignored: anybody can
    send it, so believing it would let a caller choose the address that
    throttles, the sign-in lockout and the audit trail see. Behind N proxies,
    the N-th address from the right end of the header is the one the
    outermost proxy saw (a client's own entries end up to its left). With
    fewer entries than proxies, or an entry that is not an address, the
    connection's address is used: never a key a caller can choose.
    """
    trusted = settings.SKINCARE_TRUSTED_PROXIES
    if trusted > 0:
        hops = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(hops) >= trusted:
            try:
                return str(ipaddress.ip_address(hops[-trusted]))
            except ValueError:
                pass
    return request.META.get("REMOTE_ADDR") or None
