"""The PDF case report: parsed back, it holds the patient, the model, the review and the decision-support statement."""

import io

import pytest
from pypdf import PdfReader

from interop import report

from .conftest import sign_review

pytestmark = pytest.mark.django_db


def pdf_text(data):
    reader = PdfReader(io.BytesIO(data))
    return reader, "\n".join(page.extract_text() for page in reader.pages)


def test_api_report_holds_patient_model_and_review(owner_api, owner, demo_image):
    owner.first_name, owner.last_name = "Maria", "Alvarez"
    owner.save()
    sign_review(owner, demo_image, diagnosis="melanoma", histopathology_result="invasive_melanoma", notes="Excised.")
    response = owner_api.get(f"/api/v1/images/{demo_image.pk}/report.pdf", HTTP_ACCEPT="application/pdf")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Cache-Control"] == "private, no-store"
    data = b"".join(response.streaming_content)
    reader, text = pdf_text(data)
    flat = " ".join(text.split())
    for expected in [
        "Lovelace, Ada",
        "MRN-0001",
        "Northside Dermatology",
        "1961-12-10",
        "Posterior torso",
        "mobilenet-v2-melanoma-2",
        "0.83",
        "Melanoma",
        "Invasive melanoma",
        "Maria Alvarez",
        "final",
        "not a diagnosis",
        "ROC AUC",
        "Front",  # the body map
    ]:
        assert expected.lower() in flat.lower(), expected
    # Footer: the patient's name and the page number on every page.
    for number, page in enumerate(reader.pages, start=1):
        page_text = page.extract_text()
        assert "Lovelace, Ada" in page_text and f"Page {number} of {len(reader.pages)}" in page_text
    # Page size A4 (595 x 842 points).
    box = reader.pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (595, 842)
    # Both images are embedded.
    assert sum(len(page.images) for page in reader.pages) >= 2


def test_report_before_review_is_preliminary(owner_api, demo_image):
    response = owner_api.get(f"/api/v1/images/{demo_image.pk}/report.pdf")
    _, text = pdf_text(b"".join(response.streaming_content))
    assert "preliminary" in text.lower() and "Not reviewed yet." in text


def test_other_clinic_gets_404(outsider_api, demo_image, client, outsider):
    assert outsider_api.get(f"/api/v1/images/{demo_image.pk}/report.pdf").status_code == 404
    client.force_login(outsider)
    assert client.get(f"/images/{demo_image.pk}/report.pdf").status_code == 404


def test_portal_button_and_download(client, owner, demo_image):
    client.force_login(owner)
    page = client.get(f"/images/{demo_image.pk}/")
    assert f'href="/images/{demo_image.pk}/report.pdf"'.encode() in page.content
    response = client.get(f"/images/{demo_image.pk}/report.pdf")
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="case-report-{demo_image.pk}.pdf"'
    assert b"".join(response.streaming_content).startswith(b"%PDF")


def test_rendering_fetches_no_url():
    weasyprint = report._weasyprint()  # never a bare import: it changes Pillow's settings
    HTML, FatalURLFetchingError = weasyprint.HTML, weasyprint.urls.FatalURLFetchingError
    for url in ("http://127.0.0.1:9/x.png", "file:///etc/hostname"):
        with pytest.raises(FatalURLFetchingError):
            HTML(string=f'<img src="{url}">', url_fetcher=report.url_fetcher()).write_pdf()


def test_uncertain_and_out_of_distribution_warnings(owner_api, demo_image):
    demo_image.predictions.update(label="uncertain", out_of_distribution=True, probability_malignant=0.5)
    response = owner_api.get(f"/api/v1/images/{demo_image.pk}/report.pdf")
    _, text = pdf_text(b"".join(response.streaming_content))
    flat = " ".join(text.split())
    assert "the model cannot tell" in flat
    assert "Unlike the images this model was trained on" in flat


def test_rendering_leaves_pillow_refusing_truncated_images(owner_api, demo_image, jpeg_bytes):
    """WeasyPrint's import turns on Pillow's LOAD_TRUNCATED_IMAGES for the whole process; the report turns it off."""
    from django.core.exceptions import ValidationError
    from PIL import ImageFile

    from core.images import check_upload

    assert owner_api.get(f"/api/v1/images/{demo_image.pk}/report.pdf").status_code == 200
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(ValidationError):
        check_upload(io.BytesIO(jpeg_bytes[: len(jpeg_bytes) // 2]))
