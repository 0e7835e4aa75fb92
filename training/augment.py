"""Training-time augmentation and the tf.data pipelines.

Augmentation is deliberately *not* part of the exported model: it runs in the
input pipeline of training folds only. Validation and prediction go through
:func:`eval_dataset`, which only casts the preprocessed uint8 arrays to float.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers


def build_augmenter(seed: int = 0) -> keras.Sequential:
    """Random label-preserving transforms for dermoscopy images.

    A lesion has no canonical orientation, so any flip and rotation is valid;
    zoom, contrast and brightness mimic differences between dermatoscopes and
    exposure. ``reflect`` filling keeps rotated corners skin-like.
    """
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal_and_vertical", seed=seed),
            layers.RandomRotation(0.5, fill_mode="reflect", seed=seed + 1),
            layers.RandomZoom((-0.15, 0.15), fill_mode="reflect", seed=seed + 2),
            layers.RandomContrast(0.2, value_range=(0, 255), seed=seed + 3),
            layers.RandomBrightness(0.15, value_range=(0, 255), seed=seed + 4),
        ],
        name="augment",
    )


def train_dataset(
    x: np.ndarray, y: np.ndarray, batch_size: int, seed: int = 0, augment: bool = True
) -> tf.data.Dataset:
    """Shuffled, augmented float32 batches for fitting (one pass = one epoch)."""
    ds = tf.data.Dataset.from_tensor_slices((x, y.astype("float32").reshape(-1, 1)))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(_to_float, num_parallel_calls=tf.data.AUTOTUNE)
    if augment:
        augmenter = build_augmenter(seed)
        # Augmenting whole batches runs one vectorised op per transform
        # instead of one per image.
        ds = ds.map(
            lambda images, labels: (augmenter(images, training=True), labels),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_dataset(x: np.ndarray, y: np.ndarray | None, batch_size: int) -> tf.data.Dataset:
    """Unshuffled, unaugmented float32 batches: exactly the preprocessed pixels."""
    if y is None:
        ds = tf.data.Dataset.from_tensor_slices(x).batch(batch_size).map(lambda i: tf.cast(i, tf.float32))
    else:
        ds = tf.data.Dataset.from_tensor_slices((x, y.astype("float32").reshape(-1, 1)))
        ds = ds.batch(batch_size).map(_to_float)
    return ds.prefetch(tf.data.AUTOTUNE)


def _to_float(images, labels):
    return tf.cast(images, tf.float32), labels
