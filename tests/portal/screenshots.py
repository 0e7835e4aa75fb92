"""Screenshots of the portal for README.md, taken by the browser test tooling.

Not collected by a plain ``pytest`` run (the file name does not start with
``test_``); run it on purpose, with the same services as the test suite:

    SKINCARE_SCREENSHOTS=1 .venv/bin/pytest tests/portal/screenshots.py -p no:cacheprovider

It seeds a clinic through cases.services, lets the real worker classify the
demo images, and writes docs/screenshots/{worklist,patient,upload,review}.png
and the admin's docs/screenshots/admin-{predictions,model-version,monitoring}.png.
"""

import datetime
import io
import os
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from cases import services
from inference.models import ModelVersion, Prediction
from tests.e2e.conftest import wait_for
from tests.factories import PatientFactory

from .conftest import sign_in

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(os.environ.get("SKINCARE_SCREENSHOTS") != "1", reason="set SKINCARE_SCREENSHOTS=1"),
]

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def _load_every_image(page):
    """A full-page screenshot does not scroll, so lazy images below the fold would stay blank."""
    page.evaluate("document.querySelectorAll('img[loading=lazy]').forEach((img) => { img.loading = 'eager'; })")
    page.evaluate(
        "() => Promise.all(Array.from(document.images).map((img) => img.complete ? null"
        " : new Promise((done) => { img.onload = img.onerror = done; })))"
    )


def test_take_screenshots(page, worker, owner, clinic, superuser, active_model, demo_image_paths):
    owner.first_name, owner.last_name = "Maria", "Alvarez"
    owner.save()
    now = timezone.now()
    plan = [
        ("Okafor", "Chidi", [("posterior_torso", "below left scapula", 3), ("upper_extremity", "right forearm", 1)]),
        ("Lindqvist", "Astrid", [("lower_extremity", "left shin", 2)]),
        ("Tanaka", "Hiro", [("head_neck", "left temple", 1), ("anterior_torso", "sternum", 1)]),
    ]
    paths = iter(demo_image_paths * 3)
    images, featured = [], None
    for n, (family, given, lesions) in enumerate(plan):
        patient = PatientFactory(
            clinic=clinic,
            family_name=family,
            given_name=given,
            medical_record_number=f"NS-{4821 + n}",
            date_of_birth=datetime.date(1958 + 9 * n, 3 + n, 11),
        )
        featured = featured or patient
        for site, description, count in lesions:
            lesion = services.create_lesion(user=owner, patient=patient, anatomical_site=site, description=description)
            for k in range(count):
                images.append(
                    services.add_lesion_image(
                        uploader=owner,
                        lesion=lesion,
                        file=io.BytesIO(next(paths).read_bytes()),
                        modality="dermoscopic",
                        captured_at=now - datetime.timedelta(days=120 * (count - 1 - k)),
                    )
                )
    wait_for(
        lambda: Prediction.objects.filter(image__in=images, status__in=["succeeded", "failed"]).count() == len(images),
        worker=worker,
        timeout=300,
    )
    # One image already reviewed: it is off the worklist, with its history.
    services.add_review(reviewer=owner, image=images[-1], verdict="agree", final_diagnosis="nevus")

    OUT.mkdir(parents=True, exist_ok=True)
    sign_in(page, "owner")
    page.goto("/")
    expect(page.locator("tr[data-image]").first).to_be_visible()
    _load_every_image(page)
    page.screenshot(path=OUT / "worklist.png", full_page=True)

    page.goto(f"/patients/{featured.pk}/")
    _load_every_image(page)
    page.screenshot(path=OUT / "patient.png", full_page=True)

    page.goto(f"/patients/{featured.pk}/upload")
    page.locator("#id_lesion").select_option("new")
    page.get_by_label("Anatomical site (new lesion)").select_option("lateral_torso")
    page.get_by_label("Images (JPEG or PNG)").set_input_files([str(p) for p in demo_image_paths[:2]])
    page.screenshot(path=OUT / "upload.png", full_page=True)

    top = Prediction.objects.filter(image__in=images, status="succeeded").order_by("-probability_malignant").first()
    page.goto(f"/images/{top.image_id}/")
    page.get_by_label("Show heatmap overlay").check()
    page.get_by_label("Disagree with the model").check()
    page.get_by_label("Final diagnosis").select_option("melanoma")
    page.get_by_label("Biopsy requested").check()
    page.screenshot(path=OUT / "review.png", full_page=True)

    # The admin, as an ML lead sees it (the superuser of the test fixtures).
    page.context.clear_cookies()
    sign_in(page, "root")
    page.goto(reverse("admin:inference_prediction_changelist"))
    page.screenshot(path=OUT / "admin-predictions.png", full_page=True)
    page.goto(reverse("admin:inference_modelversion_change", args=[ModelVersion.objects.get(is_active=True).pk]))
    page.screenshot(path=OUT / "admin-model-version.png", full_page=True)
    page.goto(reverse("inference_monitoring"))
    page.wait_for_load_state("load")
    page.screenshot(path=OUT / "admin-monitoring.png", full_page=True)
