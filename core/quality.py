"""Is a photo fit to be scored? Cheap measures of one decoded image, and the verdict.

The way DERM and Legit.Health check a photo before they score it: a blurred,
badly exposed, badly framed photo, or one of the wrong kind, gets a score
anyway, but not one a clinician should rely on. ``assess`` measures the
image once at intake (``cases.services.add_lesion_image``), on a 256 x 256
copy (the scale the model sees, so the same camera blur counts the same at
any resolution) of the upload check's own reduced decode (``gate_image``;
no second decode), and names what is wrong; the thresholds below come from
``bench/image_quality.py`` on melanoma-10k and synthetic degradations
(docs/image-quality.md has the figures and the command).

numpy and Pillow (no scipy: the few ndimage operations are in core._morphology, to keep the runtime
image small); no Django: the benchmark imports this module as it is. Cheap
on purpose (~10-15 ms CPU for every measure and the hash; it runs in the web
request): one Shades-of-Gray correction shared by both segmentations, box
filters by doubling, tables instead of sorts (docs/benchmarks.md).

Why this module is long: the measures, the lesion segmentation and the hash
are one pass over one 256 x 256 copy that share their intermediate arrays
(the field, the colour correction, the channel sums); apart, each would
compute them again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from training.preprocessing import VIGNETTE_LEVEL, decode_reduced, shades_of_gray

from . import _morphology

SIZE = 256
# An upload's one decode (``core.images``) keeps both sides at least this, so
# the gate and the hash measure it without decoding the bytes again: a JPEG
# is decoded at 1/8, 1/4 or 1/2 scale (DCT scaling) down to no less than the
# working size, then resized to it.
DECODE_SIDE = SIZE
HASH_SIZE = 16  # 16 x 16 DCT coefficients: 256 bits
HASH_BITS = HASH_SIZE * HASH_SIZE  # perceptual_hash gives them as HASH_BITS // 4 hex digits
# The outer band (pixels of SIZE) that counts as the frame's edge.
EDGE = 6

# Bumped whenever a measure changes, so that ``manage.py backfill_image_quality``
# re-measures images measured by an older version (stored in the measures).
# 3: measured (and hashed) from the upload check's reduced decode
# (``gate_image``), no longer from a second, full decode: the same for an
# image with a side under 512 px, slightly different for larger ones (a JPEG
# DCT-scaled, a PNG reduced by block means before the resize to SIZE).
MEASURES_VERSION = 3

# Thresholds, chosen jointly in docs/image-quality.md (bench/image_quality.py
# --calibrate): on one half of a stratified sample of melanoma-10k, every
# one-measure check as loose as still catches >= 95.5% of its severe
# degradation, then the cut-off check as strict as the whole gate allows while
# >= 98% of training images pass; the figures are those of the other half.
THRESHOLDS = {
    "min_sharpness": 0.255,
    "max_clipped": 0.63,
    "min_bright_level": 83.5,
    "min_lesion_area": 0.0289,
    # Cut off: both must hold. The whole gate's budget (>= 98% of training
    # images pass) leaves this check only lesions whose outline is mostly the
    # frame's edge; docs/image-quality.md has what it would catch at a cost,
    # and why no framing measure tried (per-side contact, chords, a circle or
    # ellipse extrapolated past the frame) does better (bench cut_off).
    "max_edge_contact": 0.66,
    "max_lesion_offset": 0.0,
    "max_light_gradient": 0.453,
    "min_vignette_for_dermoscopic": 0.7,
}

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
    r, g, b = (rgb[..., k].astype(np.float32) for k in range(3))
    return r * np.float32(0.299) + g * np.float32(0.587) + b * np.float32(0.114)


def _channel_sum(rgb: np.ndarray) -> np.ndarray:
    """R + G + B per pixel (uint16): ``> 3 * VIGNETTE_LEVEL`` is "mean above the vignette level", exactly."""
    return rgb[..., 0].astype(np.uint16) + rgb[..., 1] + rgb[..., 2]


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


def _span(a: np.ndarray, start: int, n: int, axis: int) -> np.ndarray:
    return a[start : start + n] if axis == 0 else a[:, start : start + n]


def _window(mask: np.ndarray, size: int, op) -> np.ndarray:
    """``op`` (np.logical_and: all, np.logical_or: any) over each size x size square centred on a pixel
    (size odd; the edges padded by repetition). Separable, and along each axis the window is built by
    doubling (1, 2, 4, ... pixels), so a 31-pixel square costs ~10 array operations per axis."""
    r = size // 2
    out = mask
    for axis in (0, 1):
        n = out.shape[axis]
        block = np.pad(out, [(r, r) if ax == axis else (0, 0) for ax in (0, 1)], mode="edge")
        result, offset, power, remaining = None, 0, 1, size
        while True:
            if remaining & 1:  # the next `power` pixels of the window, from `offset`
                part = _span(block, offset, n, axis)
                result = part if result is None else op(result, part)
                offset += power
            remaining >>= 1
            if not remaining:
                break
            m = block.shape[axis] - power
            block = op(_span(block, 0, m, axis), _span(block, power, m, axis))
            power *= 2
        out = result
    return out


def _erode(mask: np.ndarray, size: int) -> np.ndarray:
    return _window(mask, size, np.logical_and)


def _dilate(mask: np.ndarray, size: int) -> np.ndarray:
    return _window(mask, size, np.logical_or)


def measure(img: Image.Image) -> dict[str, float]:
    """Every measure of one decoded image (any size, any mode Pillow converts to RGB).

    An upload is measured from its check's reduced decode (``gate_image``);
    anything else passed here is reduced the same way (``_rgb``).
    """
    return _measure(_rgb(img))


def _measure(rgb: np.ndarray) -> dict[str, float]:
    channel_sum = _channel_sum(rgb)
    lit = channel_sum > 3 * VIGNETTE_LEVEL
    grey = _grey(rgb)
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
    grey_image = _image(grey)
    reblurred = np.asarray(grey_image.filter(ImageFilter.GaussianBlur(2)), dtype=np.float32)
    detail = float(_laplacian(grey)[inner].std())
    sharpness = 1.0 - float(_laplacian(reblurred)[inner].std()) / (detail + 1e-6) if detail > 0 else 0.0

    # Exposure: clipped pixels (any channel saturated) and how bright the
    # brighter part of the field is (the 90th percentile of grey; dark
    # lesions and the vignette are not evidence of under-exposure).
    peak = np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])
    clipped = float((peak[field_] >= 250).mean())
    bright_level = float(np.percentile(grey[field_], 90))

    # How much of the field is darker than the skin: Otsu's darker class of
    # the colour-corrected (Shades of Gray), smoothed grey field, opened to
    # drop hairs and specks. Its share is the "too small" measure; the field
    # less it is the skin for the light-gradient fit below. (The lesion of
    # ``lesion_mask`` frames a lesion better but, on a photo taken from too
    # far, takes the whole pale patch around a small lesion: docs.)
    corrected = shades_of_gray(rgb, lit=lit)
    smooth = np.asarray(_image(_grey(corrected)).filter(ImageFilter.GaussianBlur(3)))
    darker = _dilate(_erode((smooth < _otsu(smooth[field_])) & field_, 5), 5) & field_
    lesion_area = float(darker.sum() / field_.sum())
    # The lesion (``lesion_mask``): how far its centre is from the frame's,
    # and how much of its outline is the frame's edge (0 for a lesion wholly
    # in frame, about 0.4 for a disc cut through its middle, near 1 for one
    # that runs off every side).
    offset, edge_contact = _framing(_lesion(rgb, corrected, channel_sum, lit)[0])

    # Dermoscopy cues. The dark round vignette: corners dark while the
    # centre is lit. The even light of a contact dermatoscope: a plane fitted
    # to the skin's brightness (8 x 8 cells, lesion left out) is nearly flat,
    # where a lamp or a window lights a clinical photo from one side.
    c = SIZE // 8
    corners = np.concatenate([lit[:c, :c].ravel(), lit[:c, -c:].ravel(), lit[-c:, :c].ravel(), lit[-c:, -c:].ravel()])
    centre = lit[3 * c : 5 * c, 3 * c : 5 * c]
    vignette = float(centre.mean() - corners.mean())
    light_gradient = _light_gradient(grey, field_ & ~darker, 8)

    return {
        "sharpness": round(sharpness, 4),
        "clipped": round(clipped, 4),
        "bright_level": round(bright_level, 2),
        "lesion_area": round(lesion_area, 4),
        "lesion_offset": round(offset, 4),
        "edge_contact": round(edge_contact, 4),
        "vignette": round(vignette, 4),
        "light_gradient": round(light_gradient, 4),
        "version": MEASURES_VERSION,
    }


def _image(grey: np.ndarray) -> Image.Image:
    return Image.fromarray(grey.clip(0, 255).astype(np.uint8))


# Dark pixels connected to a corner of the frame are a dermatoscope's
# vignette, not lesion; this many pixels (of SIZE) from each corner.
CORNER = 16
HALF = SIZE // 2


def field_of_view(rgb: np.ndarray, channel_sum: np.ndarray | None = None) -> np.ndarray:
    """The pixels a dermatoscope lit: all but the dark vignette and its soft edge.

    The vignette is the near-black that reaches a corner of the frame (a
    black lesion or hair inside the field is kept, unlike a plain brightness
    cut); its soft edge is what lies within 15 px of it and is darker than
    60% of the field's median. (``channel_sum``: ``_channel_sum(rgb)``, if
    the caller has it.)
    """
    if channel_sum is None:
        channel_sum = _channel_sum(rgb)
    lit = channel_sum > 3 * VIGNETTE_LEVEL
    c = CORNER
    corners = np.zeros_like(lit)
    corners[:c, :c] = corners[:c, -c:] = corners[-c:, :c] = corners[-c:, -c:] = True
    if not (corners & ~lit).any():  # no dark corner: no vignette (the common case, no labelling needed)
        return np.ones_like(lit)
    labels, n = _morphology.label(~lit)
    touching = np.zeros(n + 1, dtype=bool)  # by part number: those with a pixel in a corner
    touching[labels[corners & ~lit]] = True
    vignette = touching[labels]
    view = ~_dilate(vignette, 9)
    if view.sum() < 0.05 * view.size:
        return np.ones_like(lit)
    grey = channel_sum / 3.0
    soft_edge = _dilate(vignette, 31) & (grey < 0.6 * np.median(grey[view]))
    narrowed = view & ~soft_edge
    return narrowed if narrowed.sum() > 0.05 * view.size else view


def _quadratic_design(n: int, step: int) -> np.ndarray:
    yy, xx = np.mgrid[0:n:step, 0:n:step] / n - 0.5
    return np.stack([np.ones_like(xx), xx, yy, xx * xx, yy * yy, xx * yy], axis=-1).reshape(-1, 6)


_DESIGN_FULL = _quadratic_design(HALF, 1)
_DESIGN_SPARSE = _quadratic_design(HALF, 2)
# Each sparse row's outer product with itself, flattened: the normal matrix of
# any subset of rows is one matrix-vector product.
_DESIGN_OUTER = np.einsum("ni,nj->nij", _DESIGN_SPARSE, _DESIGN_SPARSE).reshape(-1, 36)


def _flatten_light(v: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``v`` divided by a quadratic fitted to its skin: uneven light and soft shading go, a lesion stays.

    The fit leaves out, round by round, what is much darker than the last fit
    (the lesion), so the lesion does not pull the background down.
    """
    values, keep_in = v[::2, ::2].ravel(), mask[::2, ::2].ravel()
    keep, coef = keep_in.copy(), None
    for _ in range(4):
        if keep.sum() < 20:
            break
        weights = keep.astype(np.float64)
        normal = (weights @ _DESIGN_OUTER).reshape(6, 6)
        coef = np.linalg.solve(normal + 1e-6 * np.eye(6), (weights * values) @ _DESIGN_SPARSE)
        residual = values - _DESIGN_SPARSE @ coef
        spread = np.median(np.abs(residual[keep])) + 1e-3
        keep = keep_in & (residual > -2.0 * spread)
    if coef is None or keep.sum() < 20:
        return v
    background = np.maximum(_DESIGN_FULL @ coef, 1.0).reshape(v.shape)
    return v / background * float(np.median(values[keep]))


