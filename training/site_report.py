"""The files of an adapted (site) model folder besides the model: model.json, the
evaluation report (every local case used, with its out-of-fold probability),
site_cases.csv and the model card. No Django here.
"""

from __future__ import annotations

import csv
import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from .data import CLASS_NAMES
from .onnx_export import with_onnx_keys
from .report import clean_json


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """95% Wilson score interval of a proportion k/n."""
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return [round(max(0.0, centre - half), 6), round(min(1.0, centre + half), 6)]


def _metrics(m: dict) -> dict:
    """model.json's ``metrics`` from pooled outer-CV figures (``mean`` = pooled value)."""
    n_pos, n_neg = m["n_malignant"], m["n"] - m["n_malignant"]
    return {
        "roc_auc": {"mean": round(m["roc_auc"], 6)},
        "sensitivity": {"mean": round(m["sensitivity"], 6), "ci95": wilson(m["tp"], n_pos)},
        "specificity": {"mean": round(m["specificity"], 6), "ci95": wilson(m["tn"], n_neg)},
        "brier": {"mean": round(m["brier"], 6)},
        "ece": {"mean": round(m["ece"], 6)},
    }


# The smallest step model.json records: a threshold must lie strictly inside
# (0, 1) (inference.runtime.model_format), and on well-separated cases a
# calibrated melanoma score rounds to 1.0.
STEP = 1e-6


def operating_point(threshold: float, lo: float, hi: float) -> tuple[float, list[float]]:
    """(threshold, [band low, band high]) rounded to ``STEP``: the threshold inside (0, 1), the band around it."""
    threshold = min(max(round(threshold, 6), STEP), 1.0 - STEP)
    lo = min(round(lo, 6), threshold)
    hi = min(max(round(hi, 6), threshold + STEP), 1.0)
    return threshold, [lo, round(hi, 6)]


