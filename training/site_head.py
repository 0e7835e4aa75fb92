"""A site's head on the frozen backbone's pooled features, chosen by nested cross-validation.

Two ways of fitting the logistic head are compared on the site's own cases:

- ``site``: the site's cases alone;
- ``site+training``: the site's cases together with the base model's
  training-feature sample, the sample weighted so that its total weight
  equals the site's (the site is not drowned by the archive);
- ``global``: the base model's own head (fitted on all the training data),
  only recalibrated on the site's cases (calibration, threshold, band).

Nested CV (:func:`nested_cv`): the site's cases are split into stratified
outer folds. For each outer fold and each way, an inner stratified CV on
the outer-training cases picks C (ROC-AUC of the inner out-of-fold logits),
and the same inner out-of-fold logits fit the calibration (Platt: a scale,
i.e. 1 / temperature, and an offset - the site's prevalence is not the
archive's) and the threshold (sensitivity >= 0.90). The head refitted on
all outer-training rows then scores the outer fold, through that fold's own
calibration and threshold. So every outer figure (ROC-AUC, sensitivity,
specificity, ECE) is of cases that chose nothing; the way with the higher
outer ROC-AUC (the lower log-loss on a tie) is kept.

The final head (:func:`fit_site_head`) repeats one inner level on all the
site's cases: C, calibration, threshold and uncertain band from its
out-of-fold predictions, then one fit on all rows.

NumPy and scikit-learn; no TensorFlow, no Django.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from . import calibration
from .head import LinearHead
from .metrics import binary_metrics

WAYS = ("site", "site+training", "global")
DEFAULT_CS = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)
AUC_TIE = 0.002  # outer ROC-AUCs closer than this are a tie, decided by log-loss


@dataclass
class Calibration:
    scale: float  # multiplies the head's logit (1 / temperature)
    offset: float  # added after scaling

    def apply(self, logits) -> np.ndarray:
        return calibration.sigmoid(self.scale * np.asarray(logits, dtype=np.float64) + self.offset)


@dataclass
class SiteHead:
    way: str
    head: LinearHead
    calibration: Calibration
    threshold: float
    band: dict
    oof_prob: np.ndarray  # calibrated out-of-fold probabilities of the site's cases (inner level, all cases)
    inner_auc: dict = field(default_factory=dict)

    @property
    def kernel(self) -> np.ndarray:
        """The calibrated head's kernel on raw features (what the ``logit`` layer holds)."""
        return self.head.kernel * self.calibration.scale

    @property
    def bias(self) -> float:
        return float(self.head.bias * self.calibration.scale + self.calibration.offset)


def _fit(x, y, w, c, seed) -> LinearHead:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    lr = LogisticRegression(C=c, max_iter=3000, tol=1e-4, random_state=seed)
    lr.fit(scaler.transform(x), y, sample_weight=w)
    kernel = lr.coef_.ravel() / scaler.scale_
    bias = float(lr.intercept_[0] - np.sum(lr.coef_.ravel() * scaler.mean_ / scaler.scale_))
    return LinearHead(kernel=kernel, bias=bias, c=c)


def _rows(way, xs, ys, xt, yt):
    """Training rows and weights for a way: the site's rows, plus the sample's when pooled."""
    if way == "site":
        return xs, ys, np.ones(len(ys))
    w_t = len(ys) / max(len(yt), 1)
    return np.concatenate([xs, xt]), np.concatenate([ys, yt]), np.concatenate([np.ones(len(ys)), np.full(len(yt), w_t)])


def fit_calibration(logits, y) -> Calibration:
    """Platt scaling of out-of-fold logits (scale bounded away from 0 and negative values)."""
    from scipy.optimize import minimize

    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)

    def nll(p):
        s = p[0] * z + p[1]
        return float(np.mean(np.logaddexp(0.0, s) - y * s))

    res = minimize(nll, x0=[1.0, 0.0], method="L-BFGS-B", bounds=[(0.05, 20.0), (-20.0, 20.0)])
    return Calibration(scale=float(res.x[0]), offset=float(res.x[1]))


def _splits(y, k, seed):
    from sklearn.model_selection import StratifiedKFold

    k = int(min(k, np.bincount(y).min()))
    return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def inner_level(way, xs, ys, xt, yt, cs, folds, seed, min_sensitivity, pool, base_head=None):
    """C by inner CV, then calibration and threshold on the inner out-of-fold logits at that C.

    Returns (c, {c: auc}, calibration, threshold, calibrated OOF probabilities).
    For ``global`` no C is chosen (the base head is fixed): its logits are
    calibrated as they are.
    """
    from sklearn.metrics import roc_auc_score

    if way == "global":
        logits = base_head.logit(xs)
        cal = fit_calibration(logits, ys)
        prob = cal.apply(logits)
        threshold = calibration.choose_threshold(ys, prob, min_sensitivity)
        return base_head.c, {}, cal, threshold, prob
    splits = _splits(ys, folds, seed)

    def job(args):
        c, (tr, va) = args
        x, y, w = _rows(way, xs[tr], ys[tr], xt, yt)
        return c, va, _fit(x, y, w, c, seed).logit(xs[va])

    oof = {c: np.zeros(len(ys)) for c in cs}
    for c, va, logit in pool.map(job, [(c, sp) for c in cs for sp in splits]):
        oof[c][va] = logit
    aucs = {c: float(roc_auc_score(ys, oof[c])) for c in cs}
    best = max(cs, key=lambda c: (round(aucs[c], 6), -c))
    cal = fit_calibration(oof[best], ys)
    prob = cal.apply(oof[best])
    threshold = calibration.choose_threshold(ys, prob, min_sensitivity)
    return best, aucs, cal, threshold, prob


