"""A site's head on the frozen backbone's pooled features, chosen by nested cross-validation.

Two ways of fitting the logistic head are compared on the site's own cases:

- ``site``: the site's cases alone;
- ``site+training``: the site's cases together with the base model's
  training-feature sample, the sample weighted so that its total weight
  equals the site's (the site is not drowned by the archive);
- ``global+site``: the base model's own head (fitted on all the training
  data) plus an L2-penalised correction learnt on the site's cases: the
  global logit is an offset (with a fitted scale), so a small C stays close
  to the global head and a large C lets the site speak;
- ``global``: the base model's own head, only recalibrated on the site's
  cases (calibration, threshold, band).

On about a hundred cases the outer ROC-AUCs of the ways differ by noise as
much as by merit, so the default is the way that moves least from the global
model (the last of ``WAYS`` available), and another is kept only when a
paired bootstrap of the site's cases finds it better in at least 90% of
resamples (:func:`choose_way`).

Nested CV (:func:`nested_cv`): the site's cases are split into stratified
outer folds. For each outer fold and each way, an inner stratified CV on
the outer-training cases picks C (ROC-AUC of the inner out-of-fold logits),
and the same inner out-of-fold logits fit the calibration (Platt: a scale,
i.e. 1 / temperature, and an offset - the site's prevalence is not the
archive's) and the threshold (sensitivity >= 0.90). The head refitted on
all outer-training rows then scores the outer fold, through that fold's own
calibration and threshold. So every outer figure (ROC-AUC, sensitivity,
specificity, ECE) is of cases that chose nothing; the way with the higher
outer ROC-AUC is kept if clearly better than the default (see below).

The uncertain band's lower edge is where a case is referred (malignant or
uncertain): it is the lower of ``calibration.choose_band``'s and the
threshold for sensitivity >= ``REFERRAL_SENSITIVITY`` out-of-fold, so that on
few melanomas the referral rule keeps a margin over the 0.90 floor.

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
from .site_align import fit_alignment

WAYS = ("site", "site+training", "global+site", "global")
DEFAULT_CS = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)
REFERRAL_SENSITIVITY = 0.95
BOOTSTRAP = 400
CONFIDENCE = 0.90


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
    alignment: str = "none"  # folded into ``head`` (see fit_alignment)

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


def _fit_offset(x, y, c, base_head) -> LinearHead:
    """The base head's logit g as an offset: logit = a * g + b + v . standardise(x), with ||v||^2 / (2C)."""
    from scipy.optimize import minimize

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    g = base_head.logit(x)
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mu) / sd

    def loss(p):
        s = p[0] * g + p[1] + z @ p[2:]
        r = calibration.sigmoid(s) - y
        value = np.sum(np.logaddexp(0.0, s) - y * s) + p[2:] @ p[2:] / (2 * c)
        return value, np.r_[np.sum(r * g), np.sum(r), z.T @ r + p[2:] / c]

    p = minimize(loss, np.r_[1.0, 0.0, np.zeros(x.shape[1])], jac=True, method="L-BFGS-B").x
    v = p[2:] / sd
    return LinearHead(kernel=p[0] * base_head.kernel + v, bias=float(p[0] * base_head.bias + p[1] - v @ mu), c=c)


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
        return c, va, _head(way, xs[tr], ys[tr], xt, yt, c, seed, base_head).logit(xs[va])

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
    evidence: dict = field(default_factory=dict)  # how the way was chosen (choose_way)


def choose_band(y, prob, threshold, referral_sensitivity=REFERRAL_SENSITIVITY, **targets) -> dict:
    """``calibration.choose_band``, its lower edge lowered to the referral threshold when that is lower."""
    band = calibration.choose_band(y, prob, threshold, **targets)
    referral = calibration.referral_threshold(y, prob, referral_sensitivity)
    if referral < band["lo"]:
        band = {**band, "lo": referral, **calibration.band_rates(y, prob, referral, band["hi"])}
    return band


def _log_loss(y, p) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _head(way, xs, ys, xt, yt, c, seed, base_head):
    if way == "global":
        return base_head
    if way == "global+site":
        return _fit_offset(xs, ys, c, base_head)
    x, y, w = _rows(way, xs, ys, xt, yt)
    return _fit(x, y, w, c, seed)


