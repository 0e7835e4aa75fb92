"""``python -m training adapt --base MODEL_DIR --data DIR --out OUT_DIR``: a site's own head.

A clinic's biopsy-confirmed images (``DIR/benign/``, ``DIR/malignant/``, any
size) adapt the shipped model to its devices and case mix. The backbone of
the base model is kept unchanged; what is fitted on the site's cases (alone
or together with the base model's training-feature sample, whichever the
site's nested cross-validation shows better; ``training.site_head``):

- a logistic head on the pooled backbone features (C by inner CV);
- its calibration (Platt scale and offset: a temperature plus the site's
  prevalence), the threshold for sensitivity >= 0.90 and the uncertain band;
- the OOD statistics (Mahalanobis on the site's and the sample's features,
  threshold from the site's out-of-fold distances).

OUT_DIR becomes a complete model folder (model.keras, model.onnx with the
Grad-CAM and OOD outputs, model.json, MODEL_CARD.md, evaluation.json/.md
listing every local case used, site_cases.csv, the training-feature sample)
that ``python -m inference predict --model OUT_DIR`` and
``manage.py register_model OUT_DIR`` accept. It is written to a temporary
folder beside OUT_DIR and renamed at the end: a refusal or a failure leaves
nothing behind. Refusals (exit status 2, a reason on stderr): too few cases
(fewer than ``MIN_MALIGNANT`` melanomas or ``MIN_BENIGN`` benign lesions,
see docs/site-adaptation.md), a folder without both classes, unreadable
images (each named), a base model without what adaptation needs.

No Django here.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from . import site_align, site_head, site_report
from .data import CLASS_NAMES
from .preprocessing import ImageError, is_image_path
from .site_model import SAMPLE_FILE, BaseModelError, open_base

# The smallest site the command accepts (justified in docs/site-adaptation.md):
# below 20 melanomas the outer folds hold 4 or fewer each, the threshold for
# sensitivity >= 0.90 rests on a handful of cases, and the 95% interval of a
# measured 0.90 sensitivity reaches below 0.70.
MIN_MALIGNANT = 20
MIN_BENIGN = 40
OOD_COMPONENTS = 64
OOD_QUANTILE = 0.99


class AdaptError(ValueError):
    """The adaptation is refused; the message says why."""


@dataclass
class AdaptConfig:
    base: Path
    data: Path
    out: Path
    seed: int = 0
    outer_folds: int = 5
    inner_folds: int = 5
    cs: tuple = site_head.DEFAULT_CS
    min_sensitivity: float = 0.90
    align: str = "none"  # site_align.fit_alignment; chosen by bench/site_methods.py (docs/site-adaptation.md)
    min_malignant: int = MIN_MALIGNANT
    min_benign: int = MIN_BENIGN
    name: str = ""
    version: str = ""
    site: str = ""
    command: str = ""
    progress: object = None  # a callable taking one line; default: print with a timestamp
    extra: dict = field(default_factory=dict)


def _print_progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def list_site(data: Path, min_malignant: int, min_benign: int) -> tuple[list[Path], np.ndarray]:
    """The site's image files and labels; AdaptError for a folder that cannot be used."""
    if not data.is_dir():
        raise AdaptError(f"{data} is not a folder")
    paths, labels = [], []
    for label, name in enumerate(CLASS_NAMES):
        folder = data / name
        found = (
            sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")) if folder.is_dir() else []
        )
        if not found:
            raise AdaptError(
                f"{data} needs both {CLASS_NAMES[0]}/ and {CLASS_NAMES[1]}/ subfolders with images; "
                f"{name}/ is {'empty' if folder.is_dir() else 'missing'}"
            )
        paths += found
        labels += [label] * len(found)
    y = np.asarray(labels, dtype=int)
    n_mal, n_ben = int(y.sum()), int((y == 0).sum())
    if n_mal < min_malignant or n_ben < min_benign:
        raise AdaptError(
            f"too few cases: {n_mal} melanomas and {n_ben} benign lesions; at least {min_malignant} "
            f"melanomas and {min_benign} benign lesions (biopsy-confirmed) are needed"
        )
    return paths, y


def decode_all(base, paths: list[Path], data: Path) -> list[np.ndarray]:
    """Every image through the worker's preprocessing; AdaptError naming each unreadable one."""
    arrays, bad = [], []
    for p in paths:
        try:
            if not is_image_path(p):
                raise ImageError("not a .jpg, .jpeg or .png file")
            arrays.append(base.load_image(p))
        except (ImageError, OSError) as exc:
            bad.append(f"{p.relative_to(data).as_posix()} ({exc})")
    if bad:
        raise AdaptError(f"{len(bad)} unreadable image(s): " + "; ".join(bad))
    return arrays


def ood_statistics(xs, xt, ys, seed: int):
    """Mahalanobis OOD fitted on the site's and the sample's features; threshold from site OOF distances."""
    from sklearn.model_selection import StratifiedKFold

    from .ood import fit_ood

    x_all = np.concatenate([xs, xt])
    ood = fit_ood(x_all, components=OOD_COMPONENTS, quantile=OOD_QUANTILE)
    k = int(min(5, np.bincount(ys).min()))
    oof = np.zeros(len(xs))
    for tr, va in StratifiedKFold(k, shuffle=True, random_state=seed).split(xs, ys):
        fold_ood = fit_ood(np.concatenate([xs[tr], xt]), components=OOD_COMPONENTS, quantile=OOD_QUANTILE)
        oof[va] = fold_ood.distance(xs[va])
    ood.threshold = float(max(ood.threshold, np.quantile(oof, OOD_QUANTILE)))
    return ood, {"site_oof_pass_rate": float(np.mean(oof <= ood.threshold))}


