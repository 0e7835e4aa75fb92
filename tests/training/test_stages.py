"""training.stages: the run's stages on demo images or synthetic features,
with a stand-in for the feature extraction (no backbone)."""

from pathlib import Path

import numpy as np

from training import stages
from training.features import FEATURE_DIM, RawImages
from training.preprocessing import SQUARE_RESIZE_V1, SQUARE_SOG_V2
from training.transfer import TransferConfig

DEMO = Path(__file__).resolve().parents[2] / "demo" / "images"


def config(**kw):
    base = {"data": DEMO, "out": Path("."), "folds": 2, "cs": (0.1,), "inner_folds": 2, "compare_subset": 0}
    return TransferConfig(**{**base, **kw})


def synthetic_data(n=60, folds=2):
    y = np.tile([0, 1], n // 2)
    raw = RawImages(files=[f"f{i}.jpg" for i in range(n)], images=[None] * n, y=y, hashes=np.zeros((n, 4)))
    return stages.Data(raw=raw, groups=np.arange(n), folds=(np.arange(n) // 2) % folds, duplicates={})


class FakeExtract:
    """``extract(indices, make_input, label)``: records the calls; features by label."""

    def __init__(self, y, informative=(SQUARE_RESIZE_V1, SQUARE_SOG_V2), identical=False):
        self.y, self.informative, self.identical, self.calls = y, informative, identical, []

    def __call__(self, indices, make_input, label):
        indices = np.asarray(indices)
        self.calls.append((label, indices.tolist()))
        rng = np.random.default_rng(0 if self.identical else len(self.calls))
        feats = rng.normal(size=(len(indices), FEATURE_DIM)).astype(np.float32)
        if any(p in label for p in self.informative):
            feats[:, :4] += 3 * self.y[indices, None]
        return feats


def test_load_data_groups_and_folds_the_demo_images():
    data = stages.load_data(config(), workers=2, progress=lambda m: None)
    assert len(data.y) == len(data.groups) == len(data.folds) == 16
    assert set(data.folds) == {0, 1} and data.y.sum() == 8
    assert data.duplicates["n_duplicate_groups"] >= 0


def test_compare_preprocessing_switches_only_for_a_clearly_better_pipeline():
    data = synthetic_data()
    extract = FakeExtract(data.y, informative=(SQUARE_RESIZE_V1,))
    comparison = stages.compare_preprocessing(config(preprocessing=SQUARE_SOG_V2), data, extract, lambda m: None)
    assert comparison.chosen == SQUARE_RESIZE_V1
    assert comparison.report["chosen"] == SQUARE_RESIZE_V1 and comparison.report["n_images"] == 60
    assert comparison.report[SQUARE_RESIZE_V1]["auc_mean"] > comparison.report[SQUARE_SOG_V2]["auc_mean"] + 0.005
    assert [label for label, _ in extract.calls] == [
        f"features {p} (compare subset)" for p in (SQUARE_RESIZE_V1, SQUARE_SOG_V2)
    ]
    assert comparison.features.shape == (60, FEATURE_DIM)

    same = FakeExtract(data.y, informative=(SQUARE_RESIZE_V1,), identical=True)
    kept = stages.compare_preprocessing(config(preprocessing=SQUARE_RESIZE_V1), data, same, lambda m: None)
    assert kept.chosen == SQUARE_RESIZE_V1  # the better one was requested anyway

    same = FakeExtract(data.y, identical=True)  # the same features under both: a tie keeps the default
    for default in (SQUARE_RESIZE_V1, SQUARE_SOG_V2):
        tie = stages.compare_preprocessing(config(preprocessing=default), data, same, lambda m: None)
        assert tie.report[SQUARE_RESIZE_V1]["auc_mean"] == tie.report[SQUARE_SOG_V2]["auc_mean"]
        assert tie.chosen == default


def test_compare_preprocessing_can_be_skipped():
    data = synthetic_data()
    extract = FakeExtract(data.y)
    comparison = stages.compare_preprocessing(
        config(compare_preprocessing=False, preprocessing=SQUARE_RESIZE_V1), data, extract, lambda m: None
    )
    assert (comparison.chosen, comparison.report, comparison.features) == (SQUARE_RESIZE_V1, {}, None)
    assert extract.calls == []


def test_extract_all_features_reuses_the_compared_images():
    data = synthetic_data(20)
    extract = FakeExtract(data.y)
    done = np.arange(0, 20, 2)
    comparison = stages.Comparison(
        chosen=SQUARE_SOG_V2, report={}, indices=done, features=np.full((10, FEATURE_DIM), 7, dtype=np.float32)
    )
    features = stages.extract_all_features(config(augmented_copies=2), data, comparison, extract)
    assert features.preprocessing == SQUARE_SOG_V2
    assert features.clean.shape == (20, FEATURE_DIM) and features.augmented.shape == (2, 20, FEATURE_DIM)
    assert (features.clean[done] == 7).all() and not np.isnan(features.clean).any()
    # labels name the cache files of --feature-cache: they must not change
    assert extract.calls == [
        (f"features {SQUARE_SOG_V2} (clean)", list(range(1, 20, 2))),
        (f"features {SQUARE_SOG_V2} (augmented copy 1/2)", list(range(20))),
        (f"features {SQUARE_SOG_V2} (augmented copy 2/2)", list(range(20))),
    ]


def test_select_ood_fits_each_fold_without_it_and_picks_a_candidate():
    data = synthetic_data(80, folds=2)
    clean = np.random.default_rng(0).normal(size=(80, 16)).astype(np.float32)
    features = stages.Features(preprocessing=SQUARE_SOG_V2, clean=clean, augmented=np.empty((0, 80, 16)))
    ood = stages.select_ood(config(ood_components=(2, 8)), data, features, lambda m: None)
    assert ood.components in (2, 8) and set(ood.cv) == {2, 8}
    assert len(ood.fold_models) == 2
    for f, model in enumerate(ood.fold_models):
        assert model.components == ood.components
        np.testing.assert_allclose(model.mean, clean[data.folds != f].mean(axis=0), rtol=1e-5)
    nominal = 1 - 0.99
    gaps = {k: abs(v["heldout_ood_rate_mean"] - nominal) for k, v in ood.cv.items()}
    assert gaps[ood.components] == min(gaps.values())


def test_calibrate_meets_the_sensitivity_target_out_of_fold():
    data = synthetic_data(200, folds=4)
    rng = np.random.default_rng(0)
    oof = 3 * (data.y - 0.5) + rng.normal(scale=1.5, size=200)
    cv = stages.OuterCV(oof_logit=oof, heads=[], fold_info=[])
    cal = stages.calibrate(config(folds=4, bootstrap=50), data, cv, lambda m: None)
    assert cal.temperature > 0 and len(cal.per_fold) == len(cal.per_fold_band) == 4
    assert (cal.prob[data.y == 1] >= cal.threshold).mean() >= 0.90
    assert cal.band["lo"] <= cal.threshold < cal.band["hi"]
    assert cal.report["nll_after"] <= cal.report["nll_before"] + 1e-9
    assert cal.ci["roc_auc"]["lo"] <= cal.pooled["roc_auc"] <= cal.ci["roc_auc"]["hi"]


def test_robustness_report_is_skipped_with_a_zero_subset(tmp_path):
    assert stages.robustness_report(config(robustness_subset=0), *([None] * 6), tmp_path, print) is None
    assert list(tmp_path.iterdir()) == []
