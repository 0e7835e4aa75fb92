"""The base model's side of site adaptation: what an adapted model is built from.

- :class:`BaseModel`, :func:`open_base`: a shipped model folder (model.json,
  model.keras with a ``logit`` Dense on the pooled backbone features, a
  Grad-CAM layer) and its sample of training-set features, checked; anything
  missing raises :class:`BaseModelError` with the reason;
- :meth:`BaseModel.extract`: the pooled features of images, through the base
  model's own (unchanged) backbone and the worker's preprocessing;
- :meth:`BaseModel.build_adapted`: the same network with the site's head
  (calibration folded in) and OOD statistics as new layer weights;
- :func:`write_training_sample` / ``python -m training.site_model sample``:
  the training-feature sample shipped beside a base model
  (``training_features.npz``), so that a site head can be fitted with the
  training data without the archive.

The sample file holds float16 features of a class-stratified random subset
of the training images (clean, the base model's preprocessing), their
labels and file names, and the sha256 of the model.keras they were
extracted with; a sample from another model is refused.

No Django here; Keras is imported only when a model is loaded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .files import sha256_of
from .ood import distance_layers
from .preprocessing import PIPELINES, load_for_model

SAMPLE_FILE = "training_features.npz"
FEATURES_LAYER_INPUT_OF = "logit"  # the pooled features are this Dense layer's input
REQUIRED_KEYS = ("name", "version", "input_size", "preprocessing", "file", "gradcam_layer")


class BaseModelError(ValueError):
    """The base model folder cannot be adapted; the message says why."""


@dataclass
class TrainingSample:
    features: np.ndarray  # (n, d) float32
    y: np.ndarray  # (n,) int
    files: list[str]
    model_sha256: str
    # What the base's OOD detector measures, when that is not ``features``
    # (a fine-tuned base: the frozen trunk, finetune_model.ood_features_output).
    ood_features: np.ndarray | None = None

    @property
    def ood_input(self) -> np.ndarray:
        return self.features if self.ood_features is None else self.ood_features


@dataclass
class BaseModel:
    path: Path
    metadata: dict
    model_file: Path
    model_sha256: str
    sample: TrainingSample
    _model: object = None
    _extractor: object = None

    @property
    def input_size(self) -> int:
        return int(self.metadata["input_size"])

    @property
    def preprocessing(self) -> str:
        return self.metadata["preprocessing"]

    @property
    def label(self) -> str:
        return f"{self.metadata['name']}-{self.metadata['version']}"

    def keras_model(self):
        if self._model is None:
            import keras

            model = keras.models.load_model(self.model_file, compile=False)
            # The images are decoded at model.json's input_size (v2: 224, v3: 160);
            # a network that expects another size would fail deep inside Keras.
            expected = (self.input_size, self.input_size, 3)
            if tuple(model.input.shape[1:]) != expected:
                raise BaseModelError(
                    f"{self.model_file.name} takes {tuple(model.input.shape[1:])} images; "
                    f"model.json says input_size {self.input_size}"
                )
            try:
                dense = model.get_layer(FEATURES_LAYER_INPUT_OF)
            except ValueError:
                raise BaseModelError(f"{self.model_file.name} has no {FEATURES_LAYER_INPUT_OF!r} layer") from None
            if tuple(dense.input.shape[1:]) != (self.sample.features.shape[1],):
                raise BaseModelError(
                    f"the {FEATURES_LAYER_INPUT_OF!r} layer takes {tuple(dense.input.shape[1:])}; "
                    f"the training sample has {self.sample.features.shape[1]} features"
                )
            self._model = model
        return self._model

    def features_tensor(self):
        return self.keras_model().get_layer(FEATURES_LAYER_INPUT_OF).input

    def ood_tensor(self):
        """What the base's OOD detector measures: the input of its
        ``ood_projection`` layer (a fine-tuned base measures the frozen
        trunk, not the fine-tuned features: docs/training.md), else the
        pooled features."""
        try:
            return self.keras_model().get_layer("ood_projection").input
        except ValueError:
            return self.features_tensor()

    @property
    def ood_is_features(self) -> bool:
        from .finetune_model import OOD_FEATURES_LAYER

        return OOD_FEATURES_LAYER not in {layer.name for layer in self.keras_model().layers}

    def extract_ood(self, arrays, batch_size: int = 32) -> np.ndarray:
        """:meth:`ood_tensor` of preprocessed arrays; float32 (N, d')."""
        import keras

        extractor = keras.Model(self.keras_model().input, self.ood_tensor())
        out = [
            np.asarray(extractor.predict_on_batch(np.stack(arrays[s : s + batch_size]).astype(np.float32)))
            for s in range(0, len(arrays), batch_size)
        ]
        return np.concatenate(out).astype(np.float32)

    def head(self):
        """The base model's own (temperature-folded) head as a LinearHead."""
        from .head import LinearHead

        kernel, bias = self.keras_model().get_layer(FEATURES_LAYER_INPUT_OF).get_weights()
        return LinearHead(kernel=kernel[:, 0].astype(np.float64), bias=float(bias[0]), c=float("nan"))

    def extract(self, arrays, batch_size: int = 32, progress=None) -> np.ndarray:
        """Pooled features of preprocessed uint8 (S, S, 3) arrays; float32 (N, d)."""
        import keras

        if self._extractor is None:
            model = self.keras_model()
            self._extractor = keras.Model(model.input, self.features_tensor())
        out = []
        for start in range(0, len(arrays), batch_size):
            batch = np.stack(arrays[start : start + batch_size]).astype(np.float32)
            out.append(np.asarray(self._extractor.predict_on_batch(batch), dtype=np.float32))
            if progress and (start // batch_size) % 5 == 4:
                progress(f"  features: {min(start + batch_size, len(arrays))}/{len(arrays)} images")
        return np.concatenate(out) if out else np.zeros((0, self.sample.features.shape[1]), np.float32)

    def load_image(self, path) -> np.ndarray:
        """The worker's preprocessing of one image file (ImageError when unusable)."""
        return load_for_model(Path(path), self.input_size, self.preprocessing)

    def build_adapted(self, kernel: np.ndarray, bias: float, ood_projection: np.ndarray, ood_bias: np.ndarray):
        """The base network with a new ``logit`` (calibrated head) and new OOD layers.

        Same layer names as the shipped model (``logit``, ``probability``,
        ``ood_projection``, ``ood_square``, ``ood_distance``), so the ONNX export
        finds the Grad-CAM head (head_relu -> average pool -> logit) as before.
        """
        import keras
        from keras import layers

        base = self.keras_model()
        features = self.features_tensor()
        logit_layer = layers.Dense(1, name="logit")
        logit = logit_layer(features)
        logit_layer.set_weights([np.asarray(kernel, np.float32).reshape(-1, 1), np.array([bias], dtype=np.float32)])
        probability = layers.Activation("sigmoid", name="probability")(logit)
        distance = distance_layers(self.ood_tensor(), ood_projection, ood_bias)
        outputs = {"probability": probability, "ood_distance": distance}
        if self.has_features_output:
            # A fine-tuned base (v3 on) also outputs the pooled features; the
            # adapted model keeps that contract, so it can be a base itself and
            # any consumer of ``features`` sees the same tensor.
            outputs["features"] = features
        return keras.Model(base.input, outputs, name=base.name)

    @property
    def has_features_output(self) -> bool:
        outputs = self.keras_model().output
        return isinstance(outputs, dict) and "features" in outputs

    @property
    def output_description(self) -> str:
        text = "dict: probability (calibrated P(melanoma)), ood_distance"
        return text + (", features (pooled backbone features)" if self.has_features_output else "")


def read_sample(path: Path) -> TrainingSample:
    try:
        with np.load(path, allow_pickle=False) as data:
            return TrainingSample(
                features=data["features"].astype(np.float32),
                y=data["y"].astype(int),
                files=[str(f) for f in data["files"]],
                model_sha256=str(data["model_sha256"]),
                ood_features=data["ood_features"].astype(np.float32) if "ood_features" in data.files else None,
            )
    except (OSError, KeyError, ValueError) as exc:
        raise BaseModelError(f"{path} is not a readable training-feature sample ({exc})") from None


def open_base(path) -> BaseModel:
    """Check a base model folder; BaseModelError (with the reason) if it cannot be adapted."""
    path = Path(path)
    meta_path = path / "model.json"
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BaseModelError(f"{meta_path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BaseModelError(f"{meta_path} is not valid JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise BaseModelError(f"{meta_path} must hold a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in metadata]
    if missing:
        raise BaseModelError(f"the base model's model.json lacks {', '.join(missing)}")
    if metadata["preprocessing"] not in PIPELINES:
        raise BaseModelError(f"unknown preprocessing {metadata['preprocessing']!r}")
    model_file = path / str(metadata["file"])
    if not model_file.is_file() or model_file.suffix != ".keras":
        raise BaseModelError(f"the base model file {model_file} is missing or not a .keras file")
    sample_path = path / SAMPLE_FILE
    if not sample_path.is_file():
        raise BaseModelError(
            f"{sample_path} is missing: the base model ships no training-feature sample "
            "(make one with: python -m training.site_model sample --base DIR --data TRAINING_DIR)"
        )
    sample = read_sample(sample_path)
    digest = sha256_of(model_file)
    if sample.model_sha256 != digest:
        raise BaseModelError(f"{SAMPLE_FILE} was extracted with another model file than {model_file.name}")
    if len(np.unique(sample.y)) != 2:
        raise BaseModelError(f"{SAMPLE_FILE} does not hold both classes")
    return BaseModel(path=path, metadata=metadata, model_file=model_file, model_sha256=digest, sample=sample)


def save_sample(path: Path, sample: TrainingSample) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".part.npz")
    np.savez_compressed(
        tmp,
        features=sample.features.astype(np.float16),
        y=sample.y.astype(np.int8),
        files=np.array(sample.files),
        model_sha256=np.array(sample.model_sha256),
        **({} if sample.ood_features is None else {"ood_features": sample.ood_features.astype(np.float16)}),
    )
    os.replace(tmp, path)


def write_training_sample(base_dir, data_dir, n: int, seed: int = 0, progress=print) -> TrainingSample:
    """Extract and save the training-feature sample of ``base_dir`` from the archive ``data_dir``."""
    from .data import list_images
    from .features import stratified_subset

    base_dir, data_dir = Path(base_dir), Path(data_dir)
    metadata = json.loads((base_dir / "model.json").read_text(encoding="utf-8"))
    model_file = base_dir / metadata["file"]
    paths, y = list_images(data_dir)
    keep = stratified_subset(y, n, seed)
    paths, y = [paths[i] for i in keep], y[keep]
    stub = BaseModel(
        path=base_dir,
        metadata=metadata,
        model_file=model_file,
        model_sha256=sha256_of(model_file),
        sample=TrainingSample(np.zeros((0, 1280), np.float32), np.zeros(0, int), [], ""),
    )
    arrays = [stub.load_image(p) for p in paths]
    features = stub.extract(arrays, progress=progress)
    sample = TrainingSample(
        features=features,
        y=np.asarray(y, dtype=int),
        files=[p.relative_to(data_dir).as_posix() for p in paths],
        model_sha256=stub.model_sha256,
        ood_features=None if stub.ood_is_features else stub.extract_ood(arrays),
    )
    save_sample(base_dir / SAMPLE_FILE, sample)
    return sample


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m training.site_model",
        description="Write a base model's training-feature sample (training_features.npz) for site adaptation.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sample", help="extract a stratified sample of training-set pooled features")
    s.add_argument("--base", type=Path, required=True, help="the base model folder (written into)")
    s.add_argument("--data", type=Path, required=True, help="the training archive (benign/, malignant/)")
    s.add_argument("--n", type=int, default=1000, help="images in the sample (default %(default)s)")
    s.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sample = write_training_sample(args.base, args.data, args.n, args.seed)
    print(f"wrote {args.base / SAMPLE_FILE}: {len(sample.y)} images, {int(sample.y.sum())} melanomas")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
