"""training.head: the linear head, its fold bookkeeping, inner and outer CV,
and the bootstrap CIs (synthetic features, no images)."""

from pathlib import Path

import numpy as np

from training.head import (
    LinearHead,
    bootstrap_ci,
    cross_validate,
    fit_head,
    fit_lr,
    fold_training_set,
    per_fold_metrics,
)
from training.metrics import binary_metrics
from training.transfer import TransferConfig


def separable(n=120, d=6, seed=1, shift=1.0):
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], n // 2)
    return rng.normal(size=(n, d)) + shift * y[:, None], y


def test_fit_lr_is_the_standardised_logistic_regression_as_one_affine_map():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = separable()
    x = x * np.array([1, 10, 100, 0.1, 1, 5]) + 3  # scales the standardisation must undo
    head = fit_lr(x, y, 0.1, seed=0)
    assert isinstance(head, LinearHead) and head.c == 0.1 and head.kernel.shape == (6,)
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000, tol=1e-4, random_state=0))
    ref.fit(x, y)
    np.testing.assert_allclose(head.logit(x), ref.decision_function(x), rtol=1e-6, atol=1e-6)


def test_fit_head_picks_c_by_inner_cv_on_clean_rows():
    x, y = separable(shift=0.6)
    groups = np.arange(len(y))
    is_clean = np.ones(len(y), dtype=bool)
    head, scores = fit_head(x, y, groups, is_clean, (1e-4, 1.0), inner_folds=3, seed=0)
    assert set(scores) == {1e-4, 1.0} and head.c == max(scores, key=lambda c: (scores[c], -c))
    single, none = fit_head(x, y, groups, is_clean, (0.5,), inner_folds=3, seed=0)
    assert single.c == 0.5 and none == {}


def test_fold_training_set_never_uses_validation_augmentations():
    rng = np.random.default_rng(0)
    n, d, k = 40, 5, 2
    clean = rng.normal(size=(n, d))
    aug = np.stack([clean + 100 * (c + 1) for c in range(k)])  # distinguishable copies
    y = np.tile([0, 1], n // 2)
    groups = np.arange(n) // 2
    folds = (groups % 4).astype(int)
    for f in range(4):
        x_tr, y_tr, g_tr, src, val_idx = fold_training_set(clean, aug, y, groups, folds, f)
        assert set(val_idx) == set(np.flatnonzero(folds == f))
        assert not set(src) & set(val_idx)  # no training row comes from a validation image
        assert len(x_tr) == (1 + k) * (n - len(val_idx))
        np.testing.assert_array_equal(y_tr, y[src])
        np.testing.assert_array_equal(g_tr, groups[src])


def test_cross_validation_scores_validation_from_clean_features_only():
    rng = np.random.default_rng(1)
    n, d = 120, 6
    y = np.tile([0, 1], n // 2)
    clean = rng.normal(size=(n, d)) + y[:, None]
    aug = np.stack([clean + rng.normal(scale=0.3, size=(n, d))])
    groups = np.arange(n)
    folds = np.arange(n) % 3
    config = TransferConfig(data=Path("."), out=Path("."), cs=(0.1,), inner_folds=2)
    oof, heads, _ = cross_validate(clean, aug, y, groups, folds, config, lambda m: None)
    # scrambling the augmented copies of fold 0's images changes nothing about
    # fold 0's head or its out-of-fold scores (it changes the other folds' heads)
    scrambled = aug.copy()
    scrambled[:, folds == 0] = rng.normal(scale=50, size=(1, int((folds == 0).sum()), d))
    oof2, heads2, _ = cross_validate(clean, scrambled, y, groups, folds, config, lambda m: None)
    np.testing.assert_allclose(heads2[0].kernel, heads[0].kernel)
    np.testing.assert_allclose(oof2[folds == 0], oof[folds == 0])
    assert not np.allclose(heads2[1].kernel, heads[1].kernel)
    for f in range(3):
        np.testing.assert_allclose(oof[folds == f], heads[f].logit(clean[folds == f]))


def test_per_fold_metrics_one_entry_per_fold():
    y = np.array([0, 1, 0, 1, 0, 1])
    prob = np.array([0.1, 0.9, 0.2, 0.4, 0.6, 0.7])
    folds = np.array([0, 0, 1, 1, 2, 2])
    per_fold = per_fold_metrics(y, prob, folds, 0.5)
    assert len(per_fold) == 3
    assert per_fold[1] == binary_metrics(y[2:4], prob[2:4], 0.5)


def test_bootstrap_ci_is_seeded_and_brackets_the_pooled_value():
    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 100)
    prob = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(scale=0.2, size=len(y)), 0, 1)
    groups = np.arange(len(y)) // 2
    ci = bootstrap_ci(y, prob, 0.5, groups, n_boot=200, seed=3, names=("roc_auc", "sensitivity"))
    assert ci == bootstrap_ci(y, prob, 0.5, groups, n_boot=200, seed=3, names=("roc_auc", "sensitivity"))
    pooled = binary_metrics(y, prob, 0.5)
    for name in ("roc_auc", "sensitivity"):
        assert ci[name]["lo"] < pooled[name] < ci[name]["hi"]
    assert ci != bootstrap_ci(y, prob, 0.5, groups, n_boot=200, seed=4, names=("roc_auc", "sensitivity"))
