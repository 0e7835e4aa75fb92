from django.apps import AppConfig


class ApiConfig(AppConfig):
    """The REST API for mobile apps: a door on top of cases and inference."""

    name = "api"
    verbose_name = "REST API"
