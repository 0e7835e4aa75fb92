"""Grad-CAM heat maps without TensorFlow: the map from an ONNX export's ``gradcam`` output, and its PNG overlay.

Plain numpy (and Pillow for the PNG); the TensorFlow Grad-CAM of models
without that output is in ``keras_backend``.
"""

from __future__ import annotations

import io

import numpy as np


def _bilinear_matrix(out_size: int, in_size: int) -> np.ndarray:
    """(out, in) weights of a half-pixel-centre bilinear resize, as tf.image.resize does it."""
    centres = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
    centres = np.clip(centres, 0, in_size - 1)
    low = np.floor(centres).astype(int)
    high = np.minimum(low + 1, in_size - 1)
    frac = centres - low
    weights = np.zeros((out_size, in_size), dtype=np.float64)
    weights[np.arange(out_size), low] += 1.0 - frac
    weights[np.arange(out_size), high] += frac
    return weights


def gradcam_heatmap(weighted: np.ndarray, size: int) -> np.ndarray:
    """Grad-CAM from its weighted feature map (h, w): ReLU, bilinear resize to (size, size), peak 1.

    The same steps, in the same order, as the TensorFlow Grad-CAM; an
    all-zero map stays zero.
    """
    cam = np.maximum(np.asarray(weighted, dtype=np.float64), 0.0)
    rows, cols = _bilinear_matrix(size, cam.shape[0]), _bilinear_matrix(size, cam.shape[1])
    heat = rows @ cam @ cols.T
    peak = heat.max()
    return (heat / peak if peak > 0 else np.zeros_like(heat)).astype(np.float32)


def _jet(x: np.ndarray) -> np.ndarray:
    """The classic 'jet' colour map as piecewise-linear RGB in 0..1 (no matplotlib needed)."""
    return np.clip(1.5 - np.abs(4.0 * x[..., None] - np.array([3.0, 2.0, 1.0])), 0.0, 1.0)


HEATMAP_MAX_ALPHA = 0.6  # the lesion stays visible under the hottest spot


def heatmap_png(heat: np.ndarray) -> bytes:
    """An (S, S) 0..1 heat map as an RGBA PNG to lay over the framed image.

    Colour follows the jet map and opacity grows with heat, so cold regions
    are transparent rather than painted blue.
    """
    from PIL import Image

    heat = np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float32)), 0.0, 1.0)
    rgba = np.empty((*heat.shape, 4), dtype=np.uint8)
    rgba[..., :3] = np.round(_jet(heat) * 255)
    rgba[..., 3] = np.round(heat * HEATMAP_MAX_ALPHA * 255)
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG")
    return buffer.getvalue()
