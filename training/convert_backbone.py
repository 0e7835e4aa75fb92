"""Convert torchvision's ImageNet MobileNetV2 weights (``mobilenet_v2-b0353104.pth``)
into the Keras port of :mod:`training.backbone`, and verify the port against torch.

This is a one-off tool, kept so that the committed
``models/backbones/mobilenet_v2_imagenet.weights.h5`` can be rebuilt and
re-checked. torch is imported lazily, only by the options that need it
(``--pth``, ``--verify``, ``--dump-reference``): run those in a separate
environment that has torch (torch is *not* a project requirement), e.g.::

    python3.11 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch==2.13.0 numpy pillow
    # optional, for the one-process --verify: keras==3.15.1 "tensorflow-cpu==2.21.*"

Keras/TensorFlow are likewise imported only by the options that build the
Keras model, so the torch-only steps run in a torch-only environment.

Two-environment route (torch env dumps numpy files, the project venv converts)::

    # torch env: state_dict -> npz, and torch's reference logits on a seeded input
    /tmp/torchenv/bin/python -m training.convert_backbone --pth mobilenet_v2-b0353104.pth \\
        --dump-state /tmp/mobilenet_v2_state.npz --dump-reference /tmp/mobilenet_v2_ref4.npz --batch 4
    # project venv: build the Keras model, write the weights, check against torch's logits
    .venv/bin/python -m training.convert_backbone --state /tmp/mobilenet_v2_state.npz \\
        --out models/backbones/mobilenet_v2_imagenet.weights.h5 --verify-against /tmp/mobilenet_v2_ref4.npz

One-environment route (torch and Keras installed together)::

    python -m training.convert_backbone --pth mobilenet_v2-b0353104.pth \\
        --out models/backbones/mobilenet_v2_imagenet.weights.h5 --verify

The test fixture ``tests/training/fixtures/mobilenet_v2_reference.npz`` is a
``--dump-reference`` file with ``--batch 2``. Its input is stored explicitly
as raw RGB uint8 pixels (0..255, *not* normalised; ``pixels``); ``logits`` and
``pooled_features`` are torch's outputs after torchvision's normalisation
``(pixels/255 - mean)/std`` (``normalised_input`` below).

The torch reference network is ``torchvision.models.mobilenet_v2`` when
torchvision imports, otherwise ``_builtin_torch_mobilenet_v2``, a
module-for-module copy of torchvision's definition (same submodule names, so
the state_dict loads with ``strict=True``). Which one ran is printed and stored.
The torch side (loading the ``.pth``, the reference network, its outputs) is
``training.torch_mobilenet``; this module keeps the NumPy helpers, the
state_dict -> Keras mapping, the checks and the CLI.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from training.files import sha256_of
from training.torch_mobilenet import dump_torchvision_classes, read_pth, torch_outputs, torch_reference

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
TOLERANCE = 1e-4
DEFAULT_SEED = 20240601
IMAGE_SIZE = 224


# ---------------------------------------------------------------- numpy helpers


def random_pixels(seed: int = DEFAULT_SEED, batch: int = 4, size: int = IMAGE_SIZE) -> np.ndarray:
    """Seeded random RGB images, uint8 0..255, NHWC (legacy RandomState: a frozen stream)."""
    return np.random.RandomState(seed).randint(0, 256, size=(batch, size, size, 3), dtype=np.uint8)


def normalised_input(pixels: np.ndarray) -> np.ndarray:
    """torchvision's ToTensor + Normalize in float32: ``(pixels/255 - mean)/std``, NHWC."""
    x = np.asarray(pixels, dtype=np.float32) / np.float32(255.0)
    return ((x - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)


def photo_pixels(path, resize: int = 256, crop: int = IMAGE_SIZE) -> np.ndarray:
    """torchvision's ImageNet eval framing: shorter side to 256 (bilinear), centre crop 224.

    Returns uint8 RGB ``(crop, crop, 3)``. Both networks get these same pixels,
    so the torch/Keras comparison does not depend on the resize details.
    """
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        w, h = img.size
        scale = resize / min(w, h)
        img = img.resize((max(resize, round(w * scale)), max(resize, round(h * scale))), Image.BILINEAR)
        w, h = img.size
        left, top = (w - crop) // 2, (h - crop) // 2
        img = img.crop((left, top, left + crop, top + crop))
        return np.asarray(img, dtype=np.uint8)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def read_state_npz(path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


# ------------------------------------------------------------- state -> keras


def keras_assignments(state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Map a torchvision MobileNetV2 state_dict (numpy) to ``{keras layer name: weights}``.

    Conv ``OIHW`` -> ``HWIO``; depthwise ``(C,1,3,3)`` -> ``(3,3,C,1)``;
    BatchNorm -> ``[gamma, beta, moving_mean, moving_variance]``; Linear
    ``(out,in)`` -> kernel ``(in,out)`` + bias. Raises if any state_dict
    entry (other than ``num_batches_tracked``) is left unused.
    """
    from training.backbone import block_specs

    used: set[str] = set()

    def take(key: str) -> np.ndarray:
        if key not in state:
            raise KeyError(f"state_dict has no {key!r}")
        used.add(key)
        return np.asarray(state[key], dtype=np.float32)

    def conv(prefix: str) -> list[np.ndarray]:
        return [take(f"{prefix}.weight").transpose(2, 3, 1, 0)]

    def depthwise(prefix: str) -> list[np.ndarray]:
        return [take(f"{prefix}.weight").transpose(2, 3, 0, 1)]

    def bn(prefix: str) -> list[np.ndarray]:
        return [take(f"{prefix}.{k}") for k in ("weight", "bias", "running_mean", "running_var")]

    out: dict[str, list[np.ndarray]] = {
        "stem_conv": conv("features.0.0"),
        "stem_conv_bn": bn("features.0.1"),
    }
    for block, _cin, _cout, _stride, t in block_specs():
        f = f"features.{block + 1}.conv"
        name = f"block_{block}"
        if t != 1:
            out[f"{name}_expand"] = conv(f"{f}.0.0")
            out[f"{name}_expand_bn"] = bn(f"{f}.0.1")
            i = 1
        else:
            i = 0
        out[f"{name}_depthwise"] = depthwise(f"{f}.{i}.0")
        out[f"{name}_depthwise_bn"] = bn(f"{f}.{i}.1")
        out[f"{name}_project"] = conv(f"{f}.{i + 1}")
        out[f"{name}_project_bn"] = bn(f"{f}.{i + 2}")
    out["head"] = conv("features.18.0")
    out["head_bn"] = bn("features.18.1")
    out["predictions"] = [take("classifier.1.weight").T.copy(), take("classifier.1.bias")]

    unused = sorted(k for k in state if k not in used and not k.endswith("num_batches_tracked"))
    if unused:
        raise ValueError(f"state_dict entries not mapped onto the Keras model: {unused}")
    return out


def keras_model_from_state(state: dict[str, np.ndarray]):
    """The full (include_top) Keras port with the state_dict's weights assigned."""
    from training.backbone import build_mobilenet_v2

    model = build_mobilenet_v2(include_top=True)
    assignments = keras_assignments(state)
    with_weights = {layer.name for layer in model.layers if layer.weights}
    if with_weights != set(assignments):
        raise ValueError(
            "Keras layers and state_dict mapping differ: "
            f"only in Keras {sorted(with_weights - set(assignments))}, "
            f"only in mapping {sorted(set(assignments) - with_weights)}"
        )
    for name, weights in assignments.items():
        layer = model.get_layer(name)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        got = [tuple(w.shape) for w in weights]
        if expected != got:
            raise ValueError(f"{name}: Keras expects {expected}, state_dict gives {got}")
        layer.set_weights(weights)
    return model


def keras_outputs(model, x: np.ndarray, batch_size: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(logits, pooled 1280-d features) of the full Keras port on normalised NHWC input."""
    import keras

    pooled = keras.Model(model.input, model.get_layer("avg_pool").output)
    both = keras.Model(model.input, [model.output, pooled.output])
    logits, feats = both.predict(x, batch_size=batch_size, verbose=0)
    return np.asarray(logits, np.float32), np.asarray(feats, np.float32)


def keras_end_to_end_logits(model, pixels: np.ndarray) -> np.ndarray:
    """Logits from raw 0..255 pixels through ``imagenet_normalisation()`` + the port (project contract)."""
    import keras

    from training.backbone import imagenet_normalisation

    inputs = keras.Input(model.input.shape[1:])
    wrapped = keras.Model(inputs, model(imagenet_normalisation()(inputs)))
    return np.asarray(wrapped.predict(pixels.astype(np.float32), batch_size=4, verbose=0), np.float32)


# ------------------------------------------------------------ torch reference


def dump_reference(pth, out, seed: int, batch: int, implementation: str = "auto") -> None:
    """torch's logits and pooled features on ``batch`` seeded images, as an npz (needs torch)."""
    import torch

    model, impl = torch_reference(pth, implementation)
    pixels = random_pixels(seed, batch)
    logits, feats = torch_outputs(model, normalised_input(pixels))
    np.savez_compressed(
        out,
        pixels=pixels,
        logits=logits,
        pooled_features=feats,
        seed=np.int64(seed),
        input_description=np.str_(
            "pixels: raw RGB uint8 0..255 NHWC (RandomState(seed).randint); torch ran on "
            "(pixels/255 - mean)/std, mean=[0.485,0.456,0.406], std=[0.229,0.224,0.225], NCHW, eval mode"
        ),
        pth_sha256=np.str_(sha256_of(pth)),
        torch_version=np.str_(torch.__version__),
        reference_implementation=np.str_(impl),
    )
    print(f"wrote {out}: {batch} inputs (seed {seed}), torch logits/features from {impl}, torch {torch.__version__}")


# ---------------------------------------------------------------------- checks


def report_diff(label: str, keras_values: np.ndarray, reference: np.ndarray) -> float:
    diff = float(np.max(np.abs(keras_values.astype(np.float64) - reference.astype(np.float64))))
    print(f"{label}: max abs diff {diff:.3e} (tolerance {TOLERANCE:g})")
    return diff


def verify_against_arrays(model, pixels, ref_logits, ref_feats, source: str) -> bool:
    logits, feats = keras_outputs(model, normalised_input(pixels))
    diffs = [
        report_diff(f"logits vs {source}, same normalised input [{len(pixels)} images]", logits, ref_logits),
        report_diff(f"pooled features vs {source}", feats, ref_feats),
        report_diff(
            f"logits vs {source}, Keras from raw 0..255 pixels via imagenet_normalisation()",
            keras_end_to_end_logits(model, pixels),
            ref_logits,
        ),
    ]
    same_top1 = bool(np.all(logits.argmax(-1) == ref_logits.argmax(-1)))
    print(f"top-1 agrees on all inputs: {same_top1}")
    return all(d <= TOLERANCE for d in diffs) and same_top1


def load_class_names(path) -> list[str] | None:
    if path is None:
        return None
    names = Path(path).read_text(encoding="utf-8").splitlines()
    if len(names) != 1000:
        raise ValueError(f"{path}: expected 1000 class names, found {len(names)}")
    return names


def classify(model, images, class_names, torch_model=None) -> None:
    pixels = np.stack([photo_pixels(p) for p in images])
    logits, _ = keras_outputs(model, normalised_input(pixels))
    torch_logits = None
    if torch_model is not None:
        torch_logits, _ = torch_outputs(torch_model, normalised_input(pixels))
    for i, path in enumerate(images):
        print(f"\n{path}")
        for label, values in (("keras", logits[i]), ("torch", None if torch_logits is None else torch_logits[i])):
            if values is None:
                continue
            probs = softmax(values[None])[0]
            top = np.argsort(-values)[:5]
            parts = [f"{k} {class_names[k] if class_names else '?'} ({probs[k]:.3f})" for k in top]
            print(f"  {label} top-5: " + "; ".join(parts))
        if torch_logits is not None:
            report_diff("  logits keras vs torch", logits[i], torch_logits[i])


# ------------------------------------------------------------------------- CLI


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.convert_backbone", description=__doc__.split("\n\n")[0])
    src = parser.add_argument_group("weights source (one of)")
    src.add_argument("--pth", type=Path, help="torchvision state_dict .pth (needs torch)")
    src.add_argument("--state", type=Path, help="state_dict as .npz written by --dump-state (no torch needed)")
    src.add_argument(
        "--weights",
        type=Path,
        help="an already converted Keras .weights.h5 to check (with --pth, torch still runs from the .pth)",
    )
    parser.add_argument("--out", type=Path, help="write the Keras weights here (.weights.h5)")
    parser.add_argument("--dump-state", type=Path, help="with --pth: write the state_dict as .npz")
    parser.add_argument("--dump-reference", type=Path, help="with --pth: write torch's logits on the seeded input")
    parser.add_argument("--verify", action="store_true", help="compare the Keras port with torch (needs --pth)")
    parser.add_argument("--verify-against", type=Path, help="compare the Keras port with a --dump-reference npz")
    parser.add_argument("--classify", type=Path, nargs="+", metavar="IMAGE", help="print ImageNet top-5")
    parser.add_argument("--classes", type=Path, help="ImageNet class names, one per line, in index order")
    parser.add_argument("--dump-classes", type=Path, help="write torchvision's ImageNet names (needs torchvision)")
    parser.add_argument("--reference-impl", choices=("auto", "torchvision", "builtin"), default="auto")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--batch", type=int, default=4, help="random images for --verify / --dump-reference")
    args = parser.parse_args(argv)

    if args.state and (args.pth or args.weights):
        parser.error("--state is an alternative to --pth/--weights")
    if args.weights and args.out:
        parser.error("--weights is already converted; --out needs --pth or --state")
    if args.dump_classes:
        dump_torchvision_classes(args.dump_classes)

    if args.pth:
        print(f"{args.pth}: sha256 {sha256_of(args.pth)}")
    if args.dump_state:
        if not args.pth:
            parser.error("--dump-state needs --pth")
        state = {k: v for k, v in read_pth(args.pth).items() if not k.endswith("num_batches_tracked")}
        np.savez(args.dump_state, **state)
        print(f"wrote {args.dump_state}: {len(state)} arrays")
    if args.dump_reference:
        if not args.pth:
            parser.error("--dump-reference needs --pth")
        dump_reference(args.pth, args.dump_reference, args.seed, args.batch, args.reference_impl)

    needs_keras = args.out or args.verify or args.verify_against or args.classify
    if not needs_keras:
        return 0
    if args.verify and not args.pth:
        parser.error("--verify compares with torch and needs --pth (or use --verify-against)")

    from training.backbone import build_mobilenet_v2

    if args.weights:
        model = build_mobilenet_v2(include_top=True, weights_path=args.weights)
    elif args.pth or args.state:
        state = read_pth(args.pth) if args.pth else read_state_npz(args.state)
        model = keras_model_from_state(state)
    else:
        parser.error("--out/--verify/--verify-against/--classify need one of --pth, --state, --weights")

    if args.out:
        if not str(args.out).endswith(".weights.h5"):
            parser.error("--out must end in .weights.h5")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        model.save_weights(args.out)
        print(f"wrote {args.out}: sha256 {sha256_of(args.out)}")
        # Check the file, not the in-memory model: reload it into a fresh graph.
        model = build_mobilenet_v2(include_top=True, weights_path=args.out)

    ok = True
    torch_model = None
    if args.verify or (args.classify and args.pth):
        import torch

        torch_model, impl = torch_reference(args.pth, args.reference_impl)
        print(f"torch reference: {impl}, torch {torch.__version__}")
    if args.verify:
        pixels = random_pixels(args.seed, args.batch)
        ref_logits, ref_feats = torch_outputs(torch_model, normalised_input(pixels))
        ok &= verify_against_arrays(model, pixels, ref_logits, ref_feats, "torch")
    if args.verify_against:
        with np.load(args.verify_against) as ref:
            print(f"reference {args.verify_against}: {ref['reference_implementation']}, torch {ref['torch_version']}")
            ok &= verify_against_arrays(model, ref["pixels"], ref["logits"], ref["pooled_features"], "stored torch")
    if args.classify:
        classify(model, args.classify, load_class_names(args.classes), torch_model)
    if not ok:
        print("VERIFICATION FAILED", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
