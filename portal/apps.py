from django.apps import AppConfig


class PortalConfig(AppConfig):
    """The clinicians' web pages: a door on top of cases and inference."""

    name = "portal"
    verbose_name = "Clinician portal"
