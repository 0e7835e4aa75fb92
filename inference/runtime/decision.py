"""From a model's outputs to what the clinician is shown: the decision rule and the quality gate.

Plain numpy; no Django and no model runtime.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.preprocessing import VIGNETTE_LEVEL


@dataclass(frozen=True)
class Result:
    probability_malignant: float
    label: str
    confidence: float
    preprocess_ms: float
    inference_ms: float
    # None when the model has no out-of-distribution output (format v1 models)
    # or, for the flag, no threshold in its metadata.
    ood_distance: float | None = None
    out_of_distribution: bool | None = None


def decide(probability: float, metadata: dict) -> tuple[str, float]:
    """Turn P(melanoma) into (label, confidence) with the model's own threshold.

    A model may carry an ``uncertain_band`` [low, high] chosen on out-of-fold
    data; inside it the answer is "uncertain" (needs specialist review)
    rather than a bare class. Confidence is the probability of the class
    given (for "uncertain", of the more likely class).
    """
    threshold = float(metadata["threshold"])
    band = metadata.get("uncertain_band")
    confidence = max(probability, 1.0 - probability)
    if band and band[0] <= probability < band[1]:
        return "uncertain", confidence
    if probability >= threshold:
        return "malignant", probability
    return "benign", 1.0 - probability


# Why a label is "uncertain" (Prediction.uncertain_reasons).
UNCERTAIN_BAND = "uncertain_band"  # the probability fell inside the model's band
IMAGE_QUALITY = "image_quality"  # the intake gate found the photo unfit (core/quality.py)


def with_image_quality(label: str, quality_findings) -> tuple[str, list[str]]:
    """The label to show once the intake quality gate is heard, and why it is uncertain (if it is).

    A photo the gate found unfit (blurred, badly exposed, badly framed, of
    the wrong kind) is still scored, but its score is not one to act on:
    the label becomes "uncertain" whatever the model said.
    """
    reasons = [UNCERTAIN_BAND] if label == "uncertain" else []
    if quality_findings:
        reasons.append(IMAGE_QUALITY)
        label = "uncertain"
    return label, reasons


# An image-quality gate beside the model's own out-of-distribution score: a
# blank frame or a screenshot has so little texture that its backbone
# features sit close to the data's mean, and the Mahalanobis distance lets
# it pass. Measured on 3,000 training images (square-sog-v2, 224 px): the
# share of exactly flat lit pixels peaks at 0.37 (median 0.014), the lit
# share never falls below 0.32; a screenshot scores 0.96, a blank image 1.0.
FLAT_LIMIT = 0.6
MIN_LIT = 0.2


def featureless(array: np.ndarray) -> bool:
    """True for images with almost no texture (blank, flat graphics) or almost no light."""
    pixels = array.astype(np.int16)
    lit = pixels[:-1, :-1].mean(axis=2) > VIGNETTE_LEVEL
    if lit.mean() < MIN_LIT:
        return True
    still_x = np.abs(np.diff(pixels, axis=1))[:-1].sum(axis=2) == 0
    still_y = np.abs(np.diff(pixels, axis=0))[:, :-1].sum(axis=2) == 0
    flat = (still_x & still_y & lit).sum() / lit.sum()
    return bool(flat > FLAT_LIMIT)
