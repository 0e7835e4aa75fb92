"""Variants of the adaptation method on the simulated sites' cached features (not a test).

Reads the per-site feature caches that ``bench/site_simulation.py`` wrote
under ``--work`` (device images, their left-right and top-bottom flips) and,
for each variant of the method, per site and seed:

- the nested CV on the site's 100 adaptation images (20 melanomas): outer
  figures of every way and of the way kept; **the variants are compared on
  these alone** (mean over sites and seeds of the kept way's outer ROC-AUC,
  ECE, referral sensitivity and specificity);
- the kept way's final head (and the recalibrated global head's) on the
  site's next 200 images, reported only (never used to choose).

Variants: ``align`` (``training.site_head.fit_alignment``: none / shift /
affine, fitted on the outer-training benign cases of each fold),
``tta`` (features averaged over the image and its two flips, adaptation and
evaluation images alike); every variant is also scored with several
referral edges (``REFERRALS``: the out-of-fold sensitivity the edge is set
for, or a quantile of a normal fitted to the melanomas' logits).

Usage (from the repository root, after site_simulation.py has filled --work):

    nice -n 10 .venv/bin/python bench/site_methods.py --base models/mobilenet-v2-melanoma-v3 \\
        --work ../runs/site-v3/sim --out ../runs/site-v3/methods.json

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
from training.adapt import AdaptConfig  # noqa: E402
from training.site_model import open_base  # noqa: E402

VARIANTS = {
    "current": {"align": "none", "tta": False},
    "align-shift": {"align": "shift", "tta": False},
    "tta": {"align": "none", "tta": True},
    "align-affine": {"align": "affine", "tta": False},
}
# The referral edge is set for this out-of-fold sensitivity (site_head.REFERRAL_SENSITIVITY
# and the others); every variant is scored at each, in the same pass.
REFERRALS = (site_head.REFERRAL_SENSITIVITY, 0.925, 0.90, "normal:0.95", "normal:0.925", "normal:0.90")
KEYS = ("roc_auc", "ece", *(f"referral_{m}@{r}" for r in REFERRALS for m in ("sensitivity", "specificity")))
CONFIG = AdaptConfig(base=Path("."), data=Path("."), out=Path("."))  # the command's folds


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
    opts = {"base_head": base.head(), "align": v["align"], "inner": CONFIG.inner_folds}
    nested = site_head.nested_cv(
        xs, ys, xt, yt, seed=seed, outer=CONFIG.outer_folds, other_referrals=REFERRALS[1:], **opts
    )
    for m in nested.per_way.values():
        m["metrics"][f"referral_sensitivity@{REFERRALS[0]}"] = m["metrics"]["referral_sensitivity"]
        m["metrics"][f"referral_specificity@{REFERRALS[0]}"] = m["metrics"]["referral_specificity"]
    row = {"way": nested.way, "cv": {w: r["metrics"] for w, r in nested.per_way.items()}, "heldout": {}}
    for way in {nested.way, "global"}:  # the kept way; the global head for comparison
        final = site_head.fit_site_head(way, xs, ys, xt, yt, seed=seed, **opts)
        prob = final.calibration.apply(final.head.logit(xe))
        m = evaluate(ye, prob, final.threshold, None)
        held = {"roc_auc": m["roc_auc"], "ece": m["ece"]}
        for r in REFERRALS:
            lo = site_head.choose_band(ys, final.oof_prob, final.threshold, r)["lo"]
            held[f"referral_sensitivity@{r}"] = float((prob[ye == 1] >= lo).mean())
            held[f"referral_specificity@{r}"] = float((prob[ye == 0] < lo).mean())
        row["heldout"][way] = held
    return row


def summarise(rows):
    def mean(get):
        return float(np.mean([get(r) for r in rows]))

    return {
        "kept_cv": {k: mean(lambda r, k=k: r["cv"][r["way"]][k]) for k in KEYS},
        "kept_heldout": {k: mean(lambda r, k=k: r["heldout"][r["way"]][k]) for k in KEYS},
        "ways": {w: sum(r["way"] == w for r in rows) for w in site_head.WAYS},
        "per_way_cv": {w: {k: mean(lambda r, w=w, k=k: r["cv"][w][k]) for k in KEYS} for w in rows[0]["cv"]},
        "global_heldout": {k: mean(lambda r, k=k: r["heldout"]["global"][k]) for k in KEYS},
        "kept_heldout_min": {k: float(np.min([r["heldout"][r["way"]][k] for r in rows])) for k in KEYS},
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
        print(f"[{time.time() - t0:5.0f}s] {name}: ways kept {s['ways']}", flush=True)
        for label, key in (("nested CV, kept way", "kept_cv"), ("held-out, kept way (report only)", "kept_heldout")):
            print(f"    {label}: " + " ".join(f"{k} {v:.3f}" for k, v in s[key].items()), flush=True)
        args.out.write_text(json.dumps(results, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
