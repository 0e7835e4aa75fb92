"""Evaluation report and model card of a transfer run.

Writes, into the run's output folder: ``model.json`` (the runtime contract),
``cv_report.json``, ``oof_predictions.csv``, ``evaluation.json``,
``evaluation.md``, ``roc_curve.png``, ``reliability_diagram.png`` and
``MODEL_CARD.md``. Plots use matplotlib's non-interactive Agg backend.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from . import model_card
from .data import CLASS_NAMES
from .metrics import METRIC_LABELS, METRIC_NAMES, format_mean_sd


def clean_json(value):
    """JSON-safe copy: NaN/inf -> null, numpy scalars/arrays -> Python."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return clean_json(value.tolist())
    if isinstance(value, Path):
        return value.as_posix()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    return value


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(clean_json(data), indent=2, allow_nan=False) + "\n", encoding="utf-8")


def load_baseline(path) -> dict | None:
    """Summary figures of the from-scratch baseline's cv_report.json (and
    model.json next to it), or None if absent."""
    if not path:
        return None
    path = Path(path)
    if not path.is_file():
        return None
    try:
        rep = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    meta = {}
    mj = path.parent / "model.json"
    if mj.is_file():
        try:
            meta = json.loads(mj.read_text(encoding="utf-8"))
        except ValueError:
            meta = {}
    return {
        "path": path.as_posix(),
        "name": meta.get("name", path.parent.name),
        "input_size": meta.get("input_size"),
        "threshold": rep.get("threshold"),
        "threshold_method": rep.get("threshold_method"),
        "summary": rep.get("summary", {}),
        "command": meta.get("training", {}).get("command"),
        "wall_time_s": meta.get("training", {}).get("wall_time_s"),
    }


def plot_roc(path: Path, y, prob, folds) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = plt.subplots(figsize=(5.5, 5.5), dpi=110)
    for f in range(int(folds.max()) + 1):
        m = folds == f
        if len(np.unique(y[m])) < 2:
            continue
        fpr, tpr, _ = roc_curve(y[m], prob[m])
        ax.plot(fpr, tpr, lw=0.8, alpha=0.5, label=f"fold {f + 1} (AUC {roc_auc_score(y[m], prob[m]):.3f})")
    if len(np.unique(y)) == 2:
        fpr, tpr, _ = roc_curve(y, prob)
        ax.plot(fpr, tpr, lw=2, color="k", label=f"pooled OOF (AUC {roc_auc_score(y, prob):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("sensitivity (true positive rate)")
    ax.set_title("ROC, out-of-fold predictions")
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def reliability_bins(y, prob, n_bins: int = 10):
    bins = np.minimum((np.asarray(prob) * n_bins).astype(int), n_bins - 1)
    rows = []
    for b in range(n_bins):
        m = bins == b
        if m.any():
            rows.append(
                {"bin": b, "n": int(m.sum()), "mean_prob": float(prob[m].mean()), "observed": float(y[m].mean())}
            )
    return rows


def plot_reliability(path: Path, y, prob_raw, prob) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5.5), dpi=110)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8, label="perfect calibration")
    for p, label, style in ((prob_raw, "before temperature", "o-"), (prob, "after temperature", "s-")):
        rows = reliability_bins(y, p)
        ax.plot([r["mean_prob"] for r in rows], [r["observed"] for r in rows], style, label=label, ms=4)
    ax.set_xlabel("mean predicted P(melanoma) in bin")
    ax.set_ylabel("observed melanoma share in bin")
    ax.set_title("Reliability diagram, out-of-fold (10 bins)")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_all(
    out,
    *,
    meta,
    cv_report,
    files,
    y,
    folds,
    groups,
    oof_logit,
    prob,
    prob_raw,
    robustness,
    baseline_report,
    model_size_bytes,
) -> None:
    out = Path(out)
    baseline = load_baseline(baseline_report)
    meta = dict(meta)
    meta["model_size_bytes"] = int(model_size_bytes)
    _write_json(out / "model.json", meta)
    cv_report = dict(cv_report)
    cv_report["baseline"] = baseline
    _write_json(out / "cv_report.json", cv_report)

    with open(out / "oof_predictions.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label", "fold", "group", "logit", "probability_uncalibrated", "probability"])
        for row in zip(
            files,
            y.tolist(),
            folds.tolist(),
            groups.tolist(),
            oof_logit.tolist(),
            prob_raw.tolist(),
            prob.tolist(),
            strict=True,
        ):
            name, label, fold, group, lg, pr, p = row
            w.writerow([name, CLASS_NAMES[label], fold + 1, group, f"{lg:.6f}", f"{pr:.6f}", f"{p:.6f}"])

    plot_roc(out / "roc_curve.png", y, prob, folds)
    plot_reliability(out / "reliability_diagram.png", y, prob_raw, prob)

    evaluation = {
        "model": meta["name"],
        "version": meta["version"],
        "preprocessing": meta["preprocessing"],
        "input_size": meta["input_size"],
        "summary": cv_report["summary"],
        "ci95": cv_report["ci95"],
        "pooled_oof": cv_report["pooled_oof"],
        "per_fold": cv_report["per_fold"],
        "threshold": meta["threshold"],
        "temperature": meta["temperature"],
        "uncertain_band": cv_report["uncertain_band"],
        "calibration": cv_report["calibration"],
        "reliability_bins_after": reliability_bins(y, prob),
        "reliability_bins_before": reliability_bins(y, prob_raw),
        "ood": cv_report["ood"],
        "preprocessing_comparison": cv_report["preprocessing_comparison"],
        "baseline": baseline,
        "robustness": robustness,
    }
    _write_json(out / "evaluation.json", evaluation)
    (out / "evaluation.md").write_text(evaluation_markdown(meta, cv_report, baseline, robustness), encoding="utf-8")
    model_card.write(out, meta, kind=model_card.TRANSFER, cv_report=cv_report, baseline=baseline, robustness=robustness)


