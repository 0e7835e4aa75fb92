"""One image's case, read once for every export: patient, lesion, prediction, reviews, report status.

The status rule lives here and only here (FHIR DiagnosticReport, PDF and
DICOM all show it): the model's output alone never makes a report final.

- ``registered``: no finished prediction and no review yet;
- ``preliminary``: only the model has spoken;
- ``final``: a clinician has signed a review (a review row is the
  clinician's signed statement: who, when, and what they concluded;
  reviews are appended, never edited);
- ``amended``: a later review changed the conclusion (diagnosis or
  histopathology) of an earlier one.
"""

from dataclasses import dataclass, field

from cases.models import LesionImage, Review
from inference.models import Prediction
from inference.selectors import latest_clinical_prediction


@dataclass
class Case:
    image: LesionImage
    prediction: Prediction | None
    reviews: list = field(default_factory=list)

    @property
    def lesion(self):
        return self.image.lesion

    @property
    def patient(self):
        return self.image.lesion.patient

    @property
    def finished_prediction(self):
        """The prediction a clinician sees, when it has a result."""
        p = self.prediction
        return p if p is not None and p.status == Prediction.Status.SUCCEEDED else None

    @property
    def signed_review(self):
        """The review that stands now: the latest one."""
        return self.reviews[-1] if self.reviews else None

    @property
    def status(self) -> str:
        if self.reviews:
            return "amended" if conclusion_changed(self.reviews) else "final"
        return "preliminary" if self.finished_prediction else "registered"


def _conclusion(review):
    return (review.final_diagnosis, review.histopathology_result)


def conclusion_changed(reviews) -> bool:
    """Did any review change the conclusion of the one before it?"""
    return any(_conclusion(a) != _conclusion(b) for a, b in zip(reviews, reviews[1:], strict=False))


def case_of(image) -> Case:
    """``image`` (already permission-checked) with what its exports show."""
    reviews = list(Review.objects.filter(image=image).select_related("reviewer").order_by("created_at", "id"))
    return Case(image=image, prediction=latest_clinical_prediction(image), reviews=reviews)
