# Selection experiment, run after the main training run on its cached features.
# Usage: python rob_compare.py CACHE_DIR OUT_DIR (after heads.py), where CACHE_DIR is the folder given to
# `python -m training train-transfer ... --feature-cache CACHE_DIR`.
import sys

CACHE, OUT = sys.argv[1], sys.argv[2]
"""Experiment: preprocessing and augmentation effects under shifts (out-of-fold)."""
import glob, time, json
import numpy as np
from pathlib import Path
from sklearn.metrics import roc_auc_score
from training.features import load_raw, stratified_subset, build_feature_extractor, extract_features
from training.head import fold_training_set, fit_lr as _fit_lr, single_threaded_blas
from training import calibration
from training.robustness import _shift_functions
from training.preprocessing import to_model_input
single_threaded_blas()
m = np.load(f"{OUT}/meta.npz"); y, groups, folds = m["y"], m["groups"], m["folds"]
C = f"{CACHE}"
clean = {p: np.load(glob.glob(f"{C}/features_{p}__compare_subset_-224-*.npy")[0]) for p in ("square_resize_v1", "square_sog_v2")}
aug = np.stack([np.load(a) for a in sorted(glob.glob(f"{C}/features_square_sog_v2__augmented_copy_*-224-*.npy"))])
rob = stratified_subset(y, 2000, 1)
def heads_for(cl, ag, c=0.003):
    hs=[]; oof=np.zeros(len(y))
    for f in range(5):
        x_tr, y_tr, _, _, va = fold_training_set(cl, ag, y, groups, folds, f)
        h=_fit_lr(x_tr, y_tr, c, 0); hs.append(h); oof[va]=h.logit(cl[va])
    T=calibration.fit_temperature(oof,y); p=calibration.apply_temperature(oof,T); t=calibration.choose_threshold(y,p,0.9)
    return hs, T, t, roc_auc_score(y, oof)
def score(hs, T, t, feats):
    lg=np.empty(len(rob))
    for f in range(5):
        mm = folds[rob]==f; lg[mm]=hs[f].logit(feats[mm])
    p=calibration.apply_temperature(lg,T); yy=y[rob]
    return {"auc": roc_auc_score(yy,p), "sens": float((p[yy==1]>=t).mean()), "spec": float((p[yy==0]<t).mean())}
variants = {
  "v1_noaug": heads_for(clean["square_resize_v1"], aug[:0]),
  "sog_noaug": heads_for(clean["square_sog_v2"], aug[:0]),
  "sog_aug2": heads_for(clean["square_sog_v2"], aug),
}
res = {k: {"oof_auc_all": v[3], "clean": score(*v[:3], clean["square_sog_v2" if k.startswith("sog") else "square_resize_v1"][rob])} for k, v in variants.items()}
shifts = _shift_functions()
for name in shifts:
    fs = glob.glob(f"{C}/robustness_{name}-224-*.npy")
    if fs:
        feats = np.load(fs[0])
        for k in ("sog_noaug", "sog_aug2"):
            res[k][name] = score(*variants[k][:3], feats)
print(json.dumps(res, indent=1), flush=True)
raw = load_raw(Path("../shared/datasets/melanoma-10k/train"), 2, lambda m: None)
ext = build_feature_extractor(224)
for name in ("colour_cast_warm", "colour_cast_cool", "vignette"):
    fn = shifts[name][1]
    t0=time.time()
    feats = extract_features(ext, raw.images, rob, lambda im, i: to_model_input(fn(im), 224, "square-resize-v1"), 32, 2)
    res["v1_noaug"][name] = score(*variants["v1_noaug"][:3], feats)
    print(name, res["v1_noaug"][name], f"{time.time()-t0:.0f}s", flush=True)
json.dump(res, open(f"{OUT}/rob_compare.json","w"), indent=1)
print(json.dumps(res, indent=1))
