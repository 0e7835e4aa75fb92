"""What the worker's reduced-scale JPEG decode changes in a model's output (not a test).

``training.preprocessing.open_for_model`` decodes a JPEG whose sides are both
at least twice the model's input at libjpeg's reduced DCT scale. The archive's
images are 300 px, so this takes training images, enlarges them to phone and
dermatoscope sizes (Lanczos) with sensor-like noise (Gaussian, sigma 3 grey
levels), saves them as JPEG (quality 92), and compares the model's
probability of melanoma from a full decode (``open_image``, what every input
went through before) with the shipped path (``load_for_model``). For scale,
the same comparison between two photos of the same picture that differ only
in their noise draw, and between JPEG quality 92 and 85: what re-taking or
re-saving a photo changes anyway. Also the decode-and-frame CPU per image
both ways.

Usage:
  .venv/bin/python bench/reduced_decode.py --data ../shared/datasets/melanoma-10k/train \
      [--model models/mobilenet-v2-melanoma-v3] [--images 150]
See docs/benchmarks.md ("Prediction loop").
"""

import argparse
import io
import random
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from inference.runtime.predictor import Predictor  # noqa: E402  (after the path is set)
from training import preprocessing  # noqa: E402


def photo(img, side, seed, quality):
    big = np.asarray(img.resize((side, side), Image.Resampling.LANCZOS)).astype(np.int16)
    noisy = big + np.random.default_rng(seed).normal(0, 3, big.shape).astype(np.int16)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def spread(p, a, b):
    d = np.abs(p[a] - p[b])
    return f"{d.max():.3f} / {np.quantile(d, 0.99):.3f} / {d.mean():.4f}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--model", default=str(REPO / "models" / (REPO / "models" / "ACTIVE").read_text().strip()))
    parser.add_argument("--images", type=int, default=150)
    parser.add_argument("--sides", type=int, nargs="+", default=[660, 1200, 2670])
    args = parser.parse_args()
    predictor = Predictor.from_dir(args.model)
    size, pipeline = predictor.input_size, predictor.metadata["preprocessing"]
    files = sorted(args.data.glob("*/*.jpg"))
    random.Random(0).shuffle(files)
    files = files[: args.images]
    print(f"model {predictor.version_label} ({size} px), {len(files)} training images")
    print(
        "| side | reduced vs full decode: max / p99 / mean abs. difference in p | other noise draw | JPEG q85 vs q92 "
        "| mean abs. pixel difference | decode + frame CPU, full / reduced |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for side in args.sides:
        full, reduced, other_noise, q85 = [], [], [], []
        cpu = {"full": 0.0, "reduced": 0.0}
        for path in files:
            img = Image.open(path).convert("RGB")
            data = photo(img, side, 0, 92)
            t0 = time.process_time()
            full.append(preprocessing.to_model_input(preprocessing.open_image(data), size, pipeline))
            t1 = time.process_time()
            reduced.append(preprocessing.load_for_model(data, size, pipeline))
            t2 = time.process_time()
            cpu["full"] += t1 - t0
            cpu["reduced"] += t2 - t1
            other_noise.append(preprocessing.load_for_model(photo(img, side, 1, 92), size, pipeline))
            q85.append(preprocessing.load_for_model(photo(img, side, 0, 85), size, pipeline))
        p = {name: predictor.predict_batch(np.stack(arrays)) for name, arrays in
             (("full", full), ("reduced", reduced), ("noise", other_noise), ("q85", q85))}  # fmt: skip

        pixels = np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(reduced, full, strict=True)])
        ms = {k: 1000 * v / len(files) for k, v in cpu.items()}
        columns = [spread(p, "reduced", "full"), spread(p, "noise", "reduced"), spread(p, "q85", "reduced")]
        columns += [f"{pixels:.2f}", f"{ms['full']:.1f} / {ms['reduced']:.1f} ms"]
        print(f"| {side} px | " + " | ".join(columns) + " |")


if __name__ == "__main__":
    main()
