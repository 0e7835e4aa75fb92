"""In a real browser: the upload result and the image page show the retake message and the duplicate warning."""

import io

import pytest
from PIL import Image, ImageFilter
from playwright.sync_api import expect

from cases import services
from cases.models import LesionImage

from .conftest import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_upload_shows_the_retake_message_and_the_duplicate_warning(page, owner, lesion, demo_image_paths, tmp_path):
    first = services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(demo_image_paths[0].read_bytes()))
    blurred = tmp_path / "blurred.jpg"
    Image.open(demo_image_paths[1]).filter(ImageFilter.GaussianBlur(6)).save(blurred, "JPEG", quality=92)
    repeat = tmp_path / "repeat.jpg"
    repeat.write_bytes(demo_image_paths[0].read_bytes())

    sign_in(page, "owner")
    page.goto(f"/patients/{lesion.patient_id}/upload?lesion={lesion.pk}")
    page.get_by_label("Images (JPEG or PNG)").set_input_files([str(blurred), str(repeat)])
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_text("2 images uploaded")).to_be_visible()

    # At upload time, one message per finding.
    expect(page.get_by_text("Image 1: Image quality: retake recommended — too blurred")).to_be_visible()
    expect(page.get_by_text(f"Image 2: Already uploaded on {first.uploaded_at:%Y-%m-%d}")).to_be_visible()
    # And beside each result on the page the upload leads to.
    stored = LesionImage.objects.exclude(pk=first.pk)
    unfit = stored.get(duplicate_of__isnull=True)
    again = stored.get(duplicate_of=first)
    expect(page.locator(f'#prediction-{unfit.pk} [data-quality-findings~="blurred"]')).to_contain_text(
        "retake recommended — too blurred"
    )
    expect(page.locator(f"#prediction-{again.pk} [data-duplicate-of]")).to_contain_text("Already uploaded on")

    # The image pages say it too, and the duplicate links to the earlier image.
    page.goto(f"/images/{unfit.pk}/")
    expect(page.get_by_text("Image quality: retake recommended — too blurred")).to_be_visible()
    page.goto(f"/images/{again.pk}/")
    expect(page.get_by_text("Already uploaded on")).to_be_visible()
    page.get_by_role("link", name="Open the earlier image").click()
    page.wait_for_url(f"**/images/{first.pk}/")
    expect(page.locator("[data-duplicate-of], [data-quality-findings]")).to_have_count(0)
