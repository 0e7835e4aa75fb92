"""Mahalanobis OOD score on synthetic clustered features (no TF)."""

import numpy as np

from training.ood import fit_ood


def clustered(n=3000, d=64, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (4, d))
    # correlated, anisotropic clusters in d dims (like pooled CNN features)
    mix = rng.normal(0, 1, (d, d)) * np.linspace(1.5, 0.1, d)[None, :]
    x = centres[rng.integers(0, 4, n)] + rng.normal(0, 1, (n, d)) @ mix.T
    return x, rng


def test_training_pass_rate_is_the_quantile():
    x, _ = clustered()
    ood = fit_ood(x, components=32, quantile=0.99)
    assert abs((~ood.is_ood(x)).mean() - 0.99) < 0.002
    assert ood.components == 32


def test_held_out_in_distribution_mostly_passes_and_far_points_are_flagged():
    x, rng = clustered(n=4000)
    train, held = x[:3000], x[3000:]
    ood = fit_ood(train, components=32, quantile=0.99)
    assert (~ood.is_ood(held)).mean() > 0.95
    centre = train.mean(axis=0)
    scale = train.std(axis=0).mean()
    far = centre + rng.normal(0, 1, (200, train.shape[1])) * 12 * scale
    assert ood.is_ood(far).mean() > 0.99
    shifted = held + 8 * scale  # every feature shifted: a gross domain shift
    assert ood.is_ood(shifted).mean() > 0.9


def test_distance_equals_dense_layer_form():
    x, _ = clustered(n=500, d=16)
    ood = fit_ood(x, components=8)
    z = x @ ood.projection + ood.bias
    np.testing.assert_allclose(ood.distance(x), (z * z) @ np.ones(8), rtol=1e-10)
    # whitened: at most unit variance per component (shrinkage only lowers it), ~1 for the top one
    var = z.var(axis=0, ddof=1)
    assert (var <= 1.0 + 1e-9).all() and var[0] > 0.9
