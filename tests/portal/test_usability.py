"""The usability findings of a clinician's first, keyboard-only try of the
portal (issue #16, part A), each checked in a real browser."""

import re
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import expect

from cases.models import Patient, Review
from core.images import upload_limit_text

from .axe import DESKTOP, PHONE
from .conftest import sign_in
from .records import ada_lovelace

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def record(owner, clinic, active_model, demo_image_paths):
    return ada_lovelace(owner, clinic, demo_image_paths)


@pytest.fixture
def clinician(page, record):
    page.set_viewport_size(DESKTOP)
    sign_in(page, "owner")
    return page


def box(locator):
    found = locator.bounding_box()
    assert found is not None, f"{locator} is not rendered"
    return found


def inside(inner, outer, slack=1.0):
    return (
        inner["x"] >= outer["x"] - slack
        and inner["y"] >= outer["y"] - slack
        and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + slack
        and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + slack
    )


def test_upload_from_the_patient_page_starts_with_a_new_lesion(clinician, record):
    page = clinician
    page.goto(f"/patients/{record.patient.pk}/")
    page.get_by_role("link", name="Upload images").first.click()
    expect(page.locator("#id_lesion")).to_have_value("new")
    expect(page.get_by_label("Anatomical site (new lesion)")).to_be_visible()
    # A lesion's own "Add image" link may still choose that lesion.
    arm = record.lesions[1]
    page.goto(f"/patients/{record.patient.pk}/")
    page.locator(f"#lesion-{arm.pk}").get_by_role("link", name=re.compile("^Add image")).click()
    expect(page.locator("#id_lesion")).to_have_value(str(arm.pk))
    expect(page.get_by_label("Anatomical site (new lesion)")).to_be_hidden()


def _check_ratio(img, image):
    """The drawn box of ``img`` has the stored image's aspect ratio, and its attributes say so."""
    assert img.get_attribute("width") == str(image.width)
    assert img.get_attribute("height") == str(image.height)
    drawn = box(img)
    assert drawn["width"] / drawn["height"] == pytest.approx(image.width / image.height, rel=0.03), drawn


def test_images_keep_their_aspect_ratio_everywhere(clinician, record):
    page = clinician
    wide, tall = record.images["wide"], record.images["tall"]
    assert wide.width / wide.height == pytest.approx(1.5, rel=0.01)
    page.goto(f"/images/{wide.pk}/")
    image = page.locator(".heatmap-wrap img.lesion-img")
    _check_ratio(image, wide)
    page.get_by_label("Show heatmap overlay").check()
    heatmap = page.locator("img.heatmap")
    expect(heatmap).to_be_visible()
    assert box(heatmap) == pytest.approx(box(image), abs=1.0)  # exactly over the image
    page.goto(f"/images/{tall.pk}/")
    _check_ratio(page.locator(".heatmap-wrap img.lesion-img"), tall)
    # Timelines (thumbnails) and the worklist (smallest thumbnails).
    page.goto(f"/patients/{record.patient.pk}/")
    for name in ("wide", "sixteen_ten", "tall"):
        _check_ratio(page.locator(f'.card[data-image="{record.images[name].pk}"] img.lesion-img'), record.images[name])
    page.goto("/")
    for name in ("wide", "sixteen_ten"):
        _check_ratio(page.locator(f'tr[data-image="{record.images[name].pk}"] img.lesion-img'), record.images[name])


def test_a_failed_submit_focuses_an_error_summary_that_links_to_the_fields(clinician, record):
    page = clinician
    page.goto("/patients/new")
    page.get_by_label("Given name").fill("Charles")
    page.get_by_label("Date of birth").fill("2999-01-01")
    page.get_by_role("button", name="Create patient").click()
    summary = page.locator("#error-summary")
    expect(summary).to_be_focused()
    expect(summary.get_by_role("link")).to_have_count(3)  # MRN, family name, date of birth
    missing = page.evaluate(
        """() => Array.from(document.querySelectorAll("[aria-describedby]")).flatMap((el) =>
             el.getAttribute("aria-describedby").split(/\\s+/).filter((id) => !document.getElementById(id)))"""
    )
    assert missing == []
    expect(page.locator("#id_date_of_birth")).to_have_attribute("aria-describedby", "id_date_of_birth_error")
    summary.get_by_role("link", name=re.compile("Date of birth")).click()
    expect(page.locator("#id_date_of_birth")).to_be_focused()


