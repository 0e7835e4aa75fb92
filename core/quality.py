"""Is a photo fit to be scored? Cheap measures of one decoded image, and the verdict.

The way DERM and Legit.Health check a photo before they score it: a blurred,
badly exposed, badly framed photo, or one of the wrong kind, gets a score
anyway, but not one a clinician should rely on. ``assess`` measures the
image once at intake (``cases.services.add_lesion_image``), on a 256 x 256
copy (the scale the model sees, so the same camera blur counts the same at
any resolution), and names what is wrong; the thresholds below come from
``bench/image_quality.py`` on melanoma-10k and synthetic degradations
(docs/image-quality.md has the figures and the command).

Plain numpy and Pillow; no Django: the benchmark imports this module as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from training.preprocessing import VIGNETTE_LEVEL, shades_of_gray

SIZE = 256
HASH_SIZE = 16  # 16 x 16 DCT coefficients: 256 bits
# The outer band (pixels of SIZE) that counts as the frame's edge.
EDGE = 6

# Thresholds, chosen in docs/image-quality.md (>= 98% of training images
# pass each check; the figures for the severe degradations are there).
MIN_SHARPNESS = 0.3
MAX_CLIPPED = 0.65
MIN_BRIGHT_LEVEL = 100.0
MIN_LESION_AREA = 0.03
# Cut off: both must hold (the centre alone misses a lesion photographed off-centre but whole).
MAX_LESION_OFFSET = 0.25
MAX_EDGE_ASYMMETRY = 0.2
MAX_LIGHT_GRADIENT = 0.4
MIN_VIGNETTE_FOR_DERMOSCOPIC = 0.7

# Perceptual-hash distance (bits of 256) at or below which two images count as
# the same picture (docs/image-quality.md: false matches against detection).
MAX_DUPLICATE_DISTANCE = 48

DERMOSCOPIC = "dermoscopic"
CLINICAL = "clinical"

# What the clinician reads after "Image quality: retake recommended — ".
REASONS = {
    "blurred": "too blurred",
    "overexposed": "overexposed (too bright)",
    "underexposed": "underexposed (too dark)",
    "lesion_too_small": "the lesion is too small in the frame",
    "lesion_cut_off": "the lesion is cut off by the edge of the frame",
    "looks_clinical": "looks like a clinical (non-dermoscopic) photo but was recorded as dermoscopic",
    "looks_dermoscopic": "looks like a dermoscopic photo but was recorded as clinical",
}


@dataclass(frozen=True)
class Assessment:
    measures: dict[str, float]
    findings: list[str] = field(default_factory=list)  # keys of REASONS, in that order

    @property
    def acceptable(self) -> bool:
        return not self.findings


def describe(findings) -> str:
    """The reasons in words, joined: "too blurred; overexposed (too bright)"."""
    return "; ".join(REASONS.get(code, code) for code in findings)


def retake_message(findings) -> str:
    """What the clinician reads beside the result; "" when nothing is wrong."""
    return f"Image quality: retake recommended — {describe(findings)}" if findings else ""


def _grey(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _laplacian(grey: np.ndarray) -> np.ndarray:
    return grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4 * grey[1:-1, 1:-1]


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold of 0..255 values (the level that best splits them in two)."""
    hist = np.bincount(np.clip(values, 0, 255).astype(np.int64), minlength=256).astype(np.float64)
    levels = np.arange(256, dtype=np.float64)
    weight = np.cumsum(hist)
    total = weight[-1]
    if total == 0:
        return 128.0
    cum_mean = np.cumsum(hist * levels)
    mean_all = cum_mean[-1] / total
    w0, w1 = weight, total - weight
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mean_all * w0 - cum_mean) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = 0
    return float(np.argmax(between))


