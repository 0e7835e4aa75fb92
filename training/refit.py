"""``python -m training refit --model DIR --data DIR``: rerun, on an existing
fine-tuned model folder, the two post-training stages whose rules changed
after it was trained, without training it again: the out-of-distribution
detector and the uncertain band.

**The uncertain band** now also holds the referral specificity (benign
lesions below the band, over all benign lesions) at
``FinetuneConfig.band_referral_specificity`` within a smaller
``band_max_share`` (``calibration.choose_band``): "uncertain" sends the
patient on, so the band sets how many benign lesions are referred. It is
chosen on the folder's out-of-fold probabilities (``oof_predictions.csv``),
as ``stages.calibrate`` chooses it in a run.

**The OOD detector**: fine-tune runs before this measured the fine-tuned
pooled features, in which a photo of a flower, a blank grey image or a
screenshot lay closer to the training images' mean than most training
images did (docs/training.md, "Out-of-distribution detector"). The detector
now measures the frozen trunk's pooled output
(``finetune_model.ood_features_output``). The trunk's weights are the
backbone file's in every fold and in the final model, so the folder's own
``oof_predictions.csv`` (files, labels, folds) and the dataset are all that
is needed to redo the run's OOD stage exactly as ``finetune.run`` does it:

1. the clean images' trunk features (the run's cache framing: the whole
   image resized to the input size, then the preprocessing pipeline);
2. ``finetune_stages.select_ood`` (per-fold detectors, k chosen by the
   held-out OOD rate) and the final detector on all images;
3. the robustness report's OOD column again, with the same images and
   shifts (``training.robustness``; the trunk features of a shifted image do
   not depend on the fold, so the fold models are not needed);
4. ``model.keras`` rebuilt with the new ``ood_distance`` output (the other
   outputs untouched, checked), its ONNX export, and the reports.

Nothing else changes: the probabilities, temperature, threshold and every
other figure are the run's.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from . import calibration, report, robustness, transfer_meta
from .features import stratified_subset
from .finetune_model import OOD_FEATURES_LAYER, OOD_FEATURES_NOTE
from .onnx_export import ONNX_FILE, export_onnx, with_onnx_keys
from .ood import distance_layers
from .preprocessing import SQUARE_RESIZE_V1, load_for_model, to_model_input

PROG = "python -m training refit"
BATCH = 64


class Config(argparse.Namespace):
    """The parts of ``FinetuneConfig`` that ``select_ood`` reads."""


def _read_oof(model_dir: Path):
    with open(model_dir / "oof_predictions.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    cols = {k: [r[k] for r in rows] for k in rows[0]}
    return {
        "files": cols["file"],
        "y": np.array([report.CLASS_NAMES.index(v) for v in cols["label"]]),
        "folds": np.array([int(v) - 1 for v in cols["fold"]]),
        "groups": np.array([int(v) for v in cols["group"]]),
        "logit": np.array([float(v) for v in cols["logit"]]),
        "prob_raw": np.array([float(v) for v in cols["probability_uncalibrated"]]),
        "prob": np.array([float(v) for v in cols["probability"]]),
    }


def _trunk_model(model, first_trainable: str):
    """``model``'s input -> the pooled input of its first fine-tuned layer."""
    import keras
    from keras import layers

    first = next(layer for layer in model.layers if layer.name.startswith(first_trainable))
    pooled = layers.GlobalAveragePooling2D(name=OOD_FEATURES_LAYER)(first.input)
    return keras.Model(model.input, pooled), pooled


def _features(extract, arrays) -> np.ndarray:
    out = []
    for s in range(0, len(arrays), BATCH):
        out.append(np.asarray(extract.predict_on_batch(np.stack(arrays[s : s + BATCH]).astype(np.float32))))
    return np.concatenate(out).astype(np.float32)


def refit_band(oof: dict, meta: dict, cv_report: dict, progress) -> dict:
    """The band by the current rule on the out-of-fold probabilities; updates ``cv_report``."""
    from .finetune import FinetuneConfig

    d = FinetuneConfig(data=Path("."), out=Path("."), run_dir=Path("."))
    y, prob, folds = oof["y"], oof["prob"], oof["folds"]
    band = calibration.choose_band(
        y, prob, float(meta["threshold"]), d.band_sensitivity, d.band_specificity, d.band_max_share,
        min_referral_specificity=d.band_referral_specificity,
    )  # fmt: skip
    nested = calibration.nested_band_rates(
        y, prob, folds, d.min_sensitivity, target_sensitivity=d.band_sensitivity,
        target_specificity=d.band_specificity, max_share=d.band_max_share,
        min_referral_specificity=d.band_referral_specificity,
    )  # fmt: skip
    band = calibration.with_nested(band, nested)
    cv_report["uncertain_band"] = band
    cv_report["uncertain_band_per_fold"] = [
        calibration.band_rates(y[folds == f], prob[folds == f], band["lo"], band["hi"]) for f in np.unique(folds)
    ]
    progress(
        f"[band] [{band['lo']:.4f}, {band['hi']:.4f}) share {band['share_in_band']:.3f}; referral sensitivity "
        f"{band['referral_sensitivity']:.3f}, specificity {band['referral_specificity']:.3f}; nested "
        f"{band['nested']['referral_sensitivity']:.3f} / {band['nested']['referral_specificity']:.3f}"
    )
    return band


