"""A site adaptation job end to end: an ML admin's request is sent to the ``training`` queue, a real
worker of that queue exports the clinic's biopsy-confirmed images, adapts the shipped model on them,
and registers the result as the clinic's site model (not activated), progress recorded on the job.

The site is the smallest the command accepts: 20 melanomas and 40 benign lesions, made from the 16
demo images turned and mirrored (the labels are the demo images' own)."""

import io
import json
from pathlib import Path

import pytest
from django.conf import settings
from PIL import Image, ImageOps

from cases import services as case_services
from inference import site_jobs
from inference.models import ModelVersion, SiteAdaptationJob
from tests import admin_helpers

from .conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

DEMO_IMAGES = Path(settings.BASE_DIR) / "demo" / "images"
TURNS = [
    lambda im: im,
    lambda im: im.rotate(90, expand=True),
    lambda im: im.rotate(180),
    lambda im: im.rotate(270, expand=True),
    ImageOps.mirror,
]


def variants(folder, n):
    """``n`` JPEGs: each demo image of ``folder`` turned or mirrored, in turn."""
    sources = sorted((DEMO_IMAGES / folder).glob("*.jpg"))
    for i in range(n):
        with Image.open(sources[i % len(sources)]) as image:
            out = io.BytesIO()
            TURNS[i // len(sources)](image.convert("RGB")).save(out, format="JPEG", quality=90)
            yield out.getvalue()


def add_confirmed(owner, lesion, data, result):
    image = case_services.add_lesion_image(
        uploader=owner, lesion=lesion, file=io.BytesIO(data), modality="dermoscopic", device_model="DL5"
    )
    case_services.add_review(
        reviewer=owner, image=image, verdict="agree", final_diagnosis="nevus", histopathology_result=result
    )


def test_a_real_training_worker_adapts_the_model_to_the_clinic(training_worker, clinic, owner, lesion):
    need_malignant, need_benign = site_jobs.minimum_cases()
    for data in variants("malignant", need_malignant):
        add_confirmed(owner, lesion, data, "invasive_melanoma")
    for data in variants("benign", need_benign):
        add_confirmed(owner, lesion, data, "benign")

    job = site_jobs.request_site_adaptation(clinic=clinic, device_model="DL5", user=admin_helpers.ml_admin())

    def finished():
        job.refresh_from_db()
        return job.status in (SiteAdaptationJob.Status.SUCCEEDED, SiteAdaptationJob.Status.FAILED)

    wait_for(finished, timeout=900, interval=1.0, worker=training_worker)
    assert job.status == "succeeded", f"{job.error}\n{job.progress}\n{training_worker.output()[-3000:]}"
    assert "exported the site's cases: 20 melanomas, 40 benign lesions" in job.progress
    assert f"{training_worker.var}/site-models/{job.pk}" == job.out_dir

    version = job.model_version
    assert (version.clinic, version.device_model) == (clinic, "DL5")
    assert not version.is_active and not version.is_shadow  # activation stays the gated step
    site = version.metadata["site_adaptation"]
    assert (site["n_cases"], site["n_malignant"]) == (60, 20)
    assert ModelVersion.objects.for_site(clinic.pk, "DL5")[0] is None  # nothing serves it yet
    # The cases are listed by image id only, and the exported copies are gone.
    listed = json.loads((Path(job.out_dir) / "evaluation.json").read_text())["cases"]
    assert {Path(case["file"]).stem for case in listed} == {
        str(pk) for pk in lesion.images.values_list("pk", flat=True)
    }
    assert [p.name for p in (training_worker.var / "site-models").iterdir()] == [str(job.pk)]
