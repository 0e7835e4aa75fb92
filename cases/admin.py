"""The Django admin for the clinical record, and the role rules every admin page follows.

Roles in the admin come from where people work, not from model permissions
assigned by hand: any active staff user may look at every page (read-only),
a clinic administrator (``Membership.role``) may add, change and delete the
records of the clinics they administer, superusers may edit everything, and
members of the "ML admins" group manage model versions. So the ModelAdmins
here override ``has_*_permission`` instead of relying on Django's per-model
permissions, and a staff user with no model permissions still gets the
read-only view. Reviews, predictions, the audit trail and model activations
are history: nobody edits or deletes them here. Every change made here is
written to the audit trail (``core.audit``).
"""

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import Count

from core.access import users_access_changed
from core.admin import HistoryAdmin, StaffViewMixin
from core.audit import AuditedAdminMixin
from core.images import check_upload

from . import permissions, services
from .models import Clinic, Lesion, LesionImage, Membership, Patient, Review


def _on_autocomplete(request):
    match = getattr(request, "resolver_match", None)
    return match is not None and match.url_name == "autocomplete"


class ClinicRecordAdmin(AuditedAdminMixin, StaffViewMixin, admin.ModelAdmin):
    """A clinical row, editable by superusers and by the administrators of the row's clinic.

    ``clinic_lookup`` is the path from a row to its clinic. Foreign keys named
    in ``SCOPED_CHOICES`` only offer rows of the clinics the editor
    administers, so a record can never be moved into another clinic.
    """

    clinic_lookup = "clinic"
    # Foreign key name -> its model's path to the clinic.
    SCOPED_CHOICES = {"clinic": "pk", "patient": "clinic", "lesion": "patient__clinic"}

    def clinic_of(self, obj):
        for name in self.clinic_lookup.split("__") if self.clinic_lookup else []:
            obj = getattr(obj, name)
        return obj

    def get_queryset(self, request):
        return permissions.admin_scope(request.user, super().get_queryset(request), self.clinic_lookup or "pk")

    def has_add_permission(self, request):
        return permissions.can_edit_any_clinic_in_admin(request.user)

    def has_change_permission(self, request, obj=None):
        if obj is None:
            return permissions.can_edit_any_clinic_in_admin(request.user)
        return permissions.can_edit_in_admin(request.user, self.clinic_of(obj))

    def has_delete_permission(self, request, obj=None):
        return self.has_change_permission(request, obj)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        lookup = self.SCOPED_CHOICES.get(db_field.name)
        if lookup is not None and not request.user.is_superuser:
            administered = permissions.clinics_administered_by(request.user)
            kwargs["queryset"] = db_field.related_model._default_manager.filter(**{f"{lookup}__in": administered})
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_search_results(self, request, queryset, search_term):
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        if _on_autocomplete(request) and not request.user.is_superuser:
            # The choices of an edit form: only rows the editor may pick.
            clinic_path = "pk" if not self.clinic_lookup else self.clinic_lookup
            queryset = queryset.filter(**{f"{clinic_path}__in": permissions.clinics_administered_by(request.user)})
        return queryset, may_have_duplicates


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]

    def has_view_permission(self, request, obj=None):
        return permissions.can_view_admin(request.user)

    def has_add_permission(self, request, obj=None):
        return permissions.can_edit_in_admin(request.user, obj)

    def has_change_permission(self, request, obj=None):
        return permissions.can_edit_in_admin(request.user, obj)

    def has_delete_permission(self, request, obj=None):
        return permissions.can_edit_in_admin(request.user, obj)


