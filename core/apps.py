from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The foundation every other app builds on; it imports none of them (docs/architecture.md)."""

    name = "core"
    verbose_name = "Audit and shared foundations"