def test_after_a_failed_upload_the_summary_says_to_choose_the_files_again(clinician, record, demo_image_paths):
    page = clinician
    page.goto(f"/patients/{record.patient.pk}/upload")
    expect(page.get_by_text(f"up to {upload_limit_text()} each")).to_be_visible()
    page.get_by_label("Images (JPEG or PNG)").set_input_files(str(demo_image_paths[0]))
    page.get_by_label("Capture date").fill("2999-01-01")  # refused: in the future
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#error-summary")).to_be_focused()
    expect(page.locator("[data-files-lost]")).to_contain_text("choose the images again")


def test_the_stated_upload_limit_comes_from_the_setting():
    assert upload_limit_text() == "25 MiB"  # the default, 25 × 1024 × 1024 bytes
    readme = (Path(settings.BASE_DIR) / "README.md").read_text()
    assert f"({upload_limit_text()})" in readme
    assert "26 MB" not in readme


@pytest.mark.parametrize("query", ["Ada Lovelace", "Lovelace, Ada", "lovelace", "mrn-1815"])
def test_patient_search_finds_names_in_either_order_and_the_mrn(clinician, record, query):
    page = clinician
    page.goto("/patients/")
    page.get_by_label("Search by name or MRN").fill(query)
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("link", name="Lovelace, Ada")).to_be_visible()


def test_an_mrn_differing_only_in_case_and_spaces_is_refused(clinician, record):
    page = clinician
    page.goto("/patients/new")
    page.get_by_label("Medical record number (MRN)").fill(" mrn-1815 ")
    page.get_by_label("Given name").fill("Augusta")
    page.get_by_label("Family name").fill("King")
    page.get_by_label("Date of birth").fill("1990-01-01")
    page.get_by_role("button", name="Create patient").click()
    expect(page.locator("#id_medical_record_number_error")).to_have_text("Another patient in this clinic has this MRN.")
    assert Patient.objects.filter(clinic=record.patient.clinic).count() == 1


def test_the_worklist_fits_a_phone(page, owner, record):
    page.set_viewport_size(PHONE)
    sign_in(page, "owner")
    page.goto("/")
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    view = {"x": 0, "y": 0, "width": PHONE["width"], "height": 10_000}
    for row in page.locator("tr[data-image]").all():
        assert inside(box(row.locator("[data-label]")), view)
        assert inside(box(row.get_by_role("link", name=re.compile("^Review"))), view)
        scroller = row.locator("xpath=ancestor::div[contains(@class, 'table-responsive')]")
        assert scroller.evaluate("(el) => el.scrollWidth <= el.clientWidth"), "no sideways scroll"


def test_long_badges_wrap_inside_their_timeline_card(clinician, record):
    page = clinician
    page.goto(f"/patients/{record.patient.pk}/")
    for name, badge in [("sixteen_ten", "[data-label=uncertain]"), ("tall", "[data-reviewed]")]:
        card = page.locator(f'.card[data-image="{record.images[name].pk}"]')
        label = card.locator(badge)
        assert inside(box(label), box(card))
        assert label.evaluate("(el) => el.scrollWidth <= el.clientWidth"), f"{badge} is cut off"
    expect(page.locator("[data-reviewed]")).to_have_text("Reviewed: Seborrheic keratosis")


def test_the_result_is_on_screen_without_scrolling_at_1280_by_800(clinician, record):
    page = clinician
    page.goto(f"/images/{record.images['wide'].pk}/")
    screen = {"x": 0, "y": 0, **DESKTOP}
    for part in ["[data-label]", ".ood-warning", ".decision-support"]:
        assert inside(box(page.locator(f".prediction-panel {part}")), screen), part


