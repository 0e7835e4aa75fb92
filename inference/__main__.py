"""``python -m inference predict [--model PATH] IMAGE...``

Classifies images with no database, server or Django settings, through the
same preprocessing and Predictor as the worker. Prints one JSON object per
image per line; an image that cannot be used gets an ``error`` field and the
exit status is 1.
"""

import argparse
import json
import os
import sys
from pathlib import Path

BATCH_SIZE = 32


def _configure_runtime():
    repo = Path(__file__).resolve().parent.parent
    os.environ.setdefault("KERAS_HOME", str(repo / "var" / "keras"))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def predict(args) -> int:
    _configure_runtime()
    from training.preprocessing import ImageError

    from .runtime import ModelFileError, Predictor, heatmap_png, sha256_of, shipped_model_dir

    model_dir = Path(args.model) if args.model else shipped_model_dir()
    if model_dir.is_file():
        model_dir = model_dir.parent
    try:
        predictor = Predictor.from_dir(model_dir)
    except (ModelFileError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    model_file = model_dir / predictor.metadata.get("file", "model.keras")
    common = {"model_version": predictor.version_label, "model_sha256": sha256_of(model_file)}

    heatmap_dir = Path(args.heatmap_dir) if args.heatmap_dir else None
    if heatmap_dir:
        heatmap_dir.mkdir(parents=True, exist_ok=True)

    failures = 0
    for start in range(0, len(args.images), BATCH_SIZE):
        chunk = args.images[start : start + BATCH_SIZE]
        rows, arrays = [], []
        for path in chunk:
            try:
                arrays.append(predictor.preprocess(path))
                rows.append(None)
            except (ImageError, OSError) as exc:
                failures += 1
                rows.append({"file": path, "error": str(exc), **common})
        results = iter(zip(predictor.predict_arrays(arrays), arrays, strict=True) if arrays else [])
        for path, row in zip(chunk, rows, strict=True):  # in the order given
            if row is None:
                result, array = next(results)
                distance = result.ood_distance
                row = {
                    "file": path,
                    "label": result.label,
                    "probability_malignant": round(result.probability_malignant, 6),
                    "confidence": round(result.confidence, 6),
                    # null for models without an out-of-distribution output
                    "out_of_distribution": result.out_of_distribution,
                    "ood_distance": round(distance, 6) if distance is not None else None,
                    **common,
                }
                if heatmap_dir:
                    target = heatmap_dir / f"{Path(path).stem}.heatmap.png"
                    target.write_bytes(heatmap_png(predictor.heatmap(array)))
                    row["heatmap"] = str(target)
            print(json.dumps(row), flush=True)
    return 1 if failures else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference", description=__doc__.split("\n\n")[1])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="classify images; one JSON line per image")
    p.add_argument("--model", help="model folder (with model.json) or model file; default: the shipped active model")
    p.add_argument("--heatmap-dir", help="also write a Grad-CAM overlay <stem>.heatmap.png per image here")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    args = parser.parse_args(argv)
    return predict(args)


if __name__ == "__main__":
    sys.exit(main())