def _box_count(mask: np.ndarray, size: int) -> np.ndarray:
    """How many pixels of each size x size square (centred, edges padded by repetition) are set."""
    r = size // 2
    padded = np.pad(mask.astype(np.int32), r, mode="edge")
    s = np.pad(padded.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    return s[size:, size:] - s[:-size, size:] - s[size:, :-size] + s[:-size, :-size]


def _erode(mask: np.ndarray, size: int) -> np.ndarray:
    return _box_count(mask, size) == size * size


def _dilate(mask: np.ndarray, size: int) -> np.ndarray:
    return _box_count(mask, size) > 0


def measure(img: Image.Image) -> dict[str, float]:
    """Every measure of one decoded image (any size, any mode Pillow converts to RGB)."""
    rgb = np.asarray(img.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR, reducing_gap=3.0))
    grey = _grey(rgb)
    lit = rgb.mean(axis=2) > VIGNETTE_LEVEL
    # The field of view: lit pixels away from the vignette's soft edge.
    field_ = _erode(lit, 9)
    if field_.sum() < 0.05 * field_.size:
        field_ = np.ones_like(lit)

    # Sharpness (re-blur, after Crete-Roffet et al. 2007): how much of the
    # Laplacian's spread inside the field a further blur takes away. A sharp
    # photo loses most of it, an already blurred one little; the ratio does
    # not depend on the photo's contrast. (The vignette's hard edge is
    # outside the field.)
    inner = field_[1:-1, 1:-1]
    reblurred = np.asarray(_image(grey).filter(ImageFilter.GaussianBlur(2)), dtype=np.float32)
    detail = float(_laplacian(grey)[inner].std())
    sharpness = 1.0 - float(_laplacian(reblurred)[inner].std()) / (detail + 1e-6) if detail > 0 else 0.0

    # Exposure: clipped pixels (any channel saturated) and how bright the
    # brighter part of the field is (the 90th percentile of grey; dark
    # lesions and the vignette are not evidence of under-exposure).
    clipped = float((rgb[field_] >= 250).any(axis=1).mean())
    bright_level = float(np.percentile(grey[field_], 90))

    # The lesion: Otsu's split of the colour-corrected (Shades of Gray),
    # smoothed grey field, darker side, opened to drop hairs and specks.
    smooth = np.asarray(_image(_grey(shades_of_gray(rgb))).filter(ImageFilter.GaussianBlur(3)))
    lesion = (smooth < _otsu(smooth[field_])) & field_
    lesion = _dilate(_erode(lesion, 5), 5) & field_
    lesion_area = float(lesion.sum() / field_.sum())
    # Cut off by the frame: the lesion's centre far from the frame's, and
    # lesion along one edge but not the opposite one. A big lesion that
    # fills the field touches every edge and stays centred.
    if lesion.any():
        ys, xs = np.nonzero(lesion)
        offset = float(np.hypot(xs.mean() / SIZE - 0.5, ys.mean() / SIZE - 0.5))
    else:
        offset = 0.0
    contact = [
        (lesion[part].sum() / max(field_[part].sum(), 1))
        for part in (np.s_[:, :EDGE], np.s_[:, -EDGE:], np.s_[:EDGE, :], np.s_[-EDGE:, :])
    ]
    edge_asymmetry = float(max(abs(contact[0] - contact[1]), abs(contact[2] - contact[3])))

    # Dermoscopy cues. The dark round vignette: corners dark while the
    # centre is lit. The even light of a contact dermatoscope: a plane fitted
    # to the skin's brightness (8 x 8 cells, lesion left out) is nearly flat,
    # where a lamp or a window lights a clinical photo from one side.
    c = SIZE // 8
    corners = np.concatenate([lit[:c, :c].ravel(), lit[:c, -c:].ravel(), lit[-c:, :c].ravel(), lit[-c:, -c:].ravel()])
    centre = lit[3 * c : 5 * c, 3 * c : 5 * c]
    vignette = float(centre.mean() - corners.mean())
    light_gradient = _light_gradient(grey, field_ & ~lesion, 8)

    return {
        "sharpness": round(sharpness, 4),
        "clipped": round(clipped, 4),
        "bright_level": round(bright_level, 2),
        "lesion_area": round(lesion_area, 4),
        "lesion_offset": round(offset, 4),
        "edge_asymmetry": round(edge_asymmetry, 4),
        "vignette": round(vignette, 4),
        "light_gradient": round(light_gradient, 4),
    }


