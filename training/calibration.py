"""Post-hoc calibration and operating points, all chosen on out-of-fold data.

* :func:`fit_temperature` - temperature scaling (Guo et al., 2017): one scalar
  ``T`` dividing the head's logit, fitted by minimising the negative
  log-likelihood of out-of-fold logits. It changes no ranking (AUC is
  untouched), only how confident the probabilities are.
* :func:`choose_threshold` - the decision threshold on calibrated
  probabilities that maximises specificity subject to sensitivity >= a floor
  (0.90 by default): missing a melanoma costs more than a second look at a
  naevus.
* :func:`choose_band` - an "uncertain" band ``[lo, hi)`` around the threshold:
  the narrowest band (fewest images inside it) such that the images outside
  it are classified with sensitivity and specificity both at least a target;
  if that would put more than ``max_share`` of images in the band, the band is
  capped at ``max_share`` and the targets are reported as missed. With
  ``min_referral_specificity`` the band's lower edge must also leave at least
  that share of benign lesions below it: "uncertain" is a referral in the
  clinic, so the band decides how many benign lesions are sent on.

numpy/scipy only; no TensorFlow.
"""

from __future__ import annotations

import numpy as np

T_BOUNDS = (0.05, 20.0)


def sigmoid(z):
    z = np.asarray(z, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


def logit(p, eps: float = 1e-7):
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return np.log(p) - np.log1p(-p)


def nll(logits, y, temperature: float = 1.0) -> float:
    """Mean binary cross-entropy of ``sigmoid(logits / T)`` against ``y``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    y = np.asarray(y, dtype=np.float64)
    # log(1 + exp(-|z|)) + max(z, 0) - y*z  ==  -[y log p + (1-y) log(1-p)]
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def fit_temperature(logits, y) -> float:
    """The ``T`` in ``T_BOUNDS`` minimising the NLL of ``sigmoid(logits / T)``.

    Searched on log T (the NLL is smooth and unimodal in it for a fixed
    ranking), bounded so that degenerate data cannot return 0 or infinity.
    """
    logits = np.asarray(logits, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if len(np.unique(y)) < 2:
        return 1.0
    # Imported here: the web process imports this module (through training.adapt's case minimums) and its
    # image has no scipy (requirements/runtime.txt).
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(
        lambda log_t: nll(logits, y, float(np.exp(log_t))),
        bounds=(np.log(T_BOUNDS[0]), np.log(T_BOUNDS[1])),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(np.exp(res.x))


def apply_temperature(logits, temperature: float) -> np.ndarray:
    return sigmoid(np.asarray(logits, dtype=np.float64) / temperature)


def choose_threshold(y, prob, min_sensitivity: float = 0.90) -> float:
    """Largest threshold ``t`` (positive iff ``prob >= t``) whose sensitivity
    is still >= ``min_sensitivity``: the highest specificity meeting the floor.

    Returned as a probability present in ``prob`` (the score of the
    malignant case at which the floor is just met), so the constraint holds
    exactly on the data it was chosen on.
    """
    y = np.asarray(y).astype(int).ravel()
    prob = np.asarray(prob, dtype=np.float64).ravel()
    pos = np.sort(prob[y == 1])[::-1]  # descending scores of melanomas
    if len(pos) == 0:
        raise ValueError("no positive cases to set a sensitivity floor on")
    need = int(np.ceil(min_sensitivity * len(pos) - 1e-9))  # melanomas that must be flagged
    need = min(max(need, 1), len(pos))
    return float(pos[need - 1])


def _outside_rates(y, prob, lo: float, hi: float) -> dict:
    y = np.asarray(y).astype(int)
    inside = (prob >= lo) & (prob < hi)
    out = ~inside
    pos_called = prob >= hi
    p_out = ((y == 1) & out).sum()
    n_out = ((y == 0) & out).sum()
    tp = ((y == 1) & out & pos_called).sum()
    tn = ((y == 0) & out & ~pos_called).sum()
    referred = prob >= lo  # called malignant or uncertain: both go to a specialist
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    return {
        "share_in_band": float(inside.mean()),
        "sensitivity_outside": float(tp / p_out) if p_out else 0.0,
        "specificity_outside": float(tn / n_out) if n_out else 0.0,
        "n_in_band": int(inside.sum()),
        "referral_sensitivity": float((referred & (y == 1)).sum() / n_pos) if n_pos else 0.0,
        "referral_specificity": float((~referred & (y == 0)).sum() / n_neg) if n_neg else 0.0,
    }


def choose_band(
    y,
    prob,
    threshold: float,
    target_sensitivity: float = 0.95,
    target_specificity: float = 0.95,
    max_share: float = 0.20,
    n_candidates: int = 400,
    min_referral_specificity: float | None = None,
) -> dict:
    """An uncertainty band ``[lo, hi)`` with ``lo <= threshold < hi``.

    Images with ``lo <= p < hi`` are reported as uncertain; outside the band
    ``p >= hi`` reads malignant and ``p < lo`` benign. Among candidate bounds
    (quantiles of ``prob`` below / above the threshold) picks the band holding
    the fewest images such that the outside images reach both targets. If no
    band within ``max_share`` reaches them, returns the band within
    ``max_share`` maximising the smaller of the two outside rates, with
    ``targets_met`` False. Returns a dict with ``lo``, ``hi`` and the rates.

    ``min_referral_specificity`` (benign lesions below ``lo``, over all benign
    lesions) is a hard constraint when some band within ``max_share`` meets
    it: the outside targets are then sought among those bands only (a lower
    edge pushed up to refer fewer benign lesions costs outside sensitivity;
    the clinic's referral rate is the figure that must hold). The referral
    sensitivity (melanomas at or above ``lo``) is at least the threshold's
    sensitivity by construction, since ``lo <= threshold``.
    """
    y = np.asarray(y).astype(int).ravel()
    prob = np.asarray(prob, dtype=np.float64).ravel()
    below = np.unique(prob[prob <= threshold])
    above = np.unique(prob[prob > threshold])
    qs = np.linspace(0, 1, n_candidates)
    lo_c = np.unique(np.concatenate([[threshold], np.quantile(below, qs)])) if len(below) else np.array([threshold])
    # hi candidates: just above the threshold, then quantiles of the scores above it
    # (Towards +inf, not 1.0: on well-separated cases the threshold can be a
    # sigmoid saturated to exactly 1.0, and the band must still end above it.)
    hi_first = float(above.min()) if len(above) else float(np.nextafter(threshold, np.inf))
    hi_c = np.unique(np.concatenate([[hi_first], np.quantile(above, qs)])) if len(above) else np.array([hi_first])
    hi_c = hi_c[hi_c > threshold]
    lo_c = lo_c[lo_c <= threshold]

    # Vectorised counts via sorted scores: count of class c with prob < v.
    order_pos = np.sort(prob[y == 1])
    order_neg = np.sort(prob[y == 0])
    n_pos, n_neg = len(order_pos), len(order_neg)
    pos_lt_lo = np.searchsorted(order_pos, lo_c, side="left")[:, None]
    neg_lt_lo = np.searchsorted(order_neg, lo_c, side="left")[:, None]
    pos_lt_hi = np.searchsorted(order_pos, hi_c, side="left")[None, :]
    neg_lt_hi = np.searchsorted(order_neg, hi_c, side="left")[None, :]
    in_band = (pos_lt_hi - pos_lt_lo) + (neg_lt_hi - neg_lt_lo)
    share = in_band / len(prob)
    p_out = n_pos - (pos_lt_hi - pos_lt_lo)
    n_out = n_neg - (neg_lt_hi - neg_lt_lo)
    tp = n_pos - pos_lt_hi  # positives at or above hi
    tn = neg_lt_lo  # negatives below lo
    with np.errstate(divide="ignore", invalid="ignore"):
        sens = np.where(p_out > 0, tp / np.maximum(p_out, 1), 0.0)
        spec = np.where(n_out > 0, tn / np.maximum(n_out, 1), 0.0)
    allowed = share <= max_share
    if min_referral_specificity is not None:
        referral_ok = np.broadcast_to(neg_lt_lo / max(n_neg, 1) >= min_referral_specificity, share.shape)
        if (allowed & referral_ok).any():
            allowed = allowed & referral_ok
    ok = (sens >= target_sensitivity) & (spec >= target_specificity) & allowed
    if ok.any():
        cand = np.where(ok, share, np.inf)
        i, j = np.unravel_index(int(np.argmin(cand)), cand.shape)
        met = True
    else:
        score = np.where(allowed, np.minimum(sens, spec) - 1e-6 * share, -np.inf)
        i, j = np.unravel_index(int(np.argmax(score)), score.shape)
        met = False
    lo, hi = float(lo_c[i]), float(hi_c[j])
    rates = _outside_rates(y, prob, lo, hi)
    return {
        "lo": lo,
        "hi": hi,
        "targets_met": bool(met),
        "target_sensitivity": target_sensitivity,
        "target_specificity": target_specificity,
        "max_share": max_share,
        "min_referral_specificity": min_referral_specificity,
        **rates,
    }


def nested_band_rates(y, prob, folds, min_sensitivity: float, **band_options) -> list[dict]:
    """Per fold ``f``: the threshold and band chosen on the other folds'
    out-of-fold probabilities (:func:`choose_threshold`, :func:`choose_band`
    with ``band_options``), and their rates on fold ``f``. The band is
    reported on the data it was chosen on; these say what it does on data it
    was not."""
    y = np.asarray(y).astype(int).ravel()
    prob = np.asarray(prob, dtype=np.float64).ravel()
    out = []
    for f in np.unique(folds):
        tr = folds != f
        t = choose_threshold(y[tr], prob[tr], min_sensitivity)
        band = choose_band(y[tr], prob[tr], t, **band_options)
        rates = band_rates(y[~tr], prob[~tr], band["lo"], band["hi"])
        out.append({"fold": int(f), "lo": band["lo"], "hi": band["hi"], **rates})
    return out


def with_nested(band: dict, nested: list[dict]) -> dict:
    """``band`` with its :func:`nested_band_rates` and their means."""
    keys = ("share_in_band", "referral_sensitivity", "referral_specificity")
    return {**band, "nested": {k: float(np.mean([r[k] for r in nested])) for k in keys}, "nested_per_fold": nested}


def band_rates(y, prob, lo: float, hi: float) -> dict:
    """Share in band and sensitivity/specificity outside ``[lo, hi)``."""
    return _outside_rates(np.asarray(y).astype(int).ravel(), np.asarray(prob, dtype=np.float64).ravel(), lo, hi)


def referral_threshold(y, prob, rule) -> float:
    """Where a case starts being referred, for ``rule``:

    - a number: the highest threshold whose out-of-fold sensitivity reaches it
      (an order statistic of the melanomas' scores: the second-lowest of 20 for 0.95);
    - ``"normal:LEVEL"``: the LEVEL lower quantile of a normal fitted to the
      melanomas' logits (every melanoma's score moves it a little, none alone).
    """
    if isinstance(rule, str) and rule.startswith("normal:"):
        from statistics import NormalDist

        z = logit(np.asarray(prob, dtype=np.float64)[np.asarray(y) == 1])
        edge = float(np.mean(z) - NormalDist().inv_cdf(float(rule.split(":", 1)[1])) * np.std(z, ddof=1))
        return float(sigmoid(edge))
    return choose_threshold(y, prob, float(rule))