@admin.register(Clinic)
class ClinicAdmin(ClinicRecordAdmin):
    clinic_lookup = ""
    list_display = ["name", "member_count", "created_at"]
    list_filter = ["created_at"]
    search_fields = ["name"]
    date_hierarchy = "created_at"
    inlines = [MembershipInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(member_count=Count("memberships"))

    @admin.display(description="Members", ordering="member_count")
    def member_count(self, obj):
        return obj.member_count

    def has_add_permission(self, request):
        # A new clinic has no administrators yet.
        return request.user.is_active and request.user.is_superuser

    # Members added, moved or removed here: their device tokens follow at once (core.access).
    def save_formset(self, request, form, formset, change):
        before = set(formset.queryset.values_list("user_id", flat=True)) if formset.model is Membership else set()
        super().save_formset(request, form, formset, change)
        if formset.model is Membership:
            users_access_changed(before | set(form.instance.memberships.values_list("user_id", flat=True)))

    def delete_model(self, request, obj):
        members = set(obj.memberships.values_list("user_id", flat=True))
        super().delete_model(request, obj)
        users_access_changed(members)

    def delete_queryset(self, request, queryset):
        members = set(Membership.objects.filter(clinic__in=queryset).values_list("user_id", flat=True))
        super().delete_queryset(request, queryset)
        users_access_changed(members)


@admin.register(Membership)
class MembershipAdmin(ClinicRecordAdmin):
    list_display = ["user", "clinic", "role", "created_at"]
    list_filter = ["role", "clinic"]
    list_select_related = ["user", "clinic"]
    search_fields = ["user__username", "user__first_name", "user__last_name", "clinic__name"]
    date_hierarchy = "created_at"

    # A user who leaves their last clinic loses their device tokens at once (core.access).
    def save_model(self, request, obj, form, change):
        before = Membership.objects.filter(pk=obj.pk).values_list("user_id", flat=True).first() if change else None
        super().save_model(request, obj, form, change)
        users_access_changed({before, obj.user_id})

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        users_access_changed({obj.user_id})

    def delete_queryset(self, request, queryset):
        users = set(queryset.values_list("user_id", flat=True))
        super().delete_queryset(request, queryset)
        users_access_changed(users)


@admin.register(Patient)
class PatientAdmin(ClinicRecordAdmin):
    list_display = ["family_name", "given_name", "medical_record_number", "clinic", "date_of_birth"]
    list_filter = ["clinic", "sex", "fitzpatrick_skin_type"]
    list_select_related = ["clinic"]
    search_fields = ["family_name", "given_name", "medical_record_number"]
    date_hierarchy = "created_at"


@admin.register(Lesion)
class LesionAdmin(ClinicRecordAdmin):
    clinic_lookup = "patient__clinic"
    list_display = ["id", "patient", "clinic", "anatomical_site", "created_at"]
    list_filter = ["anatomical_site", "patient__clinic"]
    list_select_related = ["patient__clinic"]
    search_fields = ["patient__family_name", "patient__medical_record_number"]
    date_hierarchy = "created_at"
    autocomplete_fields = ["patient"]

    @admin.display(description="Clinic", ordering="patient__clinic__name")
    def clinic(self, obj):
        return obj.patient.clinic


class LesionImageAddForm(forms.ModelForm):
    """Adds an image through cases.services so validation and queuing match every other door."""

    upload = forms.FileField(label="Image file (JPEG or PNG)")

    class Meta:
        model = LesionImage
        fields = ["lesion", "modality", "captured_at", "device_make", "device_model"]

    def clean_upload(self):
        # A ValidationError becomes a field error; the service reuses the check.
        return check_upload(self.cleaned_data["upload"])

    def clean(self):
        cleaned = super().clean()
        lesion = cleaned.get("lesion")
        if lesion is not None:
            clinic = lesion.patient.clinic
            if not permissions.can_edit_in_admin(self.request_user, clinic):
                raise ValidationError("Only administrators of the patient's clinic may add images here.")
            if not permissions.can_edit_clinic_records(self.request_user, clinic):
                # The uploader is on record: it must be someone of the clinic.
                raise ValidationError("Only members of the patient's clinic may add images.")
        return cleaned


class RetakeFilter(admin.SimpleListFilter):
    title = "intake checks"
    parameter_name = "intake"

    def lookups(self, request, model_admin):
        return [
            ("retake", "Retake recommended"),
            ("duplicate", "Duplicate of an earlier image"),
            ("wrong_patient", "Possible wrong patient"),
        ]

    def queryset(self, request, queryset):
        if self.value() == "retake":
            return queryset.exclude(quality_findings=[])
        if self.value() == "duplicate":
            return queryset.filter(duplicate_of__isnull=False)
        if self.value() == "wrong_patient":
            return queryset.filter(possible_wrong_patient_of__isnull=False)
        return queryset


class DeviceModelFilter(admin.SimpleListFilter):
    """The device models of the images this user may see (not every clinic's, as a plain field filter would list)."""

    title = "device model"
    parameter_name = "device_model"
    UNKNOWN = "-"

    def lookups(self, request, model_admin):
        names = (
            model_admin.get_queryset(request)
            .exclude(device_model="")
            .order_by("device_model")
            .values_list("device_model", flat=True)
            .distinct()[:100]
        )
        return [(name, name) for name in names] + [(self.UNKNOWN, "Not recorded")]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(device_model="" if value == self.UNKNOWN else value)


@admin.register(LesionImage)
class LesionImageAdmin(ClinicRecordAdmin):
    """Images: content and provenance are fixed at upload; modality, capture date and the
    acquisition device may be corrected by the clinic's administrators (audited like every change)."""

    clinic_lookup = "lesion__patient__clinic"
    list_display = [
        "id", "lesion", "modality", "device", "captured_at", "uploaded_by", "width", "height", "intake_warnings",
    ]  # fmt: skip
    list_filter = ["modality", DeviceModelFilter, RetakeFilter, "lesion__patient__clinic"]
    list_select_related = ["lesion__patient", "uploaded_by"]
    date_hierarchy = "uploaded_at"
    search_fields = ["=id", "sha256", "lesion__patient__medical_record_number"]
    autocomplete_fields = ["lesion"]
    # The stored file by name only: images are served by permission-checked views, never a media URL.
    exclude = ["image"]
    readonly_fields = [
        "stored_file",
        "image_format",
        "sha256",
        "width",
        "height",
        "byte_size",
        "metadata_removed",  # what sanitizing took out of the upload (core/imagemeta.py)
        "uploaded_by",
        "uploaded_at",
        # The intake checks (core/quality.py, docs/image-quality.md).
        "quality",
        "quality_measures",
        "perceptual_hash",
        "duplicate",
        "possible_wrong_patient",
    ]

    @admin.display(description="Image quality")
    def quality(self, obj):
        if not obj.quality_measures:
            return "Not checked (stored before the quality gate)"
        return obj.quality_message or "Passed"

    @admin.display(description="Duplicate of")
    def duplicate(self, obj):
        return obj.duplicate_message or "—"

    @admin.display(description="Possible wrong patient")
    def possible_wrong_patient(self, obj):
        return obj.wrong_patient_message or "—"

    @admin.display(description="Intake warnings")
    def intake_warnings(self, obj):
        found = [*obj.quality_findings]
        if obj.duplicate_of_id:
            found.append("duplicate")
        if obj.possible_wrong_patient_of_id:
            found.append("possible wrong patient")
        return ", ".join(found) or "—"

    @admin.display(description="Stored file")
    def stored_file(self, obj):
        return obj.image.name

    @admin.display(description="Device", ordering="device_model")
    def device(self, obj):
        return " ".join(filter(None, [obj.device_make, obj.device_model])) or "—"

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
            return ["lesion", "modality", "captured_at", "device_make", "device_model", "upload"]
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
            device_make=form.cleaned_data["device_make"],
            device_model=form.cleaned_data["device_model"],
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
class ReviewAdmin(HistoryAdmin):
    # Reviews are appended, never edited: a changed opinion is a new review.
    list_display = ["image", "clinic", "reviewer", "verdict", "final_diagnosis", "histopathology_result", "created_at"]
    list_filter = [
        "verdict",
        "final_diagnosis",
        "biopsy_requested",
        "histopathology_result",
        "image__lesion__patient__clinic",
    ]
    list_select_related = ["image__lesion__patient__clinic", "reviewer"]
    search_fields = ["=image__id", "reviewer__username", "image__lesion__patient__medical_record_number"]
    date_hierarchy = "created_at"

    def get_queryset(self, request):
        return permissions.admin_scope(request.user, super().get_queryset(request), "image__lesion__patient__clinic")

    @admin.display(description="Clinic", ordering="image__lesion__patient__clinic__name")
    def clinic(self, obj):
        return obj.image.lesion.patient.clinic