def _metric_table(cv_report, baseline) -> str:
    s, ci = cv_report["summary"], cv_report["ci95"]
    bs = (baseline or {}).get("summary")
    head = (
        "| Metric | Transfer: mean ± sd (folds) | Transfer: 95% CI (bootstrap, pooled OOF) | Baseline CNN: mean ± sd |"
    )
    rows = [head, "| --- | --- | --- | --- |"]
    for m in METRIC_NAMES:
        cells = (
            METRIC_LABELS[m],
            format_mean_sd(s, m),
            f"{ci[m]['lo']:.3f} – {ci[m]['hi']:.3f}",
            format_mean_sd(bs, m),
        )
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _per_fold_table(cv_report) -> str:
    cols = ("roc_auc", "sensitivity", "specificity", "balanced_accuracy", "brier", "ece")
    has_c = all("c" in info for info in cv_report["fold_info"])  # fine-tuned models have no C
    rows = ["| fold | n | " + "C | " * has_c + " | ".join(cols) + " |", "| --- " * (len(cols) + 2 + has_c) + "|"]
    for f, info in zip(cv_report["per_fold"], cv_report["fold_info"], strict=True):
        n = f["tp"] + f["tn"] + f["fp"] + f["fn"]
        c = f"{info['c']:g} | " if has_c else ""
        rows.append(f"| {info['fold'] + 1} | {n} | {c}" + " | ".join(f"{f[c]:.3f}" for c in cols) + " |")
    return "\n".join(rows)


