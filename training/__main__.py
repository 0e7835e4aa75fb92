"""``python -m training train|train-transfer|finetune --data DIR --out OUTDIR ...``: see docs/training.md.

``train`` is the from-scratch baseline CNN; ``train-transfer`` the shipped
model (frozen ImageNet MobileNetV2 features, calibrated logistic head,
out-of-distribution detector; ``python -m training train-transfer --help``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    from .train import TrainConfig

    defaults = TrainConfig(data=Path("."), out=Path("."))
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train",
        help="cross-validate, fit on all images, write a model folder",
        description="Cross-validate the baseline CNN on DIR (subfolders benign/ and malignant/), "
        "choose the threshold on out-of-fold predictions, fit on all images and write OUTDIR.",
    )
    sub.add_parser(
        "train-transfer",
        help="the shipped model: frozen ImageNet MobileNetV2 + calibrated head + OOD detector",
        add_help=False,
    )
    sub.add_parser(
        "refit",
        help="rerun the OOD and uncertain-band stages of a fine-tuned model folder with the current rules",
        add_help=False,
    )
    sub.add_parser(
        "finetune",
        help="fine-tune the backbone's upper blocks in grouped CV, with checkpoints (--resume)",
        add_help=False,
    )
    train.add_argument("--data", type=Path, required=True, help="folder with benign/ and malignant/ subfolders")
    train.add_argument("--out", type=Path, required=True, help="output folder (created; files are overwritten)")
    train.add_argument("--epochs", type=int, default=defaults.epochs, help="epochs per fit (default %(default)s)")
    train.add_argument("--folds", type=int, default=defaults.folds, help="cross-validation folds (default %(default)s)")
    train.add_argument(
        "--image-size", type=int, default=defaults.image_size, help="square input side in pixels (default %(default)s)"
    )
    train.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default %(default)s)")
    train.add_argument("--name", default=defaults.name, help="model name (default %(default)s)")
    train.add_argument("--version", type=int, default=defaults.version, help="model version (default %(default)s)")
    train.add_argument("--batch-size", type=int, default=defaults.batch_size, help="(default %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    # Quiet TensorFlow's C++ start-up chatter unless the caller asked for it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train-transfer"]:
        from .transfer import main as transfer_main

        return transfer_main(argv[1:], prog="python -m training train-transfer")
    if argv[:1] == ["finetune"]:
        from .finetune import main as finetune_main

        return finetune_main(argv[1:])
    if argv[:1] == ["refit"]:
        from .refit import main as refit_main

        return refit_main(argv[1:])
    if argv[:1] == ["adapt"]:
        from .adapt import main as adapt_main

        return adapt_main(argv[1:], prog="python -m training adapt")
    args = build_parser().parse_args(argv)
    from .train import TrainConfig, default_command, run

    if args.epochs < 1 or args.folds < 2 or args.image_size < 32:
        raise SystemExit("need --epochs >= 1, --folds >= 2 and --image-size >= 32")
    config = TrainConfig(
        data=args.data,
        out=args.out,
        epochs=args.epochs,
        folds=args.folds,
        image_size=args.image_size,
        seed=args.seed,
        name=args.name,
        version=args.version,
        batch_size=args.batch_size,
        command=default_command(argv),
    )
    run(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
