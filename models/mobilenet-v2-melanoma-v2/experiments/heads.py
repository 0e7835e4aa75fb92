# Selection experiment, run after the main training run on its cached features.
# Usage: python heads.py CACHE_DIR OUT_DIR, where CACHE_DIR is the folder given to
# `python -m training train-transfer ... --feature-cache CACHE_DIR`.
import sys

CACHE, OUT = sys.argv[1], sys.argv[2]
"""Compare heads on cached features with the run's folds (experiment, not shipped)."""
import glob, sys, time
import numpy as np
from pathlib import Path
from sklearn.metrics import roc_auc_score
from training.features import load_raw
from training.head import fold_training_set, fit_lr as _fit_lr, single_threaded_blas
from training.data import duplicate_groups
from training.cv import assign_folds
single_threaded_blas()
pipe = sys.argv[1] if len(sys.argv) > 1 else "square_sog_v2"
raw_y = None
import csv
# folds & groups from a quick re-derivation
raw = load_raw(Path("../shared/datasets/melanoma-10k/train"), 2, print)
y = raw.y; groups = duplicate_groups(raw.hashes); folds = assign_folds(y, groups, 5, 0)
clean = np.load(glob.glob(f"{CACHE}/features_{pipe}__compare_subset_-224-*.npy")[0])
augs = sorted(glob.glob(f"{CACHE}/features_{pipe}__augmented_copy_*-224-*.npy"))
aug = np.stack([np.load(a) for a in augs]) if augs else np.empty((0,) + clean.shape)
print("clean", clean.shape, "aug", aug.shape, flush=True)
np.savez(f"{OUT}/meta.npz", y=y, groups=groups, folds=folds)
def cv(fit, use_aug):
    aucs=[]
    for f in range(5):
        x_tr, y_tr, g_tr, src, va = fold_training_set(clean, aug if use_aug else aug[:0], y, groups, folds, f)
        score = fit(x_tr, y_tr)
        aucs.append(roc_auc_score(y[va], score(clean[va])))
    return np.mean(aucs), np.std(aucs, ddof=1)
for c in (0.003, 0.01, 0.03):
    for ua in ((False, True) if len(aug) else (False,)):
        t=time.time(); m,s = cv(lambda x,yy: _fit_lr(x,yy,c,0).logit, ua); print(f"LR C={c} aug={ua}: {m:.4f} +/- {s:.4f} ({time.time()-t:.0f}s)", flush=True)
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
def mlp_fit(alpha, hidden):
    def fit(x, yy):
        sc = StandardScaler().fit(x)
        m = MLPClassifier(hidden_layer_sizes=(hidden,), alpha=alpha, early_stopping=True, validation_fraction=0.1,
                          max_iter=200, n_iter_no_change=8, random_state=0, learning_rate_init=1e-3, batch_size=256)
        m.fit(sc.transform(x), yy)
        return lambda xv: m.predict_proba(sc.transform(xv))[:, 1]
    return fit
for alpha in (1.0, 10.0):
    for ua in ((False, True) if len(aug) else (False,)):
        t=time.time(); m,s = cv(mlp_fit(alpha, 256), ua); print(f"MLP256 alpha={alpha} aug={ua}: {m:.4f} +/- {s:.4f} ({time.time()-t:.0f}s)", flush=True)
