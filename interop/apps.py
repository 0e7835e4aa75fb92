from django.apps import AppConfig


class InteropConfig(AppConfig):
    """Standard exports of the clinical record: FHIR R4, PDF case reports, DICOM.

    A door beside ``api`` and ``portal``: it reads through ``cases`` and
    ``inference`` (their permissions and selectors) and never writes.
    """

    name = "interop"
    verbose_name = "Interoperability (FHIR, PDF, DICOM)"
