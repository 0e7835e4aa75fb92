"""Fine-tune an ImageNet backbone's upper blocks inside grouped K-fold CV.

``python -m training finetune --data DIR --out MODEL_DIR --run-dir RUN_DIR
[--backbone mobilenet_v2] [--unfreeze-blocks N] [--image-size 160] [--epochs E]
[--folds 5] [--seed 0] [--resume]`` (docs/training.md).

Order of the run; everything that takes long leaves files in ``RUN_DIR``
so that ``--resume`` continues where a stopped run was:

1. decode, hash and frame every image once (``training.batches``; cached in
   ``RUN_DIR/data``), group near-duplicates, assign stratified grouped folds;
2. per fold ``f``: fine-tune on the other folds with per-epoch checkpoints
   (``training.finetune_loop``; ``RUN_DIR/fold-<f>``), then predict pooled
   features and logits of every clean image (``predictions.npz``);
3. the OOD detector per fold in that fold model's feature space, then
   temperature, threshold (sensitivity >= 0.90), uncertain band and the CV
   figures from the out-of-fold logits (``training.stages.calibrate``);
4. the robustness report, each image scored by the model that did not train on it;
5. the final fit on all images (``RUN_DIR/final``), its OOD detector, the
   exported ``model.keras`` (outputs ``probability``, ``ood_distance``,
   ``features``), ``model.onnx`` (plus ``gradcam``), model.json, the reports
   and the model card (``training.report``).

``RUN_DIR/progress.json`` says where the run is. No Django here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from . import backbone, calibration, finetune_meta, model_card, report, robustness, stages, transfer_meta
from . import finetune_loop as loop
from . import finetune_stages as fst
from .batches import PilImages, prepare_cache
from .cv import assign_folds
from .data import DEFAULT_MAX_DISTANCE, duplicate_groups, group_summary
from .features import RawImages, stratified_subset
from .finetune_model import BACKBONES, MOBILENET_V2, MODEL_NAMES, OOD_FEATURES_NOTE, backbone_info
from .metrics import binary_metrics
from .onnx_export import ONNX_FILE, export_onnx, with_onnx_keys
from .preprocessing import PIPELINES, SQUARE_SOG_V2
from .transfer import Progress, default_command

# Imported here, not lazily, so that a run started from one checkout never
# mixes in modules edited while it trains (a full run takes hours).
_EAGER = (backbone, calibration, model_card)
PROG = "python -m training finetune"
# Settings a resumed run must share with the run it resumes.
RUN_KEYS = (
    "data", "image_size", "backbone", "unfreeze_blocks", "epochs", "folds", "seed", "batch_size",
    "learning_rate", "weight_decay", "dropout", "preprocessing", "max_images", "tta", "trunk_cache",
)  # fmt: skip


@dataclass
class FinetuneConfig:
    data: Path
    out: Path
    run_dir: Path
    backbone: str = MOBILENET_V2
    unfreeze_blocks: int = 4
    image_size: int = 160
    epochs: int = 6
    folds: int = 5
    seed: int = 0
    batch_size: int = 32
    learning_rate: float = 3e-4
    weight_decay: float = 0.01
    dropout: float = 0.2
    preprocessing: str = SQUARE_SOG_V2
    # Horizontal-flip test-time augmentation of every prediction. Not on the
    # command line yet: the exported model does not include the flip, so it
    # would not be the model the figures describe.
    tta: bool = False
    workers: int = 2
    # Compute the frozen trunk once per image and epoch copy, train the top
    # only (finetune_loop.trunk_cache): about 3x less work per run on a CPU.
    trunk_cache: bool = True
    robustness_subset: int = 2000
    min_sensitivity: float = 0.90
    band_sensitivity: float = 0.95
    band_specificity: float = 0.95
    band_max_share: float = 0.12
    # "Uncertain" is a referral: at most 15% of benign lesions sent on (issue #13's clinical target).
    band_referral_specificity: float = 0.85
    ood_components: tuple = (32, 64, 128)  # the trunk output has 160 channels (MobileNetV2, 4 blocks unfrozen)
    ood_quantile: float = 0.99
    ood_shrinkage: float = 0.05
    bootstrap: int = 1000
    name: str = ""  # default: finetune_model.MODEL_NAMES[backbone]
    version: str = "3"
    weights_path: Path | None = None
    baseline_report: Path | None = None
    max_images: int = 0
    stop_after: str = ""  # development: "FIT:EPOCH" ends the run after that checkpoint
    resume: bool = False
    command: str = ""

    def run_settings(self) -> dict:
        d = asdict(self)
        return {k: (str(d[k]) if isinstance(d[k], Path) else d[k]) for k in RUN_KEYS}


class RunProgress(Progress):
    """Progress lines, and ``RUN_DIR/progress.json`` rewritten with each."""

    def __init__(self, run_dir: Path, config):
        super().__init__()
        self.run_dir, self.config = run_dir, config

    def __call__(self, msg: str) -> None:
        super().__call__(msg)
        loop.write_json_atomic(self.run_dir / "progress.json", run_status(self.run_dir, self.config, msg))


def run_status(run_dir: Path, config, last: str = "") -> dict:
    """Epochs done per fit (folds, then the final fit) and a rough time left."""
    fits = {}
    seconds = []
    for name in [f"fold-{f}" for f in range(config.folds)] + ["final"]:
        d = Path(run_dir) / name
        done = 0
        for fname in (loop.DONE, loop.CHECKPOINT):
            if (d / fname).is_file():
                hist = json.loads((d / fname).read_text(encoding="utf-8"))["history"]
                done = len(hist)
                seconds += [h["seconds"] for h in hist]
                break
        fits[name] = done
    left = (config.folds + 1) * config.epochs - sum(fits.values())
    return {
        "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "last": last,
        "epochs_per_fit": config.epochs,
        "epochs_done": fits,
        "mean_epoch_s": round(float(np.mean(seconds)), 1) if seconds else None,
        "training_left_s_estimate": round(left * float(np.mean(seconds))) if seconds else None,
    }


def check_run_dir(config) -> None:
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "run.json"
    settings = config.run_settings()
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if not config.resume:
            raise SystemExit(f"{run_dir} holds a run already: pass --resume to continue it, or another --run-dir")
        diff = {k: (saved.get(k), v) for k, v in settings.items() if saved.get(k) != v}
        if diff:
            raise SystemExit(f"--resume with other settings than the run in {run_dir}: {diff}")
    else:
        loop.write_json_atomic(path, settings)


def _stopper(config):
    if not config.stop_after:
        return None
    fit_s, epoch_s = config.stop_after.split(":")
    return lambda fit, epoch: fit == int(fit_s) and epoch == int(epoch_s)


def cross_validate(config, cache, data, progress, trunk=None) -> fst.FoldOutputs:
    run_dir = Path(config.run_dir)
    feats, logits, heads, info = [], [], [], []
    everything = np.arange(len(cache.y))
    for f in range(config.folds):
        tr = np.flatnonzero(data.folds != f)
        fit_dir = run_dir / f"fold-{f}"
        t0 = time.time()
        model = loop.fit(config, cache, tr, f, fit_dir, progress, _stopper(config), trunk)
        pred_path = fit_dir / "predictions.npz"
        if not pred_path.is_file():
            features, logit = loop.predict(model, cache, everything, config, config.tta, trunk)
            tmp = fit_dir / "predictions.part.npz"
            np.savez(tmp, features=features, logit=logit)
            os.replace(tmp, pred_path)
        with np.load(pred_path) as p:
            feats.append(p["features"])
            logits.append(p["logit"])
        heads.append(fst.head_of(model))
        va = data.folds == f
        auc = binary_metrics(cache.y[va], 1 / (1 + np.exp(-logits[-1][va])), 0.5)["roc_auc"]
        done = json.loads((fit_dir / loop.DONE).read_text(encoding="utf-8"))
        info.append(
            {"fold": f, "n_train": int(len(tr)), "n_val": int(va.sum()), "history": done["history"],
             "seconds": round(sum(h["seconds"] for h in done["history"]), 1), "val_roc_auc": auc}
        )  # fmt: skip
        progress(f"[cv] fold {f + 1}/{config.folds}: val ROC-AUC {auc:.4f} ({time.time() - t0:.0f}s this session)")
    return fst.FoldOutputs(features=feats, logits=logits, heads=heads, fold_info=info)


def load_fold_model(config, fit: int):
    model = loop.make_model(config, fit)
    name = "final" if fit == config.folds else f"fold-{fit}"
    model.load_weights(Path(config.run_dir) / name / loop.WEIGHTS)
    return model


def run(config: FinetuneConfig) -> dict:
    import keras

    config.weights_path = Path(config.weights_path or backbone_info(config.backbone)["weights"])
    config.name = config.name or MODEL_NAMES[config.backbone]
    check_run_dir(config)
    run_dir, out = Path(config.run_dir), Path(config.out)
    progress = RunProgress(run_dir, config)
    progress(
        f"finetune: data={config.data} run_dir={run_dir} backbone={config.backbone} size={config.image_size} "
        f"unfreeze={config.unfreeze_blocks} epochs={config.epochs} folds={config.folds} seed={config.seed} "
        f"backend={keras.backend.backend()}"
    )
    cache = prepare_cache(
        config.data, config.image_size, run_dir / "data", config.workers, progress, config.max_images, config.seed
    )
    groups = duplicate_groups(cache.hashes, DEFAULT_MAX_DISTANCE)
    folds = assign_folds(cache.y, groups, config.folds, config.seed)
    raw = RawImages(files=cache.files, images=PilImages(cache), y=cache.y, hashes=cache.hashes)
    data = stages.Data(raw=raw, groups=groups, folds=folds, duplicates=group_summary(groups))
    progress(f"[data] {len(cache.y)} images; {data.duplicates['n_duplicate_groups']} duplicate groups")

    trunk = loop.trunk_cache(config, cache, run_dir / "trunk", progress)
    outputs = cross_validate(config, cache, data, progress, trunk)
    oof_logit, oof_features = outputs.oof(folds)
    cv = stages.OuterCV(oof_logit=oof_logit, heads=outputs.heads, fold_info=outputs.fold_info)
    ood_features = loop.ood_features(config, cache, trunk)
    ood = fst.select_ood(config, folds, ood_features, progress)
    cal = stages.calibrate(config, data, cv, progress)
    out.mkdir(parents=True, exist_ok=True)
    rob = None
    if config.robustness_subset:
        idx = stratified_subset(cache.y, config.robustness_subset, config.seed + 1)
        progress(f"[robustness] {len(idx)} images x {len(robustness.SHIFTS)} shifts")
        extract = fst.fold_extractor(config, cache, folds, lambda f: load_fold_model(config, f), progress)
        rob = robustness.evaluate(
            raw.images, cache.y, folds, idx, (oof_features, ood_features), outputs.heads, ood.fold_models,
            cal.temperature, cal.threshold, cal.band, extract, config.image_size, config.preprocessing, progress,
        )  # fmt: skip
        robustness.write(out, rob, config)

    everything = np.arange(len(cache.y))
    model = loop.fit(config, cache, everything, config.folds, run_dir / "final", progress, _stopper(config), trunk)
    features_all, _ = loop.predict(model, cache, everything, config, config.tta, trunk)
    final = fst.export(config, model, features_all, ood_features, cal, ood.components, out, progress)
    export_check, check_images = fst.check_export(
        config, cache, final, features_all, ood_features, cal.temperature, progress
    )
    info = backbone_info(config.backbone)
    exported = export_onnx(final.path, out / ONNX_FILE, gradcam_layer=info["gradcam_layer"], check_images=check_images)
    progress(f"[final] wrote {out / ONNX_FILE}; ONNX Runtime vs TensorFlow {exported['check']}")

    ood_report = transfer_meta.ood_summary(final, ood, ood_features)
    ood_report["features"] = OOD_FEATURES_NOTE
    ood_report["selection_rule"] = fst.OOD_SELECTION_RULE
    features_like = argparse.Namespace(preprocessing=config.preprocessing)
    training = finetune_meta.training_record(config, data, outputs, progress.elapsed)
    cv_report = transfer_meta.cv_report(
        config, data, argparse.Namespace(report={}), features_like, cv, cal, ood_report, export_check
    )
    cv_report["finetune"] = training["finetune"]
    meta = transfer_meta.model_json(config, features_like, cal, final, ood_report, training)
    meta["output"] = "dict: probability (calibrated P(melanoma)), ood_distance, features (pooled backbone features)"
    meta["gradcam_layer"] = info["gradcam_layer"]
    report.write_all(
        out, meta=with_onnx_keys(meta, exported), cv_report=cv_report, files=cache.files, y=cache.y, folds=folds,
        groups=groups, oof_logit=oof_logit, prob=cal.prob, prob_raw=cal.prob_raw, robustness=rob,
        baseline_report=config.baseline_report, model_size_bytes=final.path.stat().st_size,
    )  # fmt: skip
    progress(f"[done] wrote {out} in {progress.elapsed:.0f}s this session")
    return meta


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = FinetuneConfig(data=Path("."), out=Path("."), run_dir=Path("."))
    a = parser.add_argument
    a("--data", type=Path, required=True, help="folder with benign/ and malignant/ subfolders")
    a("--out", type=Path, required=True, help="model folder to write (created; files are overwritten)")
    a("--run-dir", type=Path, required=True, help="checkpoints, caches and progress.json (keep it outside the repo)")
    a("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    a("--backbone", choices=BACKBONES, default=d.backbone, help="(default %(default)s)")
    a("--unfreeze-blocks", type=int, default=d.unfreeze_blocks, help="top blocks trained (default %(default)s)")
    a("--image-size", type=int, default=d.image_size, help="square input side (default %(default)s)")
    a("--epochs", type=int, default=d.epochs, help="epochs per fit (default %(default)s)")
    a("--folds", type=int, default=d.folds, help="CV folds (default %(default)s)")
    a("--seed", type=int, default=d.seed, help="(default %(default)s)")
    a("--batch-size", type=int, default=d.batch_size, help="(default %(default)s)")
    a("--learning-rate", type=float, default=d.learning_rate, help="peak, after 1 warm-up epoch (default %(default)s)")
    a("--weight-decay", type=float, default=d.weight_decay, help="AdamW (default %(default)s)")
    a("--dropout", type=float, default=d.dropout, help="before the logit layer (default %(default)s)")
    a("--preprocessing", choices=PIPELINES, default=d.preprocessing, help="(default %(default)s)")
    a("--workers", type=int, default=d.workers, help="augmentation threads (default %(default)s)")
    a(
        "--no-trunk-cache", dest="trunk_cache", action="store_false",
        help="augment and run the whole network every epoch instead of caching the frozen trunk's outputs",
    )  # fmt: skip
    a("--robustness-subset", type=int, default=d.robustness_subset, help="0 skips the report (default %(default)s)")
    a("--ood-components", default=",".join(map(str, d.ood_components)), help="(default %(default)s)")
    a("--bootstrap", type=int, default=d.bootstrap, help="(default %(default)s)")
    a("--name", default=d.name, help="model name (default: mobilenet-v2-melanoma or efficientnet-lite0-melanoma)")
    a("--version", default=d.version, help="(default %(default)s)")
    a("--baseline-report", type=Path, default=Path("models/baseline-cnn-v1/cv_report.json"))
    a("--max-images", type=int, default=0, help="development only: a stratified subset of this many images")
    a("--stop-after", default="", help="development only: FIT:EPOCH ends the run after that checkpoint")


def config_from_args(args, argv) -> FinetuneConfig:
    if args.folds < 2 or args.image_size < 32 or args.epochs < 1 or args.unfreeze_blocks < 0:
        raise SystemExit("need --folds >= 2, --image-size >= 32, --epochs >= 1, --unfreeze-blocks >= 0")
    names = {f.name for f in fields(FinetuneConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    values["ood_components"] = tuple(int(k) for k in args.ood_components.split(","))
    return FinetuneConfig(**values, command=default_command(recorded_argv(argv), PROG))


def recorded_argv(argv) -> list[str]:
    """The command line a model records: without ``--resume`` and ``--stop-after``,
    which change when a run stops, not what it computes."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--resume" or a.startswith("--stop-after="):
            continue
        elif a == "--stop-after":
            skip = True
        else:
            out.append(a)
    return out


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    config = config_from_args(parser.parse_args(argv), argv)
    try:
        run(config)
    except loop.StopRun as stop:
        print(f"{stop}; continue with --resume", flush=True)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
