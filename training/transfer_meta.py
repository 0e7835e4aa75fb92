"""What a transfer run records: the content of model.json and cv_report.json,
assembled from the results of ``training.stages``.

model.json is the contract with the worker and the CLI (they read input size,
preprocessing, temperature, threshold, band and OOD threshold from it, never
from code); cv_report.json holds every cross-validated figure behind it.
``training.report`` writes both, with the other reports and the model card.
"""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime

import numpy as np

from .data import CLASS_NAMES
from .features import MODEL_FILE
from .files import sha256_of
from .metrics import METRIC_NAMES

OOD_SELECTION_RULE = "k whose held-out-fold OOD rate is closest to the nominal 1 - quantile"


def ood_summary(final, ood, clean_features) -> dict:
    """cv_report's "ood": the final detector, its pass rate on all training
    images and the per-k cross-validation it was chosen by."""
    final_train_d = final.ood.distance(clean_features)
    return {
        **final.ood.summary(),
        "train_pass_rate": float((final_train_d <= final.ood.threshold).mean()),
        "cv_by_components": {str(k): v for k, v in ood.cv.items()},
        "heldout_ood_rate": ood.cv[ood.components]["heldout_ood_rate_mean"],
        "selection_rule": OOD_SELECTION_RULE,
    }


def versions() -> dict:
    import keras
    import tensorflow as tf

    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def training_record(config, data, cv, final, weights_path, timings: dict, wall_time_s: float) -> dict:
    """model.json's "training": how the model was made (command, data, head, backbone, versions)."""
    y = data.y
    return {
        "seed": config.seed,
        "command": config.command,
        "wall_time_s": round(wall_time_s, 1),
        "machine": f"{os.cpu_count()} CPU cores, no GPU",
        "n_images": int(len(y)),
        "n_benign": int((y == 0).sum()),
        "n_malignant": int((y == 1).sum()),
        "n_duplicate_groups": data.duplicates["n_duplicate_groups"],
        "folds": config.folds,
        "augmented_copies": config.augmented_copies,
        "image_size": config.image_size,
        "head": {
            "type": "logistic regression on standardised pooled features",
            "C": final.head.c,
            "C_per_fold": [h.c for h in cv.heads],
            "C_grid": list(config.cs),
        },
        "backbone": {
            "architecture": "MobileNetV2 (width 1.0), torchvision ImageNet-1k weights ported to Keras, frozen",
            "weights_file": "models/backbones/mobilenet_v2_imagenet.weights.h5",
            "weights_sha256": sha256_of(weights_path),
        },
        "stage_timings_s": timings,
        **versions(),
    }


def cv_report(config, data, comparison, features, cv, cal, ood_report: dict, export_check: dict) -> dict:
    return {
        "model": config.name,
        "preprocessing": features.preprocessing,
        "preprocessing_comparison": comparison.report,
        "image_size": config.image_size,
        "folds": config.folds,
        "seed": config.seed,
        "n_images": int(len(data.y)),
        "duplicates": data.duplicates,
        "threshold": cal.threshold,
        "threshold_rule": f"max specificity s.t. OOF sensitivity >= {config.min_sensitivity}",
        "temperature": cal.temperature,
        "calibration": cal.report,
        "uncertain_band": cal.band,
        "uncertain_band_per_fold": cal.per_fold_band,
        "per_fold": cal.per_fold,
        "fold_info": cv.fold_info,
        "summary": cal.summary,
        "pooled_oof": cal.pooled,
        "ci95": cal.ci,
        "bootstrap_resamples": config.bootstrap,
        "ood": ood_report,
        "export_check": export_check,
    }


def model_json(config, features, cal, final, ood_report: dict, training: dict) -> dict:
    """model.json's content, without the ONNX keys (``onnx_export.with_onnx_keys`` adds them)."""
    from .backbone import LAST_CONV_LAYER

    summary, ci = cal.summary, cal.ci
    metrics = {name: {**summary[name], "ci95": [ci[name]["lo"], ci[name]["hi"]]} for name in METRIC_NAMES}
    return {
        "format_version": 1,
        "name": config.name,
        "version": str(config.version),
        "framework": "keras",
        "file": MODEL_FILE,
        "input_size": config.image_size,
        "preprocessing": features.preprocessing,
        "input": "float32 RGB 0..255",
        "output": "dict: probability (calibrated P(melanoma)), ood_distance",
        "class_names": list(CLASS_NAMES),
        "temperature": cal.temperature,
        "threshold": cal.threshold,
        "uncertain_band": [cal.band["lo"], cal.band["hi"]],
        "ood": {
            "method": final.ood.summary()["method"],
            "components": final.ood.components,
            "threshold": final.ood.threshold,
            "train_pass_rate": ood_report["train_pass_rate"],
            "heldout_pass_rate": 1 - ood_report["heldout_ood_rate"],
            **({"features": ood_report["features"]} if "features" in ood_report else {}),
        },
        "gradcam_layer": LAST_CONV_LAYER,
        "metrics": metrics,
        "training": training,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
