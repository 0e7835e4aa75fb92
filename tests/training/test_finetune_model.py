"""Which layers a fine-tune trains: the top N blocks and the logit layer, never a BatchNorm."""

import keras
import numpy as np
import pytest

from training.finetune_model import BACKBONES, backbone_info, build_finetune_model, prediction_model


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