# Lesion-vs-skin channel (of the colour-corrected RGB): melanin and blood
# darken green and blue most, so these weigh more than in plain grey.
LESION_CHANNEL = np.array([0.15, 0.45, 0.40], dtype=np.float32)


def _lesion(rgb: np.ndarray, corrected=None, channel_sum=None, lit=None) -> tuple[np.ndarray, np.ndarray]:
    """(the lesion, the field of view), boolean SIZE x SIZE masks of a SIZE x SIZE RGB array.

    Segmented at half size: the colour-corrected (Shades of Gray) lesion
    channel, the vignette filled with the skin's median, thin dark hairs
    closed away, smoothed, uneven light divided out (``_flatten_light``);
    Otsu's darker class, opened, holes filled; of its connected parts the one
    with the largest area x (1 - distance from the centre)^2, so a large
    lesion at the edge beats a freckle in the middle but a dark shaded
    strip along the edge does not beat a lesion near the centre.
    (``corrected``, ``channel_sum``, ``lit``: what ``_measure`` computed of
    ``rgb`` already.)
    """
    if channel_sum is None:
        channel_sum = _channel_sum(rgb)
    if corrected is None:
        corrected = shades_of_gray(rgb, lit=channel_sum > 3 * VIGNETTE_LEVEL if lit is None else lit)
    view = field_of_view(rgb, channel_sum)
    v = (corrected.astype(np.float32) @ LESION_CHANNEL).reshape(HALF, 2, HALF, 2).mean(axis=(1, 3))
    half_view = view.reshape(HALF, 2, HALF, 2).all(axis=(1, 3))
    if half_view.sum() < 50:
        half_view = np.ones_like(half_view)
    if not half_view.all():
        v = np.where(half_view, v, np.median(v[half_view]))
    v = _morphology.gaussian_filter(_morphology.grey_closing(v, 4), 1.5)
    v = _flatten_light(v, half_view)
    dark = (v < _otsu(v[half_view])) & half_view
    dark = _morphology.binary_fill_holes(_morphology.binary_opening3x3(dark) & half_view)
    labels, n = _morphology.label(dark)
    if n == 0:
        return np.zeros_like(view), view
    areas, cy, cx = _morphology.sums_and_centres(labels, n)
    distance = np.hypot(cx / HALF - 0.5, cy / HALF - 0.5) / np.hypot(0.5, 0.5)
    chosen = labels == 1 + np.argmax(areas * (1 - distance) ** 2)
    return chosen.repeat(2, axis=0).repeat(2, axis=1) & view, view


