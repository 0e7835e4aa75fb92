"""A small clinical record for the usability and accessibility browser tests.

Real images (demo JPEGs cropped to the aspect ratios clinicians' cameras
give), stored through cases.services; each image's prediction set to a
finished result, with a real Grad-CAM-style heatmap PNG made by
inference.runtime.heatmap_png, as the worker would leave it.
"""

import datetime
import io
from dataclasses import dataclass, field

import numpy as np
from django.core.files.base import ContentFile
from django.utils import timezone
from PIL import Image

from cases import services
from inference.models import Prediction
from inference.runtime import heatmap_png
from tests.factories import PatientFactory


def cropped_jpeg(path, ratio):
    """The demo image at ``path`` cropped to ``ratio`` (width / height), as JPEG bytes."""
    image = Image.open(path).convert("RGB")
    width, height = image.size
    if width / height > ratio:
        new_width = round(height * ratio)
        box = ((width - new_width) // 2, 0, (width - new_width) // 2 + new_width, height)
    else:
        new_height = round(width / ratio)
        box = (0, (height - new_height) // 2, width, (height - new_height) // 2 + new_height)
    buffer = io.BytesIO()
    image.crop(box).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def finish(image, *, label, probability, confidence=None, ood=False, heatmap=True):
    """The image's pending prediction, finished as the worker would finish it."""
    prediction = Prediction.objects.get(image=image, is_shadow=False)
    prediction.status = Prediction.Status.SUCCEEDED
    prediction.label = label
    prediction.probability_malignant = probability
    prediction.confidence = confidence if confidence is not None else max(probability, 1 - probability)
    prediction.out_of_distribution = ood
    prediction.finished_at = timezone.now()
    if heatmap:
        y, x = np.mgrid[0:56, 0:56]
        heat = np.exp(-((x - 36) ** 2 + (y - 20) ** 2) / 120.0)
        prediction.heatmap.save("heatmap.png", ContentFile(heatmap_png(heat)), save=False)
    prediction.save()
    return prediction


@dataclass
class Record:
    patient: object
    lesions: list = field(default_factory=list)
    images: dict = field(default_factory=dict)  # name -> LesionImage
    predictions: dict = field(default_factory=dict)


def ada_lovelace(owner, clinic, demo_image_paths):
    """Ada Lovelace: two lesions, images at 3:2, 16:10 and 2:3, one reviewed.

    - ``wide``: 3:2, malignant, probability 0.996 (shown as ">0.99"), out of distribution.
    - ``sixteen_ten``: 16:10, uncertain.
    - ``tall``: 2:3 (portrait), benign, reviewed as seborrheic keratosis.
    The first lesion was entered today but its first image was captured 400 days ago.
    """
    now = timezone.now()
    patient = PatientFactory(
        clinic=clinic,
        given_name="Ada",
        family_name="Lovelace",
        medical_record_number="MRN-1815",
        date_of_birth=datetime.date(1965, 12, 10),
    )
    record = Record(patient=patient)
    back = services.create_lesion(user=owner, patient=patient, anatomical_site="posterior_torso", description="")
    arm = services.create_lesion(
        user=owner, patient=patient, anatomical_site="upper_extremity", description="left forearm"
    )
    record.lesions = [back, arm]
    plan = [
        ("wide", back, 3 / 2, 400, dict(label="malignant", probability=0.996, ood=True)),
        ("sixteen_ten", back, 16 / 10, 30, dict(label="uncertain", probability=0.5)),
        ("tall", arm, 2 / 3, 10, dict(label="benign", probability=0.12)),
    ]
    for (name, lesion, ratio, days_ago, result), path in zip(plan, demo_image_paths, strict=False):
        image = services.add_lesion_image(
            uploader=owner,
            lesion=lesion,
            file=io.BytesIO(cropped_jpeg(path, ratio)),
            modality="dermoscopic",
            captured_at=now - datetime.timedelta(days=days_ago),
        )
        record.images[name] = image
        record.predictions[name] = finish(image, **result)
    services.add_review(
        reviewer=owner, image=record.images["tall"], verdict="agree", final_diagnosis="seborrheic_keratosis"
    )
    return record
