"""A small world of predictions and reviews whose monitoring numbers were worked out by hand.

The fixture (all 2026, UTC): model versions v0 (retired), v1 (active) and v2
(shadow); clinics Northside (A) and Elsewhere (B). Per image: Fitzpatrick
type, the clinical prediction, the shadow prediction (v2), the reviews of the
clinical prediction (latest last) and so the image's histopathology truth
(P positive, N negative, - none or excluded).

    img  clinic month type  clinical (v1 unless noted)   shadow v2       reviews                       truth
    1    A      Jan   I     malignant .9                 malignant .8    agree/invasive                P
    2    A      Jan   II    benign .1                    benign .2       agree/benign                  N
    3    A      Jan   II    benign .3                    malignant .7    disagree/in situ              P
    4    A      Jan   -     uncertain .5                 malignant .6    agree/invasive                P
    5    A      Jan   V     failed                       benign .3       -                             -
    6    A      Jan   V     malignant .7, OOD            failed          -                             -
    7    A      Feb   I     malignant .8                 benign .4       disagree/-, agree/benign      N
    8    A      Feb   VI    benign .2                    uncertain .5    disagree/other malignant      - (excluded)
    9    A      Feb   VI    uncertain .45                -               -                             -
    10   A      Feb   III   failed                       -               -                             -
    11   A      Feb   III   pending                      -               -                             -
    12   A      Feb   I     benign .05                   -               agree/benign, disagree/-      N
    13   A      Jan   II    v0 malignant .6              -               agree/benign                  N
    14   B      Feb   IV    malignant .95                -               agree/invasive                P
"""

import uuid
from datetime import UTC, date, datetime

from cases.models import LesionImage, Review
from inference.models import ModelVersion, Prediction
from inference.monitoring import Metrics
from tests.factories import ClinicFactory, LesionFactory, MembershipFactory, PatientFactory, UserFactory

JAN = date(2026, 1, 1)
FEB = date(2026, 2, 1)


def at(month, day, hour=12, minute=0):
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def make_version(version, **flags):
    return ModelVersion.objects.create(
        name="melanoma-cnn",
        version=version,
        file=f"models/melanoma-cnn-{version}.keras",
        sha256=version * 64,
        input_size=224,
        preprocessing="square-resize-v1",
        threshold=0.5,
        created_at=at(1, 1, hour=int(version)),
        **flags,
    )


def make_image(clinic, skin_type, uploader):
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic, fitzpatrick_skin_type=skin_type))
    return LesionImage.objects.create(
        lesion=lesion,
        image=f"lesion-images/{uuid.uuid4()}.jpg",
        image_format="JPEG",
        modality=LesionImage.Modality.DERMOSCOPIC,
        captured_at=at(1, 1),
        uploaded_by=uploader,
        sha256="0" * 64,
        width=1,
        height=1,
        byte_size=1,
    )


def predict(image, version, queued_at, status="succeeded", label="", probability=None, ood=None):
    return Prediction.objects.create(
        image=image,
        model_version=version,
        is_shadow=version.is_shadow,
        status=status,
        label=label,
        probability_malignant=probability,
        out_of_distribution=ood,
        queued_at=queued_at,
    )


def review(prediction, reviewer, created_at, verdict, histopathology=""):
    return Review.objects.create(
        image=prediction.image,
        prediction=prediction,
        reviewer=reviewer,
        created_at=created_at,
        verdict=verdict,
        final_diagnosis=Review.Diagnosis.UNDETERMINED,
        histopathology_result=histopathology,
    )


