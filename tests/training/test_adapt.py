"""``python -m training adapt``: every bad input refused with a reason and nothing written
(no TensorFlow needed for those), and the site head's nested CV on synthetic features.

The end-to-end run (a complete model folder the predict CLI and the registry
accept) is in tests/inference/test_site_adapt_end_to_end.py.
"""

import shutil
from pathlib import Path

import numpy as np
import pytest

from training import adapt, calibration, site_align, site_head
from training.head import LinearHead
from training.site_model import SAMPLE_FILE, BaseModelError, open_base, read_sample

REPO = Path(__file__).resolve().parents[2]
DEMO_IMAGES = REPO / "demo" / "images"
# Site adaptation builds on the fine-tuned v3 model (160 px, a ``features`` output);
# every shipped model folder with a training-feature sample is checked below.
SHIPPED_MODEL = REPO / "models" / "mobilenet-v2-melanoma-v3"
WITH_SAMPLE = sorted(p.parent for p in (REPO / "models").glob(f"*/{SAMPLE_FILE}"))


def run(argv, capsys):
    code = adapt.main(argv)
    return code, capsys.readouterr().err


@pytest.fixture
def site(tmp_path):
    target = tmp_path / "site"
    shutil.copytree(DEMO_IMAGES, target, ignore=shutil.ignore_patterns("*.md"))
    return target


def args(site, out, *extra, base=SHIPPED_MODEL):
    return ["--base", str(base), "--data", str(site), "--out", str(out), *extra]


