"""Deployed behind TLS: secrets must come from the environment.

``python manage.py check --deploy`` passes with no warning on these defaults
(tests/security/test_deploy.py). HSTS and the HTTPS redirect are on by
default; a deployment whose TLS-terminating proxy already redirects (or that
must answer plain-HTTP health checks) may turn the redirect off with
``SKINCARE_SSL_REDIRECT=false`` and accept Django's W008 warning. The proxy
must set ``X-Forwarded-Proto`` (SECURE_PROXY_SSL_HEADER) and overwrite any
value a client sent.
"""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import DATABASES, SECRET_KEY, env, persistent_connections

if not SECRET_KEY:
    raise ImproperlyConfigured("Set SKINCARE_SECRET_KEY (formerly DJANGO_SECRET_KEY).")

# gunicorn workers serve many requests each: keep their connections (SKINCARE_DB_CONN_MAX_AGE).
DATABASES = {**DATABASES, "default": persistent_connections(DATABASES["default"], 60)}
DEBUG = False  # whatever SKINCARE_DEBUG says: tracebacks would show patient data
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SKINCARE_SSL_REDIRECT", default=True)
# HSTS: browsers use HTTPS only, for a year by default. includeSubDomains
# covers only hosts under this one's name; preload has effect only once the
# registrable domain is submitted to the browsers' list (hstspreload.org).
SECURE_HSTS_SECONDS = env.int("SKINCARE_HSTS_SECONDS", default=365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SKINCARE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SKINCARE_HSTS_PRELOAD", default=True)
SESSION_COOKIE_SECURE = env.bool("SKINCARE_SECURE_COOKIES", default=True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
