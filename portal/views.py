"""The clinician portal: server-rendered pages, HTMX for live prediction status.

Every record is looked up through cases.permissions (404 outside the user's
clinics) and every write goes through cases.services.
"""

from collections import OrderedDict
from datetime import datetime, time
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cases import dicom, permissions, selectors, services
from cases.models import PATIENT_DEMOGRAPHICS, AnatomicalSite
from core import submissions
from core.access import user_access_changed
from core.audit import mark_listed
from core.files import private_file_response
from core.images import media_type_of, upload_limit_text
from inference import selectors as prediction_selectors
from inference.models import OUT_OF_DISTRIBUTION_WARNING, Prediction
from inference.permissions import get_prediction_or_404

from .forms import PatientForm, ReviewForm, UploadForm, WorklistFilterForm

# Multipart framing and the form's small fields around the files.
UPLOAD_OVERHEAD_BYTES = 64 * 1024
WORKLIST_PAGE_SIZE = 25
PATIENTS_PAGE_SIZE = 25
FINISHED = {Prediction.Status.SUCCEEDED, Prediction.Status.FAILED}


def _apply_errors(form, exc):
    """Show a service's ValidationError on the form field of the same name, else above the form."""
    if hasattr(exc, "error_dict"):
        for field, errors in exc.error_dict.items():
            target = field if field in form.fields else None
            for error in errors:
                form.add_error(target, error)
    else:
        form.add_error(None, exc)


@login_required
@require_GET
def home(request):
    """The worklist: unreviewed images in the user's clinics, highest risk first."""
    clinics = list(permissions.clinics_of(request.user))
    form = WorklistFilterForm(request.GET or None, clinics=clinics)
    filters = {}
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        filters = {
            "status": data["status"],
            "risk": data["risk"],
            "clinic": form.clinics.get(data["clinic"]),
            "uploaded_from": data["uploaded_from"],
            "uploaded_to": data["uploaded_to"],
        }
    page = Paginator(prediction_selectors.worklist_for(request.user, **filters), WORKLIST_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    mark_listed(request, page.object_list)
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "portal/home.html",
        {
            "form": form,
            "page": page,
            "counts": prediction_selectors.worklist_counts(request.user),
            "filter_query": query.urlencode(),
            "filtered": bool(filters) and any(filters.values()),
            "ood_warning": OUT_OF_DISTRIBUTION_WARNING,
            "now": timezone.now(),
        },
    )


