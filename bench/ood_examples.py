"""Where the out-of-distribution detector puts images that are not dermoscopy (not a test).

For the model in --model (default: models/ACTIVE), prints each image's
``ood_distance`` as a multiple of the model's threshold: the six
non-dermoscopy images of tests/inference/runtime/test_predictor.py
(``NOT_DERMOSCOPY``) and the 16 demo dermoscopy images. Above 1 is flagged.
Six images show that the detector separates these, not how often it catches
what a clinic might upload by mistake.

Usage: .venv/bin/python bench/ood_examples.py [--model DIR]
See docs/training.md ("Out-of-distribution detector").
"""

import argparse
import io
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
# The test module's images are the reference; importing it needs Django set up (no database is used).
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "skincare.settings.test")
import django  # noqa: E402

django.setup()

from inference.runtime.model_format import shipped_model_dir  # noqa: E402
from inference.runtime.predictor import Predictor  # noqa: E402
from tests.inference.runtime.test_predictor import NOT_DERMOSCOPY  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: models/ACTIVE)")
    args = parser.parse_args()
    predictor = Predictor.from_dir(args.model or shipped_model_dir())
    threshold = predictor.ood_threshold
    print(f"{predictor.version_label}: OOD threshold {threshold:.1f}")
    for name, make in NOT_DERMOSCOPY.items():
        d = predictor.predict_source(io.BytesIO(make())).ood_distance
        print(f"  not dermoscopy  {name:20s} {d:9.1f}  {d / threshold:5.2f} x")
    demo = sorted((REPO / "demo" / "images").glob("*/*.jpg"))
    ratios = [r.ood_distance / threshold for r in predictor.predict_sources(demo)]
    print(f"  demo dermoscopy  {len(demo)} images: {min(ratios):.2f}-{max(ratios):.2f} x")


if __name__ == "__main__":
    main()