def test_small_things_on_the_image_and_patient_pages(clinician, record):
    page = clinician
    wide = record.images["wide"]
    page.goto(f"/images/{wide.pk}/")
    # A probability of 0.996 is not shown as the certainty "1.00".
    expect(page.locator("[data-probability]")).to_have_text(">0.99")
    expect(page.locator("[data-confidence]")).to_have_text(">0.99")
    expect(page.locator("[data-confidence-help]")).to_contain_text("not how likely the diagnosis is")
    expect(page.locator("[data-heatmap-legend]")).to_be_hidden()
    page.get_by_label("Show heatmap overlay").check()
    expect(page.locator("[data-heatmap-legend]")).to_be_visible()
    expect(page.locator("[data-heatmap-legend]")).to_contain_text("Low")
    expect(page.locator("[data-heatmap-legend]")).to_contain_text("High")
    # A lesion is followed since its first capture, not since it was entered.
    page.goto(f"/patients/{record.patient.pk}/")
    back = record.lesions[0]
    expect(page.locator(f"#lesion-{back.pk} [data-since]")).to_have_text(f"{wide.captured_at:%Y-%m-%d}")
    # The body map: left and right, and "1 lesion".
    expect(page.locator(".body-map text.side")).to_have_count(4)
    expect(page.locator(".body-map figcaption")).to_contain_text("patient's right and left")
    arm = page.locator('.body-map a[href="#site-upper_extremity"]')
    expect(arm).to_have_attribute("aria-label", "Upper extremity: 1 lesion")
    expect(page.locator('.body-map a[href="#site-anterior_torso"]')).to_have_attribute(
        "aria-label", "Anterior torso: 0 lesions"
    )


def test_after_a_review_the_saved_review_and_next_case_show_and_shortcuts_work(clinician, record):
    page = clinician
    # Worklist order: malignant (wide), then uncertain (sixteen_ten).
    first, second = record.images["wide"], record.images["sixteen_ten"]
    page.goto(f"/images/{first.pk}/")
    expect(page.locator("[data-shortcuts]")).to_contain_text("Agree with the model")
    # Typing in a field never fires a shortcut.
    page.get_by_label("Notes").fill("a d n")
    expect(page.locator("input[name=verdict]:checked")).to_have_count(0)
    assert page.url.endswith(f"/images/{first.pk}/")
    page.locator("body").click(position={"x": 5, "y": 300})
    page.keyboard.press("d")
    expect(page.locator("input[name=verdict][value=disagree]")).to_be_checked()
    page.keyboard.press("a")
    expect(page.locator("input[name=verdict][value=agree]")).to_be_checked()
    page.get_by_label("Final diagnosis").select_option("melanoma")
    page.get_by_role("button", name="Save review").click()
    saved = page.locator("[data-saved-review]")
    expect(saved).to_contain_text("Agree with the model — Melanoma")
    # No empty form inviting a second review: it is folded away.
    expect(page.get_by_role("button", name="Save review")).to_be_hidden()
    assert Review.objects.filter(image=first).count() == 1
    page.locator("body").click(position={"x": 5, "y": 300})
    page.keyboard.press("a")  # folded away: no shortcut opens it
    expect(page.get_by_role("button", name="Save review")).to_be_hidden()
    page.keyboard.press("n")
    page.wait_for_url(f"**/images/{second.pk}/")


def test_admin_monitoring_charts_have_their_title_and_legend_above_them(page, superuser, record):
    page.set_viewport_size(DESKTOP)
    sign_in(page, "root")
    page.goto("/admin/inference/monitoring/")
    charts = page.locator(".chart-with-table").all()
    assert len(charts) >= 2
    boxes = []
    for chart in charts:
        frame = box(chart)
        caption, svg = box(chart.locator("figcaption")), box(chart.locator("svg"))
        assert caption["y"] + caption["height"] <= svg["y"] + 1, "the title and legend sit above their chart"
        assert inside(caption, frame) and inside(svg, frame)
        boxes.append(frame)
    for above, below in zip(boxes, boxes[1:], strict=False):
        assert above["y"] + above["height"] < below["y"], "each chart is its own box"
    headers = page.locator(".chart-with-table th").all_inner_texts()
    assert all(text.strip() for text in headers), "no empty table header"
