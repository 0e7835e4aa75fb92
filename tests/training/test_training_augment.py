"""Augmentation reaches training batches only; validation sees exact pixels."""

import numpy as np

from training.augment import eval_dataset, train_dataset
from training.train import make_datasets


def _images(n=10, size=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), np.arange(n) % 2


def test_validation_dataset_yields_the_preprocessed_arrays_exactly():
    x_tr, y_tr = _images(12, seed=1)
    x_va, y_va = _images(10, seed=2)
    _, val_ds = make_datasets(x_tr, y_tr, (x_va, y_va), batch_size=4, seed=0)
    for _ in range(2):  # and again on a second pass (a second epoch)
        images = np.concatenate([b[0].numpy() for b in val_ds])
        labels = np.concatenate([b[1].numpy() for b in val_ds])
        assert images.dtype == np.float32
        np.testing.assert_array_equal(images, x_va.astype(np.float32))
        np.testing.assert_array_equal(labels.ravel(), y_va)


def test_prediction_dataset_is_plain():
    x, _ = _images(5)
    out = np.concatenate([b.numpy() for b in eval_dataset(x, None, 2)])
    np.testing.assert_array_equal(out, x.astype(np.float32))


def test_training_dataset_is_augmented_and_keeps_labels():
    x, y = _images(16, size=32)
    ds = train_dataset(x, y, batch_size=16, seed=0, augment=True)
    images, labels = next(iter(ds))
    images, labels = images.numpy(), labels.numpy().ravel()
    assert images.shape == x.shape and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 255
    # shuffled, so match each output to its source by label multiset only
    assert sorted(labels.tolist()) == sorted(y.tolist())
    assert not any(np.array_equal(images[i], x[j].astype(np.float32)) for i in range(16) for j in range(16))

    plain = next(iter(train_dataset(x, y, batch_size=16, seed=0, augment=False)))[0].numpy()
    assert sorted(map(bytes, plain.astype(np.uint8))) == sorted(map(bytes, x))
