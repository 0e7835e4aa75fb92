"""The stages of a fine-tune run (``training.finetune.run``) that differ from
the frozen-backbone run's (``training.stages``).

With a fine-tuned backbone every fold model has its own feature space, so:

- :func:`select_ood`: the OOD detector measures the frozen trunk's pooled
  output (``finetune_model.ood_features_output``), the same function in
  every fold; fold ``f``'s detector is fitted on the other folds' images
  and tested on fold ``f``;
- :func:`fold_extractor`: the robustness report's ``extract``: each image's
  features come from the model of the fold that held it out (with its OOD
  features beside them), and
  :func:`fold_heads` are those models' ``logit`` layers as ``LinearHead``
  (so ``training.robustness.evaluate`` runs unchanged);
- :func:`export`: the final model with temperature, OOD detector and pooled
  features as outputs, its check and its ONNX file.

Calibration, threshold, band, bootstrap and the reports are
``training.stages`` / ``training.report`` unchanged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .head import LinearHead
from .ood import MahalanobisOOD, fit_ood
from .stages import OODSelection


@dataclass
class FoldOutputs:
    """What the CV leaves: per fold, features and logits of every image from that fold's model."""

    features: list[np.ndarray]  # features[f]: (N, C) from fold f's model
    logits: list[np.ndarray]  # logits[f]: (N,)
    heads: list[LinearHead]  # fold models' logit layers
    fold_info: list[dict]

    def oof(self, folds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Out-of-fold logits (N,) and features (N, C)."""
        logit = np.empty(len(folds))
        feats = np.empty((len(folds), self.features[0].shape[1]), dtype=np.float32)
        for f in range(len(self.features)):
            m = folds == f
            logit[m] = self.logits[f][m]
            feats[m] = self.features[f][m]
        return logit, feats


def head_of(model) -> LinearHead:
    kernel, bias = model.get_layer("logit").get_weights()
    return LinearHead(kernel=kernel.ravel().astype(np.float64), bias=float(bias[0]), c=float("nan"))


def select_ood(config, folds: np.ndarray, ood_features: np.ndarray, progress) -> OODSelection:
    """As ``stages.select_ood``, on the frozen trunk's pooled outputs
    ``ood_features`` (N, C) of the clean images."""
    ood_cv, fold_oods = {}, {}
    x = np.asarray(ood_features, dtype=np.float64)
    for k in config.ood_components:
        rates_val, rates_tr = [], []
        fold_oods[k] = []
        for f in range(config.folds):
            tr, va = folds != f, folds == f
            m = fit_ood(x[tr], k, config.ood_shrinkage, config.ood_quantile)
            fold_oods[k].append(m)
            rates_val.append(float(m.is_ood(x[va]).mean()))
            rates_tr.append(float(m.is_ood(x[tr]).mean()))
        ood_cv[k] = {
            "heldout_ood_rate_mean": float(np.mean(rates_val)),
            "heldout_ood_rate_per_fold": rates_val,
            "train_ood_rate_mean": float(np.mean(rates_tr)),
        }
        progress(f"[ood] k={k}: held-out OOD rate {np.mean(rates_val):.4f} (train {np.mean(rates_tr):.4f})")
    ood_k = choose_components(ood_cv, 1 - config.ood_quantile, len(x) / config.folds)
    progress(f"[ood] chosen components k={ood_k}")
    return OODSelection(components=ood_k, fold_models=fold_oods[ood_k], cv=ood_cv)


OOD_SELECTION_RULE = (
    "the most components whose held-out-fold OOD rate is within one standard error of the nominal "
    "1 - quantile (else the k closest to it)"
)


def choose_components(ood_cv: dict, nominal: float, n_heldout: float) -> int:
    """:data:`OOD_SELECTION_RULE`. More components measure more directions of
    the trunk's features, so at the same false-alarm rate they notice more
    kinds of departure; a held-out rate above the nominal one is the sign
    that they began to fit the training images (the held-out rates of a
    few hundredths of a percent apart are sampling noise: one standard error
    of a 1% rate on 1,918 images is 0.23 points)."""
    se = (nominal * (1 - nominal) / max(n_heldout, 1)) ** 0.5
    within = [k for k, cv in ood_cv.items() if abs(cv["heldout_ood_rate_mean"] - nominal) <= se]
    if within:
        return max(within)
    return min(ood_cv, key=lambda k: (abs(ood_cv[k]["heldout_ood_rate_mean"] - nominal), k))


def fold_extractor(config, cache, folds, load_fold_model, progress):
    """``extract(indices, make_input, label)`` for ``training.robustness``:
    ``(features, ood_features)`` of ``make_input(image, i)`` from the model of
    image ``i``'s fold."""
    import keras

    from .finetune_model import FEATURES_LAYER, ood_features_output

    models = {}

    def extract(indices, make_input, label):
        t0 = time.time()
        indices = np.asarray(indices)
        out = ood = None
        for f in np.unique(folds[indices]):
            if f not in models:
                m = load_fold_model(int(f))
                features = m.get_layer(FEATURES_LAYER).output
                models[f] = keras.Model(m.input, {"features": features, "ood": ood_features_output(m)})
            sel = np.flatnonzero(folds[indices] == f)
            for s in range(0, len(sel), config.batch_size):
                rows = sel[s : s + config.batch_size]
                x = np.stack([make_input(cache.pil(int(indices[r])), int(indices[r])) for r in rows])
                pred = models[f].predict_on_batch(x.astype(np.float32))
                feats, oods = np.asarray(pred["features"]), np.asarray(pred["ood"])
                if out is None:
                    out = np.empty((len(indices), feats.shape[1]), dtype=np.float32)
                    ood = np.empty((len(indices), oods.shape[1]), dtype=np.float32)
                out[rows], ood[rows] = feats, oods
        progress(f"  {label}: {len(indices)} images in {time.time() - t0:.0f}s")
        return out, ood

    return extract


@dataclass
class FinalModel:
    head: LinearHead
    ood: MahalanobisOOD
    path: Path
    n_rows: int


def export(config, model, features_all, ood_features, cal, ood_components, out, progress) -> FinalModel:
    """The final OOD detector on all images' ``ood_features``, ``model.keras``
    with ``probability``, ``ood_distance`` and ``features`` outputs."""
    from .finetune_model import build_export_model

    final_ood = fit_ood(ood_features, ood_components, config.ood_shrinkage, config.ood_quantile)
    exported = build_export_model(model, cal.temperature, final_ood, config.name)
    path = Path(out) / "model.keras"
    exported.save(path)
    progress(f"[final] saved {path}")
    return FinalModel(head=head_of(model), ood=final_ood, path=path, n_rows=len(features_all))


def check_export(config, cache, final: FinalModel, features_all, ood_features, temperature, progress):
    """The reloaded Keras file against the fold-free NumPy path on 32 images;
    returns ``(export_check, model inputs of those images)``."""
    import keras

    from . import calibration
    from .batches import clean_input
    from .features import stratified_subset

    reloaded = keras.models.load_model(final.path, compile=False)
    idx = stratified_subset(cache.y, 32, config.seed + 2)
    xs = np.stack([clean_input(cache.images[i], config.preprocessing) for i in idx]).astype(np.float32)
    pred = reloaded.predict(xs, verbose=0)
    want_p = calibration.apply_temperature(final.head.logit(features_all[idx]), temperature)
    want_d = final.ood.distance(ood_features[idx])
    check = {
        "n_images": int(len(idx)),
        "max_abs_probability_diff": float(np.max(np.abs(pred["probability"].ravel() - want_p))),
        "max_rel_distance_diff": float(np.max(np.abs(pred["ood_distance"].ravel() - want_d) / np.maximum(want_d, 1))),
        "max_abs_features_diff": float(np.max(np.abs(pred["features"] - features_all[idx]))),
    }
    progress(f"[final] export check {check}")
    return check, xs