def refit(
    model_dir: Path,
    data: Path,
    progress=print,
    workers: int = 2,
    baseline_report: Path | None = None,
    features_cache: Path | None = None,
) -> dict:
    """``features_cache``: an .npz of the trunk features (clean and shifted),
    written on the first run and reused by the next (the trunk is frozen, so
    they do not change; it is ~85% of the run's time)."""
    import keras

    t0 = time.time()
    meta = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    finetune = meta.get("training", {}).get("finetune")
    if not finetune or finetune.get("unfreeze_blocks", 0) < 1:
        raise SystemExit(f"{model_dir} is not a fine-tuned model folder (its OOD detector measures frozen features)")
    cv_report = json.loads((model_dir / "cv_report.json").read_text(encoding="utf-8"))
    rob = json.loads((model_dir / "robustness.json").read_text(encoding="utf-8"))
    oof = _read_oof(model_dir)
    size, pipeline = int(meta["input_size"]), meta["preprocessing"]
    missing = [f for f in oof["files"] if not (data / f).is_file()]
    if missing:
        raise SystemExit(
            f"{len(missing)} of the model's {len(oof['files'])} training images are not in {data} (first: {missing[0]})"
        )

    model = keras.saving.load_model(model_dir / meta["file"], compile=False)
    extract, _ = _trunk_model(model, finetune["trainable_blocks"][0])

    def framed(name):  # the run's image cache: the whole image resized to the input size
        return load_for_model(data / name, size, SQUARE_RESIZE_V1)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        cache = list(pool.map(framed, oof["files"]))
    progress(f"[data] {len(cache)} images decoded in {time.time() - t0:.0f}s")
    saved = dict(np.load(features_cache)) if features_cache and Path(features_cache).is_file() else {}
    if saved and len(saved.get("clean", ())) != len(cache):
        raise SystemExit(f"{features_cache} holds features of another image list")
    if "clean" not in saved:
        saved["clean"] = _features(extract, [to_model_input(Image.fromarray(a), size, pipeline) for a in cache])
    clean = saved["clean"]
    progress(f"[ood] trunk features {clean.shape} in {time.time() - t0:.0f}s")

    config = Config(folds=int(cv_report["folds"]), ood_components=(32, 64, 128), ood_shrinkage=0.05, ood_quantile=0.99)
    from .finetune_stages import OOD_SELECTION_RULE, select_ood
    from .ood import fit_ood

    ood = select_ood(config, oof["folds"], clean, progress)
    final_ood = fit_ood(clean, ood.components, config.ood_shrinkage, config.ood_quantile)

    # The robustness report's OOD column, on the run's images and shifts.
    idx = stratified_subset(oof["y"], rob["n_images"], int(cv_report["seed"]) + 1)
    for name, (_desc, fn) in robustness._shift_functions().items():
        if name not in saved:
            saved[name] = _features(
                extract, [to_model_input(fn(Image.fromarray(cache[i])), size, pipeline) for i in idx]
            )
        shifted = saved[name]
        flagged = np.empty(len(idx), dtype=bool)
        for f in np.unique(oof["folds"][idx]):
            m = oof["folds"][idx] == f
            flagged[m] = ood.fold_models[f].is_ood(shifted[m])
        rob["shifts"][name]["ood_rate"] = float(flagged.mean())
        rob["ood_note"] = f"the OOD rates are the refit detector's (`{PROG}`), on the same images and shifts"
        progress(f"[robustness] {name}: OOD rate {flagged.mean():.4f}")
    if features_cache:
        np.savez(features_cache, **saved)
    clean_flag = np.empty(len(idx), dtype=bool)
    for f in np.unique(oof["folds"][idx]):
        m = oof["folds"][idx] == f
        clean_flag[m] = ood.fold_models[f].is_ood(clean[idx][m])
    rob["shifts"]["clean"]["ood_rate"] = float(clean_flag.mean())

    # model.keras with the new ood_distance; the other outputs as they were.
    xs = np.stack([to_model_input(Image.fromarray(cache[i]), size, pipeline) for i in idx[:32]]).astype(np.float32)
    old = {k: np.asarray(v) for k, v in model.predict(xs, verbose=0).items()}
    _, pooled = _trunk_model(model, finetune["trainable_blocks"][0])
    outputs = {
        "probability": model.get_layer("probability").output,
        "ood_distance": distance_layers(pooled, final_ood.projection, final_ood.bias),
        "features": model.get_layer("features").output,
    }
    rebuilt = keras.Model(model.input, outputs, name=model.name)
    path = model_dir / meta["file"]
    tmp = path.with_name(path.stem + ".part.keras")
    rebuilt.save(tmp)
    os.replace(tmp, path)
    reloaded = keras.saving.load_model(path, compile=False)
    new = reloaded.predict(xs, verbose=0)
    want_d = final_ood.distance(clean[idx[:32]])
    check = {
        "n_images": 32,
        "max_abs_probability_diff": float(np.max(np.abs(np.asarray(new["probability"]) - old["probability"]))),
        "max_abs_features_diff": float(np.max(np.abs(np.asarray(new["features"]) - old["features"]))),
        "max_rel_distance_diff": float(
            np.max(np.abs(np.asarray(new["ood_distance"]).ravel() - want_d) / np.maximum(want_d, 1))
        ),
    }
    progress(f"[final] export check {check}")
    if check["max_abs_probability_diff"] > 1e-5 or check["max_abs_features_diff"] > 1e-4:
        raise SystemExit(f"the rebuilt model's other outputs moved: {check}")
    exported = export_onnx(path, model_dir / ONNX_FILE, gradcam_layer=meta.get("gradcam_layer"), check_images=xs)
    progress(f"[final] wrote {model_dir / ONNX_FILE}; ONNX Runtime vs TensorFlow {exported['check']}")

    final = argparse.Namespace(ood=final_ood)
    ood_report = transfer_meta.ood_summary(final, ood, clean)
    ood_report["features"] = OOD_FEATURES_NOTE
    ood_report["selection_rule"] = OOD_SELECTION_RULE
    ood_report["refit"] = f"{PROG} (the finetune command's OOD stage, rerun on this folder's images and folds)"
    cv_report["ood"] = ood_report

    band = refit_band(oof, meta, cv_report, progress)
    meta["uncertain_band"] = [round(band["lo"], 6), round(band["hi"], 6)]
    # The shifted images' probabilities came from the fold models, which a
    # model folder does not keep: the "in band" column stays at the run's band.
    rob["band_note"] = (
        f"'in band' is measured at the band of the training run, {rob['band'][0]:.4f}-{rob['band'][1]:.4f}; "
        f"the shipped band [{band['lo']:.4f}, {band['hi']:.4f}) was set later by `{PROG}` (the fold models that "
        "scored the shifted images are not kept, so the column was not recomputed)"
    )
    cv_report["export_check"] = {**cv_report.get("export_check", {}), "ood_refit": check}
    meta["ood"].update(
        {
            "method": final_ood.summary()["method"],
            "components": final_ood.components,
            "threshold": round(float(final_ood.threshold), 6),
            "train_pass_rate": round(ood_report["train_pass_rate"], 6),
            "heldout_pass_rate": round(1 - ood_report["heldout_ood_rate"], 6),
            "features": OOD_FEATURES_NOTE,
        }
    )
    report.write_all(
        model_dir, meta=with_onnx_keys(meta, exported), cv_report=cv_report, files=oof["files"], y=oof["y"],
        folds=oof["folds"], groups=oof["groups"], oof_logit=oof["logit"], prob=oof["prob"], prob_raw=oof["prob_raw"],
        robustness=rob, baseline_report=baseline_report, model_size_bytes=path.stat().st_size,
    )  # fmt: skip
    robustness.write(model_dir, rob, argparse.Namespace(**cv_report))
    progress(f"[done] {model_dir} in {time.time() - t0:.0f}s")
    return meta


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="a fine-tuned model folder (rewritten in place)")
    parser.add_argument("--data", type=Path, required=True, help="the dataset folder it was trained on")
    parser.add_argument("--baseline-report", type=Path, default=Path("models/baseline-cnn-v1/cv_report.json"))
    parser.add_argument("--workers", type=int, default=2, help="decoding threads (default %(default)s)")
    parser.add_argument("--features-cache", type=Path, help="an .npz to keep the trunk features in between runs")
    args = parser.parse_args(argv)
    progress = lambda m: print(m, flush=True)  # noqa: E731
    refit(
        args.model, args.data, progress=progress, workers=args.workers,
        baseline_report=args.baseline_report, features_cache=args.features_cache,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
