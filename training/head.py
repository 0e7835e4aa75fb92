"""The transfer model's linear head on pooled features, and its cross-validation.

- :class:`LinearHead`, :func:`fit_lr`: standardise + logistic regression,
  exposed as one affine map on raw features (what the exported ``logit``
  layer holds);
- :func:`fold_training_set`: a fold's training rows (clean and augmented
  features of training-fold images only) and validation rows (clean only);
- :func:`fit_head`: C chosen by inner grouped CV, then one fit;
- :func:`cross_validate`: the outer grouped CV (out-of-fold logits, one head
  per fold);
- :func:`per_fold_metrics`, :func:`bootstrap_ci`: fold metrics and group
  bootstrap CIs of the pooled out-of-fold predictions.

NumPy and scikit-learn (imported when fitting); no TensorFlow, no Django.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from . import calibration
from .metrics import METRIC_NAMES, binary_metrics


@dataclass
class LinearHead:
    """Standardise, then logistic regression; exposed as one affine map."""

    kernel: np.ndarray  # (d,) on raw features
    bias: float
    c: float

    def logit(self, features) -> np.ndarray:
        return np.asarray(features, dtype=np.float64) @ self.kernel + self.bias


def fit_lr(x, y, c, seed) -> LinearHead:
    """Standardised logistic regression with C = ``c``, folded into one :class:`LinearHead`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    lr = LogisticRegression(C=c, max_iter=2000, tol=1e-4, random_state=seed)
    lr.fit(scaler.transform(x), y)
    w = lr.coef_.ravel() / scaler.scale_
    b = float(lr.intercept_[0] - np.sum(lr.coef_.ravel() * scaler.mean_ / scaler.scale_))
    return LinearHead(kernel=w, bias=b, c=c)


def fold_training_set(clean, augmented, y, groups, folds, fold):
    """Training rows (clean + augmented copies of training-fold images only)
    and validation rows (clean features of validation-fold images only).

    ``augmented`` is (K, N, d) (K may be 0). Returns ``(x_tr, y_tr, g_tr,
    src_tr, val_idx)`` where ``src_tr`` is the image index each training row
    came from; validation features are ``clean[val_idx]``.
    """
    train_idx = np.flatnonzero(folds != fold)
    val_idx = np.flatnonzero(folds == fold)
    parts_x = [clean[train_idx]] + [augmented[k][train_idx] for k in range(len(augmented))]
    reps = 1 + len(augmented)
    x_tr = np.concatenate(parts_x)
    y_tr = np.tile(y[train_idx], reps)
    g_tr = np.tile(groups[train_idx], reps)
    src = np.tile(train_idx, reps)
    return x_tr, y_tr, g_tr, src, val_idx


def fit_head(x, y, groups, is_clean, cs, inner_folds, seed):
    """Choose C by inner grouped CV (AUC on clean rows of the inner validation
    part), then fit on all rows. Returns (head, {c: inner AUC})."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold

    scores = {}
    if len(cs) == 1:
        return fit_lr(x, y, cs[0], seed), scores
    splitter = StratifiedGroupKFold(n_splits=inner_folds, shuffle=True, random_state=seed)
    splits = []
    for tr, va in splitter.split(np.zeros(len(y)), y, groups):
        va = va[is_clean[va]]
        if len(np.unique(y[va])) == 2:
            splits.append((tr, va))

    def inner_auc(job):
        c, (tr, va) = job
        return c, roc_auc_score(y[va], fit_lr(x[tr], y[tr], c, seed).logit(x[va]))

    # The (C, split) fits are independent: run them on every core, each
    # single-threaded in BLAS (see single_threaded_blas).
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = list(pool.map(inner_auc, [(c, sp) for c in cs for sp in splits]))
    for c in cs:
        aucs = [a for cc, a in results if cc == c]
        scores[c] = float(np.mean(aucs)) if aucs else float("nan")
    best = max(cs, key=lambda c: (np.nan_to_num(scores[c], nan=-1), -c))
    return fit_lr(x, y, best, seed), scores


def single_threaded_blas():
    """Limit numpy/scipy BLAS to one thread for the rest of the process.

    The head fits are small problems; multi-threaded BLAS contending with
    TensorFlow's threads (or with the parallel fits) was ~6x slower on a
    2-core machine. TensorFlow's own thread pools are not affected.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def cross_validate(clean, augmented, y, groups, folds, config, progress, label="cv"):
    """Outer grouped CV; returns OOF logits, per-fold heads and chosen Cs.

    ``config`` supplies ``cs``, ``inner_folds`` and ``seed`` (a
    ``training.transfer.TransferConfig``).
    """
    single_threaded_blas()
    n_folds = int(folds.max()) + 1
    oof = np.full(len(y), np.nan)
    heads, fold_info = [], []
    for f in range(n_folds):
        t0 = time.time()
        x_tr, y_tr, g_tr, src, val_idx = fold_training_set(clean, augmented, y, groups, folds, f)
        is_clean = np.zeros(len(y_tr), dtype=bool)
        is_clean[: int((folds != f).sum())] = True
        head, scores = fit_head(x_tr, y_tr, g_tr, is_clean, config.cs, config.inner_folds, config.seed)
        oof[val_idx] = head.logit(clean[val_idx])
        heads.append(head)
        m = binary_metrics(y[val_idx], calibration.sigmoid(oof[val_idx]), 0.5)
        fold_info.append(
            {
                "fold": f,
                "n_train_rows": int(len(y_tr)),
                "n_val": int(len(val_idx)),
                "c": head.c,
                "inner_auc": scores,
                "val_auc": m["roc_auc"],
            }
        )
        progress(
            f"[{label} fold {f + 1}/{n_folds}] C={head.c:g} train rows {len(y_tr)} "
            f"val {len(val_idx)} AUC {m['roc_auc']:.4f} ({time.time() - t0:.1f}s)"
        )
    return oof, heads, fold_info


def per_fold_metrics(y, prob, folds, threshold):
    return [binary_metrics(y[folds == f], prob[folds == f], threshold) for f in range(int(folds.max()) + 1)]


def bootstrap_ci(y, prob, threshold, groups, n_boot, seed, names=METRIC_NAMES):
    """95% percentile CIs of pooled OOF metrics, resampling duplicate groups
    (so near-copies are drawn together)."""
    rng = np.random.default_rng(seed)
    uniq, inv = np.unique(groups, return_inverse=True)
    members = [[] for _ in uniq]
    for i, g in enumerate(inv):
        members[g].append(i)
    members = [np.asarray(m) for m in members]
    vals = {n: [] for n in names}
    for _ in range(n_boot):
        pick = rng.integers(0, len(uniq), size=len(uniq))
        idx = np.concatenate([members[g] for g in pick])
        if len(np.unique(y[idx])) < 2:
            continue
        m = binary_metrics(y[idx], prob[idx], threshold)
        for n in names:
            vals[n].append(m[n])
    return {n: {"lo": float(np.percentile(v, 2.5)), "hi": float(np.percentile(v, 97.5))} for n, v in vals.items()}
