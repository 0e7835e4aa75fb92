"""The PDF case report of one lesion image, rendered from a Django template with WeasyPrint.

Everything in the PDF comes from this process: images are read from storage
and embedded as ``data:`` URIs, and WeasyPrint's URL fetcher refuses every
other URL, so rendering never makes a network request. A4, greys only,
footer with the patient's name and the page number (interop/report.css).
"""

import base64
import io
from pathlib import Path

from django.template.loader import render_to_string
from django.utils import timezone
from PIL import Image, ImageOps

from inference.models import OUT_OF_DISTRIBUTION_WARNING, Prediction

from .bodymap import body_map_svg
from .record import Case

STYLESHEET = Path(__file__).with_name("report.css")
DECISION_SUPPORT = (
    "The model's output is decision support, not a diagnosis. The clinician's review decides; "
    "a report without a signed review is preliminary."
)
# Validated figures shown from a model's metrics, in this order.
FIGURES = [
    ("roc_auc", "ROC AUC"),
    ("sensitivity", "Sensitivity"),
    ("specificity", "Specificity"),
    ("balanced_accuracy", "Balanced accuracy"),
    ("brier", "Brier score"),
    ("ece", "Expected calibration error"),
]
# Images are scaled down to this many pixels on their long side: plenty for
# about 8 cm at 300 dpi, and it keeps the PDF small.
MAX_SIDE = 1000


def _weasyprint():
    """Import WeasyPrint, undoing what its import does to Pillow.

    ``weasyprint.images`` sets Pillow's process-wide
    ``ImageFile.LOAD_TRUNCATED_IMAGES = True`` when imported; left so, every
    later upload in this process would accept truncated JPEG and PNG files
    (core.images relies on Pillow refusing them). The report only embeds
    images this module encoded itself, so Pillow's default is put back.
    """
    import weasyprint
    import weasyprint.images  # the module that flips the setting, imported before it is undone
    import weasyprint.urls
    from PIL import ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = False
    return weasyprint


def url_fetcher():
    """WeasyPrint's URL fetcher for reports: ``data:`` URIs only, never the network or the file system.

    Any other URL stops the rendering (an error, not a report with a hole in it).
    """
    return _weasyprint().urls.URLFetcher(allowed_protocols={"data"}, fail_on_errors=True, allow_redirects=False)


def _data_uri(data: bytes, media_type: str) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def _read(field_file) -> bytes:
    with field_file.open("rb") as fh:
        return fh.read()


def _upright(data: bytes) -> Image.Image:
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    image.thumbnail((MAX_SIDE, MAX_SIDE))
    return image.convert("RGB")


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def image_uris(case: Case):
    """The image, and the image under its heatmap when there is one, as data URIs."""
    lesion_image = _upright(_read(case.image.image))
    overlay = None
    prediction = case.finished_prediction
    if prediction is not None and prediction.heatmap:
        heatmap = Image.open(io.BytesIO(_read(prediction.heatmap))).convert("RGBA").resize(lesion_image.size)
        overlay = _data_uri(
            _png(Image.alpha_composite(lesion_image.convert("RGBA"), heatmap).convert("RGB")), "image/png"
        )
    return _data_uri(_jpeg(lesion_image), "image/jpeg"), overlay


def figures(model_version):
    rows = []
    for key, label in FIGURES:
        value = (model_version.metrics or {}).get(key)
        if isinstance(value, dict) and isinstance(value.get("mean"), int | float):
            ci = value.get("ci95") or []
            rows.append({"label": label, "mean": value["mean"], "ci": ci if len(ci) == 2 else None})
    return rows


def report_context(case: Case, *, user):
    prediction = case.finished_prediction
    image_uri, heatmap_uri = image_uris(case)
    device = " ".join(filter(None, [getattr(case.image, "device_make", ""), getattr(case.image, "device_model", "")]))
    return {
        "case": case,
        "image": case.image,
        "lesion": case.lesion,
        "patient": case.patient,
        "clinic": case.patient.clinic,
        "prediction": prediction,
        "pending": case.prediction is not None and prediction is None,
        "uncertain": prediction is not None and prediction.label == Prediction.Label.UNCERTAIN,
        "model": prediction.model_version if prediction else None,
        "figures": figures(prediction.model_version) if prediction else [],
        "reviews": case.reviews,
        "review": case.signed_review,
        "status": case.status,
        "device": device,
        "image_uri": image_uri,
        "heatmap_uri": heatmap_uri,
        "body_map_uri": _data_uri(body_map_svg(case.lesion.anatomical_site).encode(), "image/svg+xml"),
        "ood_warning": OUT_OF_DISTRIBUTION_WARNING,
        "decision_support": DECISION_SUPPORT,
        "generated_at": timezone.now(),
        "generated_by": user.get_full_name() or user.get_username(),
    }


def render_report_pdf(case: Case, *, user) -> bytes:
    weasyprint = _weasyprint()  # heavy: imported only when a report is made
    html = render_to_string("interop/report.html", report_context(case, user=user))
    document = weasyprint.HTML(string=html, url_fetcher=url_fetcher())
    return document.write_pdf(stylesheets=[weasyprint.CSS(filename=str(STYLESHEET))])


def report_filename(case: Case) -> str:
    # The image's id only: a file name lingers in download folders, and
    # identifiers stay inside the document.
    return f"case-report-{case.image.pk}.pdf"
