"""``Authorization: Bearer <token>`` with device tokens; no session, no CSRF."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from .tokens import find_token


class DeviceTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None  # not ours: the next class (session) may try
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header: use 'Bearer <token>'.")
        try:
            token = header[1].decode("ascii")
        except UnicodeError:
            raise exceptions.AuthenticationFailed("The token contains invalid characters.") from None
        row = find_token(token)
        if row is None:
            raise exceptions.AuthenticationFailed("The token is invalid, expired or revoked.")
        return row.user, row

    def authenticate_header(self, request):
        return f'{self.keyword} realm="api"'


class DeviceTokenScheme(OpenApiAuthenticationExtension):
    target_class = "api.authentication.DeviceTokenAuthentication"
    name = "deviceToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A device token from POST /api/v1/auth/tokens.",
        }
