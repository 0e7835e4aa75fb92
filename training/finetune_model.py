"""The fine-tuned network: an ImageNet backbone with its upper blocks trainable,
global average pooling (the pooled ``features``), dropout and a one-unit
``logit`` layer; and the exported model built from it.

BatchNorm: every BatchNormalization layer is frozen (``trainable=False``,
which in Keras 3 also runs it in inference mode, with the ImageNet moving
statistics), in the unfrozen blocks too. Batches of 32 on a 2-core CPU are
too small and too correlated to re-estimate the statistics, and frozen
statistics make the network a fixed function of its weights, the same in
training and at inference.

Backbones (``BACKBONES``): ``mobilenet_v2`` (``training.backbone``) and
``efficientnet_lite0`` (``training.efficientnet_lite``). Which
blocks are unfrozen is counted from the top: ``unfreeze_blocks=N`` makes the
1x1 ``head`` convolution and the last ``N - 1`` inverted-residual blocks
trainable (``N=0``: frozen backbone, only the logit layer trains); both
backbones name their blocks ``block_<i>_...`` and their 1x1 head ``head``.

Keras only (any backend); no TensorFlow import, no Django.
"""

from __future__ import annotations

import numpy as np

MOBILENET_V2 = "mobilenet_v2"
EFFICIENTNET_LITE0 = "efficientnet_lite0"
BACKBONES = (MOBILENET_V2, EFFICIENTNET_LITE0)
MODEL_NAMES = {MOBILENET_V2: "mobilenet-v2-melanoma", EFFICIENTNET_LITE0: "efficientnet-lite0-melanoma"}
FEATURES_LAYER = "features"  # the pooled (N, C) features: an output of the exported model
OOD_FEATURES_LAYER = "ood_features"  # the pooled output of the frozen trunk: what the OOD detector measures
OOD_FEATURES_NOTE = "the frozen trunk's output (ImageNet weights, below the first fine-tuned block), average-pooled"
DROPOUT_LAYER = "head_dropout"


def backbone_info(name: str) -> dict:
    """Weights path, Grad-CAM layer and block prefixes (bottom to top) of a backbone."""
    if name == MOBILENET_V2:
        from .backbone import DEFAULT_WEIGHTS_PATH, LAST_CONV_LAYER, block_specs

        blocks = [f"block_{b}_" for b, *_ in block_specs()] + ["head"]
        return {"weights": DEFAULT_WEIGHTS_PATH, "gradcam_layer": LAST_CONV_LAYER, "blocks": blocks}
    if name == EFFICIENTNET_LITE0:
        from . import efficientnet_lite as lite

        blocks = [f"block_{b}_" for b, *_ in lite.block_specs()] + ["head"]
        return {"weights": lite.DEFAULT_WEIGHTS_PATH, "gradcam_layer": lite.LAST_CONV_LAYER, "blocks": blocks}
    raise ValueError(f"unknown backbone {name!r}; expected one of {BACKBONES}")


def build_backbone(name: str, size: int, weights_path=None):
    """The backbone, input float32 RGB 0..255, output its last feature map."""
    if name == MOBILENET_V2:
        from .backbone import build_mobilenet_v2

        return build_mobilenet_v2(
            (size, size, 3), include_top=False, weights_path=weights_path, pooling=None, normalise_input=True
        )
    if name == EFFICIENTNET_LITE0:
        from .efficientnet_lite import build_efficientnet_lite0

        return build_efficientnet_lite0(
            (size, size, 3), include_top=False, weights_path=weights_path, pooling=None, normalise_input=True
        )
    raise ValueError(f"unknown backbone {name!r}; expected one of {BACKBONES}")


def set_trainable(model, blocks: list[str], unfreeze_blocks: int) -> list[str]:
    """Freeze everything below the top ``unfreeze_blocks`` blocks and every
    BatchNorm; returns the names of the trainable layers."""
    import keras

    top = tuple(blocks[len(blocks) - unfreeze_blocks :]) if unfreeze_blocks else ()
    trainable = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
        elif layer.name in ("logit",) or (top and layer.name.startswith(top)):
            layer.trainable = True
        else:
            layer.trainable = False
        if layer.trainable and layer.weights:
            trainable.append(layer.name)
    return trainable


