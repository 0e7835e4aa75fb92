"""Simulated sites: does adapting the head to a site's 100 cases beat the global model there? (not a test)

Each simulated site takes images of the training archive that are not in the
base model's training-feature sample, and changes them the way one fixed,
strong "device" would (a colour cast, a dermatoscope vignette, 4:3 framing,
blur, JPEG quality; ``DEVICES``), with its own case mix: 20% melanomas, and
benign lesions drawn only from the darker or the lighter half of the
archive's benign images (which benign lesions a clinic sees). The images are
written as JPEG files and go through the worker's preprocessing.

Per site and seed: the first 100 images (20 melanomas) adapt the head with
the same functions and folds as ``python -m training adapt`` (nested CV, final
head, calibration, threshold, band; on features, without the export); the next
200 (40 melanomas) are scored by the global model and by the adapted one.
Referral = malignant or uncertain. Also, for the minimum-size question, the
same with 10 and 15 melanomas (and 4 benign lesions per melanoma).

Usage (from the repository root; about 1.5 min per site and seed on 2 busy cores,
plus about 1 min per site and seed the first time, to extract and cache the features):

    nice -n 10 .venv/bin/python bench/site_simulation.py --base models/mobilenet-v2-melanoma-v3 \
        --data ../shared/datasets/melanoma-10k/train --work ../runs/site-v3/sim \
        --sites A B C --seeds 0 1 2 --sizes 10 15 20 --out ../runs/site-v3/sim/results-final.json

Features are cached under --work. See docs/site-adaptation.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training import calibration, site_head  # noqa: E402
from training.adapt import AdaptConfig  # noqa: E402
from training.data import list_images  # noqa: E402
from training.metrics import binary_metrics  # noqa: E402
from training.shifts import channel_gains, jpeg, vignette  # noqa: E402
from training.site_model import open_base  # noqa: E402

DEVICES = {
    # gains (R, G, B), vignette radius, blur sigma, JPEG quality, benign half
    "A": {"gains": (1.25, 1.0, 0.75), "vignette": 0.42, "blur": 1.5, "quality": 35, "benign": "darker"},
    "B": {"gains": (0.8, 0.95, 1.3), "vignette": 0.38, "blur": 1.0, "quality": 25, "benign": "lighter"},
    "C": {"gains": (1.1, 0.8, 1.15), "vignette": 0.46, "blur": 2.0, "quality": 45, "benign": "darker"},
}
N_ADAPT_MAL, N_ADAPT_BEN, N_EVAL_MAL, N_EVAL_BEN = 20, 80, 40, 160
CONFIG = AdaptConfig(base=Path("."), data=Path("."), out=Path("."))


def device_image(img: Image.Image, d: dict) -> Image.Image:
    """4:3 framing (the sensor's aspect: the square image shown in a 4:3 frame, cropped), cast, vignette, blur, JPEG."""
    w, h = img.size
    img = img.resize((round(w * 4 / 3), h), Image.Resampling.BILINEAR)  # a 4:3 sensor's stretch
    img = img.crop((0, round(h * 0.06), img.width, round(h * 0.94)))  # tighter vertical field of view
    img = channel_gains(img, d["gains"])
    img = vignette(img, radius=d["vignette"])
    img = img.filter(ImageFilter.GaussianBlur(d["blur"]))
    return jpeg(img, d["quality"])


def brightness(path: Path) -> float:
    with Image.open(path) as im:
        arr = np.asarray(im.convert("L").resize((64, 64)), dtype=np.float32)
    return float(arr[16:48, 16:48].mean())


def site_cases(data: Path, site: str, seed: int, exclude: set, n_mal: int, n_ben: int):
    paths, y = list_images(data)
    rng = np.random.default_rng([ord(site), seed])
    keep = [i for i, p in enumerate(paths) if p.relative_to(data).as_posix() not in exclude]
    mal = [i for i in keep if y[i] == 1]
    ben = [i for i in keep if y[i] == 0]
    ben_b = np.array([brightness(paths[i]) for i in ben])
    median = np.median(ben_b)
    half = DEVICES[site]["benign"]
    ben = [i for i, b in zip(ben, ben_b, strict=True) if (b < median) == (half == "darker")]
    mal = list(rng.permutation(mal)[:n_mal])
    ben = list(rng.permutation(ben)[:n_ben])
    return [paths[i] for i in mal], [paths[i] for i in ben]


def site_features(base, data, site, seed, exclude, work: Path, progress):
    """Features of the site's images (the device's), cached under ``work``.

    Also cached, for the method comparisons and the training-set caveat: the
    same device images flipped left-right and top-bottom (test-time
    augmentation), and the clean archive originals (what the base model was
    trained on), with the file names (its out-of-fold predictions are keyed
    by them).
    """
    n_mal, n_ben = N_ADAPT_MAL + N_EVAL_MAL, N_ADAPT_BEN + N_EVAL_BEN
    cache = work / f"features-{site}-{seed}.npz"
    if cache.is_file():
        with np.load(cache) as f:
            return dict(f)
    mal, ben = site_cases(data, site, seed, exclude, n_mal, n_ben)
    folder = work / f"site-{site}-{seed}"
    arrays, clean = {}, {}
    for label, paths in (("malignant", mal), ("benign", ben)):
        (folder / label).mkdir(parents=True, exist_ok=True)
        arrays[label], clean[label] = [], []
        for p in paths:
            target = folder / label / p.name
            with Image.open(p) as im:
                device_image(im.convert("RGB"), DEVICES[site]).save(target, quality=95)
            arrays[label].append(base.load_image(target))
            clean[label].append(base.load_image(p))
    progress(f"site {site} seed {seed}: {len(mal)} + {len(ben)} images written to {folder}; extracting")
    out = {}
    for key, label in (("mal", "malignant"), ("ben", "benign")):
        out[f"x_{key}"] = base.extract(arrays[label])
        out[f"x_{key}_hflip"] = base.extract([a[:, ::-1] for a in arrays[label]])
        out[f"x_{key}_vflip"] = base.extract([a[::-1] for a in arrays[label]])
        out[f"c_{key}"] = base.extract(clean[label])
        out[f"files_{key}"] = np.array([p.relative_to(data).as_posix() for p in (mal if key == "mal" else ben)])
    np.savez(cache, **out)
    return out


def referral_rates(y, prob, lo):
    called = prob >= lo
    return float(called[y == 1].mean()), float((~called)[y == 0].mean())


def evaluate(y, prob, threshold, band):
    m = binary_metrics(y, prob, threshold)
    lo = band[0] if band else threshold
    sens_ref, spec_ref = referral_rates(y, prob, lo)
    return {
        "roc_auc": m["roc_auc"],
        "ece": m["ece"],
        "sensitivity_at_threshold": m["sensitivity"],
        "specificity_at_threshold": m["specificity"],
        "sensitivity_referral": sens_ref,
        "specificity_referral": spec_ref,
    }


def one_run(base, x_mal, x_ben, n_mal, seed):
    n_ben = 4 * n_mal
    xs = np.concatenate([x_mal[:n_mal], x_ben[:n_ben]])
    ys = np.r_[np.ones(n_mal, int), np.zeros(n_ben, int)]
    xe = np.concatenate([x_mal[N_ADAPT_MAL:], x_ben[N_ADAPT_BEN:]])
    ye = np.r_[np.ones(len(x_mal) - N_ADAPT_MAL, int), np.zeros(len(x_ben) - N_ADAPT_BEN, int)]
    xt, yt = base.sample.features, base.sample.y
    # The command's folds and options (AdaptConfig's defaults), so that these figures are its.
    opts = {"base_head": base.head(), "inner": CONFIG.inner_folds, "align": CONFIG.align}
    nested = site_head.nested_cv(xs, ys, xt, yt, seed=seed, outer=CONFIG.outer_folds, **opts)
    final = site_head.fit_site_head(nested.way, xs, ys, xt, yt, seed=seed, **opts)
    p_site = final.calibration.apply(final.head.logit(xe))
    band = [final.band["lo"], final.band["hi"]]
    return {
        "n_malignant": n_mal,
        "way": nested.way,
        "nested_cv": {w: r["metrics"] for w, r in nested.per_way.items()},
        "adapted": evaluate(ye, p_site, final.threshold, band),
        "threshold": final.threshold,
        "band": band,
        "xe": xe,
        "ye": ye,
    }


def read_oof(path: Path) -> dict:
    """file -> the base model's cross-validated (out-of-fold) probability, if it ships them."""
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        return {row["file"]: float(row["probability"]) for row in csv.DictReader(fh)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--base", type=Path, default=Path("models/mobilenet-v2-melanoma-v3"), help="base model folder")
    parser.add_argument("--work", type=Path, default=Path("../runs/sites/sim"))
    parser.add_argument("--sites", nargs="+", default=list(DEVICES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--sizes", nargs="+", type=int, default=[10, 15, 20], help="melanomas in the adapt set")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    t0 = time.time()

    def progress(msg):
        print(f"[{time.time() - t0:6.0f}s] {msg}", flush=True)

    base = open_base(args.base)
    oof = read_oof(args.base / "oof_predictions.csv")
    exclude = set(base.sample.files)
    model = base.keras_model()
    w, b = model.get_layer("logit").get_weights()
    meta = base.metadata
    args.work.mkdir(parents=True, exist_ok=True)
    results = []
    for site in args.sites:
        for seed in args.seeds:
            f = site_features(base, args.data, site, seed, exclude, args.work, progress)
            x_mal, x_ben = f["x_mal"], f["x_ben"]
            # The training-set caveat: the global head on the clean originals of the
            # evaluation images (which the base model trained on) against the
            # base model's out-of-fold probabilities of the same images.
            eval_files = np.r_[f["files_mal"][N_ADAPT_MAL:], f["files_ben"][N_ADAPT_BEN:]]
            clean = np.concatenate([f["c_mal"][N_ADAPT_MAL:], f["c_ben"][N_ADAPT_BEN:]])
            for n_mal in args.sizes:
                r = one_run(base, x_mal, x_ben, n_mal, seed)
                xe, ye = r.pop("xe"), r.pop("ye")
                p_global = calibration.sigmoid(xe @ w[:, 0] + b[0])
                r["global"] = evaluate(ye, p_global, meta["threshold"], meta.get("uncertain_band"))
                r["global_clean_roc_auc"] = binary_metrics(ye, calibration.sigmoid(clean @ w[:, 0] + b[0]), 0.5)[
                    "roc_auc"
                ]
                if oof:
                    r["oof_clean_roc_auc"] = binary_metrics(ye, np.array([oof[k] for k in eval_files]), 0.5)["roc_auc"]
                r.update(site=site, seed=seed)
                results.append(r)
                a, g = r["adapted"], r["global"]
                progress(
                    f"site {site} seed {seed} n_mal {n_mal} ({r['way']}): "
                    f"AUC {g['roc_auc']:.3f} -> {a['roc_auc']:.3f}; "
                    f"referral sens {g['sensitivity_referral']:.3f} -> {a['sensitivity_referral']:.3f}, "
                    f"spec {g['specificity_referral']:.3f} -> {a['specificity_referral']:.3f}; "
                    f"ECE {g['ece']:.3f} -> {a['ece']:.3f}"
                )
            args.out.write_text(json.dumps(results, indent=1, default=float) + "\n")
    summary = {}
    for n_mal in args.sizes:
        rows = [r for r in results if r["n_malignant"] == n_mal]
        summary[n_mal] = {
            who: {k: float(np.mean([r[who][k] for r in rows])) for k in rows[0][who]} for who in ("global", "adapted")
        }
        summary[n_mal]["min_adapted"] = {k: float(np.min([r["adapted"][k] for r in rows])) for k in rows[0]["adapted"]}
        summary[n_mal]["max_adapted_ece"] = float(np.max([r["adapted"]["ece"] for r in rows]))
        summary[n_mal]["ways"] = {w: sum(r["way"] == w for r in rows) for w in site_head.WAYS}
        for key in ("global_clean_roc_auc", "oof_clean_roc_auc"):
            if key in rows[0]:
                summary[n_mal][key] = float(np.mean([r[key] for r in rows]))
    args.out.write_text(json.dumps({"runs": results, "summary": summary}, indent=1, default=float) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
