"""Request limits per user (all their devices together) and per token.

Rates come from REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] (environment
variables SKINCARE_API_*_RATE), read on each request so tests can change
them. Counters live in Django's cache: set CACHE_URL to a Redis URL when
more than one web process serves the API. A refusal is 429 with
Retry-After.
"""

from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from core.http import client_address

from .models import DeviceToken


class _SettingsRate(SimpleRateThrottle):
    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class UserThrottle(_SettingsRate):
    scope = "user"

    def get_cache_key(self, request, view):
        if not request.user or not request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class TokenThrottle(_SettingsRate):
    scope = "token"

    def get_cache_key(self, request, view):
        if not isinstance(request.auth, DeviceToken):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}


class UploadThrottle(UserThrottle):
    """Image uploads per user, on top of the general limits."""

    scope = "uploads"

    def allow_request(self, request, view):
        if request.method != "POST":
            return True
        return super().allow_request(request, view)


class AuthThrottle(_SettingsRate):
    """Password attempts for token creation, per client address.

    The address is ``core.http.client_address``: X-Forwarded-For counts
    only through the proxies ``SKINCARE_TRUSTED_PROXIES`` says are there, so
    a client cannot get a fresh budget by sending a new header each time.
    """

    scope = "auth"

    def get_ident(self, request):
        return client_address(request)

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
