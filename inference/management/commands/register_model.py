import zipfile
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from inference.registry import register_model_upload, register_model_version
from inference.runtime import shipped_model_dir


class Command(BaseCommand):
    help = "Register a model folder (model.json + model file), or that folder packed as a .zip, as a ModelVersion."

    def add_arguments(self, parser):
        parser.add_argument(
            "model_dir", nargs="?", help="a model folder or a .zip of one; default: the shipped model in models/ACTIVE"
        )
        parser.add_argument("--activate", action="store_true", help="make it the active model (of its scope)")
        parser.add_argument("--clinic", help="register a site model for this clinic (its name or id)")
        parser.add_argument("--device-model", default="", help="with --clinic: only for images from this device")

    def handle(self, *args, model_dir=None, activate=False, clinic=None, device_model="", **options):
        from cases.models import Clinic

        path = Path(model_dir) if model_dir else shipped_model_dir()
        site = None
        if clinic:
            site = Clinic.objects.filter(name=clinic).first()
            if site is None:
                try:
                    site = Clinic.objects.filter(pk=clinic).first()
                except (ValidationError, ValueError):
                    site = None
            if site is None:
                raise CommandError(f"No clinic named {clinic!r}.")
        try:
            if path.is_dir():
                version, created = register_model_version(
                    model_dir=path, activate=activate, clinic=site, device_model=device_model
                )
            elif path.is_file() and zipfile.is_zipfile(path):
                with open(path, "rb") as upload:
                    version, created = register_model_upload(upload=upload, user=None, activate=activate)
            else:
                raise CommandError(f"{path} is neither a model folder nor a .zip of one.")
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        state = "registered" if created else "already registered"
        active = " (active)" if version.is_active else ""
        if version.is_site_model:
            active += f" [site model of {version.scope_label}]"
        self.stdout.write(f"{version} {state}{active}, sha256 {version.sha256[:12]}")