def write_all(
    out: Path, *, config, base, site, name, version, files, y, nested, final, ood, ood_info, exported, timings
):
    kept = nested.per_way[nested.way]
    cv = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in kept["metrics"].items()}
    comparison = {
        way: {k: (round(v, 6) if isinstance(v, float) else v) for k, v in r["metrics"].items()}
        for way, r in nested.per_way.items()
    }
    threshold, band = operating_point(final.threshold, final.band["lo"], final.band["hi"])
    base_meta = base.metadata
    meta = {
        "format_version": 1,
        "name": name,
        "version": str(version),
        "framework": "keras",
        "file": "model.keras",
        "input_size": base.input_size,
        "preprocessing": base.preprocessing,
        "input": base_meta.get("input", "float32 RGB 0..255"),
        "output": base.output_description,
        "class_names": list(CLASS_NAMES),
        "temperature": round(1.0 / final.calibration.scale, 6),
        "calibration": {
            "method": "platt (scale = 1/temperature, offset) on out-of-fold logits",
            "scale": round(final.calibration.scale, 6),
            "offset": round(final.calibration.offset, 6),
        },
        "threshold": threshold,
        "threshold_method": f"largest threshold with out-of-fold sensitivity >= {config.min_sensitivity}",
        "uncertain_band": band,
        "ood": {**ood.summary(), **ood_info, "fitted_on": "site cases + the base model's training-feature sample"},
        "gradcam_layer": base_meta.get("gradcam_layer"),
        "metrics": _metrics(kept["metrics"]),
        "site_adaptation": {
            "site": site,
            "base_model": {
                "name": base_meta["name"],
                "version": str(base_meta["version"]),
                "sha256": base.model_sha256,
            },
            "backbone": "the base model's, unchanged",
            "way": nested.way,
            "alignment": final.alignment,
            "why": (
                "the highest outer nested-CV ROC-AUC on the site's own cases when a paired bootstrap finds it "
                "better than the way closest to the global model in >= 90% of resamples; else that way"
            ),
            "evidence": nested.evidence,
            "cv": {
                **cv,
                "validation": f"{config.outer_folds}-fold stratified outer CV on the site's cases, "
                f"C, calibration and threshold chosen by {config.inner_folds}-fold inner CV per outer fold",
            },
            "comparison": comparison,
            "head": {"C": final.head.c, "C_grid": list(config.cs), "inner_auc": final.inner_auc},
            "n_cases": int(len(y)),
            "n_malignant": int(y.sum()),
            "n_benign": int((y == 0).sum()),
            "training_sample": {
                "file": "training_features.npz",
                "n": int(len(base.sample.y)),
                "n_malignant": int(base.sample.y.sum()),
            },
        },
        "training": {
            "command": config.command,
            "seed": config.seed,
            "data": Path(config.data).resolve().as_posix(),
            **timings,
        },
        "created_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
    }
    meta = clean_json(with_onnx_keys(meta, exported))
    (out / "model.json").write_text(json.dumps(meta, indent=2, allow_nan=False) + "\n", encoding="utf-8")

    cases = [
        {
            "file": f,
            "label": CLASS_NAMES[int(lab)],
            "outer_fold": int(fold) + 1,
            "outer_probability": round(float(p_out), 6),
            "oof_probability": round(float(p_in), 6),
        }
        for f, lab, fold, p_out, p_in in zip(files, y, nested.folds, kept["prob"], final.oof_prob, strict=True)
    ]
    with open(out / "site_cases.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(cases[0]))
        writer.writeheader()
        writer.writerows(cases)
    evaluation = {
        "kind": "site adaptation",
        "site": site,
        "base_model": meta["site_adaptation"]["base_model"],
        "way": nested.way,
        "comparison": comparison,
        "cv": meta["site_adaptation"]["cv"],
        "threshold": meta["threshold"],
        "uncertain_band": band,
        "band_rates": {k: final.band[k] for k in ("share_in_band", "sensitivity_outside", "specificity_outside")},
        "ood": meta["ood"],
        "cases": cases,
    }
    (out / "evaluation.json").write_text(json.dumps(clean_json(evaluation), indent=2) + "\n", encoding="utf-8")
    (out / "evaluation.md").write_text(_evaluation_md(meta, evaluation), encoding="utf-8")
    (out / "MODEL_CARD.md").write_text(_card(meta, evaluation), encoding="utf-8")
    return meta


def _row(way, m):
    return (
        f"| {way} | {m['roc_auc']:.3f} | {m['sensitivity']:.3f} | {m['specificity']:.3f} | "
        f"{m['ece']:.3f} | {m['brier']:.3f} | {m['log_loss']:.3f} |"
    )


def _evaluation_md(meta, ev) -> str:
    sa = meta["site_adaptation"]
    lines = [
        f"# Site evaluation: {meta['name']}-{meta['version']} (site {sa['site']})",
        "",
        f"Base model {sa['base_model']['name']}-{sa['base_model']['version']}, backbone unchanged. "
        f"{sa['n_cases']} local cases ({sa['n_malignant']} melanomas, {sa['n_benign']} benign).",
        "",
        "Nested cross-validation on the site's cases (outer-fold figures; each fold's threshold chosen without it):",
        "",
        "| head fitted on | ROC-AUC | sensitivity | specificity | ECE | Brier | log-loss |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *[_row(w, m) for w, m in ev["comparison"].items()],
        "",
        f"Kept: **{sa['way']}** ({sa['why']}).",
        "",
        f"Threshold {meta['threshold']}, uncertain band {meta['uncertain_band']} "
        f"({ev['band_rates']['share_in_band']:.1%} of the site's cases out-of-fold).",
        f"OOD: threshold {meta['ood']['threshold']:.1f}, site out-of-fold pass rate "
        f"{meta['ood']['site_oof_pass_rate']:.1%}.",
        "",
        "## Cases used",
        "",
        "| file | label | outer fold | outer-CV probability |",
        "| --- | --- | --- | --- |",
        *[f"| {c['file']} | {c['label']} | {c['outer_fold']} | {c['outer_probability']:.3f} |" for c in ev["cases"]],
        "",
    ]
    return "\n".join(lines)


def _card(meta, ev) -> str:
    sa = meta["site_adaptation"]
    m = meta["metrics"]
    lo, hi = np.round(m["sensitivity"]["ci95"], 3)
    return "\n".join(
        [
            f"# Model card: {meta['name']}-{meta['version']}",
            "",
            f"A site-adapted head for site **{sa['site']}** on the unchanged backbone of "
            f"{sa['base_model']['name']}-{sa['base_model']['version']} (`python -m training adapt`).",
            "",
            "## Intended use",
            "",
            "Decision support for dermoscopy images of pigmented lesions taken at this site, with its devices. "
            "Not a diagnosis; every image still needs a clinician. Not for other sites.",
            "",
            "## Local figures (nested cross-validation on the site's cases)",
            "",
            f"- cases: {sa['n_cases']} ({sa['n_malignant']} melanomas, {sa['n_benign']} benign), "
            f"biopsy-confirmed as supplied by the site",
            f"- head fitted on: {sa['way']}",
            f"- ROC-AUC {m['roc_auc']['mean']:.3f}; sensitivity {m['sensitivity']['mean']:.3f} "
            f"(95% Wilson {lo}-{hi}); specificity {m['specificity']['mean']:.3f}; ECE {m['ece']['mean']:.3f}",
            f"- threshold {meta['threshold']}, uncertain band {meta['uncertain_band']}",
            "",
            "## Limits",
            "",
            "- Only the head, calibration, threshold and OOD statistics are adapted; the backbone is not.",
            "- The figures come from the site's own, few cases: wide intervals, and not a validation study.",
            "- Labels must be histopathology results; clinical impressions would teach the model its own errors.",
            "",
            "Data credit: ISIC Archive, HAM10000 (Tschandl et al. 2018, CC BY-NC-SA 4.0) for the base model.",
            "",
        ]
    )
