"""The baseline CNN: small, trained from scratch, built-in Keras layers only.

Only stock layers are used so that ``keras.models.load_model(path,
compile=False)`` works in the worker with no custom objects.
"""

from __future__ import annotations

import keras
from keras import layers

DEFAULT_WIDTHS = (16, 32, 64, 128)


def build_model(
    image_size: int,
    widths: tuple[int, ...] = DEFAULT_WIDTHS,
    dropout: float = 0.3,
    name: str = "baseline_cnn",
) -> keras.Model:
    """(batch, S, S, 3) float32 0..255 in; (batch, 1) sigmoid P(malignant) out.

    Each block is conv-BN-ReLU then 2x2 max-pool, doubling the width as the
    resolution halves; global average pooling keeps the head tiny and makes the
    network indifferent to where the lesion sits in the frame.
    """
    inputs = keras.Input(shape=(image_size, image_size, 3), dtype="float32", name="image")
    # Normalisation lives in the model so the worker feeds raw 0..255 pixels.
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(inputs)
    for i, width in enumerate(widths):
        # No bias: BatchNormalization's beta does that job.
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"block{i + 1}_conv")(x)
        x = layers.BatchNormalization(name=f"block{i + 1}_bn")(x)
        x = layers.ReLU(name=f"block{i + 1}_relu")(x)
        x = layers.MaxPooling2D(2, name=f"block{i + 1}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="malignant")(x)
    return keras.Model(inputs, outputs, name=name)


def compile_model(
    model: keras.Model,
    steps_per_epoch: int,
    epochs: int,
    learning_rate: float = 2e-3,
    weight_decay: float = 1e-4,
) -> keras.Model:
    """AdamW with a short warm-up then cosine decay to zero.

    Decaying to zero over a fixed epoch count makes the last epoch the one to
    keep, so no checkpoint has to be picked by looking at validation data.
    """
    total = max(1, steps_per_epoch * epochs)
    warmup = min(steps_per_epoch, total // 10)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else learning_rate,
        decay_steps=total - warmup,
        warmup_target=learning_rate if warmup else None,
        warmup_steps=warmup,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
    )
    return model
