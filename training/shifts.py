"""Image shifts on decoded RGB images, before the preprocessing pipeline.

Each function changes an image the way another device, light or clinic
would: a dermatoscope's dark field stop (:func:`vignette`), a colour cast
(:func:`channel_gains`), JPEG re-compression (:func:`jpeg`) and low
resolution (:func:`downscale_upscale`). :func:`augment_image` draws a random
combination of them (plus geometry and colour jitter) from a NumPy
``Generator``, so the same generator state gives the same image: training
uses it for the augmented feature copies (``training.features``), the
robustness report (``training.robustness``) applies fixed shifts.

Plain Pillow and NumPy; no TensorFlow (the baseline CNN's ``tf.data``
augmentation is ``training.augment``).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter


def vignette(img: Image.Image, radius: float = 0.48, softness: float = 0.06) -> Image.Image:
    """Darken everything outside a centred circle (a dermatoscope's field stop).

    ``radius`` is a fraction of the shorter side; the edge ramps over ``softness``.
    """
    w, h = img.size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.sqrt((xx - (w - 1) / 2) ** 2 + (yy - (h - 1) / 2) ** 2) / min(w, h)
    mask = np.clip((radius + softness - r) / softness, 0.0, 1.0)[..., None]
    arr = np.asarray(img, dtype=np.float32) * mask
    return Image.fromarray(arr.round().astype(np.uint8), "RGB")


def channel_gains(img: Image.Image, gains) -> Image.Image:
    """Multiply R, G, B by ``gains`` (a colour cast; equal gains change brightness)."""
    arr = np.asarray(img, dtype=np.float32) * np.asarray(gains, dtype=np.float32)[None, None, :]
    return Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8), "RGB")


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    """Re-compress as JPEG at ``quality`` and decode again."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


def downscale_upscale(img: Image.Image, side: int) -> Image.Image:
    """Bilinear down to ``side`` px on the shorter side, then back to the original size."""
    w, h = img.size
    scale = side / min(w, h)
    small = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)
    return small.resize((w, h), Image.Resampling.BILINEAR)


def augment_image(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A random device/acquisition variant of a decoded RGB image.

    Strong in colour and illumination (per-channel gains, brightness, gamma,
    contrast, saturation), plus geometry (the 8 flips/right-angle rotations, a
    random crop of 70-100% of the area at aspect 3:4..4:3 - framing and scale),
    and acquisition defects (vignette, blur, low resolution, JPEG). The
    preprocessing pipeline is applied afterwards, as it would be to a real
    image from another device.
    """
    w, h = img.size
    # geometry: dihedral group
    k = int(rng.integers(0, 8))
    if k & 1:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    rot = (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270)
    if k >> 1:
        img = img.transpose(rot[(k >> 1) - 1])
    # scale / framing
    if rng.random() < 0.7:
        area = rng.uniform(0.7, 1.0)
        aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
        cw = min(w, round(w * np.sqrt(area * aspect)))
        ch = min(h, round(h * np.sqrt(area / aspect)))
        x0 = int(rng.integers(0, w - cw + 1))
        y0 = int(rng.integers(0, h - ch + 1))
        img = img.crop((x0, y0, x0 + cw, y0 + ch))
    # colour and illumination
    gains = np.exp(rng.uniform(np.log(0.75), np.log(1.3), size=3))
    gains *= np.exp(rng.uniform(np.log(0.75), np.log(1.25)))  # global brightness
    img = channel_gains(img, gains)
    if rng.random() < 0.5:
        gamma = float(np.exp(rng.uniform(np.log(0.75), np.log(1.35))))
        lut = [min(255, round(255 * (i / 255) ** gamma)) for i in range(256)] * 3
        img = img.point(lut)
    img = ImageEnhance.Contrast(img).enhance(float(rng.uniform(0.75, 1.3)))
    img = ImageEnhance.Color(img).enhance(float(rng.uniform(0.7, 1.3)))
    # acquisition defects
    # Vignettes on most copies: a dark field stop is the shift the frozen
    # features handle worst (see selection_experiments.md), and in this
    # archive it goes with melanoma more often than not.
    if rng.random() < 0.6:
        img = vignette(img, radius=float(rng.uniform(0.38, 0.55)))
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.0))))
    if rng.random() < 0.2:
        img = downscale_upscale(img, int(rng.integers(80, 160)))
    if rng.random() < 0.4:
        img = jpeg(img, int(rng.integers(25, 85)))
    return img
