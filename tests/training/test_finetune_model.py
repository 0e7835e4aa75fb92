"""Which layers a fine-tune trains: the top N blocks and the logit layer, never a BatchNorm."""

import keras
import numpy as np
import pytest

from training.finetune_model import (
    BACKBONES,
    backbone_info,
    build_finetune_model,
    prediction_model,
    split_at_trainable,
    top_prediction_model,
)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_top_blocks_train_and_batchnorm_stays_frozen(backbone):
    model = build_finetune_model(backbone, 32, 2, weights_path=None)
    blocks = backbone_info(backbone)["blocks"]
    top = (blocks[-2], "head")
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            assert not layer.trainable, layer.name
        elif layer.weights:
            assert layer.trainable == (layer.name == "logit" or layer.name.startswith(top)), layer.name
    assert any(layer.trainable and layer.name.startswith(blocks[-2]) for layer in model.layers)
    frozen = build_finetune_model(backbone, 32, 0, weights_path=None)
    assert [w.path for w in frozen.trainable_weights] == ["logit/kernel", "logit/bias"]


@pytest.mark.parametrize("backbone", BACKBONES)
def test_prediction_model_gives_pooled_features_and_the_logit(backbone):
    model = build_finetune_model(backbone, 32, 1, weights_path=None)
    out = prediction_model(model).predict_on_batch(np.zeros((2, 32, 32, 3), np.float32))
    assert out["features"].shape == (2, 1280) and out["logit"].shape == (2, 1)
    kernel, bias = model.get_layer("logit").get_weights()
    np.testing.assert_allclose(out["logit"], out["features"] @ kernel + bias, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("unfreeze", [0, 2])
def test_trunk_then_top_is_the_model_and_top_holds_every_trainable_weight(backbone, unfreeze):
    model = build_finetune_model(backbone, 32, unfreeze, weights_path=None)
    trunk, top = split_at_trainable(model)
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(
        top.predict_on_batch(trunk.predict_on_batch(x)), model.predict_on_batch(x), rtol=1e-5, atol=1e-5
    )
    assert [w.path for w in top.trainable_weights] == [w.path for w in model.trainable_weights]
    assert not trunk.trainable_weights  # nothing below the cut trains, so its outputs can be cached
    # the layers are shared: training the top trains the model
    kernel = top.get_layer("logit").kernel
    kernel.assign(kernel + 1.0)
    np.testing.assert_array_equal(model.get_layer("logit").get_weights()[0], kernel.numpy())


def test_top_prediction_model_gives_what_the_whole_prediction_model_gives():
    model = build_finetune_model(BACKBONES[0], 32, 2, weights_path=None)
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    whole = prediction_model(model).predict_on_batch(x)
    top = top_prediction_model(model).predict_on_batch(split_at_trainable(model)[0].predict_on_batch(x))
    for key in ("features", "logit"):
        np.testing.assert_allclose(top[key], whole[key], rtol=1e-5, atol=1e-5)