def _default_names(config: AdaptConfig, base_meta: dict) -> tuple[str, str, str]:
    site = config.site or "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in config.data.resolve().name)
    name = config.name or f"{base_meta['name']}-site"
    version = config.version or f"{base_meta['version']}.{datetime.now(UTC):%Y%m%d%H%M%S}"
    return site, name, version


def run(config: AdaptConfig) -> dict:
    """Adapt, write ``config.out``; returns model.json's content. AdaptError/BaseModelError on refusal."""
    t0 = time.time()
    progress = config.progress or _print_progress
    out = Path(config.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise AdaptError(f"{out} exists and is not an empty folder; choose a new --out")
    data = Path(config.data)
    paths, y = list_site(data, config.min_malignant, config.min_benign)
    base = open_base(config.base)
    progress(f"site {data}: {int(y.sum())} melanomas, {int((y == 0).sum())} benign; base {base.label}")
    arrays = decode_all(base, paths, data)
    progress("decoded every image; extracting features with the base model's backbone")
    xs = base.extract(arrays, progress=progress)
    xt, yt = base.sample.features, base.sample.y
    t_features = time.time() - t0

    nested = site_head.nested_cv(
        xs,
        y,
        xt,
        yt,
        cs=config.cs,
        outer=config.outer_folds,
        inner=config.inner_folds,
        seed=config.seed,
        min_sensitivity=config.min_sensitivity,
        base_head=base.head(),
        align=config.align,
    )
    for way, r in nested.per_way.items():
        m = r["metrics"]
        progress(
            f"nested CV {way}: ROC-AUC {m['roc_auc']:.3f} sens {m['sensitivity']:.3f} "
            f"spec {m['specificity']:.3f} ECE {m['ece']:.3f} log-loss {m['log_loss']:.3f}"
        )
    progress(f"kept: {nested.way}")
    final = site_head.fit_site_head(
        nested.way,
        xs,
        y,
        xt,
        yt,
        cs=config.cs,
        inner=config.inner_folds,
        seed=config.seed,
        min_sensitivity=config.min_sensitivity,
        base_head=base.head(),
        align=config.align,
    )
    # The site's own OOD statistics, in the space the base's detector measures.
    xs_ood = xs if base.ood_is_features else base.extract_ood(arrays)
    ood, ood_info = ood_statistics(xs_ood, base.sample.ood_input, y, config.seed)
    site, name, version = _default_names(config, base.metadata)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model = base.build_adapted(final.kernel, final.bias, ood.projection, ood.bias)
        model.save(tmp / "model.keras")
        from .onnx_export import ONNX_FILE, export_onnx

        exported = export_onnx(
            tmp / "model.keras",
            tmp / ONNX_FILE,
            gradcam_layer=base.metadata.get("gradcam_layer"),
            check_images=np.stack(arrays[:4]),
        )
        shutil.copy2(base.path / SAMPLE_FILE, tmp / SAMPLE_FILE)
        meta = site_report.write_all(
            tmp,
            config=config,
            base=base,
            site=site,
            name=name,
            version=version,
            files=[p.relative_to(data).as_posix() for p in paths],
            y=y,
            nested=nested,
            final=final,
            ood=ood,
            ood_info=ood_info,
            exported=exported,
            timings={"features_s": round(t_features, 1), "wall_time_s": round(time.time() - t0, 1)},
        )
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
        os.chmod(out, 0o755)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    progress(f"wrote {out} ({name}-{version}) in {time.time() - t0:.0f}s")
    return meta


def build_parser(prog: str = "python -m training adapt") -> argparse.ArgumentParser:
    d = AdaptConfig(base=Path("."), data=Path("."), out=Path("."))
    p = argparse.ArgumentParser(prog=prog, description="Adapt a model's head to one site's biopsy-confirmed images.")
    p.add_argument(
        "--base", type=Path, required=True, help="the base model folder (e.g. models/mobilenet-v2-melanoma-v3)"
    )
    p.add_argument("--data", type=Path, required=True, help="the site's images: benign/ and malignant/ subfolders")
    p.add_argument("--out", type=Path, required=True, help="the new model folder (must not exist, or be empty)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--site", default="", help="site label recorded in model.json (default: the data folder's name)")
    p.add_argument("--name", default="", help="model name (default: the base name + '-site')")
    p.add_argument("--version", default="", help="model version (default: the base version + a UTC timestamp)")
    p.add_argument(
        "--align",
        choices=site_align.ALIGNMENTS,
        default=d.align,
        help="align the site's features onto the training sample's (benign statistics) before the head "
        "(default %(default)s; docs/site-adaptation.md)",
    )
    p.add_argument("--outer-folds", type=int, default=d.outer_folds, help="(default %(default)s)")
    p.add_argument("--inner-folds", type=int, default=d.inner_folds, help="(default %(default)s)")
    # Test-only (documented in docs/site-adaptation.md): the unit tests run on
    # the 16 demo images. Never lower these for a real site.
    p.add_argument("--test-min-cases", type=int, default=0, help=argparse.SUPPRESS)
    return p


def main(argv=None, prog: str = "python -m training adapt") -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(prog).parse_args(argv)
    config = AdaptConfig(
        base=args.base,
        data=args.data,
        out=args.out,
        seed=args.seed,
        site=args.site,
        name=args.name,
        version=args.version,
        outer_folds=args.outer_folds,
        inner_folds=args.inner_folds,
        align=args.align,
        command=prog + " " + " ".join(shlex.quote(a) for a in argv),
    )
    if args.test_min_cases:
        config.min_malignant = config.min_benign = args.test_min_cases
    try:
        run(config)
    except (AdaptError, BaseModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