def nested_cv(
    xs,
    ys,
    xt,
    yt,
    *,
    cs=DEFAULT_CS,
    outer=5,
    inner=4,
    seed=0,
    min_sensitivity=0.90,
    ways=WAYS,
    base_head=None,
    align="none",
    referral_sensitivity=REFERRAL_SENSITIVITY,
    other_referrals=(),
):
    """Outer-CV figures of each way (see the module docstring) and the way kept.

    ``other_referrals``: further referral sensitivities whose outer referral
    rates are added to the metrics (``referral_sensitivity@0.9``, ...), for
    comparing referral rules (bench/site_methods.py) in one pass.

    ``base_head`` (a LinearHead: the base model's calibrated head) is needed
    for the ``global`` way, which is skipped without it. ``align``
    (:func:`fit_alignment`) is fitted on each outer fold's training cases only.
    """
    ways = [w for w in ways if not w.startswith("global") or base_head is not None]
    from threadpoolctl import threadpool_limits

    ys = np.asarray(ys).astype(int)
    outer_splits = _splits(ys, outer, seed)
    fold_of = np.zeros(len(ys), dtype=int)
    for f, (_, va) in enumerate(outer_splits):
        fold_of[va] = f
    per_way = {}
    aligned = []
    for tr, _ in outer_splits:
        al = fit_alignment(align, xs[tr], ys[tr], xt, yt)
        aligned.append(al.apply(xs) if al else xs)
    with threadpool_limits(limits=1), ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for way in ways:
            prob = np.zeros(len(ys))
            called = np.zeros(len(ys), dtype=bool)
            referred = np.zeros(len(ys), dtype=bool)
            others = {r: np.zeros(len(ys), dtype=bool) for r in other_referrals}
            fold_rows = []
            for f, (tr, va) in enumerate(outer_splits):
                xa = aligned[f]
                c, _, cal, thr, inner_prob = inner_level(
                    way, xa[tr], ys[tr], xt, yt, cs, inner, seed + 1 + f, min_sensitivity, pool, base_head
                )
                lo = choose_band(ys[tr], inner_prob, thr, referral_sensitivity)["lo"]
                head = _head(way, xa[tr], ys[tr], xt, yt, c, seed, base_head)
                prob[va] = cal.apply(head.logit(xa[va]))
                called[va] = prob[va] >= thr
                referred[va] = prob[va] >= lo
                for r, flags in others.items():
                    flags[va] = prob[va] >= choose_band(ys[tr], inner_prob, thr, r)["lo"]
                fold_rows.append({"fold": f, "n": int(len(va)), "c": c, "threshold": round(thr, 6)})
            per_way[way] = {
                "metrics": {**outer_metrics(ys, prob, called, referred), **_referral_rates(ys, others)},
                "folds": fold_rows,
                "prob": prob,
                "called": called,
            }
    kept, evidence = choose_way(ys, per_way, seed)
    return NestedResult(way=kept, per_way=per_way, folds=fold_of, evidence=evidence)


def choose_way(y, per_way, seed, n_boot=BOOTSTRAP, confidence=CONFIDENCE):
    """The way kept: the one with the highest outer ROC-AUC, if a paired bootstrap of the site's
    cases shows it better than the default (the way closest to the global model, last in WAYS)
    in at least ``confidence`` of resamples; else the default. Returns (way, evidence)."""
    from sklearn.metrics import roc_auc_score

    ways = sorted(per_way, key=WAYS.index)
    default = ways[-1]
    best = max(ways, key=lambda w: (per_way[w]["metrics"]["roc_auc"], WAYS.index(w)))
    evidence = {"default": default, "best": best, "p_better": None}
    if best == default:
        return default, evidence
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    wins = 0
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        a = roc_auc_score(y[idx], per_way[best]["prob"][idx])
        b = roc_auc_score(y[idx], per_way[default]["prob"][idx])
        wins += a > b
    evidence["p_better"] = wins / n_boot
    return (best if wins / n_boot >= confidence else default), evidence


def _referral_rates(y, referred_by_level) -> dict:
    out = {}
    for r, flags in referred_by_level.items():
        out[f"referral_sensitivity@{r}"] = float(flags[y == 1].mean())
        out[f"referral_specificity@{r}"] = float((~flags)[y == 0].mean())
    return out


def outer_metrics(y, prob, called, referred=None) -> dict:
    """ROC-AUC, Brier, ECE and log-loss of the outer probabilities; sensitivity and
    specificity of each fold's own threshold decisions (``called``), and of its
    referrals (malignant or uncertain: ``referred``)."""
    m = binary_metrics(y, prob, 0.5)
    y = np.asarray(y).astype(int)
    tp = int((called & (y == 1)).sum())
    tn = int((~called & (y == 0)).sum())
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    out = {
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
    if referred is not None:
        out["referral_sensitivity"] = float(referred[y == 1].mean()) if n_pos else 0.0
        out["referral_specificity"] = float((~referred)[y == 0].mean()) if n_neg else 0.0
    return out


def fit_site_head(
    way,
    xs,
    ys,
    xt,
    yt,
    *,
    cs=DEFAULT_CS,
    inner=5,
    seed=0,
    min_sensitivity=0.90,
    band=None,
    base_head=None,
    align="none",
    referral_sensitivity=REFERRAL_SENSITIVITY,
):
    """The final head of ``way`` on all the site's cases (see the module docstring).

    With ``align``, the alignment is fitted on all the site's cases and folded
    into the head, so ``head.logit`` takes raw features."""
    from threadpoolctl import threadpool_limits

    ys = np.asarray(ys).astype(int)
    band = band or {}
    al = fit_alignment(align, xs, ys, xt, yt)
    xa = al.apply(xs) if al else xs
    with threadpool_limits(limits=1), ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        c, aucs, cal, thr, prob = inner_level(way, xa, ys, xt, yt, cs, inner, seed, min_sensitivity, pool, base_head)
        head = _head(way, xa, ys, xt, yt, c, seed, base_head)
    if al is not None:
        head = al.fold(head)
    chosen_band = choose_band(ys, prob, thr, referral_sensitivity, **band)
    return SiteHead(
        way=way,
        head=head,
        calibration=cal,
        threshold=thr,
        band=chosen_band,
        oof_prob=prob,
        inner_auc=aucs,
        alignment=align,
    )