class TestRefusals:
    def test_too_few_cases(self, site, tmp_path, capsys):
        code, err = run(args(site, tmp_path / "out"), capsys)
        assert code == 2
        assert "too few cases: 8 melanomas and 8 benign lesions; at least 20 melanomas and 40 benign" in err
        assert not (tmp_path / "out").exists()

    @pytest.mark.parametrize("problem", ["missing", "empty"])
    def test_a_folder_without_both_classes(self, site, tmp_path, capsys, problem):
        shutil.rmtree(site / "malignant")
        if problem == "empty":
            (site / "malignant").mkdir()
        code, err = run(args(site, tmp_path / "out", "--test-min-cases", "1"), capsys)
        assert code == 2 and f"malignant/ is {problem}" in err
        assert not (tmp_path / "out").exists()

    def test_unreadable_images_are_named(self, site, tmp_path, capsys):
        (site / "benign" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
        (site / "malignant" / "notes.txt").write_text("biopsy 12")
        code, err = run(args(site, tmp_path / "out", "--test-min-cases", "8"), capsys)
        assert code == 2
        assert "2 unreadable image(s)" in err and "benign/broken.jpg" in err and "malignant/notes.txt" in err
        assert not (tmp_path / "out").exists()
        assert not list(tmp_path.glob(".out.*"))

    def test_a_base_model_without_its_training_sample(self, site, tmp_path, capsys):
        base = tmp_path / "base"
        base.mkdir()
        for name in ("model.json", "model.keras"):
            (base / name).symlink_to(SHIPPED_MODEL / name)
        code, err = run(args(site, tmp_path / "out", "--test-min-cases", "8", base=base), capsys)
        assert code == 2 and "training_features.npz is missing" in err
        assert not (tmp_path / "out").exists()

    def test_a_base_model_without_the_needed_metadata(self, site, tmp_path, capsys):
        import json

        base = tmp_path / "base"
        base.mkdir()
        meta = json.loads((SHIPPED_MODEL / "model.json").read_text())
        del meta["gradcam_layer"]
        (base / "model.json").write_text(json.dumps(meta))
        (base / "model.keras").symlink_to(SHIPPED_MODEL / "model.keras")
        (base / SAMPLE_FILE).symlink_to(SHIPPED_MODEL / SAMPLE_FILE)
        code, err = run(args(site, tmp_path / "out", "--test-min-cases", "8", base=base), capsys)
        assert code == 2 and "lacks gradcam_layer" in err

    def test_a_base_model_whose_network_is_not_its_input_size(self, site, tmp_path, capsys):
        import json

        base = tmp_path / "base"
        base.mkdir()
        meta = json.loads((SHIPPED_MODEL / "model.json").read_text())
        assert meta["input_size"] == 160
        (base / "model.json").write_text(json.dumps({**meta, "input_size": 224}))
        (base / "model.keras").symlink_to(SHIPPED_MODEL / "model.keras")
        (base / SAMPLE_FILE).symlink_to(SHIPPED_MODEL / SAMPLE_FILE)
        code, err = run(args(site, tmp_path / "out", "--test-min-cases", "8", base=base), capsys)
        assert code == 2 and "takes (160, 160, 3) images; model.json says input_size 224" in err
        assert not (tmp_path / "out").exists()

    def test_a_sample_from_another_model_is_refused(self, tmp_path):
        base = tmp_path / "base"
        shutil.copytree(SHIPPED_MODEL, base, ignore=shutil.ignore_patterns("model.onnx", "experiments"))
        with open(base / "model.keras", "ab") as fh:
            fh.write(b"\0")
        with pytest.raises(BaseModelError, match="another model file"):
            open_base(base)

    def test_an_existing_output_folder_is_not_overwritten(self, site, tmp_path, capsys):
        out = tmp_path / "out"
        out.mkdir()
        (out / "keep.txt").write_text("mine")
        code, err = run(args(site, out, "--test-min-cases", "8"), capsys)
        assert code == 2 and "not an empty folder" in err
        assert [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("folder", WITH_SAMPLE, ids=lambda p: p.name)
def test_the_shipped_sample_matches_the_shipped_model(folder):
    base = open_base(folder)
    sample = read_sample(folder / SAMPLE_FILE)
    assert sample.features.shape == (1000, 1280) and set(np.unique(sample.y)) == {0, 1}
    assert base.model_sha256 == sample.model_sha256
    assert len(set(sample.files)) == 1000
    # a fine-tuned base's detector measures the frozen trunk: the sample carries that space too
    assert (sample.ood_features is None) == base.ood_is_features
    if sample.ood_features is not None:
        assert sample.ood_features.shape == (1000, base.ood_tensor().shape[-1])


def synthetic(seed, n_site=100, n_train=300, d=20, shift=1.5):
    """Training features and a site whose features are shifted, with the class signal along axis 0."""
    rng = np.random.default_rng(seed)
    yt = rng.integers(0, 2, n_train)
    xt = rng.normal(size=(n_train, d)) + 1.5 * yt[:, None] * np.eye(d)[0]
    ys = np.r_[np.ones(n_site // 5, int), np.zeros(n_site - n_site // 5, int)]
    xs = rng.normal(size=(n_site, d)) + 1.5 * ys[:, None] * np.eye(d)[0] + shift * np.eye(d)[1]
    return xs, ys, xt, yt


class TestSiteHead:
    def test_nested_cv_scores_every_way_on_cases_that_chose_nothing(self):
        xs, ys, xt, yt = synthetic(0)
        base = LinearHead(kernel=np.eye(20)[0] * 1.5, bias=-1.0, c=float("nan"))
        result = site_head.nested_cv(xs, ys, xt, yt, cs=(0.01, 0.1), outer=4, inner=3, base_head=base)
        assert set(result.per_way) == set(site_head.WAYS)
        for r in result.per_way.values():
            assert r["metrics"]["roc_auc"] > 0.65  # chance is 0.5
            assert 0.0 <= r["metrics"]["referral_sensitivity"] <= 1.0
        assert result.way in site_head.WAYS
        assert sorted(np.bincount(result.folds)) == [25, 25, 25, 25]

    def test_other_referral_rules_are_scored_in_the_same_pass(self):
        xs, ys, xt, yt = synthetic(6)
        level = site_head.REFERRAL_SENSITIVITY
        result = site_head.nested_cv(xs, ys, xt, yt, cs=(0.1,), outer=3, inner=3, other_referrals=(level, 0.5))
        for r in result.per_way.values():
            m = r["metrics"]
            # the default rule again gives the default figures; a laxer one refers no more melanomas
            assert m[f"referral_sensitivity@{level}"] == m["referral_sensitivity"]
            assert m[f"referral_specificity@{level}"] == m["referral_specificity"]
            assert m["referral_sensitivity@0.5"] <= m["referral_sensitivity"]
            assert m["referral_specificity@0.5"] >= m["referral_specificity"]

    def test_the_referral_edge_rules(self):
        y = np.array([1, 1, 1, 0, 0])
        prob = calibration.sigmoid(np.array([-1.0, 0.0, 1.0, -3.0, -2.0]))  # melanoma logits: mean 0, sd 1
        assert calibration.referral_threshold(y, prob, "normal:0.5") == pytest.approx(0.5)
        assert calibration.referral_threshold(y, prob, "normal:0.8413447") == pytest.approx(calibration.sigmoid(-1.0))
        # a number: the highest threshold keeping that share of melanomas (here all three)
        assert calibration.referral_threshold(y, prob, 1.0) <= prob[0]
        assert calibration.referral_threshold(y, prob, 1.0) > prob[4]

    def test_without_a_base_head_the_global_ways_are_skipped(self):
        xs, ys, xt, yt = synthetic(1)
        result = site_head.nested_cv(xs, ys, xt, yt, cs=(0.1,), outer=3, inner=3)
        assert set(result.per_way) == {"site", "site+training"}

    @pytest.mark.parametrize("way", site_head.WAYS)
    def test_the_final_head_folds_its_calibration_into_one_affine_map(self, way):
        xs, ys, xt, yt = synthetic(2)
        base = LinearHead(kernel=np.eye(20)[0], bias=0.0, c=float("nan"))
        final = site_head.fit_site_head(way, xs, ys, xt, yt, cs=(0.01, 0.1), inner=4, base_head=base)
        exported = calibration.sigmoid(xs @ final.kernel + final.bias)
        np.testing.assert_allclose(exported, final.calibration.apply(final.head.logit(xs)), atol=1e-9)
        # The threshold meets the sensitivity floor on the out-of-fold probabilities it was chosen on,
        # and the referral edge (the band's lower bound) sits at or below it.
        assert (final.oof_prob[ys == 1] >= final.threshold).mean() >= 0.90
        assert final.band["lo"] <= final.threshold < final.band["hi"]

    @pytest.mark.parametrize("kind", ["shift", "affine"])
    def test_an_alignment_maps_the_site_benign_statistics_onto_the_training_ones(self, kind):
        xs, ys, xt, yt = synthetic(4, n_site=400, n_train=2000)
        xs = xs * 0.5  # the device halves every feature's spread, on top of the shift along axis 1
        al = site_align.fit_alignment(kind, xs, ys, xt, yt)
        moved = al.apply(xs)[ys == 0]
        np.testing.assert_allclose(moved.mean(axis=0), xt[yt == 0].mean(axis=0), atol=1e-9)
        if kind == "affine":  # spreads matched too (the ratio is shrunk a little towards 1)
            np.testing.assert_allclose(moved.std(axis=0) / xt[yt == 0].std(axis=0), 1.0, atol=0.1)
        else:  # spreads left as they were
            np.testing.assert_allclose(moved.std(axis=0), xs[ys == 0].std(axis=0), rtol=1e-9)
        assert site_align.fit_alignment("none", xs, ys, xt, yt) is None

    @pytest.mark.parametrize("kind", ["shift", "affine"])
    def test_an_aligned_head_is_a_head_on_raw_features(self, kind):
        xs, ys, xt, yt = synthetic(5)
        base = LinearHead(kernel=np.eye(20)[0], bias=-0.5, c=float("nan"))
        final = site_head.fit_site_head("global", xs, ys, xt, yt, inner=4, base_head=base, align=kind)
        al = site_align.fit_alignment(kind, xs, ys, xt, yt)
        np.testing.assert_allclose(final.head.logit(xs), base.logit(al.apply(xs)), atol=1e-9)
        exported = calibration.sigmoid(xs @ final.kernel + final.bias)
        np.testing.assert_allclose(exported, final.oof_prob, atol=1e-9)  # global: no inner fit, so OOF = in-sample
        assert final.alignment == kind

    def test_a_tiny_correction_stays_the_global_head(self):
        xs, ys, _, _ = synthetic(3)
        base = LinearHead(kernel=np.eye(20)[0], bias=0.3, c=float("nan"))
        head = site_head._fit_offset(xs, ys, 1e-8, base)
        ratio = head.kernel[0] / base.kernel[0]
        np.testing.assert_allclose(head.kernel, ratio * base.kernel, atol=1e-6)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ((0.42, 0.3, 0.6), (0.42, [0.3, 0.6])),
        # Well-separated cases: a melanoma's calibrated score rounds to 1.0, which no model.json may hold.
        ((0.99999997, 0.8, 0.99999999), (0.999999, [0.8, 1.0])),
        ((1e-9, 0.0, 2e-9), (1e-6, [0.0, 2e-6])),
    ],
)
def test_the_operating_point_stays_inside_zero_and_one(raw, expected):
    from training.site_report import operating_point

    threshold, band = operating_point(*raw)
    assert [threshold, *band] == pytest.approx([expected[0], *expected[1]])
    assert 0.0 < threshold < 1.0 and band[0] <= threshold < band[1] <= 1.0
