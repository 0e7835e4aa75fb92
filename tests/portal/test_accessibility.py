"""axe-core on every portal page and the admin pages clinicians and admins use,
at desktop (1280×800) and phone (390×844) widths: no serious or critical
violation anywhere, and every aria-describedby names an id that exists.

One browser for the session; per width one signed-in context for the
clinician and one for the admin, reused across all their pages, so the whole
sweep is two tests.
"""

import pytest
from django.urls import reverse

from inference.models import ModelVersion

from .axe import DESKTOP, PHONE, add_axe, blocking_problems
from .conftest import sign_in
from .records import ada_lovelace

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _context(browser, live_server, viewport):
    context = browser.new_context(base_url=live_server.url, viewport=viewport)
    context.set_default_timeout(15_000)
    add_axe(context)
    return context


def _portal_pages(page, record, problems, width):
    patient, images = record.patient, record.images

    def check(label):
        page.wait_for_load_state("load")
        problems.extend(blocking_problems(page, f"{label} [{page.url.split('://', 1)[1]}] at {width}px"))

    page.goto("/accounts/login/")
    check("sign-in")
    sign_in(page, "owner")
    for label, url in [
        ("worklist", "/"),
        ("worklist, filtered", "/?risk=malignant&status=succeeded"),
        ("patients", "/patients/"),
        ("patient search", "/patients/?q=Lovelace%2C+Ada"),
        ("new patient", "/patients/new"),
        ("patient", f"/patients/{patient.pk}/"),
        ("edit patient", f"/patients/{patient.pk}/edit"),
        ("upload", f"/patients/{patient.pk}/upload"),
        ("image, reviewed", f"/images/{images['tall'].pk}/"),
        ("change password", "/accounts/password/"),
    ]:
        page.goto(url)
        check(label)
    # Pages after a failed submit: the error summary and the fields' errors.
    page.goto("/patients/new")
    page.get_by_role("button", name="Create patient").click()
    check("new patient, errors")
    page.goto(f"/patients/{patient.pk}/upload")
    page.get_by_role("button", name="Upload").click()
    check("upload, errors")
    page.goto(f"/images/{images['wide'].pk}/")
    page.get_by_label("Show heatmap overlay").check()
    check("image with heatmap and OOD warning")
    page.get_by_role("button", name="Save review").click()
    check("image, review errors")


def _admin_pages(page, record, problems, width):
    image, prediction = record.images["wide"], record.predictions["wide"]
    version = ModelVersion.objects.get(is_active=True)
    sign_in(page, "root")
    for label, url in [
        ("admin index", reverse("admin:index")),
        ("admin patients", reverse("admin:cases_patient_changelist")),
        ("admin patient", reverse("admin:cases_patient_change", args=[record.patient.pk])),
        ("admin lesions", reverse("admin:cases_lesion_changelist")),
        ("admin lesion", reverse("admin:cases_lesion_change", args=[record.lesions[0].pk])),
        ("admin images", reverse("admin:cases_lesionimage_changelist")),
        ("admin image", reverse("admin:cases_lesionimage_change", args=[image.pk])),
        ("admin predictions", reverse("admin:inference_prediction_changelist")),
        ("admin prediction", reverse("admin:inference_prediction_change", args=[prediction.pk])),
        ("admin model versions", reverse("admin:inference_modelversion_changelist")),
        ("admin model version", reverse("admin:inference_modelversion_change", args=[version.pk])),
        ("admin monitoring", reverse("inference_monitoring")),
        (
            "admin site validation",
            reverse("inference_site_validation", args=[version.pk]) + f"?clinic={record.patient.clinic_id}",
        ),
    ]:
        response = page.goto(url)
        assert response.status == 200, f"{label}: {url} answered {response.status}"
        page.wait_for_load_state("load")
        problems.extend(blocking_problems(page, f"{label} [{url}] at {width}px"))


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_no_serious_or_critical_axe_violation_on_any_page(
    browser, live_server, viewport, owner, clinic, superuser, active_model, demo_image_paths
):
    record = ada_lovelace(owner, clinic, demo_image_paths)
    problems = []
    for visit in (_portal_pages, _admin_pages):
        context = _context(browser, live_server, viewport)
        try:
            visit(context.new_page(), record, problems, viewport["width"])
        finally:
            context.close()
    assert not problems, "accessibility problems (axe-core, serious or critical):\n" + "\n".join(problems)
