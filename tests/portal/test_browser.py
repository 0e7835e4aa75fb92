"""The portal in a real browser: sign in, create a patient, upload, watch the
real worker's prediction arrive without a reload, review, and the image
leaves the worklist; outsiders get 404; review works from the keyboard."""

import io

import pytest
from playwright.sync_api import expect

from cases import services
from cases.models import Patient, Review
from inference.models import Prediction
from tests.factories import LesionFactory, PatientFactory

from .conftest import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PREDICTION_TIMEOUT_MS = 120_000


def test_sign_in_upload_watch_the_prediction_arrive_review_and_leave_the_worklist(
    page, worker, owner, active_model, demo_image_paths
):
    page.goto("/")
    assert "/accounts/login/" in page.url
    sign_in(page, "owner")
    expect(page.get_by_role("heading", name="Worklist")).to_be_visible()

    # Create a patient.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Patients").click()
    page.get_by_role("link", name="New patient").click()
    page.get_by_label("Medical record number (MRN)").fill("BR-0001")
    page.get_by_label("Given name").fill("Grace")
    page.get_by_label("Family name").fill("Hopper")
    page.get_by_label("Date of birth").fill("1961-12-09")
    page.get_by_label("Sex").select_option("female")
    page.get_by_role("button", name="Create patient").click()
    expect(page.get_by_role("heading", name="Hopper, Grace")).to_be_visible()
    patient = Patient.objects.get(medical_record_number="BR-0001")

    # Upload a real image to a new lesion.
    page.get_by_role("link", name="Upload images").first.click()
    page.get_by_label("Anatomical site (new lesion)").select_option("posterior_torso")
    page.get_by_label("Description (new lesion)").fill("left scapula")
    page.get_by_label("Images (JPEG or PNG)").set_input_files(str(demo_image_paths[-1]))
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_text("1 image uploaded")).to_be_visible()

    # It shows at once as pending (or running), then turns into its prediction
    # without a page reload: the marker set on this window survives.
    panel = page.locator(".prediction-panel").first
    assert panel.get_attribute("data-status") in {"pending", "running", "succeeded"}
    page.evaluate("window.__noReload = true")
    expect(page.locator(".prediction-panel[data-status=succeeded]")).to_have_count(1, timeout=PREDICTION_TIMEOUT_MS)
    assert page.evaluate("window.__noReload") is True
    prediction = Prediction.objects.get(image__lesion__patient=patient)
    assert prediction.status == "succeeded", prediction.error
    expect(page.locator("[data-label]").first).to_have_text(prediction.get_label_display())

    # On the worklist, then reviewed.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Worklist").click()
    row = page.locator(f'tr[data-image="{prediction.image_id}"]')
    expect(row).to_be_visible()
    row.get_by_role("link", name="Review").click()
    expect(page.get_by_text("decision support, not a diagnosis")).to_be_visible()
    expect(page.get_by_text(f"{prediction.probability_malignant:.2f}").first).to_be_visible()
    page.get_by_label("Show heatmap overlay").check()
    expect(page.locator("img.heatmap")).to_be_visible()
    page.get_by_label("Disagree with the model").check()
    page.get_by_label("Final diagnosis").select_option("seborrheic_keratosis")
    page.get_by_label("Biopsy requested").check()
    page.get_by_label("Notes").fill("Looks like an SK; biopsy to be sure.")
    page.get_by_role("button", name="Save review").click()
    expect(page.get_by_text("Review saved. The image has left the worklist.")).to_be_visible()
    expect(page.locator("[data-review]")).to_have_count(1)
    review = Review.objects.get(image_id=prediction.image_id)
    assert (review.verdict, review.final_diagnosis, review.biopsy_requested) == (
        "disagree",
        "seborrheic_keratosis",
        True,
    )
    assert review.prediction == prediction

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Worklist").click()
    expect(page.locator(f'tr[data-image="{prediction.image_id}"]')).to_have_count(0)


def test_an_outsider_gets_404_on_the_patients_pages_and_images(page, owner, outsider, clinic, jpeg_bytes):
    patient = PatientFactory(clinic=clinic)
    lesion = LesionFactory(patient=patient)
    image = services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes), modality="clinical")
    sign_in(page, "outsider")
    for url in [
        f"/patients/{patient.pk}/",
        f"/patients/{patient.pk}/edit",
        f"/patients/{patient.pk}/upload",
        f"/images/{image.pk}/",
        f"/images/{image.pk}/file",
        f"/images/{image.pk}/status",
    ]:
        assert page.goto(url).status == 404, url
    page.goto("/")
    expect(page.locator("tr[data-image]")).to_have_count(0)
    page.goto("/patients/")
    expect(page.get_by_text(patient.family_name)).to_have_count(0)


def _tab_to(page, selector, limit=80):
    """Press Tab until the element matching ``selector`` has the focus."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector):
            return
    pytest.fail(f"could not reach {selector} with Tab")


def test_review_with_the_keyboard_only(page, owner, lesion, jpeg_bytes, active_model):
    image = services.add_lesion_image(
        uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes), modality="dermoscopic"
    )
    Prediction.objects.filter(image=image).update(
        status="succeeded", label="uncertain", probability_malignant=0.5, confidence=0.1
    )
    # Sign in from the keyboard: the username field has the focus.
    page.goto("/accounts/login/")
    page.keyboard.type("owner")
    page.keyboard.press("Tab")
    page.keyboard.type("correct horse battery")
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/accounts/login" not in url)

    # From the worklist to the image with Tab and Enter.
    _tab_to(page, f'tr[data-image="{image.pk}"] a.btn')
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "the focused control must show where the focus is"
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/images/{image.pk}/")
    expect(page.get_by_text("Uncertain — needs specialist review")).to_be_visible()

    _tab_to(page, "#id_verdict_0")
    page.keyboard.press("Space")
    _tab_to(page, "#id_final_diagnosis")
    page.keyboard.type("Melanoma")  # a focused select picks the option typed
    _tab_to(page, "#id_biopsy_requested")
    page.keyboard.press("Space")
    _tab_to(page, "#save-review")
    page.keyboard.press("Enter")
    expect(page.get_by_text("Review saved. The image has left the worklist.")).to_be_visible()

    review = Review.objects.get(image=image)
    assert (review.verdict, review.final_diagnosis, review.biopsy_requested) == ("agree", "melanoma", True)


def test_usable_at_tablet_width(page, owner, lesion, jpeg_bytes):
    services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes), modality="dermoscopic")
    page.set_viewport_size({"width": 768, "height": 1024})
    sign_in(page, "owner")
    for url in ["/", "/patients/", f"/patients/{lesion.patient.pk}/", f"/patients/{lesion.patient.pk}/upload"]:
        page.goto(url)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{url} scrolls sideways by {overflow}px at 768px"
    # Narrower than that, the navigation collapses behind a labelled toggle button.
    page.set_viewport_size({"width": 600, "height": 900})
    page.goto("/")
    toggle = page.get_by_role("button", name="Toggle navigation")
    toggle.click()
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Patients")).to_be_visible()
