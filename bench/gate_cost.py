"""CPU of an upload's image work: the check's decode, the quality gate and the perceptual hash (not a test).

On the ~320 KB, 2665 x 2665 JPEG of bench/api_load.py, process CPU per call
(``time.process_time``), for the tree it runs from: where ``core.quality``
has no ``gate_image`` (before the one-decode change), the check decodes at
1/8 scale (``verify_decodes``) and the gate decodes again in full
(``open_image``); from MEASURES_VERSION 3 the check's reduced decode
(``decode_reduced``) is what the gate measures. To compare, copy this file
into an older checkout's bench/ and run both alternately.

Usage: .venv/bin/python bench/gate_cost.py [--runs 30]
See docs/benchmarks.md ("Upload path").
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.api_load import jpeg_of_about  # noqa: E402  (after the path is set)
from core import quality  # noqa: E402
from training import preprocessing  # noqa: E402


def cpu_ms(call, runs):
    call()
    start = time.process_time()
    for _ in range(runs):
        call()
    return (time.process_time() - start) / runs * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    data = jpeg_of_about(300 * 1024)
    if hasattr(quality, "gate_image"):
        pixels = preprocessing.decode_reduced(data, quality.DECODE_SIDE)[3]
        check = cpu_ms(lambda: preprocessing.decode_reduced(data, quality.DECODE_SIDE), args.runs)
        second = 0.0
    else:
        pixels = preprocessing.open_image(data)
        check = cpu_ms(lambda: preprocessing.verify_decodes(data), args.runs)
        second = cpu_ms(lambda: preprocessing.open_image(data), max(args.runs // 3, 1))
    assess = cpu_ms(lambda: quality.assess(pixels, quality.DERMOSCOPIC), args.runs)
    phash = cpu_ms(lambda: quality.perceptual_hash(pixels), args.runs)
    print(
        f"check decode {check:.1f} ms, second decode {second:.1f} ms, assess {assess:.1f} ms, "
        f"hash {phash:.1f} ms; total {check + second + assess + phash:.1f} ms"
    )


if __name__ == "__main__":
    main()
