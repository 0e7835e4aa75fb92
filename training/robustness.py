"""Robustness report: the out-of-fold model under simulated device shifts.

Each image of a stratified subset is transformed (on the decoded image, before
the preprocessing pipeline, as a different camera or clinic would change it),
its features are re-extracted, and it is scored by the head of the CV fold
that did *not* train on it, with the shipped temperature and threshold. So
every number here is out-of-fold, directly comparable to the clean figures of
the same subset.

Targets: ROC-AUC within 0.03 of clean, sensitivity >= 0.85 at the shipped
threshold, under each shift.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from . import calibration
from .metrics import binary_metrics
from .preprocessing import to_model_input
from .report import clean_json
from .shifts import channel_gains, downscale_upscale, jpeg, vignette

AUC_DROP_TARGET = 0.03
SENSITIVITY_TARGET = 0.85


def _stretch_4x3(img: Image.Image) -> Image.Image:
    """Undo the dataset's squash: a square image stretched back to 4:3 landscape."""
    w, h = img.size
    return img.resize((round(h * 4 / 3), h), Image.Resampling.BILINEAR)


def _centre_crop_square(img: Image.Image) -> Image.Image:
    w, h = img.size
    s = min(w, h)
    x0, y0 = (w - s) // 2, (h - s) // 2
    return img.crop((x0, y0, x0 + s, y0 + s))


def _shift_functions():
    """``{name: (description, function of a decoded RGB image)}`` of the shifts, in :data:`SHIFTS` order."""
    return {
        "colour_cast_warm": (
            "per-channel gains R x1.20, G x1.00, B x0.80 (warm light / yellowed optics)",
            lambda im: channel_gains(im, (1.20, 1.00, 0.80)),
        ),
        "colour_cast_cool": (
            "per-channel gains R x0.85, G x1.00, B x1.20 (cool LED light)",
            lambda im: channel_gains(im, (0.85, 1.00, 1.20)),
        ),
        "vignette": (
            "circular dark field stop, radius 0.42 of the side, soft 6% edge",
            lambda im: vignette(im, radius=0.42, softness=0.06),
        ),
        "frame_4x3_resize": (
            "stretched to 4:3 (as the original capture), then framed by the pipeline (whole image resized to square)",
            _stretch_4x3,
        ),
        "frame_4x3_centre_crop": (
            "stretched to 4:3, then centre-cropped to a square before the pipeline (the alternative framing)",
            lambda im: _centre_crop_square(_stretch_4x3(im)),
        ),
        "low_resolution": (
            "downscaled to 100 px (shorter side), then back up (bilinear)",
            lambda im: downscale_upscale(im, 100),
        ),
        "jpeg_q35": ("JPEG re-compression at quality 35", lambda im: jpeg(im, 35)),
        "blur": ("Gaussian blur, radius 2 px at 300 px", lambda im: im.filter(ImageFilter.GaussianBlur(2.0))),
    }


SHIFTS = (
    "colour_cast_warm",
    "colour_cast_cool",
    "vignette",
    "frame_4x3_resize",
    "frame_4x3_centre_crop",
    "low_resolution",
    "jpeg_q35",
    "blur",
)


def _metrics(y, prob, threshold, band, dist, ood_threshold):
    m = binary_metrics(y, prob, threshold)
    rates = calibration.band_rates(y, prob, band["lo"], band["hi"])
    return {
        "roc_auc": m["roc_auc"],
        "sensitivity": m["sensitivity"],
        "specificity": m["specificity"],
        "balanced_accuracy": m["balanced_accuracy"],
        "ece": m["ece"],
        "share_in_band": rates["share_in_band"],
        "ood_rate": float((dist > ood_threshold).mean()),
    }


