"""Which address a request came from, the one answer for throttling and sign-in lockout.

``X-Forwarded-For`` is written by whoever sends the request, so it is only
believed as far as the deployment says: ``SKINCARE_TRUSTED_PROXIES`` is the
number of proxies in front of the application that each append the address
they received from. With 0 (the default) the header is ignored and the
socket's address (``REMOTE_ADDR``) is used; with N, the client is the N-th
address from the right, which a client cannot forge by sending its own
header (its entries end up to the left).
"""

import ipaddress

from django.conf import settings


def client_address(request) -> str:
    remote = request.META.get("REMOTE_ADDR", "")
    hops = settings.SKINCARE_TRUSTED_PROXIES
    if hops <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if not forwarded:
        return remote
    candidate = forwarded[-min(hops, len(forwarded))]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote  # not an address: a misconfigured proxy, never a key an attacker chooses
