"""Does a vignette on more of the augmented copies make the head robust to vignetting?

square-sog-v2 with the training augmentation as shipped (a vignette on 35% of
augmented copies) against the same with a vignette added to another 40% of
copies, on a stratified 2,400-image subset, 5-fold stratified CV (the same folds
for both), logistic-regression head (C = 0.003) on clean + 1 augmented copy.
Run from the repository root:
    PYTHONPATH=. python models/mobilenet-v2-melanoma-v2/experiments/more_vignettes.py 2400 1 DATA_DIR
"""

import os, sys, time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
from pathlib import Path
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from training.transfer import Progress
from training.shifts import augment_image, vignette
from training.features import build_feature_extractor, extract_features, load_raw
from training.preprocessing import to_model_input
from training.robustness import _shift_functions

def model_input(img, pipe):
    return to_model_input(img, 224, "square-sog-v2")


def augment(img, rng, pipe):
    # augment_image puts a vignette on 35% of copies; the variant adds one to
    # another 40% (about 61% in all).
    img = augment_image(img, rng)
    if pipe.endswith("more-vignettes") and rng.random() < 0.4:
        img = vignette(img, radius=float(rng.uniform(0.38, 0.55)))
    return img


N = int(sys.argv[1]) if len(sys.argv) > 1 else 2400
COPIES = int(sys.argv[2]) if len(sys.argv) > 2 else 1
progress = Progress()
raw = load_raw(Path(sys.argv[3]), 2, progress, max_images=N, seed=0)
y = raw.y
ext = build_feature_extractor(224)
shifts = _shift_functions()
folds = np.zeros(len(y), int)
for k, (_, te) in enumerate(StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros(len(y)), y)):
    folds[te] = k
idx = range(len(y))
for pipe in ["square-sog-v2", "square-sog-v2+more-vignettes"]:
    clean = extract_features(
        ext, raw.images, idx, lambda im, i: model_input(im, pipe), 32, 2, progress, pipe + " clean"
    )
    aug = [
        extract_features(
            ext,
            raw.images,
            idx,
            lambda im, i, c=c: model_input(augment(im, np.random.default_rng([0, c, i]), pipe), pipe),
            32,
            2,
            progress,
            f"{pipe} aug{c}",
        )
        for c in range(COPIES)
    ]
    evals = {}
    for name in ("vignette", "blur", "low_resolution"):
        fn = shifts[name][1]
        evals[name] = extract_features(
            ext, raw.images, idx, lambda im, i, fn=fn: model_input(fn(im), pipe), 32, 2, progress, f"{pipe} {name}"
        )
    res = {k: np.zeros(len(y)) for k in ["clean", *evals]}
    for k in range(5):
        tr = folds != k
        te = folds == k
        X = np.concatenate([clean[tr], *[a[tr] for a in aug]])
        Y = np.concatenate([y[tr]] * (1 + COPIES))
        sc = StandardScaler().fit(X)
        lr = LogisticRegression(C=0.003, max_iter=3000).fit(sc.transform(X), Y)
        res["clean"][te] = lr.decision_function(sc.transform(clean[te]))
        for n, f in evals.items():
            res[n][te] = lr.decision_function(sc.transform(f[te]))
    c = roc_auc_score(y, res["clean"])
    print(
        pipe,
        f"copies={COPIES}",
        "clean AUC %.4f" % c,
        " ".join(
            f"{n} %.4f (drop %+.4f)" % (roc_auc_score(y, r), c - roc_auc_score(y, r))
            for n, r in res.items()
            if n != "clean"
        ),
        flush=True,
    )
