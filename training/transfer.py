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

This module holds the run's configuration (:class:`TransferConfig`),
:func:`run` and the command line (:func:`add_arguments`,
:func:`config_from_args`, :func:`main`). The work is elsewhere:

- ``training.stages``: the stages below, one function each;
- ``training.features``: image loading, the frozen backbone, feature
  extraction (and its cache), the exported Keras model;
- ``training.shifts``: image shifts and the training augmentation;
- ``training.head``: the logistic head, its inner and outer CV, bootstrap CIs;
- ``training.transfer_meta``: model.json's and cv_report.json's content;
- ``training.report``, ``training.robustness``, ``training.model_card``:
  the files written.

Order of the run (each stage prints a timed progress line):

1. decode every image once, perceptual-hash it, group near-duplicates and
   assign stratified grouped folds (``stages.load_data``);
2. compare the preprocessing pipelines by grouped CV on a stratified subset
   (or on all images with ``--compare-subset 0``); keep the better one
   (``stages.compare_preprocessing``);
3. extract clean features for all images with the chosen pipeline, and
   features of ``K`` augmented copies of every image
   (``stages.extract_all_features``);
4. outer CV: per fold, the head's C is chosen by an inner grouped CV on the
   training part only; the head is fitted on the training images' clean and
   augmented features; validation images are scored from their *clean*
   features only (``stages.outer_cv``). The OOD model of each fold is fitted
   on the training part (``stages.select_ood``);
5. temperature, threshold and band from the out-of-fold logits
   (``stages.calibrate``);
6. robustness report: a stratified subset re-extracted under simulated device
   shifts, each image scored by the head of the fold that did not train on it
   (``stages.robustness_report``);
7. final head on all images, OOD statistics from all clean features, export
   ``model.keras`` + ``model.onnx`` + ``model.json`` and the reports
   (``stages.fit_final``, ``check_export``, ``write_onnx``; ``report.write_all``).

No Django here.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import report, stages, transfer_meta
from .features import MODEL_NAME, FeatureExtraction, build_feature_extractor
from .onnx_export import with_onnx_keys
from .preprocessing import PIPELINES, SQUARE_SOG_V2

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


def default_command(argv, prog: str = "python -m training train-transfer") -> str:
    return prog + " " + " ".join(shlex.quote(a) for a in argv)


# --------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------


def run(config: TransferConfig) -> dict:
    """Stages 1-7 (see the module docstring); writes ``config.out`` and returns
    model.json's content (without the ONNX keys)."""
    import keras

    from .backbone import DEFAULT_WEIGHTS_PATH

    progress = Progress()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    workers = config.workers or os.cpu_count() or 1
    keras.utils.set_random_seed(config.seed)
    weights_path = Path(config.weights_path or DEFAULT_WEIGHTS_PATH)
    S = config.image_size
    progress(f"transfer run: data={config.data} out={out} size={S} folds={config.folds} seed={config.seed}")

    data = stages.load_data(config, workers, progress)
    extract = FeatureExtraction(
        build_feature_extractor(S, weights_path),
        data.raw,
        image_size=S,
        seed=config.seed,
        weights_path=weights_path,
        batch_size=config.batch_size,
        workers=workers,
        progress=progress,
        cache_dir=config.feature_cache,
    )
    comparison = stages.compare_preprocessing(config, data, extract, progress)
    features = stages.extract_all_features(config, data, comparison, extract)
    cv = stages.outer_cv(config, data, features, progress)
    ood = stages.select_ood(config, data, features, progress)
    cal = stages.calibrate(config, data, cv, progress)
    rob = stages.robustness_report(config, data, features, cv, ood, cal, extract, out, progress)
    final = stages.fit_final(config, data, features, cv, ood, cal, weights_path, out, progress)
    export_check, check_images = stages.check_export(config, data, features, cal, final, progress)
    exported = stages.write_onnx(out, final, check_images, progress)

    ood_report = transfer_meta.ood_summary(final, ood, features.clean)
    training = transfer_meta.training_record(
        config, data, cv, final, weights_path, extract.timings, wall_time_s=progress.elapsed
    )
    cv_report = transfer_meta.cv_report(config, data, comparison, features, cv, cal, ood_report, export_check)
    meta = transfer_meta.model_json(config, features, cal, final, ood_report, training)
    report.write_all(
        out,
        meta=with_onnx_keys(meta, exported),
        cv_report=cv_report,
        files=data.raw.files,
        y=data.y,
        folds=data.folds,
        groups=data.groups,
        oof_logit=cv.oof_logit,
        prob=cal.prob,
        prob_raw=cal.prob_raw,
        robustness=rob,
        baseline_report=config.baseline_report,
        model_size_bytes=final.path.stat().st_size,
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
