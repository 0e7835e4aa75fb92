from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from inference.registry import register_model_version
from inference.runtime import shipped_model_dir


class Command(BaseCommand):
    help = "Register a model folder (model.json + model file) as a ModelVersion."

    def add_arguments(self, parser):
        parser.add_argument("model_dir", nargs="?", help="default: the shipped model named in models/ACTIVE")
        parser.add_argument("--activate", action="store_true", help="make it the active model")

    def handle(self, *args, model_dir=None, activate=False, **options):
        model_dir = model_dir or shipped_model_dir()
        try:
            version, created = register_model_version(model_dir=model_dir, activate=activate)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        state = "registered" if created else "already registered"
        active = " (active)" if version.is_active else ""
        self.stdout.write(f"{version} {state}{active}, sha256 {version.sha256[:12]}")
