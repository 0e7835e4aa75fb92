"""Aligning a site's pooled features onto the training sample's before a head is fitted.

A device shifts and rescales the pooled features (a colour cast, blur and
heavy JPEG move every channel's mean and spread). A per-feature affine map,
fitted on the site's benign cases, moves them back onto the base model's
training-feature sample, so that the global head (and a head fitted with the
training sample) sees features on the scale it was fitted on. A head on
aligned features is a head on raw features (:meth:`Alignment.fold`): the
exported network is unchanged.

NumPy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .head import LinearHead


@dataclass
class Alignment:
    """A per-feature affine map of a site's features onto the training sample's
    benign statistics: ``x * scale + shift``. Benign cases only, because the
    site's melanoma share is not the archive's (whole-site means would mix the
    device shift with the class mix). A head on aligned features is a head on
    raw features (:meth:`fold`), so the exported network is unchanged."""

    scale: np.ndarray
    shift: np.ndarray

    def apply(self, x) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) * self.scale + self.shift

    def fold(self, head: LinearHead) -> LinearHead:
        return LinearHead(kernel=head.kernel * self.scale, bias=float(head.bias + head.kernel @ self.shift), c=head.c)


ALIGNMENTS = ("none", "shift", "affine")


def fit_alignment(kind, xs, ys, xt, yt) -> Alignment | None:
    """``none``: no alignment; ``shift``: benign means matched; ``affine``: benign means and
    standard deviations matched (the ratio clipped to [1/4, 4]: a feature almost constant
    at the site must not be blown up)."""
    if kind == "none":
        return None
    s, t = np.asarray(xs, np.float64)[np.asarray(ys) == 0], np.asarray(xt, np.float64)[np.asarray(yt) == 0]
    mu_s, mu_t = s.mean(axis=0), t.mean(axis=0)
    if kind == "shift":
        scale = np.ones_like(mu_s)
    elif kind == "affine":
        eps = 1e-3 + 0.05 * float(np.median(t.std(axis=0)))
        scale = np.clip((t.std(axis=0) + eps) / (s.std(axis=0) + eps), 0.25, 4.0)
    else:
        raise ValueError(f"unknown alignment {kind!r}; one of {ALIGNMENTS}")
    return Alignment(scale=scale, shift=mu_t - scale * mu_s)
