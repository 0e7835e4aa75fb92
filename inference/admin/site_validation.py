"""The local validation report page: a model version on one clinic's biopsy-confirmed images.

``admin/inference/site-validation/<version id>/?clinic=<clinic id>`` (the clinic
defaults to a site model's own). Staff see it for the clinics they may see
(``cases.permissions.admin_scope``; ML admins: every clinic); a site model of
a clinic they may not see is a 404. The numbers are
``inference.monitoring.site_validation``.
"""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse

from cases import permissions
from cases.models import Clinic

from ..models import ModelVersion
from ..monitoring.site_validation import MIN_PER_CLASS, site_validation


def visible_versions(user):
    site_models = permissions.admin_scope(
        user, ModelVersion.objects.filter(clinic__isnull=False), "clinic", model_review=True
    )
    return ModelVersion.objects.filter(Q(clinic__isnull=True) | Q(pk__in=site_models.values("pk")))


def site_validation_view(request, version_id):
    if not permissions.can_view_admin(request.user):
        raise PermissionDenied
    version = get_object_or_404(visible_versions(request.user), pk=version_id)
    clinics = permissions.admin_scope(request.user, Clinic.objects.order_by("name"), "pk", model_review=True)
    clinic_id = request.GET.get("clinic") or version.clinic_id
    clinic = None
    if clinic_id:
        try:
            clinic = clinics.filter(pk=clinic_id).first()
        except (ValueError, TypeError):
            clinic = None
        if clinic is None:
            raise Http404
    context = {
        **admin.site.each_context(request),
        "title": f"Local validation of {version}",
        "version": version,
        "clinics": clinics,
        "clinic": clinic,
        "report": site_validation(version, clinic) if clinic is not None else None,
        "min_per_class": MIN_PER_CLASS,
        # The start button of a site adaptation (ML admins: they alone may start one).
        "adapt_url": (
            f"{reverse('admin:inference_siteadaptationjob_add')}?clinic={clinic.pk}"
            if clinic is not None and permissions.is_ml_admin(request.user)
            else None
        ),
    }
    return TemplateResponse(request, "admin/inference/site_validation.html", context)


urlpatterns = [
    path("<uuid:version_id>/", admin.site.admin_view(site_validation_view), name="inference_site_validation"),
]
