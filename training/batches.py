"""The fine-tuning input pipeline: Pillow and NumPy only, no TensorFlow.

- :func:`prepare_cache`: every image decoded once by
  ``training.preprocessing.open_image`` (the worker's decoder), perceptual-
  hashed, and framed to the training size by ``preprocessing.frame`` (the
  worker's framing); the framed uint8 pixels are kept in a ``.npy`` file
  that is memory-mapped (``images-<S>.npy`` under the run folder), so a
  resumed run does not decode again;
- :func:`clean_input`: a cached image -> the model input, exactly
  ``preprocessing.load_for_model(bytes, S, pipeline)`` (framing, then e.g.
  Shades-of-Gray);
- :func:`augmented_input`: ``training.shifts.augment_image`` on the cached
  image with a generator seeded by ``(seed, fold, epoch, image)``, then the
  pipeline; so an epoch's batches do not depend on thread order, and a
  resumed run sees the batches an uninterrupted run would have seen;
- :class:`BatchPlan`: the batches of one epoch (shuffled, augmented) or of a
  prediction pass (in order, clean); :func:`keras_dataset` wraps a plan in a
  ``keras.utils.PyDataset`` for ``model.fit``/``predict`` under any Keras
  backend (TensorFlow, JAX).

Augmentation runs on the image framed at the training size (not on the full
300 px original): cheaper, and the same shifts (colour, vignette, crop, blur,
JPEG) apply; the pixel sizes of blur and down-scaling are relative to that size.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .data import list_images, perceptual_hash
from .preprocessing import SQUARE_SOG_V2, frame, open_for_model, open_image, shades_of_gray, to_model_input
from .shifts import augment_image


@dataclass
class ImageCache:
    files: list[str]  # relative to the dataset root
    y: np.ndarray  # 0 benign, 1 malignant
    hashes: np.ndarray  # (N, 256) bool perceptual hashes
    images: np.ndarray  # uint8 (N, S, S, 3), memory-mapped, framed but not colour-normalised

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    def pil(self, i: int) -> Image.Image:
        return Image.fromarray(np.asarray(self.images[i]), "RGB")


class PilImages:
    """``images[i]`` as a PIL image (what ``training.robustness`` shifts)."""

    def __init__(self, cache: ImageCache):
        self.cache = cache

    def __getitem__(self, i):
        return self.cache.pil(int(i))

    def __len__(self):
        return len(self.cache.files)


def _atomic_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".part.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def prepare_cache(root, size: int, cache_dir, workers: int = 2, progress=print, max_images: int = 0, seed: int = 0):
    """Decode, hash and frame every image under ``root`` once; reuse ``cache_dir``'s
    files when they were made from the same file list at the same size."""
    from .features import stratified_subset

    root, cache_dir = Path(root), Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths, y = list_images(root)
    if max_images:
        keep = stratified_subset(y, max_images, seed)
        paths, y = [paths[i] for i in keep], y[keep]
    files = [p.relative_to(root).as_posix() for p in paths]
    index = cache_dir / f"images-{size}.json"
    img_path, hash_path = cache_dir / f"images-{size}.npy", cache_dir / f"hashes-{size}.npy"
    if index.is_file() and img_path.is_file() and hash_path.is_file():
        if json.loads(index.read_text(encoding="utf-8")).get("files") == files:
            progress(f"[data] {len(files)} images from the cache {img_path}")
            return ImageCache(files, y, np.load(hash_path), np.load(img_path, mmap_mode="r"))
    tmp = img_path.with_name(img_path.name + ".part.npy")
    images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(files), size, size, 3))
    hashes = np.zeros((len(files), 256), dtype=bool)

    def one(i):
        data = paths[i].read_bytes()
        # Framed exactly as the worker frames it (a reduced decode for large JPEGs); hashed from the full image.
        img, box = open_for_model(data, size)
        images[i] = frame(img, size, box)
        hashes[i] = perceptual_hash(img if box is None else open_image(data))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for n, _ in enumerate(pool.map(one, range(len(files)))):
            if (n + 1) % 2000 == 0:
                progress(f"[data] decoded {n + 1}/{len(files)} images")
    images.flush()
    os.replace(tmp, img_path)
    _atomic_save(hash_path, hashes)
    index.write_text(json.dumps({"root": str(root), "size": size, "files": files}), encoding="utf-8")
    progress(f"[data] decoded and cached {len(files)} images at {size} px in {img_path}")
    return ImageCache(files, y, hashes, np.load(img_path, mmap_mode="r"))


def clean_input(framed: np.ndarray, preprocessing: str) -> np.ndarray:
    """A cached (framed) image -> the model input the worker would compute (uint8)."""
    framed = np.asarray(framed)
    return shades_of_gray(framed) if preprocessing == SQUARE_SOG_V2 else framed.copy()


def augmented_input(cache: ImageCache, i: int, preprocessing: str, seed: int, fold: int, epoch: int) -> np.ndarray:
    rng = np.random.default_rng([seed, fold + 1, epoch, int(i)])
    return to_model_input(augment_image(cache.pil(i), rng), cache.size, preprocessing)


@dataclass
class BatchPlan:
    """The batches of one pass over ``indices`` of ``cache``.

    ``augment=True``: a training epoch, shuffled by ``(seed, fold, epoch)``
    and augmented per image; batches are ``(x, y)``. Otherwise the images in
    order, clean, batches are ``x`` (or ``(x, y)`` with ``with_labels``).
    ``hflip`` mirrors every image left-right (test-time augmentation).
    """

    cache: ImageCache
    indices: np.ndarray
    batch_size: int
    preprocessing: str
    augment: bool = False
    seed: int = 0
    fold: int = 0
    epoch: int = 0
    with_labels: bool = False
    hflip: bool = False

    def __post_init__(self):
        self.indices = np.asarray(self.indices, dtype=np.int64)
        if self.augment:
            order = np.random.default_rng([self.seed, self.fold + 1, self.epoch]).permutation(len(self.indices))
            self.indices = self.indices[order]

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def batch_indices(self, b: int) -> np.ndarray:
        return self.indices[b * self.batch_size : (b + 1) * self.batch_size]

    def images(self, b: int) -> np.ndarray:
        idx = self.batch_indices(b)
        if self.augment:
            xs = [augmented_input(self.cache, i, self.preprocessing, self.seed, self.fold, self.epoch) for i in idx]
        else:
            xs = [clean_input(self.cache.images[i], self.preprocessing) for i in idx]
        x = np.stack(xs).astype(np.float32)
        return x[:, :, ::-1] if self.hflip else x

    def __getitem__(self, b: int):
        if b >= len(self):
            raise IndexError(b)
        x = self.images(b)
        if self.augment or self.with_labels:
            return x, self.cache.y[self.batch_indices(b)].astype(np.float32)[:, None]
        return x


@dataclass
class TrunkPlan:
    """A training epoch over precomputed trunk outputs instead of images.

    ``trunk`` holds, for every image of the cache, the frozen trunk's output
    for this epoch's augmented copy (``finetune_loop.trunk_cache``). The
    order is shuffled by ``(seed, fold, epoch)`` exactly as
    :class:`BatchPlan` shuffles a training epoch; batches are ``(x, y)``.
    """

    trunk: np.ndarray  # (N, ...) float16, memory-mapped
    y: np.ndarray
    indices: np.ndarray
    batch_size: int
    seed: int = 0
    fold: int = 0
    epoch: int = 0

    def __post_init__(self):
        self.indices = np.asarray(self.indices, dtype=np.int64)
        order = np.random.default_rng([self.seed, self.fold + 1, self.epoch]).permutation(len(self.indices))
        self.indices = self.indices[order]

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def __getitem__(self, b: int):
        if b >= len(self):
            raise IndexError(b)
        idx = self.indices[b * self.batch_size : (b + 1) * self.batch_size]
        # Sorted reads from the memory map, then back to the shuffled order.
        order = np.argsort(idx)
        rows = np.empty((len(idx), *self.trunk.shape[1:]), dtype=np.float32)
        rows[order] = self.trunk[idx[order]]
        return rows, self.y[idx].astype(np.float32)[:, None]


def keras_dataset(plan: BatchPlan, workers: int = 1):
    """``plan`` as a ``keras.utils.PyDataset`` (threads, never processes)."""
    import keras

    class _Plan(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=max(1, workers), use_multiprocessing=False, max_queue_size=4)

        def __len__(self):
            return len(plan)

        def __getitem__(self, b):
            return plan[b]

    return _Plan()