def _image(grey: np.ndarray) -> Image.Image:
    return Image.fromarray(grey.clip(0, 255).astype(np.uint8))


def _light_gradient(grey: np.ndarray, mask: np.ndarray, cells: int) -> float:
    """Slope of a plane fitted to the masked brightness of cells x cells blocks, across the frame, relative to
    its mean; 0 with too few usable blocks."""
    step = grey.shape[0] // cells
    g = grey[: step * cells, : step * cells].reshape(cells, step, cells, step)
    m = mask[: step * cells, : step * cells].reshape(cells, step, cells, step)
    counts = m.sum(axis=(1, 3))
    keep = counts > 0.6 * step * step
    if keep.sum() < 8:
        return 0.0
    means = (g * m).sum(axis=(1, 3))[keep] / counts[keep]
    yy, xx = np.mgrid[0:cells, 0:cells]
    design = np.c_[xx[keep] / cells - 0.5, yy[keep] / cells - 0.5, np.ones(keep.sum())]
    (gx, gy, level), *_ = np.linalg.lstsq(design, means, rcond=None)
    return float(np.hypot(gx, gy) / max(level, 1.0))


def judge(measures: dict[str, float], modality: str) -> list[str]:
    """The findings (keys of REASONS) for these measures of an image recorded as ``modality``."""
    found = []
    if measures["sharpness"] < MIN_SHARPNESS:
        found.append("blurred")
    if measures["clipped"] > MAX_CLIPPED:
        found.append("overexposed")
    if measures["bright_level"] < MIN_BRIGHT_LEVEL:
        found.append("underexposed")
    if measures["lesion_area"] < MIN_LESION_AREA:
        found.append("lesion_too_small")
    if measures["lesion_offset"] > MAX_LESION_OFFSET and measures["edge_asymmetry"] > MAX_EDGE_ASYMMETRY:
        found.append("lesion_cut_off")
    if modality == DERMOSCOPIC and measures["light_gradient"] > MAX_LIGHT_GRADIENT:
        found.append("looks_clinical")
    if modality == CLINICAL and measures["vignette"] >= MIN_VIGNETTE_FOR_DERMOSCOPIC:
        found.append("looks_dermoscopic")
    return found


def assess(img: Image.Image, modality: str = DERMOSCOPIC) -> Assessment:
    measures = measure(img)
    return Assessment(measures=measures, findings=judge(measures, modality))


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    matrix = np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n)) * np.sqrt(2 / n)
    matrix[0] /= np.sqrt(2)
    return matrix


_DCT = _dct_matrix(HASH_SIZE * 4)


def perceptual_hash(img: Image.Image) -> str:
    """A 256-bit pHash of the whole frame as 64 hex digits.

    The lowest 16 x 16 DCT frequencies of the grey, contrast-equalised image
    at 64 x 64, each against their median. The whole frame, not only its
    centre (training.data's grouping hash), which changes more when a copy
    is cropped; equalising makes a copy with other colour
    processing hash alike. Threshold and figures: docs/image-quality.md.
    """
    side = HASH_SIZE * 4
    grey = ImageOps.equalize(img.convert("L").resize((side, side), Image.Resampling.BILINEAR, reducing_gap=3.0))
    pixels = np.asarray(grey, dtype=np.float64)
    low = (_DCT @ pixels @ _DCT.T)[:HASH_SIZE, :HASH_SIZE].ravel()
    bits = low > np.median(low[1:])  # the DC term says only how bright the frame is
    return np.packbits(bits.astype(np.uint8)).tobytes().hex()


def hamming(a: str, b: str) -> int:
    """Bits that differ between two hashes from ``perceptual_hash``."""
    return (int(a, 16) ^ int(b, 16)).bit_count()
