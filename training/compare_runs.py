"""Compare cross-validated models on their out-of-fold predictions, and their average.

``python -m training.compare_runs MODEL_DIR [MODEL_DIR ...] [--names a,b] [--out FILE.md]``

Each folder's ``oof_predictions.csv`` (written by ``train-transfer`` and
``finetune``) holds one out-of-fold logit per image. The folders must cover
the same images in the same folds (same data, seed and grouping), so the
comparison is paired fold by fold. Printed (and written as Markdown with
``--out``, for a model's selection record): per model, the ROC-AUC of each
fold, their mean ± sd and, against the first model, the per-fold difference;
then the same for the equal-weight average of the models' logits (no weight
is fitted, so the average adds no selection step beyond choosing to use it).

NumPy and scikit-learn only; no TensorFlow.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from .metrics import binary_metrics


def read_oof(folder) -> dict:
    """``{"files", "y", "fold", "logit"}`` of a model folder, sorted by file."""
    rows = []
    with open(Path(folder) / "oof_predictions.csv", newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            rows.append((r["file"], r["label"] == "malignant", int(r["fold"]), float(r["logit"])))
    rows.sort()
    return {
        "files": [r[0] for r in rows],
        "y": np.array([r[1] for r in rows], dtype=int),
        "fold": np.array([r[2] for r in rows], dtype=int),
        "logit": np.array([r[3] for r in rows], dtype=float),
    }


def fold_aucs(y, score, folds) -> list[float]:
    return [binary_metrics(y[folds == f], score[folds == f], 0.5)["roc_auc"] for f in np.unique(folds)]


def compare(folders, names=None) -> dict:
    runs = [read_oof(f) for f in folders]
    names = list(names or [Path(f).name for f in folders])
    ref = runs[0]
    for name, run in zip(names, runs, strict=True):
        if run["files"] != ref["files"] or not (run["fold"] == ref["fold"]).all() or not (run["y"] == ref["y"]).all():
            raise ValueError(f"{name}: not the same images, labels and folds as {names[0]}; no paired comparison")
    y, folds = ref["y"], ref["fold"]
    rows = {name: fold_aucs(y, run["logit"], folds) for name, run in zip(names, runs, strict=True)}
    if len(runs) > 1:
        rows["average of " + " + ".join(names)] = fold_aucs(y, np.mean([r["logit"] for r in runs], axis=0), folds)
    base = np.array(rows[names[0]])
    return {
        "n_images": len(y),
        "folds": int(len(np.unique(folds))),
        "reference": names[0],
        "models": {
            name: {
                "fold_auc": aucs,
                "mean": float(np.mean(aucs)),
                "sd": float(np.std(aucs, ddof=1)),
                "diff_vs_reference": (np.array(aucs) - base).tolist(),
                "folds_better": int((np.array(aucs) > base).sum()),
            }
            for name, aucs in rows.items()
        },
    }


def markdown(result: dict) -> str:
    k = result["folds"]
    lines = [
        f"Out-of-fold ROC-AUC per fold ({result['n_images']} images, {k} grouped folds, the same for every model); "
        f"differences are paired, against `{result['reference']}`.",
        "",
        "| model | " + " | ".join(f"fold {f + 1}" for f in range(k)) + " | mean ± sd | Δ mean | folds better |",
        "| --- " * (k + 4) + "|",
    ]
    for name, m in result["models"].items():
        d = np.mean(m["diff_vs_reference"])
        lines.append(
            f"| {name} | " + " | ".join(f"{a:.4f}" for a in m["fold_auc"])
            + f" | {m['mean']:.4f} ± {m['sd']:.4f} | {d:+.4f} | {m['folds_better']}/{k} |"
        )  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.compare_runs", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="model folders with oof_predictions.csv")
    parser.add_argument("--names", help="comma-separated names, in the folders' order")
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    args = parser.parse_args(argv)
    names = args.names.split(",") if args.names else None
    text = markdown(compare(args.folders, names))
    print(text, end="")
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
