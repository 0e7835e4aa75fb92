"""The one image-to-tensor path shared by training, the worker and the CLI.

Nothing here imports TensorFlow or Django: the worker's parent process and the
web process may import this module without paying for (or forking) a model
runtime. Any change to what a pixel looks like before it reaches the network
must happen here, under a new pipeline id in ``PIPELINES``: a model file
records the id it was trained with, and older models keep theirs.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

# The training images are whole dermoscopy images (often 4:3) squashed to a
# square without cropping, so a new image is framed the same way: the full
# field of view resized to a square. Cropping would show the model a tighter
# field of view than it ever saw in training.
SQUARE_RESIZE_V1 = "square-resize-v1"
# The same framing, then Shades-of-Gray colour constancy: each dermatoscope
# (and each clinic's lighting) casts its own colour, which a model trained on
# one archive learns as if it were pathology. Dividing out the estimated
# illuminant makes the input less dependent on the device.
SQUARE_SOG_V2 = "square-sog-v2"
PIPELINES = (SQUARE_RESIZE_V1, SQUARE_SOG_V2)
# The pipeline new models are trained with unless told otherwise.
PREPROCESSING_ID = SQUARE_RESIZE_V1

SOG_POWER = 6
# Pixels darker than this (mean of R, G, B) are the dermatoscope's black
# vignette or frame, not skin: they would drag the illuminant estimate.
VIGNETTE_LEVEL = 25

# Refuse images whose pixel count could exhaust a worker's memory when
# decoded (decompression bombs): 60 MP covers any dermatoscope or phone.
MAX_PIXELS = 60_000_000
MIN_SIDE = 32


class ImageError(ValueError):
    """The input cannot be turned into a model input; the message says why."""


def open_image(source: str | os.PathLike | bytes | BinaryIO) -> Image.Image:
    """Decode ``source`` fully into an RGB image, refusing anything unusable.

    Accepts a path, raw bytes or a binary file object. Applies the EXIF
    orientation (phones store portrait photos sideways), flattens alpha onto
    black (the colour of a dermoscope's vignette), and brings palette,
    grayscale, CMYK and 16-bit images to 8-bit RGB.
    """
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    with _decoding_errors(), Image.open(source) as img:
        _check_size(img)
        img.load()
        img = ImageOps.exif_transpose(img)
        return _to_rgb(img)


def verify_decodes(data: bytes) -> tuple[str, int, int]:
    """Decode ``data`` to prove it is a usable image: its (Pillow format, width, height).

    Raises ImageError like ``open_image``.

    The upload check's one decode (the web process keeps no pixels). A JPEG
    is decoded with DCT scaling at 1/8 size: every entropy-coded block is
    still read and Huffman-decoded, so truncated or corrupt data fails
    exactly as in a full decode, but the inverse DCT and colour conversion,
    two thirds of the cost, run on 1/64 of the pixels. Other formats (PNG)
    are decoded in full. No EXIF orientation or colour conversion: nothing
    here is shown to a model.
    """
    with _decoding_errors(), Image.open(io.BytesIO(data)) as img:
        _check_size(img)
        image_format, (width, height) = img.format, img.size
        if image_format == "JPEG":
            img.draft(None, (width // 8, height // 8))  # sides are at least MIN_SIDE
        img.load()
        return image_format, width, height


def decode_reduced(data: bytes, min_side: int) -> tuple[str, int, int, Image.Image]:
    """``verify_decodes`` that keeps what it decoded: (format, width, height, upright 8-bit RGB image).

    For the upload check, whose one decode also feeds the quality gate
    (``core.images.check_image_bytes``). A JPEG is decoded at the smallest
    DCT scale (1/8, 1/4, 1/2 or 1) that keeps both sides at least
    ``min_side``: every block is still entropy-decoded, so damaged data
    fails as in a full decode, and a phone photo costs what ``verify_decodes``
    costs. Other formats are decoded in full. What is kept is then reduced
    (means of k x k blocks) while both sides stay at least ``min_side``, so
    a form holding several checked uploads does not hold a 60 MP PNG's
    pixels each. The EXIF orientation is applied and the mode brought to
    RGB as ``open_image`` does; width and height are those of the file
    (before any turn), as ``verify_decodes`` reports them.
    """
    with _decoding_errors(), Image.open(io.BytesIO(data)) as img:
        _check_size(img)
        image_format, (width, height) = img.format, img.size
        if image_format == "JPEG":
            img.draft(None, (min_side, min_side))  # Pillow picks the largest scale that keeps both sides >= min_side
        img.load()
        # Read before converting: a converted copy no longer carries the EXIF (or XMP) orientation.
        turn = _TRANSPOSE.get(img.getexif().get(ExifTags.Base.Orientation, 1))
        rgb = _to_rgb(img)
        factor = min(rgb.width // min_side, rgb.height // min_side)
        if factor >= 2:
            rgb = rgb.reduce(factor)
        return image_format, width, height, rgb.transpose(turn) if turn is not None else rgb


# EXIF orientation -> the transpose that makes the image upright (as ImageOps.exif_transpose).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _check_size(img: Image.Image) -> None:
    if img.width * img.height > MAX_PIXELS:
        raise ImageError(
            f"image is {img.width}x{img.height} pixels; at most {MAX_PIXELS // 1_000_000} megapixels are accepted"
        )
    if min(img.size) < MIN_SIDE:
        raise ImageError(f"image is {img.width}x{img.height} pixels; each side must be at least {MIN_SIDE}")


@contextlib.contextmanager
def _decoding_errors():
    """Pillow's many ways of saying "unusable", as one ImageError with the reason."""
    try:
        yield
    except (ImageError, FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError("the image has too many pixels to decode safely") from exc
    except UnidentifiedImageError as exc:
        raise ImageError("not a readable image") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        # Pillow reports truncated or corrupt data as OSError/SyntaxError.
        raise ImageError(f"the image data is damaged or truncated: {exc}") from exc


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = arr.max() if arr.size else 0
        scale = 255.0 / peak if peak > 255 else 1.0
        img = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def frame(img: Image.Image, size: int) -> np.ndarray:
    """Resize the whole image to ``size`` x ``size``; uint8 array (H, W, 3)."""
    resized = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def shades_of_gray(rgb: np.ndarray, power: int = SOG_POWER) -> np.ndarray:
    """Colour constancy (Finlayson and Trezzi, 2004) on a uint8 (H, W, 3) array.

    Estimates the illuminant per channel as the Minkowski p-norm mean of the
    skin pixels (the dark vignette excluded) and rescales the channels so
    that the illuminant becomes neutral grey at the same brightness.
    """
    pixels = rgb.reshape(-1, 3).astype(np.float64)
    skin = pixels[pixels.mean(axis=1) > VIGNETTE_LEVEL]
    if len(skin) < 0.05 * len(pixels):  # almost all dark: estimate from everything
        skin = pixels
    illuminant = np.power(np.mean(np.power(skin, power), axis=0), 1.0 / power)
    gains = illuminant.mean() / np.maximum(illuminant, 1e-6)
    return np.clip(rgb.astype(np.float64) * gains, 0, 255).round().astype(np.uint8)


def to_model_input(img: Image.Image, size: int, preprocessing: str = PREPROCESSING_ID) -> np.ndarray:
    """Frame (and, for v2, colour-normalise) a decoded RGB image."""
    if preprocessing not in PIPELINES:
        raise ValueError(f"unknown preprocessing {preprocessing!r}")
    array = frame(img, size)
    if preprocessing == SQUARE_SOG_V2:
        array = shades_of_gray(array)
    return array


def load_for_model(
    source: str | os.PathLike | bytes | BinaryIO, size: int, preprocessing: str = PREPROCESSING_ID
) -> np.ndarray:
    """The whole path: decode, normalise the mode, frame. uint8 (size, size, 3).

    Models take 0..255 pixel values and rescale inside the network, so the
    model file carries its own normalisation.
    """
    return to_model_input(open_image(source), size, preprocessing)


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in {".jpg", ".jpeg", ".png"}
