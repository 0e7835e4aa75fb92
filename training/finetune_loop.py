"""One fine-tuning fit with per-epoch checkpoints, and batched prediction.

A fit's folder (``RUN_DIR/fold-<k>`` or ``RUN_DIR/final``) holds:

- ``ckpt-e<E>.weights.h5`` and ``ckpt-e<E>.opt.npz``: the model's weights
  and the optimizer's variables (moments, iteration count) after epoch
  ``E``; ``checkpoint.json`` names the latest pair and is replaced
  atomically only after both files are complete, so a run killed at any
  moment resumes from the last complete epoch;
- ``model.weights.h5`` and ``done.json`` when the fit is complete.

Randomness is derived, not stored: epoch ``e`` of fit ``k`` reseeds Keras
(``keras.utils.set_random_seed``) and the dropout layer from
``(seed, k, e)``, and its batches are shuffled and augmented from the same
numbers (``training.batches``), so a resumed fit sees exactly the batches
and dropout masks an uninterrupted one would have.

Keras 3 only, any backend; no TensorFlow import.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from .batches import BatchPlan, TrunkPlan, keras_dataset
from .finetune_model import (
    DROPOUT_LAYER,
    build_finetune_model,
    ood_feature_model,
    pooled_trunk_output,
    prediction_model,
    split_at_trainable,
    top_prediction_model,
)

CHECKPOINT = "checkpoint.json"
DONE = "done.json"
WEIGHTS = "model.weights.h5"
# The trunk cache's augmented copies are shared by every fit: epoch e's copy
# of image i is drawn from (seed, TRUNK_FOLD + 1, e, i), whatever the fold.
TRUNK_FOLD = -1
PREFETCH = 4


def write_json_atomic(path: Path, data) -> None:
    tmp = Path(path).with_name(Path(path).name + ".part")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def epoch_seed(seed: int, fit: int, epoch: int) -> int:
    return int(np.random.default_rng([seed, fit + 1, epoch + 1]).integers(0, 2**31 - 1))


def make_model(config, fit: int):
    """A fresh model and its compiled optimizer (AdamW, linear warm-up over
    the first epoch, then cosine decay to zero at the last step)."""
    import keras

    keras.utils.set_random_seed(epoch_seed(config.seed, fit, -1))
    model = build_finetune_model(
        config.backbone, config.image_size, config.unfreeze_blocks, config.weights_path, config.dropout, config.seed
    )
    return model


def compile_model(model, config, steps_per_epoch: int):
    import keras

    total = max(1, steps_per_epoch * config.epochs)
    warmup = min(steps_per_epoch, total - 1) if config.epochs > 1 else 0
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else config.learning_rate,
        decay_steps=max(1, total - warmup),
        alpha=0.0,
        warmup_target=config.learning_rate if warmup else None,
        warmup_steps=warmup,
    )
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay)
    model.compile(optimizer=optimizer, loss=keras.losses.BinaryCrossentropy(from_logits=True))
    optimizer.build(model.trainable_variables)
    return model


def save_checkpoint(fit_dir: Path, model, epoch: int, history: list) -> None:
    w = fit_dir / f"ckpt-e{epoch}.weights.h5"
    o = fit_dir / f"ckpt-e{epoch}.opt.npz"
    tmp_w = fit_dir / f"ckpt-e{epoch}.part.weights.h5"
    model.save_weights(tmp_w)
    os.replace(tmp_w, w)
    tmp_o = fit_dir / f"ckpt-e{epoch}.opt.part.npz"
    np.savez(tmp_o, *[np.asarray(v) for v in model.optimizer.variables])
    os.replace(tmp_o, o)
    state = {"epoch": epoch, "weights": w.name, "optimizer": o.name, "history": history}
    write_json_atomic(fit_dir / CHECKPOINT, state)
    for old in fit_dir.glob("ckpt-e*"):
        if old.name not in (w.name, o.name):
            old.unlink(missing_ok=True)


def load_checkpoint(fit_dir: Path, model) -> tuple[int, list]:
    """Restore the latest checkpoint into ``model`` (compiled); returns
    ``(epochs done, history)``, ``(0, [])`` if there is none."""
    path = fit_dir / CHECKPOINT
    if not path.is_file():
        return 0, []
    ck = json.loads(path.read_text(encoding="utf-8"))
    model.load_weights(fit_dir / ck["weights"])
    with np.load(fit_dir / ck["optimizer"]) as arrays:
        values = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
    if len(values) != len(model.optimizer.variables):
        n = len(model.optimizer.variables)
        raise RuntimeError(f"{path}: optimizer state has {len(values)} variables, expected {n}")
    for var, value in zip(model.optimizer.variables, values, strict=True):
        var.assign(value)
    return int(ck["epoch"]), list(ck["history"])


def _reseed(model, seed: int) -> None:
    import keras

    keras.utils.set_random_seed(seed)
    dropout = model.get_layer(DROPOUT_LAYER)
    state = dropout.seed_generator.state
    state.assign(np.array([seed % (2**31 - 1), 0], dtype=state.dtype))


def trunk_cache(config, cache, cache_dir: Path, progress) -> dict | None:
    """The frozen trunk's outputs, computed once for every fit of the run.

    Below the first trainable layer the network is a fixed function of its
    input (frozen weights, BatchNorm in inference mode), so its output for
    an image can be stored and the fits train only the top
    (``finetune_model.split_at_trainable``). Returns ``{"epochs": [E arrays],
    "clean": array}``: per epoch ``e``, float16 outputs for epoch ``e``'s
    augmented copy of every image (drawn with :data:`TRUNK_FOLD`, so the same
    copy for every fit: a fold only ever trains on its training images'
    rows); ``clean``, float32 outputs for the clean images (the fold
    models' predictions). Files in ``cache_dir`` are written atomically and
    reused by ``--resume``. ``None`` when ``config.trunk_cache`` is off.
    """
    if not config.trunk_cache:
        return None
    from concurrent.futures import ThreadPoolExecutor

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    trunk, _ = split_at_trainable(make_model(config, 0))
    shape = tuple(int(d) for d in trunk.output.shape[1:])
    everything = np.arange(len(cache.y))
    jobs = [(f"e{e}", np.float16, e) for e in range(config.epochs)] + [("clean", np.float32, None)]
    out = {"epochs": [], "clean": None}
    for name, dtype, epoch in jobs:
        path = cache_dir / f"{name}.npy"
        if not path.is_file():
            t0 = time.time()
            plan = BatchPlan(
                cache, everything, 2 * config.batch_size, config.preprocessing,
                augment=epoch is not None, seed=config.seed, fold=TRUNK_FOLD, epoch=epoch or 0,
            )  # fmt: skip
            tmp = cache_dir / f"{name}.part.npy"
            rows = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(len(everything), *shape))
            # Augmenting (PIL, threads) overlaps the trunk's forward passes.
            with ThreadPoolExecutor(max_workers=max(1, config.workers)) as pool:
                pending = [pool.submit(plan.images, b) for b in range(min(PREFETCH, len(plan)))]
                for b in range(len(plan)):
                    x = pending[b].result()
                    pending[b] = None
                    if b + PREFETCH < len(plan):
                        pending.append(pool.submit(plan.images, b + PREFETCH))
                    rows[plan.batch_indices(b)] = np.asarray(trunk.predict_on_batch(x)).astype(dtype)
            rows.flush()
            del rows
            os.replace(tmp, path)
            progress(
                f"[trunk] {name}: {len(everything)} images -> {shape} {np.dtype(dtype).name} ({time.time() - t0:.0f}s)"
            )
        arr = np.load(path, mmap_mode="r")
        if epoch is None:
            out["clean"] = arr
        else:
            out["epochs"].append(arr)
    return out


def fit(config, cache, train_idx, fit: int, fit_dir: Path, progress, stop=None, trunk=None):
    """Train (or resume, or load if complete) fit number ``fit`` on
    ``train_idx``; returns the trained model. ``stop(fit, epoch)`` returning
    True ends the run after that epoch's checkpoint (tests, time limits).
    With ``trunk`` (:func:`trunk_cache`) only the top is run and trained, on
    the cached trunk outputs; the checkpoints then hold the top's weights."""
    fit_dir = Path(fit_dir)
    fit_dir.mkdir(parents=True, exist_ok=True)
    model = make_model(config, fit)
    if (fit_dir / DONE).is_file():
        model.load_weights(fit_dir / WEIGHTS)
        return model
    trained = split_at_trainable(model)[1] if trunk is not None else model
    steps = len(BatchPlan(cache, train_idx, config.batch_size, config.preprocessing))
    compile_model(trained, config, steps)
    start, history = load_checkpoint(fit_dir, trained)
    if start:
        progress(f"[{fit_dir.name}] resuming after epoch {start}/{config.epochs}")
    for epoch in range(start, config.epochs):
        t0 = time.time()
        _reseed(trained, epoch_seed(config.seed, fit, epoch))
        if trunk is not None:
            plan = TrunkPlan(
                trunk["epochs"][epoch], cache.y, train_idx, config.batch_size,
                seed=config.seed, fold=fit, epoch=epoch,
            )  # fmt: skip
        else:
            plan = BatchPlan(
                cache, train_idx, config.batch_size, config.preprocessing,
                augment=True, seed=config.seed, fold=fit, epoch=epoch,
            )  # fmt: skip
        h = trained.fit(keras_dataset(plan, config.workers), epochs=1, verbose=0)
        loss = float(h.history["loss"][-1])
        seconds = time.time() - t0
        history.append({"epoch": epoch + 1, "loss": loss, "seconds": round(seconds, 1)})
        save_checkpoint(fit_dir, trained, epoch + 1, history)
        progress(
            f"[{fit_dir.name}] epoch {epoch + 1}/{config.epochs} loss {loss:.4f} "
            f"({seconds:.0f}s, {len(train_idx) / seconds:.1f} img/s)"
        )
        if stop is not None and stop(fit, epoch + 1):
            raise StopRun(f"stopped after {fit_dir.name} epoch {epoch + 1}")
    model.save_weights(fit_dir / WEIGHTS)
    write_json_atomic(fit_dir / DONE, {"epochs": config.epochs, "history": history})
    return model


class StopRun(Exception):
    """Raised by :func:`fit` when asked to stop (the checkpoint is on disk)."""


def ood_features(config, cache, trunk=None) -> np.ndarray:
    """The OOD detector's features of every clean image (N, C) float32: the
    frozen trunk's pooled output (``finetune_model.ood_features_output``).
    The trunk is the same function in every fit, so one matrix serves every
    fold: from the trunk cache's clean rows, or else through a fresh model's
    trunk (its frozen weights are the backbone file's)."""
    if trunk is not None:
        return pooled_trunk_output(trunk["clean"])
    extractor = ood_feature_model(make_model(config, 0))
    plan = BatchPlan(cache, np.arange(len(cache.y)), config.batch_size, config.preprocessing)
    return np.concatenate([np.asarray(extractor.predict_on_batch(plan[b]), dtype=np.float32) for b in range(len(plan))])


def predict(model, cache, indices, config, hflip_tta: bool = False, trunk=None) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features (N, C) float32 and logits (N,) float64 of the clean
    ``indices``; with ``hflip_tta`` both are averaged with the mirrored image's.
    With ``trunk`` (:func:`trunk_cache`), from its clean float32 outputs
    through the top only (the same numbers up to float round-off)."""
    if trunk is not None and not hflip_tta:
        top = top_prediction_model(model)
        indices = np.asarray(indices, dtype=np.int64)
        feats, logits = [], []
        for s in range(0, len(indices), config.batch_size):
            out = top.predict_on_batch(np.asarray(trunk["clean"][indices[s : s + config.batch_size]]))
            feats.append(np.asarray(out["features"], dtype=np.float32))
            logits.append(np.asarray(out["logit"], dtype=np.float64).ravel())
        return np.concatenate(feats), np.concatenate(logits)
    pm = prediction_model(model)
    outs = []
    for hflip in (False, True) if hflip_tta else (False,):
        plan = BatchPlan(cache, indices, config.batch_size, config.preprocessing, hflip=hflip)
        feats, logits = [], []
        for b in range(len(plan)):
            out = pm.predict_on_batch(plan[b])
            feats.append(np.asarray(out["features"], dtype=np.float32))
            logits.append(np.asarray(out["logit"], dtype=np.float64).ravel())
        outs.append((np.concatenate(feats), np.concatenate(logits)))
    features = np.mean([o[0] for o in outs], axis=0).astype(np.float32)
    logit = np.mean([o[1] for o in outs], axis=0)
    return features, logit