def build_finetune_model(
    name: str, size: int, unfreeze_blocks: int, weights_path=None, dropout: float = 0.2, seed: int = 0
):
    """Input (N, S, S, 3) RGB 0..255 -> ``logit`` (N, 1); the layer
    ``features`` holds the pooled features."""
    import keras
    from keras import layers

    info = backbone_info(name)
    backbone = build_backbone(name, size, weights_path or info["weights"])
    pooled = layers.GlobalAveragePooling2D(name=FEATURES_LAYER)(backbone.output)
    x = layers.Dropout(dropout, seed=seed, name=DROPOUT_LAYER)(pooled)
    logit = layers.Dense(1, name="logit")(x)
    model = keras.Model(backbone.input, logit, name=f"{name}_finetune")
    set_trainable(model, info["blocks"], unfreeze_blocks)
    return model


def split_at_trainable(model):
    """``(trunk, top)``: two sub-models sharing ``model``'s layers, cut at the
    input of the first layer with trainable weights, so that
    ``top(trunk(x)) == model(x)`` and training ``top`` trains ``model``.

    Everything below the cut is frozen (BatchNorm in inference mode too), so
    the trunk is a fixed function of its input: its output for an image can
    be computed once and reused by every fit (``finetune_loop.trunk_cache``).
    ``unfreeze_blocks=0`` cuts at the pooled features.
    """
    import keras

    cut = _cut(model)
    return keras.Model(model.input, cut, name="trunk"), keras.Model(cut, model.output, name="top")


def top_prediction_model(model):
    """:func:`prediction_model` of the top only: trunk output -> ``{"features", "logit"}``."""
    import keras

    cut = _cut(model)
    return keras.Model(cut, {"features": model.get_layer(FEATURES_LAYER).output, "logit": model.output})


def _cut(model):
    first = next(layer for layer in model.layers if layer.trainable and layer.weights)
    cut = model.get_layer(FEATURES_LAYER).output if first.name == "logit" else first.input
    if isinstance(cut, (list, tuple)):
        raise ValueError(f"cannot cut at {first.name!r}: it has several inputs")
    return cut


def ood_features_output(model):
    """The out-of-distribution detector's input: the frozen trunk's output
    (``_cut``), average-pooled; for a frozen backbone, the pooled features.

    Not the fine-tuned pooled features: fine-tuning the top blocks for one
    question (melanoma or not) collapses what is not dermoscopy towards the
    middle of that space (a photo of a flower, a blank grey image and a
    screenshot all lay closer to the training images' mean than most training
    images did: docs/training.md, "Out-of-distribution detector"). Below the
    cut the weights are ImageNet's, untouched by fine-tuning, and those
    features still tell a flower from a mole.
    """
    from keras import layers

    cut = _cut(model)
    if len(cut.shape) == 2:
        return cut
    return layers.GlobalAveragePooling2D(name=OOD_FEATURES_LAYER)(cut)


def ood_feature_model(model):
    """``model``'s input -> :func:`ood_features_output` (N, C)."""
    import keras

    return keras.Model(model.input, ood_features_output(model), name="ood_features")


def pooled_trunk_output(rows: np.ndarray) -> np.ndarray:
    """:func:`ood_features_output` of trunk-cache rows (N, H, W, C) or (N, C)."""
    rows = np.asarray(rows, dtype=np.float32)
    return rows.mean(axis=(1, 2)) if rows.ndim == 4 else rows


def prediction_model(model):
    """``{"features": pooled, "logit": logit}`` of a fine-tune model (no dropout at inference)."""
    import keras

    return keras.Model(model.input, {"features": model.get_layer(FEATURES_LAYER).output, "logit": model.output})


def build_export_model(model, temperature: float, ood, name: str):
    """The shipped model: outputs ``probability`` (sigmoid of the logit over
    ``temperature``), ``ood_distance`` (``training.ood``'s Mahalanobis
    distance of :func:`ood_features_output`) and ``features`` (the pooled features,
    for site-specific heads). Built-in layers only; the Grad-CAM chain
    (last feature map -> average pool -> ``logit``) is what
    ``onnx_export.linear_gradcam_head`` needs."""
    import keras
    from keras import layers

    features = model.get_layer(FEATURES_LAYER).output
    kernel, bias = model.get_layer("logit").get_weights()
    logit_layer = layers.Dense(1, name="logit")
    logit = logit_layer(features)
    logit_layer.set_weights([(kernel / temperature).astype(np.float32), (bias / temperature).astype(np.float32)])
    probability = layers.Activation("sigmoid", name="probability")(logit)
    from .ood import distance_layers

    distance = distance_layers(ood_features_output(model), ood.projection, ood.bias)
    outputs = {"probability": probability, "ood_distance": distance, "features": features}
    return keras.Model(model.input, outputs, name=name)