def lesion_mask(img: Image.Image) -> np.ndarray:
    """The lesion as ``measure`` segments it: a boolean SIZE x SIZE mask (the benchmark cuts photos with it)."""
    return _lesion(_rgb(img))[0]


def _framing(lesion: np.ndarray) -> tuple[float, float]:
    """(offset of the lesion's centre from the frame's, as a fraction of the side; share of its outline on the
    frame's edge). The outline is the lesion's pixels with a 4-neighbour outside it or outside the frame."""
    if not lesion.any():
        return 0.0, 0.0
    # The centroid from row and column counts (integer sums: the same value as the mean of np.nonzero's indices).
    count = int(lesion.sum())
    index = np.arange(SIZE)
    y_mean, x_mean = int(lesion.sum(axis=1) @ index) / count, int(lesion.sum(axis=0) @ index) / count
    offset = float(np.hypot(x_mean / SIZE - 0.5, y_mean / SIZE - 0.5))
    padded = np.pad(lesion, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    outline = lesion & ~interior
    frame = np.zeros_like(lesion)
    frame[:EDGE, :] = frame[-EDGE:, :] = frame[:, :EDGE] = frame[:, -EDGE:] = True
    return offset, float((outline & frame).sum() / outline.sum())


def _rgb(img: Image.Image) -> np.ndarray:
    if img.mode != "RGB":
        img = img.convert("RGB")
    if img.size != (SIZE, SIZE):
        img = img.resize((SIZE, SIZE), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.asarray(img)


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


def judge(measures: dict[str, float], modality: str, thresholds: dict[str, float] | None = None) -> list[str]:
    """The findings (keys of REASONS) for these measures of an image recorded as ``modality``.

    ``thresholds`` (default ``THRESHOLDS``) lets the benchmark try others.
    """
    t = THRESHOLDS if thresholds is None else thresholds
    found = []
    if measures["sharpness"] < t["min_sharpness"]:
        found.append("blurred")
    if measures["clipped"] > t["max_clipped"]:
        found.append("overexposed")
    if measures["bright_level"] < t["min_bright_level"]:
        found.append("underexposed")
    if measures["lesion_area"] < t["min_lesion_area"]:
        found.append("lesion_too_small")
    if measures["edge_contact"] > t["max_edge_contact"] and measures["lesion_offset"] > t["max_lesion_offset"]:
        found.append("lesion_cut_off")
    if modality == DERMOSCOPIC and measures["light_gradient"] > t["max_light_gradient"]:
        found.append("looks_clinical")
    if modality == CLINICAL and measures["vignette"] >= t["min_vignette_for_dermoscopic"]:
        found.append("looks_dermoscopic")
    return found


def gate_image(data: bytes) -> Image.Image:
    """The image the gate measures, from a file's bytes, decoded as an upload's check decodes it.

    For what was not just checked (``manage.py backfill_image_quality``, the
    benchmark), so that it is measured as an upload is: the same reduced
    decode (``training.preprocessing.decode_reduced``), not a full one.
    Raises ``training.preprocessing.ImageError`` for unusable bytes.
    """
    return decode_reduced(data, DECODE_SIDE)[3]


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