class World:
    """The fixture of the module docstring, built once per test."""

    def __init__(self):
        self.v0 = make_version("0")
        self.v1 = make_version("1", is_active=True)
        self.v2 = make_version("2", is_shadow=True)
        self.clinic_a = ClinicFactory(name="Northside")
        self.clinic_b = ClinicFactory(name="Elsewhere")
        doctor = MembershipFactory(clinic=self.clinic_a, user=UserFactory(username="doctor")).user
        other = MembershipFactory(clinic=self.clinic_b, user=UserFactory(username="other")).user

        def case(clinic, skin_type, when, clinical, shadow=None, reviews=(), version=None):
            member = doctor if clinic == self.clinic_a else other
            image = make_image(clinic, skin_type, member)
            prediction = predict(image, version or self.v1, when, **clinical)
            if shadow is not None:
                # Created with the clinical one, a moment later, as request_prediction does.
                predict(image, self.v2, when.replace(second=1), **shadow)
            for minutes, (verdict, histopathology) in enumerate(reviews):
                # In the order given, so the last one listed is the latest.
                review(prediction, member, when.replace(hour=13, minute=minutes), verdict, histopathology)
            return image

        mal, ben, unc = Prediction.Label.MALIGNANT, Prediction.Label.BENIGN, Prediction.Label.UNCERTAIN
        H = Review.Histopathology
        A, B = self.clinic_a, self.clinic_b
        jan, feb = (lambda d: at(1, d)), (lambda d: at(2, d))
        self.images = {
            1: case(A, 1, jan(3), dict(label=mal, probability=0.9), dict(label=mal, probability=0.8),
                    [("agree", H.INVASIVE_MELANOMA)]),
            2: case(A, 2, jan(4), dict(label=ben, probability=0.1), dict(label=ben, probability=0.2),
                    [("agree", H.BENIGN)]),
            3: case(A, 2, jan(5), dict(label=ben, probability=0.3), dict(label=mal, probability=0.7),
                    [("disagree", H.MELANOMA_IN_SITU)]),
            4: case(A, None, jan(6), dict(label=unc, probability=0.5), dict(label=mal, probability=0.6),
                    [("agree", H.INVASIVE_MELANOMA)]),
            5: case(A, 5, jan(7), dict(status="failed"), dict(label=ben, probability=0.3)),
            # Late on 31 January UTC: already February in Auckland, still January here.
            6: case(A, 5, at(1, 31, 23, 30), dict(label=mal, probability=0.7, ood=True), dict(status="failed")),
            7: case(A, 1, feb(3), dict(label=mal, probability=0.8), dict(label=ben, probability=0.4),
                    [("disagree", ""), ("agree", H.BENIGN)]),
            8: case(A, 6, feb(4), dict(label=ben, probability=0.2), dict(label=unc, probability=0.5),
                    [("disagree", H.OTHER_MALIGNANT)]),
            9: case(A, 6, feb(5), dict(label=unc, probability=0.45)),
            10: case(A, 3, feb(6), dict(status="failed")),
            11: case(A, 3, feb(7), dict(status="pending")),
            12: case(A, 1, feb(8), dict(label=ben, probability=0.05),
                     reviews=[("agree", H.BENIGN), ("disagree", "")]),
            13: case(A, 2, jan(9), dict(label=mal, probability=0.6),
                     reviews=[("agree", H.BENIGN)], version=self.v0),
            14: case(B, 4, feb(9), dict(label=mal, probability=0.95), reviews=[("agree", H.INVASIVE_MELANOMA)]),
        }  # fmt: skip


def metrics_by_month(rows):
    return {(row.version.label, row.month): row.metrics for row in rows}


# The hand-computed answers for v1 per month (both clinics) and for v0.
V1_JANUARY = Metrics(
    predictions=6, succeeded=5, failed=1, abstained=1, out_of_distribution=1, reviewed=4, agreed=3,
    positives=2, true_positives=1, positives_abstained=1, negatives=1, true_negatives=1, negatives_abstained=0,
)  # fmt: skip
V1_FEBRUARY = Metrics(
    predictions=7, succeeded=5, failed=1, abstained=1, out_of_distribution=0, reviewed=4, agreed=2,
    positives=1, true_positives=1, positives_abstained=0, negatives=2, true_negatives=1, negatives_abstained=0,
)  # fmt: skip
V0_JANUARY = Metrics(predictions=1, succeeded=1, reviewed=1, agreed=1, negatives=1, true_negatives=0)


def add_cases(count, clinic, uploader, active, shadow):
    for index in range(count):
        image = make_image(clinic, index % 6 + 1, uploader)
        prediction = predict(image, active, at(1 + index % 2, 10), label=Prediction.Label.MALIGNANT, probability=0.8)
        predict(image, shadow, at(1 + index % 2, 10, minute=1), label=Prediction.Label.BENIGN, probability=0.3)
        review(prediction, uploader, at(2, 20), "agree", Review.Histopathology.INVASIVE_MELANOMA)
