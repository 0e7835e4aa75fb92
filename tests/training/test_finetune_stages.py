"""Stages of a fine-tune run that differ from the frozen run's (no TensorFlow)."""

import numpy as np

from training.finetune_stages import choose_components, select_ood


def rates(**by_k):
    return {int(k[1:]): {"heldout_ood_rate_mean": v} for k, v in by_k.items()}


def test_the_most_components_within_one_standard_error_of_nominal():
    # 1% nominal on 1,918 held-out images: one standard error is 0.227 points
    assert choose_components(rates(k32=0.0100, k64=0.0097, k128=0.0114), 0.01, 1918) == 128
    assert choose_components(rates(k32=0.0100, k64=0.0097, k128=0.0140), 0.01, 1918) == 64


def test_without_a_k_near_nominal_the_closest_one():
    assert choose_components(rates(k32=0.030, k64=0.020, k128=0.045), 0.01, 1918) == 64


def test_select_ood_fits_every_fold_on_one_feature_matrix():
    class Config:
        ood_components = (2, 4)
        ood_shrinkage = 0.05
        ood_quantile = 0.9
        folds = 3

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6))
    folds = np.arange(300) % 3
    chosen = select_ood(Config, folds, x, lambda message: None)
    assert chosen.components in (2, 4) and len(chosen.fold_models) == 3
    for f, model in enumerate(chosen.fold_models):  # fold f's detector never saw fold f
        held_out_mean = x[folds != f].mean(axis=0)
        np.testing.assert_allclose(model.mean, held_out_mean)
    far = np.full((1, 6), 10.0)
    assert all(m.is_ood(far)[0] for m in chosen.fold_models)
