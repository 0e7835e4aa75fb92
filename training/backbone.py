"""MobileNetV2 (width 1.0) as a Keras 3 functional model that reproduces
torchvision's ``mobilenet_v2`` exactly, so torchvision's ImageNet weights can be
used here (``weights="imagenet"`` cannot download in this project).

Plain Keras, no torch: the weights were converted once by
``training/convert_backbone.py`` into ``models/backbones/mobilenet_v2_imagenet.weights.h5``
(see docs/backbone.md for the verification figures and exact commands).

Where torchvision and ``keras.applications.MobileNetV2`` differ, this file
follows torchvision:

* every 3x3 convolution pads 1 pixel on *every* side (PyTorch ``padding=1``).
  Keras ``padding="same"`` pads stride-2 convolutions asymmetrically (0 before,
  1 after on even inputs), so stride-2 convolutions use an explicit
  ``ZeroPadding2D(1)`` followed by a ``"valid"`` convolution. For stride 1 and an
  odd kernel ``"same"`` is the symmetric 1-pixel pad, identical to PyTorch;
* BatchNorm epsilon is 1e-5 (PyTorch's), not Keras' 1e-3; momentum 0.9 in
  Keras terms is PyTorch's ``momentum=0.1``;
* the classifier is ``Dropout(0.2)`` + ``Dense(1000)`` emitting *logits* (no
  softmax), after global average pooling;
* the network expects torchvision's input normalisation, ``(x/255 - mean)/std``
  with ImageNet mean/std, on RGB images. The project contract is that models
  take float32 RGB pixel values in 0..255, so the normalisation is *not* inside
  the backbone: callers put :func:`imagenet_normalisation` in front of it::

      inputs = keras.Input((224, 224, 3))            # RGB, 0..255
      x = imagenet_normalisation()(inputs)
      features = build_mobilenet_v2(include_top=False, weights_path=WEIGHTS)(x)

Layer names are modelled on ``keras.applications.MobileNetV2``'s, lower-cased
(``stem_conv``, ``block_3_expand``, ``block_3_depthwise``, ``block_3_project_bn``
... ``head``, ``head_bn``, ``head_relu``, ``predictions``), block ``i`` being
torchvision's ``features[i + 1]``. (Keras ``.weights.h5`` files are matched by
layer order and type, not by name; :func:`build_mobilenet_v2` always builds the
graph the weights file was written from.) The last convolutional activation
(7x7x1280 at 224x224 input), the usual Grad-CAM target, is
:data:`LAST_CONV_LAYER`.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
from keras import layers

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, on the 0..1 scale
IMAGENET_STD = (0.229, 0.224, 0.225)

BN_EPSILON = 1e-5  # torch.nn.BatchNorm2d default
BN_MOMENTUM = 0.9  # Keras convention; equals PyTorch momentum=0.1

# torchvision's inverted_residual_setting for width_mult=1.0:
# expansion t, output channels c, repeats n, first stride s.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000
DROPOUT_RATE = 0.2

LAST_CONV_LAYER = "head_relu"
FEATURES_LAYER = LAST_CONV_LAYER

DEFAULT_WEIGHTS_PATH = (
    Path(__file__).resolve().parent.parent / "models" / "backbones" / "mobilenet_v2_imagenet.weights.h5"
)


def imagenet_normalisation(name: str = "imagenet_normalisation") -> layers.Layer:
    """A layer mapping RGB pixel values in 0..255 to torchvision's normalised input.

    Computes ``(x/255 - mean)/std`` per channel as the single affine map
    ``(x - 255*mean) / (255*std)`` with a built-in, weight-free (non-trainable,
    constant) ``Normalization`` layer, so it serialises with the model and needs
    no ``adapt()``.
    """
    mean = [255.0 * m for m in IMAGENET_MEAN]
    variance = [(255.0 * s) ** 2 for s in IMAGENET_STD]
    return layers.Normalization(axis=-1, mean=mean, variance=variance, name=name)


def _conv_bn_relu6(x, filters: int, kernel: int, stride: int, name: str):
    """torchvision Conv2dNormActivation: conv (no bias) -> BN -> ReLU6."""
    x = _conv(x, filters, kernel, stride, name)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(max_value=6.0, name=f"{name}_relu")(x)


def _conv(x, filters: int, kernel: int, stride: int, name: str):
    x, padding = _pad(x, kernel, stride, name)
    return layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=False, name=name)(x)


def _depthwise_bn_relu6(x, stride: int, name: str):
    x, padding = _pad(x, 3, stride, name)
    x = layers.DepthwiseConv2D(3, strides=stride, padding=padding, use_bias=False, name=name)(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(max_value=6.0, name=f"{name}_relu")(x)


def _pad(x, kernel: int, stride: int, name: str):
    """PyTorch's symmetric ``padding=(kernel-1)//2``; returns (tensor, keras padding)."""
    if kernel == 1:
        return x, "valid"
    if stride == 1:
        return x, "same"  # symmetric for odd kernels at stride 1, identical to PyTorch
    return layers.ZeroPadding2D((kernel - 1) // 2, name=f"{name}_pad")(x), "valid"


def _inverted_residual(x, in_channels: int, out_channels: int, stride: int, expand_ratio: int, block: int):
    name = f"block_{block}"
    shortcut = x
    hidden = int(round(in_channels * expand_ratio))
    if expand_ratio != 1:
        x = _conv_bn_relu6(x, hidden, 1, 1, f"{name}_expand")
    x = _depthwise_bn_relu6(x, stride, f"{name}_depthwise")
    x = layers.Conv2D(out_channels, 1, use_bias=False, name=f"{name}_project")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_project_bn")(x)
    if stride == 1 and in_channels == out_channels:
        x = layers.Add(name=f"{name}_add")([shortcut, x])
    return x


def block_specs():
    """Yield ``(block, in_channels, out_channels, stride, expand_ratio)`` for the 17 blocks."""
    block = 0
    in_channels = STEM_CHANNELS
    for t, c, n, s in INVERTED_RESIDUAL_SETTING:
        for i in range(n):
            yield block, in_channels, c, (s if i == 0 else 1), t
            in_channels = c
            block += 1


def build_mobilenet_v2(
    input_shape=(224, 224, 3),
    include_top: bool = False,
    weights_path: str | os.PathLike | None = None,
    pooling: str | None = None,
    normalise_input: bool = False,
    name: str = "mobilenet_v2",
) -> keras.Model:
    """torchvision's ``mobilenet_v2()`` (width 1.0) as a Keras functional model.

    The input is an RGB image already normalised the torchvision way; put
    :func:`imagenet_normalisation` in front for 0..255 pixels, or pass
    ``normalise_input=True`` to make it the model's first layer (then the
    model takes float32 RGB 0..255 directly, in one flat graph).

    ``include_top=True`` returns the 1000 ImageNet *logits*. ``include_top=False``
    returns the last convolutional feature map (``(None, 7, 7, 1280)`` at
    224x224, layer :data:`LAST_CONV_LAYER`), or with ``pooling="avg"`` /
    ``"max"`` its global average / max, ``(None, 1280)``.

    ``weights_path`` is a ``.weights.h5`` written by ``convert_backbone`` for the
    *full* model (e.g. :data:`DEFAULT_WEIGHTS_PATH`); the full graph is built,
    loaded, and cut at the feature map when ``include_top=False``, so the
    same file serves both. Without it the weights are Keras' random init.
    """
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', not {pooling!r}")
    if include_top and pooling is not None:
        raise ValueError("pooling applies only with include_top=False (the top always average-pools)")

    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = imagenet_normalisation()(inputs) if normalise_input else inputs
    x = _conv_bn_relu6(x, STEM_CHANNELS, 3, 2, "stem_conv")
    for block, cin, cout, stride, t in block_specs():
        x = _inverted_residual(x, cin, cout, stride, t, block)
    features = _conv_bn_relu6(x, HEAD_CHANNELS, 1, 1, "head")  # output layer: "head_relu"
    return classifier_or_features(
        inputs,
        features,
        name=name,
        dropout=DROPOUT_RATE,
        weights_path=weights_path,
        include_top=include_top,
        pooling=pooling,
    )


def classifier_or_features(inputs, features, *, name, dropout, weights_path, include_top, pooling):
    """The ImageNet classifier on ``features`` (so the ported weights load), or the feature extractor.

    Shared by every ported backbone: the top is built even when only the
    features are wanted, because the weight files hold the whole network.
    """
    x = layers.GlobalAveragePooling2D(name="avg_pool")(features)
    x = layers.Dropout(dropout, name="dropout")(x)
    logits = layers.Dense(NUM_CLASSES, name="predictions")(x)
    full = keras.Model(inputs, logits, name=name)
    if weights_path is not None:
        full.load_weights(os.fspath(weights_path))
    if include_top:
        return full
    if pooling == "avg":
        features = layers.GlobalAveragePooling2D(name="features_avg_pool")(features)
    elif pooling == "max":
        features = layers.GlobalMaxPooling2D(name="features_max_pool")(features)
    return keras.Model(inputs, features, name=f"{name}_features")
