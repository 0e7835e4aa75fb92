"""The frozen backbone's side of the transfer model: decoded images in, pooled features out.

- :class:`RawImages`, :func:`load_raw`: every image decoded once (kept at full
  size in memory) and perceptual-hashed; :func:`stratified_subset` for the
  comparison, robustness and development subsets;
- :func:`build_feature_extractor`, :func:`extract_features`: the frozen
  ImageNet MobileNetV2 (pooled 1280-d output) and batched extraction with a
  thread pool preparing inputs;
- :func:`clean_input`, :func:`augmented_input`: what an image becomes before
  the backbone (the preprocessing pipeline, after a seeded
  ``training.shifts.augment_image`` for augmented copies);
- :class:`FeatureExtraction`: a run's extraction step, with the optional
  on-disk feature cache (``--feature-cache``) and per-step timings;
- :func:`build_export_model`: the shipped Keras model, the same backbone with
  the linear head (temperature folded in) and the OOD distance as layers.

Keras is imported only when a model is built. No Django here.
"""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import list_images, perceptual_hash
from .head import LinearHead
from .ood import distance_layers
from .preprocessing import open_image, to_model_input
from .shifts import augment_image

MODEL_NAME = "mobilenet-v2-melanoma"  # the exported Keras model's name
MODEL_FILE = "model.keras"
FEATURE_DIM = 1280


@dataclass
class RawImages:
    files: list[str]
    images: list  # decoded RGB PIL images, original size
    y: np.ndarray
    hashes: np.ndarray


def load_raw(root: Path, workers: int, progress, max_images: int = 0, seed: int = 0) -> RawImages:
    """Decode every image once (kept in memory at full size) and hash it.

    ``max_images`` > 0 keeps a class-stratified random subset (development runs).
    """
    paths, y = list_images(root)
    if max_images:
        keep = stratified_subset(y, max_images, seed)
        paths, y = [paths[i] for i in keep], y[keep]

    def one(p):
        img = open_image(p.read_bytes())
        return img, perceptual_hash(img)

    images, hashes = [], []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, (img, h) in enumerate(pool.map(one, paths)):
            images.append(img)
            hashes.append(h)
            if (i + 1) % 2000 == 0:
                progress(f"decoded {i + 1}/{len(paths)} images")
    files = [p.relative_to(root).as_posix() for p in paths]
    return RawImages(files=files, images=images, y=y, hashes=np.stack(hashes))


def build_feature_extractor(image_size: int, weights_path=None):
    """Frozen MobileNetV2, input float32 RGB 0..255, output pooled (N, 1280)."""
    from .backbone import DEFAULT_WEIGHTS_PATH, build_mobilenet_v2

    return build_mobilenet_v2(
        (image_size, image_size, 3),
        include_top=False,
        weights_path=weights_path or DEFAULT_WEIGHTS_PATH,
        pooling="avg",
        normalise_input=True,
    )


def extract_features(
    extractor, images, indices, make_input, batch_size, workers, progress=None, label=""
) -> np.ndarray:
    """Pooled features of ``make_input(images[i], i)`` for each i in ``indices``.

    Inputs are prepared by a thread pool (Pillow releases the GIL) while the
    backbone runs, batch by batch.
    """
    indices = list(indices)
    out = np.empty((len(indices), FEATURE_DIM), dtype=np.float32)
    batches = [indices[s : s + batch_size] for s in range(0, len(indices), batch_size)]
    t0 = time.time()
    report_every = max(1, len(batches) // 5)

    def prep(batch):
        return np.stack([make_input(images[i], i) for i in batch]).astype(np.float32)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending = [pool.submit(prep, b) for b in batches[:3]]
        nxt = len(pending)
        pos = 0
        for bi in range(len(batches)):
            x = pending.pop(0).result()
            if nxt < len(batches):
                pending.append(pool.submit(prep, batches[nxt]))
                nxt += 1
            out[pos : pos + len(x)] = np.asarray(extractor.predict_on_batch(x))
            pos += len(x)
            if progress and ((bi + 1) % report_every == 0 or bi + 1 == len(batches)):
                el = time.time() - t0
                progress(f"  {label}: {pos}/{len(indices)} images, {pos / el:.1f} img/s")
    return out


def clean_input(size: int, preprocessing: str):
    return lambda img, i: to_model_input(img, size, preprocessing)


def augmented_input(size: int, preprocessing: str, seed: int, copy: int):
    def make(img, i):
        rng = np.random.default_rng([seed, copy, i])
        return to_model_input(augment_image(img, rng), size, preprocessing)

    return make


def stratified_subset(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of a class-stratified random subset of ``n`` images."""
    if n <= 0 or n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = int(round(n * len(idx) / len(y)))
        chosen.append(rng.choice(idx, size=min(k, len(idx)), replace=False))
    return np.sort(np.concatenate(chosen))


@dataclass
class FeatureExtraction:
    """A run's ``extract(indices, make_input, label)``: pooled features of
    ``make_input(raw.images[i], i)`` for each index.

    With ``cache_dir``, features are saved as ``<label slug>-<size>-<key>.npy``
    and loaded from there by a later run; the key hashes the label, size,
    seed, weights path and the image files, so a cached file is only reused
    for the same images under the same settings. ``timings`` records the
    seconds of each label actually extracted (not loaded).
    """

    extractor: object
    raw: RawImages
    image_size: int
    seed: int
    weights_path: Path
    batch_size: int
    workers: int
    progress: object
    cache_dir: Path | None = None
    timings: dict = field(default_factory=dict)

    def cache_path(self, indices, label: str) -> Path:
        key = hashlib.sha256(
            json.dumps(
                [label, self.image_size, self.seed, str(self.weights_path), [self.raw.files[i] for i in indices]]
            ).encode()
        ).hexdigest()[:16]
        slug = "".join(ch if ch.isalnum() else "_" for ch in label)
        return Path(self.cache_dir) / f"{slug}-{self.image_size}-{key}.npy"

    def __call__(self, indices, make_input, label: str) -> np.ndarray:
        t0 = time.time()
        cache = None
        if self.cache_dir:
            cache = self.cache_path(indices, label)
            if cache.is_file():
                self.progress(f"  {label}: loaded from {cache}")
                return np.load(cache)
        f = extract_features(
            self.extractor, self.raw.images, indices, make_input, self.batch_size, self.workers, self.progress, label
        )
        self.timings[label] = round(time.time() - t0, 1)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.save(cache, f)
        return f


def build_export_model(image_size, head: LinearHead, temperature: float, ood, weights_path=None):
    """The shipped two-output Keras model (built-in layers only).

    ``ood`` is a ``training.ood.MahalanobisOOD``; the ``logit`` layer holds the
    head's W/T and b/T, so ``probability`` is already temperature-scaled.
    """
    import keras
    from keras import layers

    backbone = build_feature_extractor(image_size, weights_path)
    inputs = backbone.input
    features = backbone.output  # (N, 1280), from head_relu via global average pooling
    logit_layer = layers.Dense(1, name="logit")
    logit = logit_layer(features)
    logit_layer.set_weights(
        [
            (head.kernel / temperature).reshape(-1, 1).astype(np.float32),
            np.array([head.bias / temperature], dtype=np.float32),
        ]
    )
    probability = layers.Activation("sigmoid", name="probability")(logit)
    distance = distance_layers(features, ood.projection, ood.bias)
    model = keras.Model(inputs, {"probability": probability, "ood_distance": distance}, name=MODEL_NAME)
    return model