def evaluate(
    images,
    y,
    folds,
    idx,
    clean_features,
    heads,
    fold_oods,
    temperature,
    threshold,
    band,
    extract,
    size,
    preprocessing,
    progress,
):
    """Metrics per shift on images ``idx``; ``extract(indices, make_input, label)``
    returns pooled features, or ``(features, ood_features)`` when the OOD
    detector measures other features than the head (a fine-tuned backbone:
    ``finetune_model.ood_features_output``; ``clean_features`` is then such a
    pair too). ``heads[f]`` / ``fold_oods[f]`` are fold ``f``'s head and OOD
    model (trained without fold ``f``)."""
    idx = np.asarray(idx)
    yy = y[idx]
    ff = folds[idx]

    def score(feats):
        feats, ood_feats = feats if isinstance(feats, tuple) else (feats, feats)
        logit = np.empty(len(idx))
        dist = np.empty(len(idx))
        excess = np.empty(len(idx))
        for f in np.unique(ff):
            m = ff == f
            logit[m] = heads[f].logit(feats[m])
            dist[m] = fold_oods[f].distance(ood_feats[m])
            excess[m] = dist[m] > fold_oods[f].threshold
        return calibration.apply_temperature(logit, temperature), dist, excess

    if isinstance(clean_features, tuple):
        prob, dist, excess = score(tuple(x[idx] for x in clean_features))
    else:
        prob, dist, excess = score(clean_features[idx])
    clean = _metrics(yy, prob, threshold, band, dist, np.inf)
    clean["ood_rate"] = float(excess.mean())
    results = {"clean": {"description": "no shift (the clean out-of-fold predictions)", **clean}}
    for name, (desc, fn) in _shift_functions().items():
        make = lambda img, i, fn=fn: to_model_input(fn(img), size, preprocessing)  # noqa: E731
        feats = extract(idx, make, f"robustness {name}")
        p, d, ex = score(feats)
        m = _metrics(yy, p, threshold, band, d, np.inf)
        m["ood_rate"] = float(ex.mean())
        m["auc_drop"] = clean["roc_auc"] - m["roc_auc"]
        m["sensitivity_drop"] = clean["sensitivity"] - m["sensitivity"]
        m["specificity_drop"] = clean["specificity"] - m["specificity"]
        m["meets_auc_target"] = bool(m["auc_drop"] <= AUC_DROP_TARGET)
        m["meets_sensitivity_target"] = bool(m["sensitivity"] >= SENSITIVITY_TARGET)
        results[name] = {"description": desc, **m}
        progress(
            f"[robustness] {name}: AUC {m['roc_auc']:.4f} (drop {m['auc_drop']:+.4f}) "
            f"sens {m['sensitivity']:.3f} spec {m['specificity']:.3f} OOD {m['ood_rate']:.3f}"
        )
    a, b = results["frame_4x3_resize"], results["frame_4x3_centre_crop"]
    decision = (
        "keep whole-image framing (resize, no crop): "
        if a["roc_auc"] >= b["roc_auc"] - 0.002
        else "centre-crop framed 4:3 images better here, but the training images were framed whole; "
    ) + f"AUC resize {a['roc_auc']:.4f} vs centre-crop {b['roc_auc']:.4f}"
    return {
        "n_images": int(len(idx)),
        "n_benign": int((yy == 0).sum()),
        "n_malignant": int((yy == 1).sum()),
        "preprocessing": preprocessing,
        "image_size": size,
        "threshold": threshold,
        "temperature": temperature,
        "band": [band["lo"], band["hi"]],
        "targets": {"auc_drop_max": AUC_DROP_TARGET, "sensitivity_min": SENSITIVITY_TARGET},
        "framing_decision": decision,
        "shifts": results,
    }


def write(out: Path, rob: dict, config) -> None:
    out = Path(out)
    (out / "robustness.json").write_text(json.dumps(clean_json(rob), indent=2) + "\n", encoding="utf-8")
    lines = [
        "# Robustness under simulated device shifts",
        "",
        "Every image of a stratified subset "
        f"({rob['n_images']} images: {rob['n_benign']} benign, {rob['n_malignant']} melanoma) is transformed on the "
        "decoded image (before the preprocessing pipeline), its backbone features are re-extracted, and it is scored "
        "by the head of the cross-validation fold that did not train on it, with the shipped temperature "
        f"({rob['temperature']:.4f}) and threshold ({rob['threshold']:.4f}). OOD = share flagged by that fold's "
        f"Mahalanobis detector. Preprocessing `{rob['preprocessing']}` at {rob['image_size']} px.",
        "",
        f"Targets: ROC-AUC within {AUC_DROP_TARGET} of clean; sensitivity >= {SENSITIVITY_TARGET}.",
        "",
        "| shift | ROC-AUC | AUC drop | sensitivity | specificity | in band | OOD rate | targets |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in rob["shifts"].items():
        drop = "" if name == "clean" else f"{r['auc_drop']:+.4f}"
        if name == "clean":
            ok = ""
        else:
            ok = (
                "met"
                if r["meets_auc_target"] and r["meets_sensitivity_target"]
                else (
                    "MISSED: "
                    + ", ".join(
                        t
                        for t, good in (("AUC", r["meets_auc_target"]), ("sensitivity", r["meets_sensitivity_target"]))
                        if not good
                    )
                )
            )
        lines.append(
            f"| {name} | {r['roc_auc']:.4f} | {drop} | {r['sensitivity']:.3f} | {r['specificity']:.3f} | "
            f"{r['share_in_band']:.3f} | {r['ood_rate']:.3f} | {ok} |"
        )
    lines += ["", "Shifts:", ""]
    for name, r in rob["shifts"].items():
        lines.append(f"- **{name}**: {r['description']}")
    lines += ["", f"Framing decision: {rob['framing_decision']}.", ""]
    if rob.get("band_note"):
        lines += [f"Note: {rob['band_note']}.", ""]
    if rob.get("ood_note"):
        lines += [f"Note: {rob['ood_note']}.", ""]
    (out / "robustness.md").write_text("\n".join(lines), encoding="utf-8")
