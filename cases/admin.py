from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from . import permissions, services
from .models import Clinic, Lesion, LesionImage, Membership, Patient, Review
from .validation import inspect_image, read_upload


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Clinic)
class ClinicAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]


@admin.register(Patient)
class PatientAdmin(admin.ModelAdmin):
    list_display = ["family_name", "given_name", "medical_record_number", "clinic", "date_of_birth"]
    list_filter = ["clinic", "sex", "fitzpatrick_skin_type"]
    list_select_related = ["clinic"]
    search_fields = ["family_name", "given_name", "medical_record_number"]
    date_hierarchy = "created_at"


@admin.register(Lesion)
class LesionAdmin(admin.ModelAdmin):
    list_display = ["id", "patient", "anatomical_site", "created_at"]
    list_filter = ["anatomical_site"]
    list_select_related = ["patient"]
    search_fields = ["patient__family_name", "patient__medical_record_number"]
    autocomplete_fields = ["patient"]


class LesionImageAddForm(forms.ModelForm):
    """Adds an image through cases.services so validation and queuing match every other door."""

    upload = forms.FileField(label="Image file (JPEG or PNG)")

    class Meta:
        model = LesionImage
        fields = ["lesion", "modality", "captured_at"]

    def clean_upload(self):
        upload = self.cleaned_data["upload"]
        inspect_image(read_upload(upload))  # ValidationError becomes a field error
        return upload

    def clean(self):
        cleaned = super().clean()
        lesion = cleaned.get("lesion")
        if lesion and not permissions.can_edit_clinic_records(self.request_user, lesion.patient.clinic):
            raise ValidationError("Only members of the patient's clinic may add images.")
        return cleaned


@admin.register(LesionImage)
class LesionImageAdmin(admin.ModelAdmin):
    list_display = ["id", "lesion", "modality", "captured_at", "uploaded_by", "width", "height"]
    list_filter = ["modality"]
    list_select_related = ["lesion__patient", "uploaded_by"]
    date_hierarchy = "uploaded_at"
    search_fields = ["sha256", "lesion__patient__medical_record_number"]
    autocomplete_fields = ["lesion"]
    readonly_fields = ["image", "image_format", "sha256", "width", "height", "byte_size", "uploaded_by", "uploaded_at"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = LesionImageAddForm
        form = super().get_form(request, obj, **kwargs)
        form.request_user = request.user
        return form

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        # Image content and provenance never change after upload.
        return [*self.readonly_fields, "lesion"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["lesion", "modality", "captured_at", "upload"]
        return super().get_fields(request, obj)

    def save_form(self, request, form, change):
        if change:
            return super().save_form(request, form, change)
        return services.add_lesion_image(
            uploader=request.user,
            lesion=form.cleaned_data["lesion"],
            file=form.cleaned_data["upload"],
            modality=form.cleaned_data["modality"],
            captured_at=form.cleaned_data["captured_at"],
        )

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
        # New images were saved by the service in save_form.

    def save_related(self, request, form, formsets, change):
        if change:
            super().save_related(request, form, formsets, change)
        # A LesionImage has no many-to-many fields or inlines to save.


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    list_display = ["image", "reviewer", "verdict", "final_diagnosis", "biopsy_requested", "created_at"]
    list_filter = ["verdict", "final_diagnosis", "biopsy_requested", "histopathology_result"]
    list_select_related = ["image", "reviewer"]
    date_hierarchy = "created_at"

    # Reviews are history: never edited or deleted here.
    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_add_permission(self, request):
        return False