def _robustness_table(rob) -> str:
    if not rob:
        return "(robustness report skipped)"
    rows = [
        "| shift | ROC-AUC | AUC drop | sensitivity | specificity | OOD rate |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in rob["shifts"].items():
        drop = "" if name == "clean" else f"{r['auc_drop']:+.4f}"
        rows.append(
            f"| {name} | {r['roc_auc']:.4f} | {drop} | {r['sensitivity']:.3f} | {r['specificity']:.3f} "
            f"| {r['ood_rate']:.3f} |"
        )
    return "\n".join(rows)


def _description(meta) -> str:
    t = meta["training"]
    size = f"Input {meta['input_size']}x{meta['input_size']}, preprocessing `{meta['preprocessing']}`"
    if "finetune" in t:
        ft = t["finetune"]
        augmentation = ft.get("augmentation_summary", "fresh augmentation every epoch")
        return (
            f"{t['backbone']['architecture']}: {ft['epochs']} epochs per fit, {augmentation}, "
            f"BatchNorm frozen; logit layer on the pooled features, temperature-scaled.\n{size}; "
            f"test-time augmentation: {ft['tta']}."
        )
    return (
        "Frozen ImageNet MobileNetV2 (pooled 1280-d features) + logistic-regression head, temperature-scaled.\n"
        f"{size},\n{t['augmented_copies']} augmented feature copies per training image."
    )


def evaluation_markdown(meta, cv_report, baseline, rob) -> str:
    t = meta["training"]
    band = cv_report["uncertain_band"]
    cal = cv_report["calibration"]
    comp = cv_report["preprocessing_comparison"]
    ood = cv_report["ood"]
    comp_lines = ""
    if comp:
        comp_lines = "\n".join(
            f"- `{p}`: ROC-AUC {comp[p]['auc_mean']:.4f} ± {comp[p]['auc_sd']:.4f}"
            for p in comp
            if isinstance(comp.get(p), dict)
        )
        comp_lines = (
            f"Compared by {cv_report['folds']}-fold grouped CV (logistic head, clean features) on "
            f"{comp['n_images']} images:\n\n{comp_lines}\n\nRule: {comp['rule']}. Chosen: `{comp['chosen']}`."
        )
    ood_rows = "\n".join(
        f"| {k} | {v['train_ood_rate_mean']:.4f} | {v['heldout_ood_rate_mean']:.4f} |"
        for k, v in ood["cv_by_components"].items()
    )
    base_line = (
        f"Baseline: `{baseline['name']}` (from-scratch CNN, {baseline.get('input_size')} px), "
        f"from `{baseline['path']}`; its threshold-dependent metrics are at its own threshold "
        f"({baseline.get('threshold_method') or 'see its report'})."
        if baseline
        else "Baseline: its cv_report.json was not found when this report was written."
    )
    return f"""# Evaluation: {meta["name"]} v{meta["version"]}

{_description(meta)}
{cv_report["folds"]}-fold cross-validation, stratified by label, near-duplicate groups kept within one fold
(seed {cv_report["seed"]}); {cv_report["n_images"]} images. Threshold-dependent metrics at the shipped threshold
{meta["threshold"]:.4f} on temperature-scaled probabilities.

## Cross-validated metrics

{_metric_table(cv_report, baseline)}

mean ± sd across the {cv_report["folds"]} folds (sd with ddof=1); 95% CIs: percentile bootstrap
over the pooled out-of-fold predictions, resampling near-duplicate groups
({cv_report.get("bootstrap_resamples", 1000)} resamples).
{base_line}

Per fold:

{_per_fold_table(cv_report)}

![ROC](roc_curve.png)

## Calibration

Temperature T = {cal["temperature"]:.4f} fitted on the out-of-fold logits by minimising NLL
(NLL {cal["nll_before"]:.4f} → {cal["nll_after"]:.4f}; ECE {cal["ece_before"]:.4f} → {cal["ece_after"]:.4f};
Brier {cal["brier_before"]:.4f} → {cal["brier_after"]:.4f}). The exported `logit` layer has W/T and b/T folded in.

![Reliability](reliability_diagram.png)

## Operating point

- Threshold **{meta["threshold"]:.4f}**: {cv_report["threshold_rule"]} (on the calibrated OOF probabilities).
- Uncertain band **[{band["lo"]:.4f}, {band["hi"]:.4f})**: the narrowest band (fewest images inside) such that,
  outside it, OOF sensitivity ≥ {band["target_sensitivity"]} and specificity ≥ {band["target_specificity"]}, allowed to
  hold at most {band["max_share"]:.0%} of images. Targets met: {band["targets_met"]}. In band:
  {band["share_in_band"]:.1%} of images; outside it sensitivity {band["sensitivity_outside"]:.3f}, specificity
  {band["specificity_outside"]:.3f}.

## Preprocessing

{comp_lines}

## Out-of-distribution detection

Squared Mahalanobis distance in the pooled feature space, PCA-whitened to k components
(shrinkage {ood["shrinkage"]} × mean component variance). Threshold = {ood["threshold_quantile"]:.0%} quantile
of the training images' distances. Per candidate k, fitted on each fold's training part:

| k | OOD rate on training part | OOD rate on held-out fold |
| --- | --- | --- |
{ood_rows}

Chosen k = {ood["components"]} ({ood["selection_rule"]}); final threshold {ood["threshold"]:.2f} (fitted on all
images: train pass rate {ood["train_pass_rate"]:.4f}; held-out-fold OOD rate {ood["heldout_ood_rate"]:.4f}).

## Robustness (out-of-fold, simulated device shifts)

{_robustness_table(rob)}

Details: robustness.md.

## Reproduce

```
{t["command"]}
```

Wall time {t["wall_time_s"]:.0f} s on {t["machine"]}; TensorFlow {t["tensorflow"]}, Keras {t["keras"]}.
"""
