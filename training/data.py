"""Listing, loading and near-duplicate grouping of a labelled image folder.

A dataset is a folder with one subfolder per class (``benign/``,
``malignant/``) holding images of any size. Model inputs are made by
:func:`training.preprocessing.load_for_model`, the function the worker calls,
so training sees exactly what the worker sees.

No TensorFlow here: the data layer is testable and usable on its own.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, ImageOps

from .preprocessing import is_image_path, load_for_model, open_image

CLASS_NAMES = ("benign", "malignant")

HASH_BITS = 256
# Hamming distance (of HASH_BITS) at or below which two images count as the
# same picture. On melanoma-10k the nearest-neighbour distances form a sparse
# tail of true duplicates (0 to ~60, checked by eye, including copies with
# different colour processing) and a bulk of distinct images from ~70 up;
# 64 keeps every group at <= 5 images there. Merging a few distinct images
# only makes CV slightly stricter; splitting duplicates would inflate it.
DEFAULT_MAX_DISTANCE = 64


@dataclass
class Dataset:
    """Images in memory: ``x`` uint8 (N, S, S, 3), ``y`` int 0/1, file names
    relative to the dataset root, and one HASH_BITS-bit perceptual hash per image."""

    root: Path
    files: list[str]
    x: np.ndarray
    y: np.ndarray
    hashes: np.ndarray  # (N, HASH_BITS) bool

    @property
    def image_size(self) -> int:
        return int(self.x.shape[1])

    def __len__(self) -> int:
        return len(self.files)


def list_images(root: str | os.PathLike) -> tuple[list[Path], np.ndarray]:
    """Paths and 0/1 labels of every image under ``root/<class>/``, sorted
    so the order (and hence every seeded split) is the same on any machine."""
    root = Path(root)
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(CLASS_NAMES):
        folder = root / name
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is missing: expected {root}/{{{','.join(CLASS_NAMES)}}}/")
        found = sorted(p for p in folder.iterdir() if p.is_file() and is_image_path(p))
        paths.extend(found)
        labels.extend([label] * len(found))
    if not paths:
        raise FileNotFoundError(f"no images under {root}")
    return paths, np.asarray(labels, dtype=np.int64)


def perceptual_hash(img: Image.Image) -> np.ndarray:
    """256-bit pHash of the central field of view, contrast-equalised; bool (256,).

    A plain 64-bit pHash of the whole image is dominated by the dark circular
    vignette and the skin background that most dermoscopy images share, so
    distinct lesions collide. Hashing the central 62.5% at 16x16 DCT
    resolution looks at the lesion instead, and equalising the grey levels
    makes copies that differ only in colour processing hash alike.
    """
    grey = img.convert("L").resize((256, 256), Image.Resampling.BILINEAR)
    centre = ImageOps.equalize(grey.crop((48, 48, 208, 208)))
    return imagehash.phash(centre, hash_size=16).hash.reshape(-1)


def _load_one(path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    data = path.read_bytes()
    # The model input goes through load_for_model itself, byte for byte the
    # worker's path; the hash decodes a second time (cheap at 300 px) rather
    # than re-implementing any part of that path here.
    return load_for_model(data, size), perceptual_hash(open_image(data))


def load_dataset(root: str | os.PathLike, size: int, workers: int | None = None, progress=None) -> Dataset:
    """Decode every image of ``root`` into memory at ``size`` x ``size``.

    Pillow releases the GIL while decoding and resizing, so a thread pool
    uses every core without copying arrays between processes.
    """
    root = Path(root)
    paths, y = list_images(root)
    x = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    hashes = np.empty((len(paths), HASH_BITS), dtype=bool)
    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, (arr, h) in enumerate(pool.map(lambda p: _load_one(p, size), paths)):
            x[i] = arr
            hashes[i] = h
            if progress and (i + 1) % 2000 == 0:
                progress(f"loaded {i + 1}/{len(paths)} images")
    files = [p.relative_to(root).as_posix() for p in paths]
    return Dataset(root=root, files=files, x=x, y=y, hashes=hashes)


def hamming_pairs(hashes: np.ndarray, max_distance: int, chunk: int = 2048) -> np.ndarray:
    """All index pairs (i < j) whose bit hashes differ in <= ``max_distance``
    bits; (K, 2) int array.

    Vectorised as a matrix product on +/-1 vectors: for n-bit codes
    ``a . b = n - 2 * hamming``, so the whole N x N comparison is a few
    BLAS calls (done in row chunks to bound memory at chunk x N floats).
    """
    signs = np.where(hashes, 1.0, -1.0).astype(np.float32)
    n_bits = signs.shape[1]
    out = []
    for start in range(0, len(signs), chunk):
        block = signs[start : start + chunk]
        dist = (n_bits - block @ signs.T) / 2
        i, j = np.nonzero(dist <= max_distance + 0.5)
        i = i + start
        keep = i < j
        out.append(np.stack([i[keep], j[keep]], axis=1))
    return np.concatenate(out) if out else np.empty((0, 2), dtype=np.int64)


def union_find_groups(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected components of ``n`` nodes joined by ``pairs``; a group id
    per node (ids are 0..G-1, numbered by first member)."""
    parent = np.arange(n)

    def find(a: int) -> int:
        root = a
        while parent[root] != root:
            root = parent[root]
        while parent[a] != root:  # path compression
            parent[a], a = root, parent[a]
        return root

    for a, b in pairs:
        ra, rb = find(int(a)), find(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(i) for i in range(n)])
    _, groups = np.unique(roots, return_inverse=True)
    return groups


def duplicate_groups(hashes: np.ndarray, max_distance: int = DEFAULT_MAX_DISTANCE) -> np.ndarray:
    """Group ids such that near-identical images share one id (transitively)."""
    return union_find_groups(len(hashes), hamming_pairs(hashes, max_distance))


def group_summary(groups: np.ndarray) -> dict:
    """How many groups have more than one member, and how many images they hold."""
    counts = np.bincount(groups)
    multi = counts[counts > 1]
    return {
        "n_groups": int(len(counts)),
        "n_duplicate_groups": int(len(multi)),
        "n_images_in_duplicate_groups": int(multi.sum()),
        "largest_group": int(counts.max()) if len(counts) else 0,
    }
