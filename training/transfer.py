"""Transfer-learned melanoma classifier: frozen ImageNet MobileNetV2 features,
a logistic-regression head, temperature scaling, an uncertainty band and a
Mahalanobis out-of-distribution score, all selected by grouped cross-validation.

``python -m training.transfer --data DIR --out DIR [--image-size 224] [--folds 5]
[--seed 0] [--preprocessing square-sog-v2] [--augmented-copies K] ...``

Why this design on a 2-core CPU: fine-tuning a CNN on ~10k images is hours
per fold without a GPU, while one forward pass per image through a frozen
backbone is minutes. So every image's pooled 1280-d feature vector is
extracted once (plus ``K`` randomly augmented copies of each image), and
everything that is selected - head regularisation, preprocessing pipeline,
temperature, threshold, band, OOD threshold - is selected on those features
by cross-validation with near-duplicate groups kept within one fold.

Order of the run (each stage prints a timed progress line):

1. decode every image once, perceptual-hash it, group near-duplicates and
   assign stratified grouped folds (``training.data``, ``training.cv``);
2. compare the preprocessing pipelines by grouped CV on a stratified subset
   (or on all images with ``--compare-subset 0``); keep the better one;
3. extract clean features for all images with the chosen pipeline, and
   features of ``K`` augmented copies of every image;
4. outer CV: per fold, the head's C is chosen by an inner grouped CV on the
   training part only; the head is fitted on the training images' clean and
   augmented features; validation images are scored from their *clean*
   features only. The OOD model of each fold is fitted on the training part;
5. temperature, threshold and band from the out-of-fold logits;
6. robustness report: a stratified subset re-extracted under simulated device
   shifts, each image scored by the head of the fold that did not train on it;
7. final head on all images, OOD statistics from all clean features, export
   ``model.keras`` + ``model.json`` and the reports.

No Django here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from . import calibration
from .cv import assign_folds
from .data import CLASS_NAMES, DEFAULT_MAX_DISTANCE, duplicate_groups, group_summary, list_images, perceptual_hash
from .files import sha256_of
from .metrics import METRIC_NAMES, binary_metrics, summarise
from .onnx_export import ONNX_FILE, export_onnx, with_onnx_keys
from .ood import fit_ood
from .preprocessing import PIPELINES, SQUARE_SOG_V2, open_image, to_model_input
from .shifts import augment_image

MODEL_NAME = "mobilenet-v2-melanoma"
MODEL_FILE = "model.keras"
FEATURE_DIM = 1280
DEFAULT_CS = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)


@dataclass
class TransferConfig:
    data: Path
    out: Path
    image_size: int = 224
    folds: int = 5
    seed: int = 0
    preprocessing: str = SQUARE_SOG_V2
    compare_preprocessing: bool = True
    compare_subset: int = 3000  # 0: compare on all images
    augmented_copies: int = 1
    robustness_subset: int = 1500  # 0: skip the robustness report
    batch_size: int = 32
    inner_folds: int = 3
    cs: tuple = DEFAULT_CS
    min_sensitivity: float = 0.90
    band_sensitivity: float = 0.95
    band_specificity: float = 0.95
    band_max_share: float = 0.20
    ood_components: tuple = (64, 128, 256)
    ood_quantile: float = 0.99
    ood_shrinkage: float = 0.05
    bootstrap: int = 1000
    name: str = MODEL_NAME
    version: str = "1"
    weights_path: Path | None = None
    baseline_report: Path | None = None
    workers: int = 0
    max_images: int = 0  # development: a stratified subset of the dataset (0 = all)
    feature_cache: Path | None = None  # reuse extracted features across runs (crash recovery, development)
    command: str = ""
    extra: dict = field(default_factory=dict)


class Progress:
    """Timestamped progress lines on stdout (flushed: the run is usually logged)."""

    def __init__(self):
        self.start = time.time()

    def __call__(self, msg: str) -> None:
        el = time.time() - self.start
        print(f"[{time.strftime('%H:%M:%S')} +{el:7.1f}s] {msg}", flush=True)

    @property
    def elapsed(self) -> float:
        return time.time() - self.start


# --------------------------------------------------------------------------
# data and features
# --------------------------------------------------------------------------


@dataclass
class RawImages:
    files: list[str]
    images: list  # decoded RGB PIL images, original size
    y: np.ndarray
    hashes: np.ndarray


def load_raw(root: Path, workers: int, progress, max_images: int = 0, seed: int = 0) -> RawImages:
    """Decode every image once (kept in memory at full size) and hash it.

    ``max_images`` > 0 keeps a class-stratified random subset (development runs).
    """
    paths, y = list_images(root)
    if max_images:
        keep = stratified_subset(y, max_images, seed)
        paths, y = [paths[i] for i in keep], y[keep]

    def one(p):
        img = open_image(p.read_bytes())
        return img, perceptual_hash(img)

    images, hashes = [], []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, (img, h) in enumerate(pool.map(one, paths)):
            images.append(img)
            hashes.append(h)
            if (i + 1) % 2000 == 0:
                progress(f"decoded {i + 1}/{len(paths)} images")
    files = [p.relative_to(root).as_posix() for p in paths]
    return RawImages(files=files, images=images, y=y, hashes=np.stack(hashes))


def build_feature_extractor(image_size: int, weights_path=None):
    """Frozen MobileNetV2, input float32 RGB 0..255, output pooled (N, 1280)."""
    from .backbone import DEFAULT_WEIGHTS_PATH, build_mobilenet_v2

    return build_mobilenet_v2(
        (image_size, image_size, 3),
        include_top=False,
        weights_path=weights_path or DEFAULT_WEIGHTS_PATH,
        pooling="avg",
        normalise_input=True,
    )


def extract_features(
    extractor, images, indices, make_input, batch_size, workers, progress=None, label=""
) -> np.ndarray:
    """Pooled features of ``make_input(images[i], i)`` for each i in ``indices``.

    Inputs are prepared by a thread pool (Pillow releases the GIL) while the
    backbone runs, batch by batch.
    """
    indices = list(indices)
    out = np.empty((len(indices), FEATURE_DIM), dtype=np.float32)
    batches = [indices[s : s + batch_size] for s in range(0, len(indices), batch_size)]
    t0 = time.time()
    report_every = max(1, len(batches) // 5)

    def prep(batch):
        return np.stack([make_input(images[i], i) for i in batch]).astype(np.float32)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending = [pool.submit(prep, b) for b in batches[:3]]
        nxt = len(pending)
        pos = 0
        for bi in range(len(batches)):
            x = pending.pop(0).result()
            if nxt < len(batches):
                pending.append(pool.submit(prep, batches[nxt]))
                nxt += 1
            out[pos : pos + len(x)] = np.asarray(extractor.predict_on_batch(x))
            pos += len(x)
            if progress and ((bi + 1) % report_every == 0 or bi + 1 == len(batches)):
                el = time.time() - t0
                progress(f"  {label}: {pos}/{len(indices)} images, {pos / el:.1f} img/s")
    return out


def clean_input(size: int, preprocessing: str):
    return lambda img, i: to_model_input(img, size, preprocessing)


def augmented_input(size: int, preprocessing: str, seed: int, copy: int):
    def make(img, i):
        rng = np.random.default_rng([seed, copy, i])
        return to_model_input(augment_image(img, rng), size, preprocessing)

    return make


def stratified_subset(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of a class-stratified random subset of ``n`` images."""
    if n <= 0 or n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = int(round(n * len(idx) / len(y)))
        chosen.append(rng.choice(idx, size=min(k, len(idx)), replace=False))
    return np.sort(np.concatenate(chosen))