@dataclass
class NestedResult:
    way: str  # the way kept
    per_way: dict  # way -> {"metrics": pooled outer metrics, "folds": [...], "prob", "called"}
    folds: np.ndarray  # outer fold of each site case


def _log_loss(y, p) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _head(way, xs, ys, xt, yt, c, seed, base_head):
    if way == "global":
        return base_head
    x, y, w = _rows(way, xs, ys, xt, yt)
    return _fit(x, y, w, c, seed)


def nested_cv(
    xs, ys, xt, yt, *, cs=DEFAULT_CS, outer=5, inner=4, seed=0, min_sensitivity=0.90, ways=WAYS, base_head=None
):
    """Outer-CV figures of each way (see the module docstring) and the way kept.

    ``base_head`` (a LinearHead: the base model's calibrated head) is needed
    for the ``global`` way, which is skipped without it.
    """
    ways = [w for w in ways if w != "global" or base_head is not None]
    from threadpoolctl import threadpool_limits

    ys = np.asarray(ys).astype(int)
    outer_splits = _splits(ys, outer, seed)
    fold_of = np.zeros(len(ys), dtype=int)
    for f, (_, va) in enumerate(outer_splits):
        fold_of[va] = f
    per_way = {}
    with threadpool_limits(limits=1), ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for way in ways:
            prob = np.zeros(len(ys))
            called = np.zeros(len(ys), dtype=bool)
            fold_rows = []
            for f, (tr, va) in enumerate(outer_splits):
                c, _, cal, thr, _ = inner_level(
                    way, xs[tr], ys[tr], xt, yt, cs, inner, seed + 1 + f, min_sensitivity, pool, base_head
                )
                head = _head(way, xs[tr], ys[tr], xt, yt, c, seed, base_head)
                prob[va] = cal.apply(head.logit(xs[va]))
                called[va] = prob[va] >= thr
                fold_rows.append({"fold": f, "n": int(len(va)), "c": c, "threshold": round(thr, 6)})
            per_way[way] = {
                "metrics": outer_metrics(ys, prob, called),
                "folds": fold_rows,
                "prob": prob,
                "called": called,
            }
    kept = max(
        ways,
        key=lambda w: (
            round(per_way[w]["metrics"]["roc_auc"] / AUC_TIE),
            -per_way[w]["metrics"]["log_loss"],
        ),
    )
    return NestedResult(way=kept, per_way=per_way, folds=fold_of)


def outer_metrics(y, prob, called) -> dict:
    """ROC-AUC, Brier, ECE and log-loss of the outer probabilities; sensitivity and
    specificity of each fold's own threshold decisions (``called``)."""
    m = binary_metrics(y, prob, 0.5)
    y = np.asarray(y).astype(int)
    tp = int((called & (y == 1)).sum())
    tn = int((~called & (y == 0)).sum())
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    return {
        "roc_auc": m["roc_auc"],
        "brier": m["brier"],
        "ece": m["ece"],
        "log_loss": _log_loss(y, prob),
        "sensitivity": tp / n_pos if n_pos else 0.0,
        "specificity": tn / n_neg if n_neg else 0.0,
        "n": int(len(y)),
        "n_malignant": n_pos,
        "tp": tp,
        "tn": tn,
    }


def fit_site_head(
    way, xs, ys, xt, yt, *, cs=DEFAULT_CS, inner=5, seed=0, min_sensitivity=0.90, band=None, base_head=None
):
    """The final head of ``way`` on all the site's cases (see the module docstring)."""
    from threadpoolctl import threadpool_limits

    ys = np.asarray(ys).astype(int)
    band = band or {}
    with threadpool_limits(limits=1), ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        c, aucs, cal, thr, prob = inner_level(way, xs, ys, xt, yt, cs, inner, seed, min_sensitivity, pool, base_head)
        head = _head(way, xs, ys, xt, yt, c, seed, base_head)
    chosen_band = calibration.choose_band(ys, prob, thr, **band)
    return SiteHead(way=way, head=head, calibration=cal, threshold=thr, band=chosen_band, oof_prob=prob, inner_auc=aucs)
