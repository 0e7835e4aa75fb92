"""Fold assignment: stratified by label, grouped by near-duplicate group."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold


def assign_folds(y: np.ndarray, groups: np.ndarray, n_folds: int, seed: int = 0) -> np.ndarray:
    """A fold number (0..n_folds-1) per image.

    Every member of a duplicate group lands in the same fold, so no image is
    validated against a near-copy of itself seen in training; folds keep the
    benign/malignant ratio as far as the groups allow.
    """
    y = np.asarray(y)
    groups = np.asarray(groups)
    if n_folds < 2:
        raise ValueError("need at least 2 folds")
    if len(np.unique(groups)) < n_folds:
        raise ValueError(f"{len(np.unique(groups))} groups cannot fill {n_folds} folds")
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = np.full(len(y), -1, dtype=np.int64)
    for fold, (_, val_idx) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
        folds[val_idx] = fold
    check_grouping(folds, groups)
    return folds


def check_grouping(folds: np.ndarray, groups: np.ndarray) -> None:
    """Raise if any group straddles two folds (or any image has no fold)."""
    if (folds < 0).any():
        raise AssertionError("some images were assigned to no fold")
    per_group = {}
    for g, f in zip(groups.tolist(), folds.tolist(), strict=True):
        if per_group.setdefault(g, f) != f:
            raise AssertionError(f"duplicate group {g} is split across folds")
