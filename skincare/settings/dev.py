"""Local development and the Quickstart demo: embedded services by default."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("SKINCARE_DEBUG", default=True)
SECRET_KEY = env("SKINCARE_SECRET_KEY", default="dev-only-not-secret-f3a9c2e1b7d54e0f8a6b")
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
