"""One-off experiment for the v3 selection record (kept as the record, not maintained code).

Frozen ImageNet backbones at the fine-tuned run's input size, each with the
same kind of head v2 has (standardised logistic regression, C chosen by inner
grouped CV per outer fold, clean images only), on exactly the folds of the
fine-tuned run (same cache, same near-duplicate groups, seed 0). Writes, per
backbone, an ``oof_predictions.csv`` that ``python -m training.compare_runs``
reads, so the frozen and fine-tuned networks are compared fold by fold.

    python models/<v3>/experiments/frozen_backbones.py --data DATASET/train \
        --run-dir RUN_DIR --out OUT_DIR [--backbones mobilenet_v2,efficientnet_lite0]

RUN_DIR is the fine-tune run's (its data/ cache is reused, or built).
"""

import argparse
import csv
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import numpy as np  # noqa: E402

from training.batches import clean_input, prepare_cache  # noqa: E402
from training.cv import assign_folds  # noqa: E402
from training.data import DEFAULT_MAX_DISTANCE, duplicate_groups  # noqa: E402
from training.finetune_model import backbone_info, build_backbone  # noqa: E402
from training.head import fit_head  # noqa: E402
from training.preprocessing import SQUARE_SOG_V2  # noqa: E402

CS = (0.001, 0.003, 0.01, 0.03)


def pooled_features(name, cache, batch=64):
    import keras

    net = build_backbone(name, cache.size, backbone_info(name)["weights"])
    pooled = keras.Model(net.input, keras.layers.GlobalAveragePooling2D()(net.output))
    out = []
    for s in range(0, len(cache.y), batch):
        x = np.stack([clean_input(cache.images[i], SQUARE_SOG_V2) for i in range(s, min(s + batch, len(cache.y)))])
        out.append(np.asarray(pooled.predict_on_batch(x.astype("float32")), dtype=np.float32))
    return np.concatenate(out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--size", type=int, default=160)
    p.add_argument("--backbones", default="mobilenet_v2,efficientnet_lite0")
    a = p.parse_args()
    cache = prepare_cache(a.data, a.size, a.run_dir / "data")
    groups = duplicate_groups(cache.hashes, DEFAULT_MAX_DISTANCE)
    folds = assign_folds(cache.y, groups, 5, 0)
    for name in a.backbones.split(","):
        t0 = time.time()
        feat_path = a.out / f"features-{name}-{a.size}.npy"
        a.out.mkdir(parents=True, exist_ok=True)
        if feat_path.is_file():
            x = np.load(feat_path)
        else:
            x = pooled_features(name, cache)
            np.save(feat_path, x)
        print(f"{name}: features {x.shape} in {time.time() - t0:.0f}s", flush=True)
        logit = np.zeros(len(cache.y))
        for f in range(5):
            tr, va = folds != f, folds == f
            head, scores = fit_head(x[tr], cache.y[tr], groups[tr], np.ones(tr.sum(), bool), CS, 3, 0)
            logit[va] = head.logit(x[va])
            print(f"{name}: fold {f + 1} C={head.c} inner {scores}", flush=True)
        folder = a.out / f"frozen-{name}-{a.size}"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "oof_predictions.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "label", "fold", "logit"])
            for file, y, f, lg in zip(cache.files, cache.y, folds, logit, strict=True):
                w.writerow([file, "malignant" if y else "benign", int(f) + 1, f"{lg:.6f}"])
        print(f"{name}: wrote {folder} ({time.time() - t0:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
