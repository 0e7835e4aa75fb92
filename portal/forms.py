"""Portal forms. They check what a person can fix next to the field; the
services in cases.services still validate everything again on write."""

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from cases.dicom import prepare_upload
from cases.models import (
    DEVICE_NAME_LENGTH,
    AnatomicalSite,
    LesionImage,
    Patient,
    Review,
    normalise_mrn,
    validate_device_name,
)
from core import submissions
from core.images import ACCEPT
from inference.models import Prediction


class BootstrapMixin:
    """Bootstrap classes on every widget (errors and aria-invalid come from Django)."""

    def style_widgets(self):
        for field in self.fields.values():
            widget = field.widget
            if isinstance(widget, forms.CheckboxInput | forms.RadioSelect):
                css = "form-check-input"
            elif isinstance(widget, forms.Select):
                css = "form-select"
            elif isinstance(widget, forms.HiddenInput):
                continue
            else:
                css = "form-control"
            widget.attrs["class"] = f"{widget.attrs.get('class', '')} {css}".strip()


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self, **kwargs):
        super().__init__(format="%Y-%m-%d", **kwargs)


class PatientForm(BootstrapMixin, forms.Form):
    clinic = forms.ChoiceField(label="Clinic")
    medical_record_number = forms.CharField(label="Medical record number (MRN)", max_length=64)
    given_name = forms.CharField(label="Given name", max_length=150)
    family_name = forms.CharField(label="Family name", max_length=150)
    date_of_birth = forms.DateField(label="Date of birth", widget=DateInput())
    sex = forms.ChoiceField(label="Sex", choices=Patient.Sex.choices, initial=Patient.Sex.UNKNOWN)
    fitzpatrick_skin_type = forms.TypedChoiceField(
        label="Fitzpatrick skin type",
        choices=[("", "Not recorded"), *Patient.Fitzpatrick.choices],
        coerce=int,
        empty_value=None,
        required=False,
    )

    def __init__(self, *args, clinics, patient=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.patient = patient
        self.clinics = {str(c.pk): c for c in clinics}
        self.fields["clinic"].choices = [(pk, c.name) for pk, c in self.clinics.items()]
        # A patient stays in their clinic; a member of one clinic has no choice to make.
        self.fixed_clinic = patient.clinic if patient is not None else None
        if self.fixed_clinic is None and len(self.clinics) == 1:
            self.fixed_clinic = next(iter(self.clinics.values()))
        if self.fixed_clinic is not None:
            del self.fields["clinic"]
        self.style_widgets()

    def clean_date_of_birth(self):
        value = self.cleaned_data["date_of_birth"]
        if value > timezone.localdate():
            raise ValidationError("The date of birth is in the future.")
        return value

    def clean_medical_record_number(self):
        return normalise_mrn(self.cleaned_data["medical_record_number"])

    def clean(self):
        data = super().clean()
        mrn = data.get("medical_record_number")
        clinic = self.fixed_clinic or self.clinics.get(data.get("clinic"))
        if mrn and clinic is not None:
            others = Patient.objects.filter(clinic=clinic, medical_record_number=mrn)
            if self.patient is not None:
                others = others.exclude(pk=self.patient.pk)
            if others.exists():
                self.add_error("medical_record_number", "Another patient in this clinic has this MRN.")
        if self.patient is None and clinic is not None:
            data["clinic"] = clinic
        return data


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleImageField(forms.FileField):
    widget = MultipleFileInput

    def clean(self, data, initial=None):
        if not data:
            raise ValidationError("Choose at least one image.", code="required")
        files = data if isinstance(data, list | tuple) else [data]
        return [super(MultipleImageField, self).clean(f, initial) for f in files]


class UploadForm(BootstrapMixin, forms.Form):
    lesion = forms.ChoiceField(label="Lesion")
    anatomical_site = forms.ChoiceField(
        label="Anatomical site (new lesion)",
        choices=[("", "Choose a site"), *AnatomicalSite.choices],
        required=False,
    )
    description = forms.CharField(label="Description (new lesion)", required=False, max_length=500)
    modality = forms.ChoiceField(
        label="Modality", choices=LesionImage.Modality.choices, initial=LesionImage.Modality.DERMOSCOPIC
    )
    captured_on = forms.DateField(label="Capture date", widget=DateInput())
    images = MultipleImageField(
        # The label stays as the browser tests know it; the help text names DICOM.
        label="Images (JPEG or PNG)",
        widget=MultipleFileInput(attrs={"accept": f"{ACCEPT},application/dicom,.dcm"}),
    )
    # Free text, with the clinic's known device models offered (a <datalist>).
    device_model = forms.CharField(
        label="Device (optional)",
        required=False,
        max_length=DEVICE_NAME_LENGTH,
        validators=[validate_device_name],
        help_text="The dermatoscope or camera, e.g. DermLite DL5. Left blank: the model the image file names, if any.",
        widget=forms.TextInput(attrs={"list": "device-model-choices", "autocomplete": "off"}),
    )
    # One-time token (core.submissions): a retried POST of this form stores nothing twice.
    form_token = forms.CharField(widget=forms.HiddenInput, required=False, max_length=64)

    NEW = "new"

    def __init__(self, *args, lesions, device_models=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.device_models = list(device_models)
        self.lesions = {str(lesion.pk): lesion for lesion in lesions}
        self.fields["lesion"].choices = [
            (self.NEW, "New lesion"),
            *[
                (pk, f"{lesion.get_anatomical_site_display()} — {lesion.description or 'no description'}")
                for pk, lesion in self.lesions.items()
            ],
        ]
        self.fields["captured_on"].initial = timezone.localdate()
        self.fields["form_token"].initial = submissions.new_token()
        # Always "New lesion" unless the page asked for a lesion (its "Add image"
        # link): a default existing lesion silently filed a new mole's photos
        # under another lesion's timeline.
        self.fields["lesion"].initial = self.NEW
        self.style_widgets()

    def clean_captured_on(self):
        value = self.cleaned_data["captured_on"]
        if value > timezone.localdate():
            raise ValidationError("The capture date is in the future.")
        return value

    def clean_images(self):
        """Check every file now, so each bad one gets its own message; the service reuses the checks."""
        checked, errors = [], []
        limit = settings.SKINCARE_MAX_UPLOAD_FILES
        if len(self.cleaned_data["images"]) > limit:
            raise ValidationError(f"At most {limit} images can be uploaded at once.", code="too_many_files")
        for upload in self.cleaned_data["images"]:
            try:
                checked.append(prepare_upload(upload))
            except ValidationError as exc:
                errors.extend(f"{upload.name}: {message}" for message in exc.messages)
        if errors:
            raise ValidationError(errors)
        return checked

    def clean(self):
        data = super().clean()
        choice = data.get("lesion")
        if choice == self.NEW:
            data["lesion"] = None
            if not data.get("anatomical_site"):
                self.add_error("anatomical_site", "Choose the anatomical site of the new lesion.")
        elif choice:
            data["lesion"] = self.lesions[choice]
        return data


class ReviewForm(BootstrapMixin, forms.Form):
    verdict = forms.ChoiceField(label="Your verdict", choices=Review.Verdict.choices, widget=forms.RadioSelect)
    final_diagnosis = forms.ChoiceField(
        label="Final diagnosis", choices=[("", "Choose a diagnosis"), *Review.Diagnosis.choices]
    )
    biopsy_requested = forms.BooleanField(label="Biopsy requested", required=False)
    histopathology_result = forms.ChoiceField(
        label="Histopathology result", choices=Review.Histopathology.choices, required=False
    )
    notes = forms.CharField(label="Notes", widget=forms.Textarea(attrs={"rows": 3}), required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.style_widgets()


class WorklistFilterForm(BootstrapMixin, forms.Form):
    RISK_CHOICES = [
        ("", "Any risk"),
        (Prediction.Label.MALIGNANT, "Malignant"),
        (Prediction.Label.UNCERTAIN, "Uncertain"),
        (Prediction.Label.BENIGN, "Benign"),
    ]
    STATUS_CHOICES = [("", "Any status"), *Prediction.Status.choices, ("none", "No prediction")]

    status = forms.ChoiceField(label="Status", choices=STATUS_CHOICES, required=False)
    risk = forms.ChoiceField(label="Risk band", choices=RISK_CHOICES, required=False)
    clinic = forms.ChoiceField(label="Clinic", required=False)
    uploaded_from = forms.DateField(label="Uploaded from", required=False, widget=DateInput())
    uploaded_to = forms.DateField(label="Uploaded to", required=False, widget=DateInput())

    def __init__(self, *args, clinics, **kwargs):
        super().__init__(*args, **kwargs)
        self.clinics = {str(c.pk): c for c in clinics}
        self.fields["clinic"].choices = [("", "All my clinics"), *[(pk, c.name) for pk, c in self.clinics.items()]]
        self.style_widgets()
        for field in self.fields.values():
            field.widget.attrs["class"] += " form-control-sm" if "form-control" in field.widget.attrs["class"] else ""