@login_required
@require_GET
def patient_list(request):
    query = request.GET.get("q", "")
    page = Paginator(selectors.patients_for(request.user, query=query), PATIENTS_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    mark_listed(request, page.object_list)
    return render(request, "portal/patient_list.html", {"page": page, "q": query})


@login_required
@require_http_methods(["GET", "POST"])
def patient_create(request):
    clinics = list(permissions.clinics_of(request.user))
    if not clinics:
        raise Http404("You are not a member of any clinic.")
    form = PatientForm(request.POST or None, clinics=clinics)
    if request.method == "POST" and form.is_valid():
        try:
            patient = services.create_patient(user=request.user, **form.cleaned_data)
        except ValidationError as exc:
            _apply_errors(form, exc)
        else:
            messages.success(request, f"Patient {patient.given_name} {patient.family_name} created.")
            return redirect("portal:patient-detail", patient_id=patient.pk)
    return render(request, "portal/patient_form.html", {"form": form, "patient": None})


@login_required
@require_http_methods(["GET", "POST"])
def patient_edit(request, patient_id):
    patient = permissions.get_patient_or_404(request.user, patient_id)
    initial = {field: getattr(patient, field) for field in PATIENT_DEMOGRAPHICS}
    form = PatientForm(request.POST or None, clinics=[patient.clinic], patient=patient, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                services.update_patient(user=request.user, patient=patient, **form.cleaned_data)
        except ValidationError as exc:
            _apply_errors(form, exc)
            patient.refresh_from_db()
        else:
            messages.success(request, "Patient details saved.")
            return redirect("portal:patient-detail", patient_id=patient.pk)
    return render(request, "portal/patient_form.html", {"form": form, "patient": patient})


@login_required
@require_GET
def patient_detail(request, patient_id):
    patient = permissions.get_patient_or_404(request.user, patient_id)
    lesions = list(prediction_selectors.lesions_of(patient))
    groups = OrderedDict((site, []) for site in AnatomicalSite.values)
    for lesion in lesions:
        groups[lesion.anatomical_site].append(lesion)
    sites = [
        {"value": site, "label": AnatomicalSite(site).label, "lesions": items}
        for site, items in groups.items()
        if items
    ]
    counts = {site: len(items) for site, items in groups.items()}
    return render(
        request,
        "portal/patient_detail.html",
        {
            "patient": patient,
            "sites": sites,
            "site_counts": counts,
            "lesion_total": len(lesions),
            "ood_warning": OUT_OF_DISTRIBUTION_WARNING,
        },
    )


def upload_request_limit() -> int:
    return settings.SKINCARE_MAX_UPLOAD_BYTES * settings.SKINCARE_MAX_UPLOAD_FILES + UPLOAD_OVERHEAD_BYTES


def refuse_oversized_body(view):
    """Answer 413 from the declared Content-Length, before anything reads the body.

    Django's CSRF check reads ``request.POST`` (which writes every file part
    to disk) before a view runs, so this wrapper takes the CSRF check over:
    the view is exempt from the middleware and protected inside, after the
    size check.
    """
    protected = csrf_protect(view)

    @csrf_exempt
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return HttpResponse("Invalid Content-Length.", status=400, content_type="text/plain")
        limit = upload_request_limit()
        if length > limit:
            message = f"The upload is {length / 1e6:.0f} MB; at most {limit / 1e6:.0f} MB can be sent at once."
            return HttpResponse(message, status=413, content_type="text/plain")
        return protected(request, *args, **kwargs)

    return wrapper


def _captured_at(day):
    if day == timezone.localdate():
        return timezone.now()
    return timezone.make_aware(datetime.combine(day, time(12, 0)))


@login_required
@refuse_oversized_body
@require_http_methods(["GET", "POST"])
def upload(request, patient_id):
    patient = permissions.get_patient_or_404(request.user, patient_id)
    lesions = list(patient.lesions.order_by("created_at"))
    form = UploadForm(
        request.POST or None,
        request.FILES or None,
        lesions=lesions,
        device_models=selectors.device_models_of(patient.clinic),
    )
    if request.GET.get("lesion") in form.lesions and not form.is_bound:
        form.fields["lesion"].initial = request.GET["lesion"]
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            # All or nothing: a failure on the third file leaves no lesion and
            # no image behind (and queues nothing: tasks are sent on commit).
            # The broker being down changes nothing here: the images are
            # stored and their predictions wait, pending, for the sweeper.
            with transaction.atomic():
                submission, first = (
                    submissions.claim(user=request.user, token=data["form_token"])
                    if data["form_token"]
                    else (None, True)
                )
                if not first:
                    # The same form again (a double click, a browser retry): done already.
                    messages.info(request, "These images were uploaded already.")
                    return redirect(submission.result_url or reverse("portal:patient-detail", args=[patient.pk]))
                lesion = data["lesion"] or services.create_lesion(
                    user=request.user,
                    patient=patient,
                    anatomical_site=data["anatomical_site"],
                    description=data["description"],
                )
                captured_at = _captured_at(data["captured_on"])
                stored = []
                for upload_file in data["images"]:
                    image = dicom.add_image_upload(
                        uploader=request.user,
                        lesion=lesion,
                        file=upload_file,
                        modality=data["modality"],
                        captured_at=captured_at,
                        device_model=data["device_model"],
                    )
                    stored.append(image)
                target = f"{reverse('portal:patient-detail', args=[patient.pk])}#lesion-{lesion.pk}"
                if submission is not None:
                    submission.result_url = target
                    submission.save(update_fields=["result_url"])
        except ValidationError as exc:
            _apply_errors(form, exc)
        else:
            count = len(data["images"])
            messages.success(
                request,
                f"{count} image{'s' if count != 1 else ''} uploaded. "
                "Predictions appear here as soon as they are ready.",
            )
            _warn_about_intake(request, stored)
            return redirect(target)
    return render(request, "portal/upload.html", {"patient": patient, "form": form, "max_size": upload_limit_text()})


def _warn_about_intake(request, images):
    """The quality gate's and the duplicate check's findings, at upload time (one message each)."""
    numbered = len(images) > 1
    for n, image in enumerate(images, start=1):
        prefix = f"Image {n}: " if numbered else ""
        for text in (image.quality_message, image.duplicate_message, image.wrong_patient_message):
            if text:
                messages.warning(request, prefix + text)


def _image_context(request, image):
    return {
        "image": image,
        "patient": image.lesion.patient,
        "prediction": prediction_selectors.latest_clinical_prediction(image),
        "reviews": list(image.reviews.select_related("reviewer").order_by("created_at")),
        "ood_warning": OUT_OF_DISTRIBUTION_WARNING,
    }


def _review_page_context(request, image, form):
    context = {**_image_context(request, image), "form": form}
    context["latest_review"] = context["reviews"][-1] if context["reviews"] else None
    context["next_image"] = prediction_selectors.next_in_worklist(request.user, after=image)
    return context


@login_required
@require_GET
def image_detail(request, image_id):
    image = permissions.get_image_or_404(request.user, image_id)
    return render(request, "portal/image_detail.html", _review_page_context(request, image, ReviewForm()))


@login_required
@require_POST
def image_review(request, image_id):
    image = permissions.get_image_or_404(request.user, image_id)
    form = ReviewForm(request.POST)
    if form.is_valid():
        try:
            services.add_review(reviewer=request.user, image=image, **form.cleaned_data)
        except ValidationError as exc:
            _apply_errors(form, exc)
        else:
            messages.success(request, "Review saved. The image has left the worklist.")
            return redirect(f"{reverse('portal:image-detail', args=[image.pk])}#saved-review")
    return render(request, "portal/image_detail.html", _review_page_context(request, image, form), status=400)


@login_required
@require_GET
def image_status(request, image_id):
    """The prediction panel as a fragment; it polls itself until the prediction finishes."""
    image = permissions.get_image_or_404(request.user, image_id)
    context = _image_context(request, image)
    context["compact"] = request.GET.get("compact") == "1"
    return render(request, "portal/_prediction.html", context)


@login_required
@require_GET
def image_file(request, image_id):
    """The image's bytes, for users who may see its patient; 404 for anyone else.

    Served as stored: metadata was removed when it was uploaded (core/imagemeta.py).
    """
    image = permissions.get_image_or_404(request.user, image_id)
    return private_file_response(image.image, content_type=media_type_of(image.image_format))


@login_required
@require_GET
def prediction_heatmap(request, prediction_id):
    """The prediction's Grad-CAM overlay (PNG), for users who may see its image; 404 otherwise."""
    prediction = get_prediction_or_404(request.user, prediction_id)
    return private_file_response(prediction.heatmap, content_type="image/png")


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's form; a new password also ends the user's device tokens at once (core.access)."""

    def form_valid(self, form):
        response = super().form_valid(form)
        user_access_changed(form.user)
        return response
