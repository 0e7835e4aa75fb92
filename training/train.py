"""The ``train`` command: cross-validate, fit the final model, export.

Everything the shipped model's figures rest on is decided before any
validation fold is seen: the epoch count is fixed (a cosine schedule runs to
zero, so the last epoch is the one kept; no early stopping), and the decision
threshold is picked on the pooled out-of-fold predictions. The final model is
then fitted on all images with the same settings.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from .augment import eval_dataset, train_dataset
from .cv import assign_folds
from .data import DEFAULT_MAX_DISTANCE, duplicate_groups, group_summary, load_dataset
from .export import write_run
from .metrics import binary_metrics, summarise, youden_threshold
from .model import DEFAULT_WIDTHS, build_model, compile_model


@dataclass
class TrainConfig:
    data: Path
    out: Path
    epochs: int = 12
    folds: int = 5
    image_size: int = 64
    seed: int = 0
    name: str = "baseline-cnn"
    version: int = 1
    batch_size: int = 128
    widths: tuple[int, ...] = DEFAULT_WIDTHS
    learning_rate: float = 2e-3
    command: str = ""


def log(message: str) -> None:
    print(message, flush=True)


def seed_everything(seed: int) -> None:
    # Seeds Python's random, NumPy and the TensorFlow backend in one call.
    keras.utils.set_random_seed(seed)


def make_datasets(x, y, validation, batch_size: int, seed: int):
    """(augmented training dataset, plain validation dataset or None).

    The one place a fold's data enters tf.data: augmentation is applied to
    the training part only.
    """
    val_ds = eval_dataset(validation[0], validation[1], batch_size) if validation is not None else None
    return train_dataset(x, y, batch_size, seed=seed, augment=True), val_ds


def fit_model(x, y, config: TrainConfig, seed: int, label: str, validation=None):
    """Build and fit one model for ``config.epochs`` epochs; returns (model, history)."""
    keras.backend.clear_session()
    seed_everything(seed)
    model = build_model(config.image_size, config.widths)
    steps = int(np.ceil(len(x) / config.batch_size))
    compile_model(model, steps, config.epochs, learning_rate=config.learning_rate)
    train_ds, val_ds = make_datasets(x, y, validation, config.batch_size, seed)
    history = model.fit(
        train_ds,
        epochs=config.epochs,
        validation_data=val_ds,
        verbose=0,
        shuffle=False,  # train_dataset already reshuffles every epoch
        callbacks=[EpochLogger(label, config.epochs)],
    )
    return model, {k: [float(v) for v in vals] for k, vals in history.history.items()}


def predict(model, x, batch_size: int) -> np.ndarray:
    return model.predict(eval_dataset(x, None, batch_size), verbose=0).reshape(-1).astype(float)


class EpochLogger(keras.callbacks.Callback):
    """One progress line per epoch, prefixed with the fold being trained."""

    def __init__(self, label: str, epochs: int):
        super().__init__()
        self.label, self.epochs = label, epochs

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        parts = [f"{k} {logs[k]:.4f}" for k in ("loss", "auc", "val_loss", "val_auc") if k in logs]
        seconds = time.monotonic() - self._start
        log(f"[{self.label}] epoch {epoch + 1}/{self.epochs}  " + "  ".join(parts) + f"  ({seconds:.0f}s)")


def run(config: TrainConfig) -> dict:
    """The whole training run; writes ``config.out`` and returns model.json's content."""
    started = time.monotonic()
    # Retracing notices are expected (a fresh model per fold) and only clutter the log.
    tf.get_logger().setLevel("ERROR")
    seed_everything(config.seed)
    log(f"loading {config.data} at {config.image_size}x{config.image_size} ...")
    ds = load_dataset(config.data, config.image_size, progress=log)
    n_mal = int(ds.y.sum())
    log(f"{len(ds)} images: {len(ds) - n_mal} benign, {n_mal} malignant ({time.monotonic() - started:.0f}s)")

    groups = duplicate_groups(ds.hashes)
    dup = group_summary(groups)
    log(
        f"near-duplicate groups: {dup['n_duplicate_groups']} holding {dup['n_images_in_duplicate_groups']} images "
        f"(largest {dup['largest_group']}); each kept within one fold"
    )
    folds = assign_folds(ds.y, groups, config.folds, config.seed)

    oof = np.full(len(ds), np.nan)
    fold_info = []
    for k in range(config.folds):
        train_idx, val_idx = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        label = f"fold {k + 1}/{config.folds}"
        log(f"[{label}] train {len(train_idx)}  validate {len(val_idx)} ({int(ds.y[val_idx].sum())} malignant)")
        fold_start = time.monotonic()
        model, history = fit_model(
            ds.x[train_idx],
            ds.y[train_idx],
            config,
            seed=config.seed + 1 + k,
            label=label,
            validation=(ds.x[val_idx], ds.y[val_idx]),
        )
        oof[val_idx] = predict(model, ds.x[val_idx], config.batch_size)
        fold_auc = binary_metrics(ds.y[val_idx], oof[val_idx])["roc_auc"]
        log(f"[{label}] validation ROC-AUC {fold_auc:.4f}  ({time.monotonic() - fold_start:.0f}s)")
        fold_info.append(
            {
                "fold": k + 1,
                "n_train": len(train_idx),
                "n_val": len(val_idx),
                "n_val_malignant": int(ds.y[val_idx].sum()),
                "seconds": round(time.monotonic() - fold_start, 1),
                "history": history,
            }
        )
    cv_seconds = time.monotonic() - started

    # One threshold for the shipped model, chosen on all out-of-fold
    # predictions (never on a test set); rounded so the stored value is the
    # one the figures below were computed with.
    threshold = round(youden_threshold(ds.y, oof), 4)
    for k, info in enumerate(fold_info):
        mask = folds == k
        info["metrics"] = binary_metrics(ds.y[mask], oof[mask], threshold)
        info["metrics_at_0_5"] = binary_metrics(ds.y[mask], oof[mask], 0.5)
    summary = summarise([f["metrics"] for f in fold_info])
    summary_05 = summarise([f["metrics_at_0_5"] for f in fold_info])
    pooled = binary_metrics(ds.y, oof, threshold)
    log(
        f"CV ROC-AUC {summary['roc_auc']['mean']:.4f} ± {summary['roc_auc']['sd']:.4f}; "
        f"threshold {threshold} -> sensitivity {summary['sensitivity']['mean']:.3f}, "
        f"specificity {summary['specificity']['mean']:.3f}"
    )

    log(f"[final] fitting on all {len(ds)} images for {config.epochs} epochs")
    final_model, final_history = fit_model(ds.x, ds.y, config, seed=config.seed, label="final")
    wall = time.monotonic() - started

    versions = {"tensorflow": tf.__version__, "keras": keras.__version__}
    meta = write_run(
        config=config,
        model=final_model,
        dataset=ds,
        folds=folds,
        groups=groups,
        oof=oof,
        threshold=threshold,
        fold_info=fold_info,
        summary=summary,
        summary_at_0_5=summary_05,
        pooled=pooled,
        duplicates=dup,
        final_history=final_history,
        wall_time_s=wall,
        cv_time_s=cv_seconds,
        versions=versions,
        max_hash_distance=DEFAULT_MAX_DISTANCE,
    )
    log(f"wrote {config.out} in {wall:.0f}s total")
    return meta


def default_command(argv: list[str] | None = None) -> str:
    import shlex

    return "python -m training " + shlex.join(sys.argv[1:] if argv is None else argv)