# --------------------------------------------------------------------------
# head
# --------------------------------------------------------------------------


@dataclass
class LinearHead:
    """Standardise, then logistic regression; exposed as one affine map."""

    kernel: np.ndarray  # (d,) on raw features
    bias: float
    c: float

    def logit(self, features) -> np.ndarray:
        return np.asarray(features, dtype=np.float64) @ self.kernel + self.bias


def _fit_lr(x, y, c, seed):
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
        return _fit_lr(x, y, cs[0], seed), scores
    splitter = StratifiedGroupKFold(n_splits=inner_folds, shuffle=True, random_state=seed)
    splits = []
    for tr, va in splitter.split(np.zeros(len(y)), y, groups):
        va = va[is_clean[va]]
        if len(np.unique(y[va])) == 2:
            splits.append((tr, va))

    def inner_auc(job):
        c, (tr, va) = job
        return c, roc_auc_score(y[va], _fit_lr(x[tr], y[tr], c, seed).logit(x[va]))

    # The (C, split) fits are independent: run them on every core, each
    # single-threaded in BLAS (see single_threaded_blas).
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = list(pool.map(inner_auc, [(c, sp) for c in cs for sp in splits]))
    for c in cs:
        aucs = [a for cc, a in results if cc == c]
        scores[c] = float(np.mean(aucs)) if aucs else float("nan")
    best = max(cs, key=lambda c: (np.nan_to_num(scores[c], nan=-1), -c))
    return _fit_lr(x, y, best, seed), scores


