"""Writes a training run's output folder: model, metadata, CV report, card.

model.json is the contract with the worker and the CLI: they read the input
size, preprocessing id and threshold from it, never from code.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

from . import model_card
from .data import CLASS_NAMES
from .metrics import METRIC_NAMES
from .onnx_export import ONNX_FILE, export_onnx, with_onnx_keys
from .preprocessing import PREPROCESSING_ID
from .report import clean_json

FORMAT_VERSION = 1
MODEL_FILE = "model.keras"


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(clean_json(data), indent=2, allow_nan=False) + "\n", encoding="utf-8")


def _save_inference_copy(model, path: Path) -> None:
    """Save weights and architecture only: an uncompiled clone carries no
    optimizer state (which would triple the file) and no training config."""
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    clone.save(path)


def write_run(
    *,
    config,
    model,
    dataset,
    folds,
    groups,
    oof,
    threshold,
    fold_info,
    summary,
    summary_at_0_5,
    pooled,
    duplicates,
    final_history,
    wall_time_s,
    cv_time_s,
    versions,
    max_hash_distance,
) -> dict:
    """Write every file of the output folder; returns model.json's content."""

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    _save_inference_copy(model, out / MODEL_FILE)
    # The worker runs this export (ONNX Runtime, no TensorFlow); it is checked
    # against the .keras file just written, on a few of the training images.
    exported = export_onnx(out / MODEL_FILE, out / ONNX_FILE, check_images=dataset.x[:8])

    n_malignant = int(dataset.y.sum())
    per_fold = [
        {"fold": f["fold"], "n_val": f["n_val"], **{m: f["metrics"][m] for m in METRIC_NAMES}} for f in fold_info
    ]
    validation = (
        f"{config.folds}-fold StratifiedGroupKFold (seed {config.seed}); near-duplicate images "
        "grouped by perceptual hash and kept within one fold; threshold-dependent metrics at "
        "the threshold below"
    )
    training = {
        "seed": config.seed,
        "command": config.command,
        "epochs": config.epochs,
        "folds": config.folds,
        "wall_time_s": round(wall_time_s, 1),
        "cv_wall_time_s": round(cv_time_s, 1),
        "n_images": len(dataset),
        "n_benign": len(dataset) - n_malignant,
        "n_malignant": n_malignant,
        "n_duplicate_groups": duplicates["n_duplicate_groups"],
        "n_images_in_duplicate_groups": duplicates["n_images_in_duplicate_groups"],
        "batch_size": config.batch_size,
        "architecture": {
            "blocks": "conv3x3-BN-ReLU-maxpool",
            "widths": list(config.widths),
            "head": "GAP-dropout-dense(sigmoid)",
            "parameters": int(model.count_params()),
        },
        "optimizer": f"AdamW lr {config.learning_rate}, 1-epoch warm-up then cosine decay to 0",
        "augmentation": (
            "random flips, rotation (any angle), zoom +-15%, contrast +-20%, brightness +-15%; training folds only"
        ),
        "tensorflow": versions["tensorflow"],
        "keras": versions["keras"],
    }
    meta = {
        "format_version": FORMAT_VERSION,
        "name": config.name,
        "version": config.version,
        "framework": "keras",
        "file": MODEL_FILE,
        "input_size": config.image_size,
        "preprocessing": PREPROCESSING_ID,
        "input": "float32 RGB 0..255",
        "output": "sigmoid probability of melanoma",
        "class_names": list(CLASS_NAMES),
        "threshold": threshold,
        "threshold_method": "Youden J (max sensitivity + specificity - 1) on pooled out-of-fold predictions",
        "metrics": {
            "validation": validation,
            "summary": summary,
            "per_fold": per_fold,
        },
        "training": training,
        "created_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
    }
    meta = with_onnx_keys(meta, exported)
    _write_json(out / "model.json", meta)

    report = {
        "validation": validation,
        "threshold": threshold,
        "threshold_method": meta["threshold_method"],
        "summary": summary,
        "summary_at_0_5": summary_at_0_5,
        "pooled_out_of_fold": pooled,
        "folds": fold_info,
        "duplicates": {
            **duplicates,
            "hash": "256-bit pHash of the equalised central 62.5%",
            "max_hamming_distance": max_hash_distance,
        },
        "final_fit_history": final_history,
        "notes": [
            "mean and sd are across folds; sd uses ddof=1",
            "ece: |observed malignant rate - mean P(malignant)| over 10 equal-width probability bins, "
            "weighted by bin share",
            "the threshold is chosen on the same out-of-fold predictions it is evaluated on, so the "
            "threshold-dependent figures are slightly optimistic; ROC-AUC, Brier and ECE do not depend on it",
        ],
    }
    _write_json(out / "cv_report.json", report)

    with open(out / "oof_predictions.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "label", "fold", "probability"])
        for name, label, fold, prob in zip(
            dataset.files, dataset.y.tolist(), folds.tolist(), oof.tolist(), strict=True
        ):
            writer.writerow([name, CLASS_NAMES[label], fold + 1, f"{prob:.6f}"])

    model_card.write(out, meta, kind=model_card.BASELINE)
    return meta
