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


# (left, upper, right, lower) in pixels, fractions allowed: Pillow's resize box.
Box = tuple[float, float, float, float]


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
    image_format, (width, height), rgb, turn, _ = _decode_scaled(data, min_side)
    factor = min(rgb.width // min_side, rgb.height // min_side)
    if factor >= 2:
        rgb = rgb.reduce(factor)
    return image_format, width, height, rgb.transpose(turn) if turn is not None else rgb


def _decode_scaled(source, min_side: int):
    """Decode ``source`` into 8-bit RGB, a JPEG at the smallest DCT scale keeping both sides >= ``min_side``.

    The one decoder behind ``decode_reduced`` (the upload check) and
    ``open_for_model`` (the model input). Returns (Pillow format, the file's
    (width, height), the RGB image as decoded, the transpose that makes it
    upright or None, and the box of the picture in it, or None when it is
    all of it). A JPEG scaled by k covers ceil(side / k) pixels of which the
    last is partial: the box (Pillow's, from ``draft``) is side / k.
    Every entropy-coded block is decoded whatever the scale, so damaged data
    fails as in a full decode. Raises ImageError.
    """
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    with _decoding_errors(), Image.open(source) as img:
        _check_size(img)
        image_format, file_size, box = img.format, img.size, None
        if image_format == "JPEG":
            # Pillow picks the largest scale that keeps both sides >= min_side (1, a full decode, if none does).
            drafted = img.draft(None, (min_side, min_side))
            if drafted is not None and drafted[1][2:] != img.size:
                box = drafted[1]
        img.load()
        # Read before converting: a converted copy no longer carries the EXIF (or XMP) orientation.
        turn = _TRANSPOSE.get(img.getexif().get(ExifTags.Base.Orientation, 1))
        return image_format, file_size, _to_rgb(img), turn, box


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


def frame(img: Image.Image, size: int, box: Box | None = None) -> np.ndarray:
    """Resize the whole image to ``size`` x ``size``; uint8 array (H, W, 3).

    ``box``: the region of ``img`` that is the whole picture, when that is
    not all of it (a JPEG decoded at reduced scale, ``open_for_model``).
    """
    resized = img.resize((size, size), Image.Resampling.BILINEAR, box=box)
    return np.asarray(resized, dtype=np.uint8)


def shades_of_gray(rgb: np.ndarray, power: int = SOG_POWER, lit: np.ndarray | None = None) -> np.ndarray:
    """Colour constancy (Finlayson and Trezzi, 2004) on a uint8 (H, W, 3) array.

    Estimates the illuminant per channel as the Minkowski p-norm mean of the
    skin pixels (the dark vignette excluded: ``lit``, the pixels whose mean
    of R, G and B is above VIGNETTE_LEVEL, computed when not given) and
    rescales the channels so that the illuminant becomes neutral grey at the
    same brightness.

    Computed from per-channel histograms and applied through a lookup table
    (every pixel is a uint8, so the p-th powers of 256 values are all there
    is to sum), about a third of the time of the direct formula in float64 over
    every pixel, with the same result to the bit (tests/training/test_preprocessing.py
    keeps the direct formula as the reference). The worker runs it on every
    image, training on every batch, and the quality gate on every upload.
    """
    image = Image.fromarray(rgb)
    if lit is None:
        lit = rgb.astype(np.int32).sum(axis=2) > 3 * VIGNETTE_LEVEL
    skin = int(lit.sum())
    if skin < 0.05 * lit.size:  # almost all dark: estimate from everything
        counts = np.array(image.histogram(), dtype=np.float64).reshape(3, 256) / lit.size
    else:
        counts = np.array(image.histogram(Image.fromarray(lit)), dtype=np.float64).reshape(3, 256) / skin
    illuminant = (counts @ np.arange(256, dtype=np.float64) ** power) ** (1.0 / power)
    gains = illuminant.mean() / np.maximum(illuminant, 1e-6)
    table = np.clip(np.arange(256, dtype=np.float64)[None, :] * gains[:, None], 0, 255).round().astype(np.uint8)
    return np.array(image.point(table.ravel().tolist()))


def to_model_input(
    img: Image.Image, size: int, preprocessing: str = PREPROCESSING_ID, box: Box | None = None
) -> np.ndarray:
    """Frame (and, for v2, colour-normalise) a decoded RGB image (``box``: as ``frame``)."""
    if preprocessing not in PIPELINES:
        raise ValueError(f"unknown preprocessing {preprocessing!r}")
    array = frame(img, size, box)
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
    img, box = open_for_model(source, size)
    return to_model_input(img, size, preprocessing, box)


# A JPEG whose sides are both at least this many times the model's input is
# decoded at libjpeg's reduced DCT scale (``open_for_model``).
DRAFT_MARGIN = 2


def open_for_model(source: str | os.PathLike | bytes | BinaryIO, size: int) -> tuple[Image.Image, Box | None]:
    """``open_image`` for a ``size`` x ``size`` model input: (upright RGB image, the box ``frame`` needs).

    A JPEG whose sides are both at least ``DRAFT_MARGIN`` x ``size`` is
    decoded at the smallest DCT scale (1/2, 1/4 or 1/8) that keeps them so,
    instead of in full: decoding and framing a 7 MP upload costs ~19 ms
    instead of ~106 ms (bench/reduced_decode.py), and the frame's bilinear
    resize, which averages each output pixel over 2 x (side / size) input
    pixels anyway, then starts from fewer. The reduced image covers the
    picture up to a fraction of a pixel at its right and bottom edges (a
    partial 8 x 8 block), so the returned box keeps the geometry exact.
    Model inputs differ from a full decode's by a fraction of a grey level
    on average, and a prediction less than re-encoding the photo at another
    JPEG quality changes it (docs/benchmarks.md, "Prediction loop"). Images
    under twice the input size, which includes every 300 px training image
    at every shipped model's input size, are decoded in full as before.
    Other formats are always decoded in full.
    """
    _, _, rgb, turn, box = _decode_scaled(source, DRAFT_MARGIN * size)
    if turn is None:
        return rgb, box
    return rgb.transpose(turn), None if box is None else _turned_box(box, rgb.size, turn)


# Where the margins of a box (0, 0, w, h) in a (width, height) image -- the
# partial block's sliver at the right (width - w) and at the bottom
# (height - h) -- end up after each transpose: (left, top, right, bottom).
_TURNED_MARGINS = {
    Image.Transpose.FLIP_LEFT_RIGHT: lambda r, b: (r, 0, 0, b),
    Image.Transpose.FLIP_TOP_BOTTOM: lambda r, b: (0, b, r, 0),
    Image.Transpose.ROTATE_180: lambda r, b: (r, b, 0, 0),
    Image.Transpose.TRANSPOSE: lambda r, b: (0, 0, b, r),
    Image.Transpose.ROTATE_90: lambda r, b: (0, r, b, 0),
    Image.Transpose.ROTATE_270: lambda r, b: (b, 0, 0, r),
    Image.Transpose.TRANSVERSE: lambda r, b: (b, r, 0, 0),
}


def _turned_box(box: Box, size: tuple[int, int], turn: Image.Transpose) -> Box:
    """``box`` = (0, 0, w, h) of an image of ``size``, in the coordinates of that image turned by ``turn``."""
    width, height = size
    left, top, right, bottom = _TURNED_MARGINS[turn](width - box[2], height - box[3])
    if turn in (
        Image.Transpose.TRANSPOSE,
        Image.Transpose.ROTATE_90,
        Image.Transpose.ROTATE_270,
        Image.Transpose.TRANSVERSE,
    ):
        width, height = height, width  # a quarter turn swaps the sides
    return (left, top, width - right, height - bottom)


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in {".jpg", ".jpeg", ".png"}