def single_threaded_blas():
    """Limit numpy/scipy BLAS to one thread for the rest of the process.

    The head fits are small problems; multi-threaded BLAS contending with
    TensorFlow's threads (or with the parallel fits) was ~6x slower on a
    2-core machine. TensorFlow's own thread pools are not affected.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def cross_validate(clean, augmented, y, groups, folds, config, progress, label="cv"):
    """Outer grouped CV; returns OOF logits, per-fold heads and chosen Cs."""
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


# --------------------------------------------------------------------------
# evaluation helpers
# --------------------------------------------------------------------------


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


def default_command(argv, prog: str = "python -m training train-transfer") -> str:
    return prog + " " + " ".join(shlex.quote(a) for a in argv)


# --------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------


def build_export_model(image_size, head: LinearHead, temperature: float, ood, weights_path=None):
    """The shipped two-output Keras model (built-in layers only)."""
    import keras
    from keras import layers

    backbone = build_feature_extractor(image_size, weights_path)
    inputs = backbone.input
    features = backbone.output  # (N, 1280), from head_relu via global average pooling
    logit_layer = layers.Dense(1, name="logit")
    logit = logit_layer(features)
    logit_layer.set_weights(
        [
            (head.kernel / temperature).reshape(-1, 1).astype(np.float32),
            np.array([head.bias / temperature], dtype=np.float32),
        ]
    )
    probability = layers.Activation("sigmoid", name="probability")(logit)
    proj_layer = layers.Dense(ood.components, name="ood_projection")
    z = proj_layer(features)
    proj_layer.set_weights([ood.projection.astype(np.float32), ood.bias.astype(np.float32)])
    sq = layers.Multiply(name="ood_square")([z, z])
    dist_layer = layers.Dense(1, use_bias=False, name="ood_distance")
    distance = dist_layer(sq)
    dist_layer.set_weights([np.ones((ood.components, 1), dtype=np.float32)])
    model = keras.Model(inputs, {"probability": probability, "ood_distance": distance}, name=MODEL_NAME)
    return model


# --------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------


def run(config: TransferConfig) -> dict:
    import keras
    import tensorflow as tf

    from . import report, robustness
    from .backbone import DEFAULT_WEIGHTS_PATH, LAST_CONV_LAYER

    progress = Progress()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    workers = config.workers or os.cpu_count() or 1
    keras.utils.set_random_seed(config.seed)
    weights_path = Path(config.weights_path or DEFAULT_WEIGHTS_PATH)
    S = config.image_size
    progress(f"transfer run: data={config.data} out={out} size={S} folds={config.folds} seed={config.seed}")

    # 1. data, duplicate groups, folds
    raw = load_raw(Path(config.data), workers, progress, config.max_images, config.seed)
    y = raw.y
    groups = duplicate_groups(raw.hashes, DEFAULT_MAX_DISTANCE)
    folds = assign_folds(y, groups, config.folds, config.seed)
    dup = group_summary(groups)
    progress(
        f"[data] {len(y)} images ({int((y == 0).sum())} benign, {int((y == 1).sum())} malignant); "
        f"{dup['n_duplicate_groups']} duplicate groups; folds {np.bincount(folds).tolist()}"
    )
    extractor = build_feature_extractor(S, weights_path)
    timings = {}

    def extract(indices, make_input, label):
        t0 = time.time()
        cache = None
        if config.feature_cache:
            key = hashlib.sha256(
                json.dumps([label, S, config.seed, str(weights_path), [raw.files[i] for i in indices]]).encode()
            ).hexdigest()[:16]
            slug = "".join(ch if ch.isalnum() else "_" for ch in label)
            cache = Path(config.feature_cache) / f"{slug}-{S}-{key}.npy"
            if cache.is_file():
                progress(f"  {label}: loaded from {cache}")
                return np.load(cache)
        f = extract_features(extractor, raw.images, indices, make_input, config.batch_size, workers, progress, label)
        timings[label] = round(time.time() - t0, 1)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.save(cache, f)
        return f

    # 2. preprocessing comparison
    clean_all = np.full((len(y), FEATURE_DIM), np.nan, dtype=np.float32)
    comparison = {}
    chosen = config.preprocessing
    if config.compare_preprocessing:
        sub = stratified_subset(y, config.compare_subset, config.seed)
        sub_folds = folds[sub]
        if len(np.unique(sub_folds)) < config.folds:
            sub_folds = assign_folds(y[sub], groups[sub], config.folds, config.seed)
        progress(f"[compare] pipelines {list(PIPELINES)} on {len(sub)} images ({config.folds}-fold grouped CV)")
        sub_feats = {}
        for pipe in PIPELINES:
            feats = extract(sub, clean_input(S, pipe), f"features {pipe} (compare subset)")
            sub_feats[pipe] = feats
            logits, _, info = cross_validate(
                feats, np.empty((0,) + feats.shape), y[sub], groups[sub], sub_folds, config, progress, label=pipe
            )
            pf = per_fold_metrics(y[sub], calibration.sigmoid(logits), sub_folds, 0.5)
            s = summarise(pf, ("roc_auc",))["roc_auc"]
            comparison[pipe] = {"auc_mean": s["mean"], "auc_sd": s["sd"], "fold_auc": [p["roc_auc"] for p in pf]}
            progress(f"[compare] {pipe}: AUC {s['mean']:.4f} +/- {s['sd']:.4f}")
        best = max(PIPELINES, key=lambda p: comparison[p]["auc_mean"])
        # Prefer the requested default unless the other is clearly better
        # (more than 0.005 AUC): differences below that are within fold noise.
        if comparison[best]["auc_mean"] - comparison[config.preprocessing]["auc_mean"] > 0.005:
            chosen = best
        comparison["chosen"] = chosen
        comparison["rule"] = (
            f"higher mean fold AUC; the requested default {config.preprocessing} is kept unless the other "
            "pipeline is better by more than 0.005"
        )
        comparison["n_images"] = int(len(sub))
        clean_all[sub] = sub_feats[chosen]
        progress(f"[compare] chosen preprocessing: {chosen}")
    todo = np.flatnonzero(np.isnan(clean_all[:, 0]))

    # 3. features
    if len(todo):
        clean_all[todo] = extract(todo, clean_input(S, chosen), f"features {chosen} (clean)")
    augmented = np.empty((config.augmented_copies, len(y), FEATURE_DIM), dtype=np.float32)
    for k in range(config.augmented_copies):
        augmented[k] = extract(
            np.arange(len(y)),
            augmented_input(S, chosen, config.seed, k),
            f"features {chosen} (augmented copy {k + 1}/{config.augmented_copies})",
        )

    # 4. outer CV
    progress(f"[cv] {config.folds}-fold grouped CV, head C grid {list(config.cs)}, {config.inner_folds}-fold inner CV")
    oof_logit, heads, fold_info = cross_validate(clean_all, augmented, y, groups, folds, config, progress)

    # OOD per fold (fit on training part, rate on held-out part) for each k
    ood_cv = {}
    fold_oods = {}
    for k in config.ood_components:
        rates_val, rates_tr = [], []
        fold_oods[k] = []
        for f in range(config.folds):
            tr, va = folds != f, folds == f
            m = fit_ood(clean_all[tr], k, config.ood_shrinkage, config.ood_quantile)
            fold_oods[k].append(m)
            rates_val.append(float(m.is_ood(clean_all[va]).mean()))
            rates_tr.append(float(m.is_ood(clean_all[tr]).mean()))
        ood_cv[k] = {
            "heldout_ood_rate_mean": float(np.mean(rates_val)),
            "heldout_ood_rate_per_fold": rates_val,
            "train_ood_rate_mean": float(np.mean(rates_tr)),
        }
        progress(f"[ood] k={k}: held-out OOD rate {np.mean(rates_val):.4f} (train {np.mean(rates_tr):.4f})")
    # k whose held-out rate is closest to the nominal 1 - quantile: the
    # distance generalises to unseen in-distribution images (least overfit).
    nominal = 1 - config.ood_quantile
    ood_k = min(config.ood_components, key=lambda k: (abs(ood_cv[k]["heldout_ood_rate_mean"] - nominal), k))
    progress(f"[ood] chosen components k={ood_k}")

    # 5. calibration, threshold, band
    temperature = calibration.fit_temperature(oof_logit, y)
    prob_raw = calibration.sigmoid(oof_logit)
    prob = calibration.apply_temperature(oof_logit, temperature)
    threshold = calibration.choose_threshold(y, prob, config.min_sensitivity)
    band = calibration.choose_band(
        y, prob, threshold, config.band_sensitivity, config.band_specificity, config.band_max_share
    )
    progress(
        f"[calibration] T={temperature:.4f} NLL {calibration.nll(oof_logit, y):.4f}->"
        f"{calibration.nll(oof_logit, y, temperature):.4f}; threshold {threshold:.4f}; "
        f"band [{band['lo']:.4f}, {band['hi']:.4f}) share {band['share_in_band']:.3f} "
        f"sens/spec outside {band['sensitivity_outside']:.3f}/{band['specificity_outside']:.3f}"
    )
    per_fold = per_fold_metrics(y, prob, folds, threshold)
    summary = summarise(per_fold)
    pooled = binary_metrics(y, prob, threshold)
    ci = bootstrap_ci(y, prob, threshold, groups, config.bootstrap, config.seed)
    per_fold_band = [
        calibration.band_rates(y[folds == f], prob[folds == f], band["lo"], band["hi"]) for f in range(config.folds)
    ]
    calib_summary = {
        "temperature": temperature,
        "nll_before": calibration.nll(oof_logit, y),
        "nll_after": calibration.nll(oof_logit, y, temperature),
        "ece_before": binary_metrics(y, prob_raw, 0.5)["ece"],
        "ece_after": pooled["ece"],
        "brier_before": binary_metrics(y, prob_raw, 0.5)["brier"],
        "brier_after": pooled["brier"],
    }
    progress(
        "[cv] AUC {:.4f} +/- {:.4f}; sens {:.4f}; spec {:.4f}".format(
            summary["roc_auc"]["mean"],
            summary["roc_auc"]["sd"],
            summary["sensitivity"]["mean"],
            summary["specificity"]["mean"],
        )
    )

    # 6. robustness
    rob = None
    if config.robustness_subset:
        rob_idx = stratified_subset(y, config.robustness_subset, config.seed + 1)
        progress(f"[robustness] {len(rob_idx)} images x {len(robustness.SHIFTS)} shifts")
        rob = robustness.evaluate(
            raw.images,
            y,
            folds,
            rob_idx,
            clean_all,
            heads,
            fold_oods[ood_k],
            temperature,
            threshold,
            band,
            lambda idx, make, label: extract(idx, make, label),
            S,
            chosen,
            progress,
        )
        robustness.write(out, rob, config)

    # 7. final model on all images
    t0 = time.time()
    c_final = float(np.exp(np.median(np.log([h.c for h in heads]))))
    c_final = min(config.cs, key=lambda c: abs(np.log(c) - np.log(c_final)))
    x_all = np.concatenate([clean_all] + [augmented[k] for k in range(config.augmented_copies)])
    y_all = np.tile(y, 1 + config.augmented_copies)
    final_head = _fit_lr(x_all, y_all, c_final, config.seed)
    final_ood = fit_ood(clean_all, ood_k, config.ood_shrinkage, config.ood_quantile)
    model = build_export_model(S, final_head, temperature, final_ood, weights_path)
    model_path = out / MODEL_FILE
    model.save(model_path)
    progress(f"[final] head C={c_final:g} fitted on {len(y_all)} rows; saved {model_path} ({time.time() - t0:.1f}s)")

    # check the export against the numpy path on a few images
    reloaded = keras.models.load_model(model_path, compile=False)
    check_idx = stratified_subset(y, 32, config.seed + 2)
    xs = np.stack([to_model_input(raw.images[i], S, chosen) for i in check_idx]).astype(np.float32)
    pred = reloaded.predict(xs, verbose=0)
    want_p = calibration.apply_temperature(final_head.logit(clean_all[check_idx]), temperature)
    want_d = final_ood.distance(clean_all[check_idx])
    export_check = {
        "n_images": int(len(check_idx)),
        "max_abs_probability_diff": float(np.max(np.abs(pred["probability"].ravel() - want_p))),
        "max_rel_distance_diff": float(np.max(np.abs(pred["ood_distance"].ravel() - want_d) / np.maximum(want_d, 1))),
    }
    progress(f"[final] export check {export_check}")
    # The worker runs the ONNX export (no TensorFlow); checked on the same images.
    exported = export_onnx(model_path, out / ONNX_FILE, gradcam_layer=LAST_CONV_LAYER, check_images=xs)
    progress(f"[final] wrote {out / ONNX_FILE}; ONNX Runtime vs TensorFlow {exported['check']}")

    final_train_d = final_ood.distance(clean_all)
    ood_summary = {
        **final_ood.summary(),
        "train_pass_rate": float((final_train_d <= final_ood.threshold).mean()),
        "cv_by_components": {str(k): v for k, v in ood_cv.items()},
        "heldout_ood_rate": ood_cv[ood_k]["heldout_ood_rate_mean"],
        "selection_rule": "k whose held-out-fold OOD rate is closest to the nominal 1 - quantile",
    }
    versions = {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    wall = progress.elapsed
    training = {
        "seed": config.seed,
        "command": config.command,
        "wall_time_s": round(wall, 1),
        "machine": f"{os.cpu_count()} CPU cores, no GPU",
        "n_images": int(len(y)),
        "n_benign": int((y == 0).sum()),
        "n_malignant": int((y == 1).sum()),
        "n_duplicate_groups": dup["n_duplicate_groups"],
        "folds": config.folds,
        "augmented_copies": config.augmented_copies,
        "image_size": S,
        "head": {
            "type": "logistic regression on standardised pooled features",
            "C": c_final,
            "C_per_fold": [h.c for h in heads],
            "C_grid": list(config.cs),
        },
        "backbone": {
            "architecture": "MobileNetV2 (width 1.0), torchvision ImageNet-1k weights ported to Keras, frozen",
            "weights_file": "models/backbones/mobilenet_v2_imagenet.weights.h5",
            "weights_sha256": sha256_of(weights_path),
        },
        "stage_timings_s": timings,
        **versions,
    }
    cv_report = {
        "model": config.name,
        "preprocessing": chosen,
        "preprocessing_comparison": comparison,
        "image_size": S,
        "folds": config.folds,
        "seed": config.seed,
        "n_images": int(len(y)),
        "duplicates": dup,
        "threshold": threshold,
        "threshold_rule": f"max specificity s.t. OOF sensitivity >= {config.min_sensitivity}",
        "temperature": temperature,
        "calibration": calib_summary,
        "uncertain_band": band,
        "uncertain_band_per_fold": per_fold_band,
        "per_fold": per_fold,
        "fold_info": fold_info,
        "summary": summary,
        "pooled_oof": pooled,
        "ci95": ci,
        "bootstrap_resamples": config.bootstrap,
        "ood": ood_summary,
        "export_check": export_check,
    }
    metrics = {name: {**summary[name], "ci95": [ci[name]["lo"], ci[name]["hi"]]} for name in METRIC_NAMES}
    meta = {
        "format_version": 1,
        "name": config.name,
        "version": str(config.version),
        "framework": "keras",
        "file": MODEL_FILE,
        "input_size": S,
        "preprocessing": chosen,
        "input": "float32 RGB 0..255",
        "output": "dict: probability (calibrated P(melanoma)), ood_distance",
        "class_names": list(CLASS_NAMES),
        "temperature": temperature,
        "threshold": threshold,
        "uncertain_band": [band["lo"], band["hi"]],
        "ood": {
            "method": final_ood.summary()["method"],
            "components": final_ood.components,
            "threshold": final_ood.threshold,
            "train_pass_rate": ood_summary["train_pass_rate"],
            "heldout_pass_rate": 1 - ood_summary["heldout_ood_rate"],
        },
        "gradcam_layer": LAST_CONV_LAYER,
        "metrics": metrics,
        "training": training,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    report.write_all(
        out,
        meta=with_onnx_keys(meta, exported),
        cv_report=cv_report,
        files=raw.files,
        y=y,
        folds=folds,
        groups=groups,
        oof_logit=oof_logit,
        prob=prob,
        prob_raw=prob_raw,
        robustness=rob,
        baseline_report=config.baseline_report,
        model_size_bytes=model_path.stat().st_size,
    )
    progress(f"[done] wrote {out} in {progress.elapsed:.0f}s")
    return meta


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TransferConfig(data=Path("."), out=Path("."))
    parser.add_argument("--data", type=Path, required=True, help="folder with benign/ and malignant/ subfolders")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created; files are overwritten)")
    parser.add_argument("--image-size", type=int, default=d.image_size, help="square input side (default %(default)s)")
    parser.add_argument("--folds", type=int, default=d.folds, help="outer CV folds (default %(default)s)")
    parser.add_argument("--seed", type=int, default=d.seed, help="random seed (default %(default)s)")
    parser.add_argument(
        "--preprocessing",
        choices=PIPELINES,
        default=d.preprocessing,
        help="default pipeline; kept unless the comparison finds the other clearly better (default %(default)s)",
    )
    parser.add_argument("--no-compare", action="store_true", help="skip the preprocessing comparison")
    parser.add_argument(
        "--compare-subset",
        type=int,
        default=d.compare_subset,
        help="images in the preprocessing comparison; 0 = all (default %(default)s)",
    )
    parser.add_argument(
        "--augmented-copies",
        type=int,
        default=d.augmented_copies,
        help="augmented feature copies per training image (default %(default)s)",
    )
    parser.add_argument(
        "--robustness-subset",
        type=int,
        default=d.robustness_subset,
        help="images in the robustness report; 0 = skip it (default %(default)s)",
    )
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="(default %(default)s)")
    parser.add_argument(
        "--inner-folds", type=int, default=d.inner_folds, help="inner CV folds for C (default %(default)s)"
    )
    parser.add_argument(
        "--c-grid",
        type=str,
        default=",".join(f"{c:g}" for c in d.cs),
        help="logistic-regression C values (default %(default)s)",
    )
    parser.add_argument("--min-sensitivity", type=float, default=d.min_sensitivity, help="(default %(default)s)")
    parser.add_argument(
        "--ood-components",
        type=str,
        default=",".join(str(k) for k in d.ood_components),
        help="candidate PCA components for the OOD distance (default %(default)s)",
    )
    parser.add_argument(
        "--bootstrap", type=int, default=d.bootstrap, help="bootstrap resamples for CIs (default %(default)s)"
    )
    parser.add_argument("--name", default=d.name, help="model name (default %(default)s)")
    parser.add_argument("--version", default=d.version, help="model version (default %(default)s)")
    parser.add_argument(
        "--baseline-report",
        type=Path,
        default=Path("models/baseline-cnn-v1/cv_report.json"),
        help="from-scratch baseline cv_report.json to compare against, if present",
    )
    parser.add_argument("--workers", type=int, default=0, help="image-preparation threads (default: CPU count)")
    parser.add_argument(
        "--feature-cache",
        type=Path,
        default=None,
        help="folder to save extracted features in and reuse them from (keyed by image list, size, pipeline)",
    )
    parser.add_argument(
        "--max-images",
        type=int,
        default=0,
        help="development only: use a stratified random subset of this many images (default: all)",
    )


def config_from_args(args, argv, prog: str = "python -m training train-transfer") -> TransferConfig:
    if args.folds < 2 or args.image_size < 32 or args.augmented_copies < 0:
        raise SystemExit("need --folds >= 2, --image-size >= 32 and --augmented-copies >= 0")
    return TransferConfig(
        data=args.data,
        out=args.out,
        image_size=args.image_size,
        folds=args.folds,
        seed=args.seed,
        preprocessing=args.preprocessing,
        compare_preprocessing=not args.no_compare,
        compare_subset=args.compare_subset,
        augmented_copies=args.augmented_copies,
        robustness_subset=args.robustness_subset,
        batch_size=args.batch_size,
        inner_folds=args.inner_folds,
        cs=tuple(float(c) for c in args.c_grid.split(",")),
        min_sensitivity=args.min_sensitivity,
        ood_components=tuple(int(k) for k in args.ood_components.split(",")),
        bootstrap=args.bootstrap,
        name=args.name,
        version=args.version,
        baseline_report=args.baseline_report,
        workers=args.workers,
        max_images=args.max_images,
        feature_cache=args.feature_cache,
        command=default_command(argv, prog),
    )


def main(argv: list[str] | None = None, prog: str = "python -m training.transfer") -> int:
    """Entry point; ``prog`` is how the run records its own command line
    (``python -m training train-transfer`` when called from training.__main__)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Cross-validate and export the transfer-learned (frozen MobileNetV2) melanoma classifier.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    run(config_from_args(args, argv, prog))
    return 0


if __name__ == "__main__":
    sys.exit(main())
