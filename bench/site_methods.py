"""Variants of the adaptation method on the simulated sites' cached features (not a test).

Reads the per-site feature caches that ``bench/site_simulation.py`` wrote
under ``--work`` (device images, their left-right and top-bottom flips) and,
for each variant of the method, per site and seed:

- the nested CV on the site's 100 adaptation images (20 melanomas): outer
  figures of every way and of the way kept; **the variants are compared on
  these alone** (mean over sites and seeds of the kept way's outer ROC-AUC,
  ECE, referral sensitivity and specificity);
- the kept way's final head on the site's next 200 images, reported only
  (never used to choose).

Variants: ``align`` (``training.site_head.fit_alignment``: none / shift /
affine, fitted on the outer-training benign cases of each fold),
``tta`` (features averaged over the image and its two flips, adaptation and
evaluation images alike), ``referral`` (the out-of-fold sensitivity the
referral edge is set for).

Usage (from the repository root, after site_simulation.py has filled --work):

    nice -n 10 .venv/bin/python bench/site_methods.py --base models/mobilenet-v2-melanoma-v3 \\
        --work /work/runs/site-v3/sim --out /work/runs/site-v3/methods.json

See docs/site-adaptation.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from site_simulation import N_ADAPT_BEN, N_ADAPT_MAL, evaluate  # noqa: E402

from training import site_head  # noqa: E402
from training.site_model import open_base  # noqa: E402

VARIANTS = {
    "current": {"align": "none", "tta": False, "referral": 0.95},
    "tta": {"align": "none", "tta": True, "referral": 0.95},
    "align-shift": {"align": "shift", "tta": False, "referral": 0.95},
    "align-affine": {"align": "affine", "tta": False, "referral": 0.95},
    "referral-0.925": {"align": "none", "tta": False, "referral": 0.925},
    "referral-0.90": {"align": "none", "tta": False, "referral": 0.90},
}
KEYS = ("roc_auc", "ece", "referral_sensitivity", "referral_specificity")


def features(cache: dict, key: str, tta: bool) -> np.ndarray:
    if not tta:
        return cache[f"x_{key}"]
    return (cache[f"x_{key}"] + cache[f"x_{key}_hflip"] + cache[f"x_{key}_vflip"]) / 3.0


def one(base, cache, seed, v):
    x_mal, x_ben = features(cache, "mal", v["tta"]), features(cache, "ben", v["tta"])
    xs = np.concatenate([x_mal[:N_ADAPT_MAL], x_ben[:N_ADAPT_BEN]])
    ys = np.r_[np.ones(N_ADAPT_MAL, int), np.zeros(N_ADAPT_BEN, int)]
    xe = np.concatenate([x_mal[N_ADAPT_MAL:], x_ben[N_ADAPT_BEN:]])
    ye = np.r_[np.ones(len(x_mal) - N_ADAPT_MAL, int), np.zeros(len(x_ben) - N_ADAPT_BEN, int)]
    xt, yt = base.sample.features, base.sample.y
    opts = {"base_head": base.head(), "align": v["align"], "referral_sensitivity": v["referral"]}
    nested = site_head.nested_cv(xs, ys, xt, yt, seed=seed, **opts)
    row = {"way": nested.way, "cv": {w: r["metrics"] for w, r in nested.per_way.items()}, "heldout": {}}
    for way in nested.per_way:
        final = site_head.fit_site_head(way, xs, ys, xt, yt, seed=seed, **opts)
        prob = final.calibration.apply(final.head.logit(xe))
        row["heldout"][way] = evaluate(ye, prob, final.threshold, [final.band["lo"], final.band["hi"]])
    return row


def summarise(rows):
    kept_cv = {k: float(np.mean([r["cv"][r["way"]][k] for r in rows])) for k in KEYS}
    held = {
        k.replace("sensitivity_referral", "referral_sensitivity").replace(
            "specificity_referral", "referral_specificity"
        ): float(np.mean([r["heldout"][r["way"]][k] for r in rows]))
        for k in ("roc_auc", "ece", "sensitivity_referral", "specificity_referral")
    }
    per_way_cv = {w: {k: float(np.mean([r["cv"][w][k] for r in rows])) for k in KEYS} for w in rows[0]["cv"]}
    per_way_held = {
        w: {k: float(np.mean([r["heldout"][w][k] for r in rows])) for k in rows[0]["heldout"][w]}
        for w in rows[0]["heldout"]
    }
    ways = {w: sum(r["way"] == w for r in rows) for w in site_head.WAYS}
    return {
        "kept_cv": kept_cv,
        "kept_heldout": held,
        "ways": ways,
        "per_way_cv": per_way_cv,
        "per_way_heldout": per_way_held,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, default=Path("models/mobilenet-v2-melanoma-v3"))
    parser.add_argument("--work", type=Path, required=True, help="site_simulation.py's --work")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    t0 = time.time()
    base = open_base(args.base)
    caches = {}
    for path in sorted(args.work.glob("features-*-*.npz")):
        _, site, seed = path.stem.split("-")
        with np.load(path) as f:
            caches[(site, int(seed))] = dict(f)
    results = {}
    for name in args.variants:
        rows = []
        for (site, seed), cache in caches.items():
            row = one(base, cache, seed, VARIANTS[name])
            row.update(site=site, seed=seed)
            rows.append(row)
        results[name] = {"variant": VARIANTS[name], "summary": summarise(rows), "runs": rows}
        s = results[name]["summary"]
        print(
            f"[{time.time() - t0:5.0f}s] {name:15s} nested CV (kept way): "
            + " ".join(f"{k} {v:.3f}" for k, v in s["kept_cv"].items())
            + f" | ways {s['ways']} | held-out (report only): "
            + " ".join(f"{k} {v:.3f}" for k, v in s["kept_heldout"].items()),
            flush=True,
        )
        args.out.write_text(json.dumps(results, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
