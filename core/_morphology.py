"""The few scipy.ndimage operations core.quality needs, in numpy.

scipy costs the runtime image ~143 MB for these alone (docker/Dockerfile's
image must stay small), so they are reimplemented here with scipy's defaults
and border conventions, for 2-D arrays; tests/core/test_morphology.py checks
each against scipy.ndimage (exactly equal, the Gaussian included).
"""

from __future__ import annotations

import numpy as np


def _span(a: np.ndarray, start: int, n: int, axis: int) -> np.ndarray:
    return a[start : start + n] if axis == 0 else a[:, start : start + n]


def _window_extreme(a: np.ndarray, before: int, after: int, reduce) -> np.ndarray:
    """``reduce`` (np.maximum / np.minimum) over the flat window [i - before, i + after] along both axes,
    the array extended by mirroring (scipy's "reflect": d c b a | a b c d | d c b a)."""
    out = a
    for axis in (0, 1):
        n = out.shape[axis]
        padded = np.pad(out, [(before, after) if ax == axis else (0, 0) for ax in (0, 1)], mode="symmetric")
        out = _span(padded, 0, n, axis)
        for k in range(1, before + after + 1):
            out = reduce(out, _span(padded, k, n, axis))
    return out


def grey_closing(a: np.ndarray, size: int) -> np.ndarray:
    """scipy.ndimage.grey_closing(a, size=(size, size)): a flat size x size dilation, then erosion.

    For an even size scipy's dilation reflects the footprint (its window reaches one pixel further after
    the pixel than before it) and the erosion does not: [i - 1, i + 2] then [i - 2, i + 1] for size 4.
    """
    half = size // 2
    dilated = _window_extreme(a, size - 1 - half, half, np.maximum)
    return _window_extreme(dilated, half, size - 1 - half, np.minimum)


def gaussian_filter(a: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """scipy.ndimage.gaussian_filter(a, sigma) for a float array: mode "reflect", radius int(truncate * sigma + 0.5).

    Like scipy, one axis after the other, each in float64 and stored in a's dtype between axes, the
    symmetric kernel applied as centre * w0 + (left + right) * w1 + ... (the order of scipy's sums).
    """
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 / (sigma * sigma) * x**2)
    weights = weights / weights.sum()
    out = a
    for axis in (0, 1):
        n = out.shape[axis]
        padded = np.pad(out, [(radius, radius) if ax == axis else (0, 0) for ax in (0, 1)], mode="symmetric")
        padded = padded.astype(np.float64)
        acc = _span(padded, radius, n, axis) * weights[radius]
        for k in range(1, radius + 1):
            acc = acc + (_span(padded, radius + k, n, axis) + _span(padded, radius - k, n, axis)) * weights[radius + k]
        out = acc.astype(a.dtype)
    return out


def _neighbours3x3(mask: np.ndarray, reduce) -> np.ndarray:
    padded = np.pad(mask, 1)  # outside the array counts as False (scipy's border_value=0)
    h, w = mask.shape
    out = padded[1:-1, 1:-1]
    for dy in range(3):
        for dx in range(3):
            out = reduce(out, padded[dy : dy + h, dx : dx + w])
    return out


def binary_opening3x3(mask: np.ndarray) -> np.ndarray:
    """scipy.ndimage.binary_opening(mask, np.ones((3, 3), bool)): 3 x 3 erosion, then dilation."""
    return _neighbours3x3(_neighbours3x3(mask.astype(bool), np.logical_and), np.logical_or)


def label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """scipy.ndimage.label(mask): 4-connected parts numbered 1.. in the order their first pixel (row by row)
    comes, 0 elsewhere; and how many there are.

    Union-find: each pixel starts pointing at the first pixel of its run along the row; then each round
    hooks every root onto a smaller root it touches from the row above or below, and halves paths until
    each pixel points at its root (the smallest index of its part).
    """
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    index = np.arange(h * w).reshape(h, w)
    run_starts = mask.copy()
    run_starts[:, 1:] &= ~mask[:, :-1]
    parent = np.where(mask, np.maximum.accumulate(np.where(run_starts, index, 0), axis=1), index).ravel()
    down = mask[:-1, :] & mask[1:, :]
    a, b = index[:-1, :][down], index[1:, :][down]
    while True:
        ra, rb = parent[a], parent[b]
        differ = ra != rb
        if not differ.any():
            break
        ra, rb = ra[differ], rb[differ]
        # Any smaller root will do for each larger one (numpy keeps one of the repeated writes).
        parent[np.maximum(ra, rb)] = np.minimum(ra, rb)
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
        a, b = a[differ], b[differ]
    is_root = (parent == index.ravel()) & mask.ravel()
    numbers = np.cumsum(is_root, dtype=np.int32)  # roots in index order: 1, 2, ...
    labels = np.where(mask, numbers[parent].reshape(h, w), 0).astype(np.int32)
    return labels, int(numbers[-1]) if numbers.size else 0


def binary_fill_holes(mask: np.ndarray) -> np.ndarray:
    """scipy.ndimage.binary_fill_holes(mask): the unset parts (4-connected) that do not reach the border, set."""
    mask = np.asarray(mask, dtype=bool)
    labels, n = label(~mask)
    reaches_border = np.zeros(n + 1, dtype=bool)  # by part number: a table, not np.isin (a sort)
    reaches_border[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = True
    reaches_border[0] = True  # 0 is the mask itself
    return mask | ~reaches_border[labels]


def sums_and_centres(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For parts 1..n of ``labels``: (pixel count, row centre, column centre), as scipy.ndimage.sum and
    center_of_mass give them for a boolean image that is set exactly where labels > 0."""
    flat = labels.ravel()
    rows, cols = np.indices(labels.shape, dtype=np.float64)
    areas = np.bincount(flat, minlength=n + 1)[1:].astype(np.float64)
    cy = np.bincount(flat, weights=rows.ravel(), minlength=n + 1)[1:] / areas
    cx = np.bincount(flat, weights=cols.ravel(), minlength=n + 1)[1:] / areas
    return areas, cy, cx
