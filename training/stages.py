"""The stages of a transfer run (``training.transfer.run``), one function each.

Each stage takes the run's ``config`` (a ``training.transfer.TransferConfig``),
the results of earlier stages and ``progress`` (a callable printing one
timestamped line), and returns its own result; none writes shared state.
In run order:

1. :func:`load_data`: decode, hash and group the images, assign the folds;
2. :func:`compare_preprocessing`: the pipelines by grouped CV on a subset;
3. :func:`extract_all_features`: clean and augmented features of every image;
4. :func:`outer_cv` (the head per fold) and :func:`select_ood` (the OOD
   model per fold and its number of components);
5. :func:`calibrate`: temperature, threshold, band and the CV figures;
6. :func:`robustness_report`: the out-of-fold model under device shifts;
7. :func:`fit_final`, :func:`check_export`, :func:`write_onnx`: the final
   head and OOD model on all images, the Keras file, its check, the ONNX file.

What the run then records is assembled by ``training.transfer_meta``.
TensorFlow/Keras are imported only by the stages that build a model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import calibration, robustness
from .cv import assign_folds
from .data import DEFAULT_MAX_DISTANCE, duplicate_groups, group_summary
from .features import (
    FEATURE_DIM,
    MODEL_FILE,
    RawImages,
    augmented_input,
    build_export_model,
    clean_input,
    load_raw,
    stratified_subset,
)
from .head import LinearHead, bootstrap_ci, cross_validate, fit_lr, per_fold_metrics
from .metrics import binary_metrics, summarise
from .onnx_export import ONNX_FILE, export_onnx
from .ood import MahalanobisOOD, fit_ood
from .preprocessing import PIPELINES, to_model_input

# A pipeline other than the requested default is chosen only when its mean
# fold AUC is higher by more than this: smaller differences are fold noise.
COMPARE_MARGIN = 0.005


# ------------------------------------------------------------------ 1. data


@dataclass
class Data:
    raw: RawImages
    groups: np.ndarray  # near-duplicate group per image
    folds: np.ndarray  # outer CV fold per image
    duplicates: dict  # training.data.group_summary

    @property
    def y(self) -> np.ndarray:
        return self.raw.y


def load_data(config, workers: int, progress) -> Data:
    raw = load_raw(Path(config.data), workers, progress, config.max_images, config.seed)
    y = raw.y
    groups = duplicate_groups(raw.hashes, DEFAULT_MAX_DISTANCE)
    folds = assign_folds(y, groups, config.folds, config.seed)
    dup = group_summary(groups)
    progress(
        f"[data] {len(y)} images ({int((y == 0).sum())} benign, {int((y == 1).sum())} malignant); "
        f"{dup['n_duplicate_groups']} duplicate groups; folds {np.bincount(folds).tolist()}"
    )
    return Data(raw=raw, groups=groups, folds=folds, duplicates=dup)


# ---------------------------------------------------- 2. preprocessing comparison


@dataclass
class Comparison:
    chosen: str  # the pipeline the run goes on with
    report: dict  # cv_report's "preprocessing_comparison" ({} when skipped)
    indices: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=int))  # the compared images
    features: np.ndarray | None = None  # their clean features under ``chosen``


def compare_preprocessing(config, data: Data, extract, progress) -> Comparison:
    """Grouped CV of a clean-feature head under each pipeline, on a stratified
    subset (``--compare-subset``); the requested default is kept unless another
    is better by more than :data:`COMPARE_MARGIN` mean fold AUC."""
    if not config.compare_preprocessing:
        return Comparison(chosen=config.preprocessing, report={})
    y, groups, folds, S = data.y, data.groups, data.folds, config.image_size
    sub = stratified_subset(y, config.compare_subset, config.seed)
    sub_folds = folds[sub]
    if len(np.unique(sub_folds)) < config.folds:
        sub_folds = assign_folds(y[sub], groups[sub], config.folds, config.seed)
    progress(f"[compare] pipelines {list(PIPELINES)} on {len(sub)} images ({config.folds}-fold grouped CV)")
    comparison = {}
    sub_feats = {}
    for pipe in PIPELINES:
        feats = extract(sub, clean_input(S, pipe), f"features {pipe} (compare subset)")
        sub_feats[pipe] = feats
        logits, _, _ = cross_validate(
            feats, np.empty((0,) + feats.shape), y[sub], groups[sub], sub_folds, config, progress, label=pipe
        )
        pf = per_fold_metrics(y[sub], calibration.sigmoid(logits), sub_folds, 0.5)
        s = summarise(pf, ("roc_auc",))["roc_auc"]
        comparison[pipe] = {"auc_mean": s["mean"], "auc_sd": s["sd"], "fold_auc": [p["roc_auc"] for p in pf]}
        progress(f"[compare] {pipe}: AUC {s['mean']:.4f} +/- {s['sd']:.4f}")
    best = max(PIPELINES, key=lambda p: comparison[p]["auc_mean"])
    chosen = config.preprocessing
    if comparison[best]["auc_mean"] - comparison[config.preprocessing]["auc_mean"] > COMPARE_MARGIN:
        chosen = best
    comparison["chosen"] = chosen
    comparison["rule"] = (
        f"higher mean fold AUC; the requested default {config.preprocessing} is kept unless the other "
        f"pipeline is better by more than {COMPARE_MARGIN}"
    )
    comparison["n_images"] = int(len(sub))
    progress(f"[compare] chosen preprocessing: {chosen}")
    return Comparison(chosen=chosen, report=comparison, indices=sub, features=sub_feats[chosen])


# ---------------------------------------------------------------- 3. features


@dataclass
class Features:
    preprocessing: str
    clean: np.ndarray  # (N, FEATURE_DIM)
    augmented: np.ndarray  # (K, N, FEATURE_DIM), K = --augmented-copies


def extract_all_features(config, data: Data, comparison: Comparison, extract) -> Features:
    """Clean features of every image (reusing the comparison's) and ``K``
    augmented copies of every image (used only where the image trains)."""
    n, S, chosen = len(data.y), config.image_size, comparison.chosen
    clean_all = np.full((n, FEATURE_DIM), np.nan, dtype=np.float32)
    if comparison.features is not None:
        clean_all[comparison.indices] = comparison.features
    todo = np.flatnonzero(np.isnan(clean_all[:, 0]))
    if len(todo):
        clean_all[todo] = extract(todo, clean_input(S, chosen), f"features {chosen} (clean)")
    augmented = np.empty((config.augmented_copies, n, FEATURE_DIM), dtype=np.float32)
    for k in range(config.augmented_copies):
        augmented[k] = extract(
            np.arange(n),
            augmented_input(S, chosen, config.seed, k),
            f"features {chosen} (augmented copy {k + 1}/{config.augmented_copies})",
        )
    return Features(preprocessing=chosen, clean=clean_all, augmented=augmented)


# --------------------------------------------------------------- 4. outer CV


@dataclass
class OuterCV:
    oof_logit: np.ndarray  # out-of-fold logit per image
    heads: list[LinearHead]  # heads[f] never saw fold f
    fold_info: list[dict]


def outer_cv(config, data: Data, features: Features, progress) -> OuterCV:
    progress(f"[cv] {config.folds}-fold grouped CV, head C grid {list(config.cs)}, {config.inner_folds}-fold inner CV")
    oof_logit, heads, fold_info = cross_validate(
        features.clean, features.augmented, data.y, data.groups, data.folds, config, progress
    )
    return OuterCV(oof_logit=oof_logit, heads=heads, fold_info=fold_info)


@dataclass
class OODSelection:
    components: int  # the chosen k
    fold_models: list[MahalanobisOOD]  # fold_models[f] fitted without fold f, with k components
    cv: dict  # per candidate k: held-out and training OOD rates


def select_ood(config, data: Data, features: Features, progress) -> OODSelection:
    """Per candidate k, an OOD model per fold fitted on the training part; the
    k whose held-out rate is closest to the nominal 1 - quantile is chosen:
    its distance generalises to unseen in-distribution images (least overfit)."""
    folds, clean_all = data.folds, features.clean
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
    nominal = 1 - config.ood_quantile
    ood_k = min(config.ood_components, key=lambda k: (abs(ood_cv[k]["heldout_ood_rate_mean"] - nominal), k))
    progress(f"[ood] chosen components k={ood_k}")
    return OODSelection(components=ood_k, fold_models=fold_oods[ood_k], cv=ood_cv)


# ------------------------------------------------------------ 5. calibration


@dataclass
class Calibration:
    temperature: float
    threshold: float
    band: dict  # training.calibration.choose_band
    prob_raw: np.ndarray  # sigmoid of the out-of-fold logits
    prob: np.ndarray  # temperature-scaled
    per_fold: list[dict]  # metrics per fold at the threshold
    summary: dict  # mean and sd across folds
    pooled: dict  # metrics of the pooled out-of-fold predictions
    ci: dict  # group bootstrap 95% CIs
    per_fold_band: list[dict]
    report: dict  # cv_report's "calibration"


def calibrate(config, data: Data, cv: OuterCV, progress) -> Calibration:
    y, folds, oof_logit = data.y, data.folds, cv.oof_logit
    temperature = calibration.fit_temperature(oof_logit, y)
    prob_raw = calibration.sigmoid(oof_logit)
    prob = calibration.apply_temperature(oof_logit, temperature)
    threshold = calibration.choose_threshold(y, prob, config.min_sensitivity)
    band = calibration.choose_band(
        y, prob, threshold, config.band_sensitivity, config.band_specificity, config.band_max_share,
        min_referral_specificity=getattr(config, "band_referral_specificity", None),
    )  # fmt: skip
    progress(
        f"[calibration] T={temperature:.4f} NLL {calibration.nll(oof_logit, y):.4f}->"
        f"{calibration.nll(oof_logit, y, temperature):.4f}; threshold {threshold:.4f}; "
        f"band [{band['lo']:.4f}, {band['hi']:.4f}) share {band['share_in_band']:.3f} "
        f"sens/spec outside {band['sensitivity_outside']:.3f}/{band['specificity_outside']:.3f}"
    )
    per_fold = per_fold_metrics(y, prob, folds, threshold)
    summary = summarise(per_fold)
    pooled = binary_metrics(y, prob, threshold)
    ci = bootstrap_ci(y, prob, threshold, data.groups, config.bootstrap, config.seed)
    nested_band = calibration.nested_band_rates(
        y, prob, folds, config.min_sensitivity, target_sensitivity=config.band_sensitivity,
        target_specificity=config.band_specificity, max_share=config.band_max_share,
        min_referral_specificity=getattr(config, "band_referral_specificity", None),
    )  # fmt: skip
    band = calibration.with_nested(band, nested_band)
    per_fold_band = [
        calibration.band_rates(y[folds == f], prob[folds == f], band["lo"], band["hi"]) for f in range(config.folds)
    ]
    report = {
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
    return Calibration(
        temperature=temperature,
        threshold=threshold,
        band=band,
        prob_raw=prob_raw,
        prob=prob,
        per_fold=per_fold,
        summary=summary,
        pooled=pooled,
        ci=ci,
        per_fold_band=per_fold_band,
        report=report,
    )


# ------------------------------------------------------------- 6. robustness


def robustness_report(
    config, data: Data, features: Features, cv: OuterCV, ood: OODSelection, cal: Calibration, extract, out, progress
) -> dict | None:
    """``training.robustness`` on a stratified subset (``--robustness-subset``;
    0 skips it, returning None); writes robustness.json and robustness.md."""
    if not config.robustness_subset:
        return None
    rob_idx = stratified_subset(data.y, config.robustness_subset, config.seed + 1)
    progress(f"[robustness] {len(rob_idx)} images x {len(robustness.SHIFTS)} shifts")
    rob = robustness.evaluate(
        data.raw.images,
        data.y,
        data.folds,
        rob_idx,
        features.clean,
        cv.heads,
        ood.fold_models,
        cal.temperature,
        cal.threshold,
        cal.band,
        extract,
        config.image_size,
        features.preprocessing,
        progress,
    )
    robustness.write(out, rob, config)
    return rob


# ------------------------------------------------------------ 7. final model


@dataclass
class FinalModel:
    head: LinearHead
    n_rows: int  # training rows of the head (clean + augmented)
    ood: MahalanobisOOD
    path: Path  # the saved Keras file


def fit_final(
    config,
    data: Data,
    features: Features,
    cv: OuterCV,
    ood: OODSelection,
    cal: Calibration,
    weights_path,
    out,
    progress,
) -> FinalModel:
    """The head on all images' clean and augmented features, C the grid value
    nearest the folds' geometric-mean C; the OOD model on all clean features;
    the Keras model built from them and saved as ``out/model.keras``."""
    t0 = time.time()
    c_final = float(np.exp(np.median(np.log([h.c for h in cv.heads]))))
    c_final = min(config.cs, key=lambda c: abs(np.log(c) - np.log(c_final)))
    x_all = np.concatenate([features.clean] + [features.augmented[k] for k in range(config.augmented_copies)])
    y_all = np.tile(data.y, 1 + config.augmented_copies)
    final_head = fit_lr(x_all, y_all, c_final, config.seed)
    final_ood = fit_ood(features.clean, ood.components, config.ood_shrinkage, config.ood_quantile)
    model = build_export_model(config.image_size, final_head, cal.temperature, final_ood, weights_path)
    model_path = Path(out) / MODEL_FILE
    model.save(model_path)
    progress(f"[final] head C={c_final:g} fitted on {len(y_all)} rows; saved {model_path} ({time.time() - t0:.1f}s)")
    return FinalModel(head=final_head, n_rows=len(y_all), ood=final_ood, path=model_path)


def check_export(config, data: Data, features: Features, cal: Calibration, final: FinalModel, progress):
    """The reloaded Keras file against the NumPy path on 32 images; returns
    ``(export_check, model inputs of those images)``."""
    import keras

    reloaded = keras.models.load_model(final.path, compile=False)
    check_idx = stratified_subset(data.y, 32, config.seed + 2)
    xs = np.stack(
        [to_model_input(data.raw.images[i], config.image_size, features.preprocessing) for i in check_idx]
    ).astype(np.float32)
    pred = reloaded.predict(xs, verbose=0)
    want_p = calibration.apply_temperature(final.head.logit(features.clean[check_idx]), cal.temperature)
    want_d = final.ood.distance(features.clean[check_idx])
    export_check = {
        "n_images": int(len(check_idx)),
        "max_abs_probability_diff": float(np.max(np.abs(pred["probability"].ravel() - want_p))),
        "max_rel_distance_diff": float(np.max(np.abs(pred["ood_distance"].ravel() - want_d) / np.maximum(want_d, 1))),
    }
    progress(f"[final] export check {export_check}")
    return export_check, xs


def write_onnx(out, final: FinalModel, check_images, progress) -> dict:
    """The ONNX file the worker runs (no TensorFlow), checked on the same images;
    returns ``export_onnx``'s keys for model.json."""
    from .backbone import LAST_CONV_LAYER

    out = Path(out)
    exported = export_onnx(final.path, out / ONNX_FILE, gradcam_layer=LAST_CONV_LAYER, check_images=check_images)
    progress(f"[final] wrote {out / ONNX_FILE}; ONNX Runtime vs TensorFlow {exported['check']}")
    return exported
