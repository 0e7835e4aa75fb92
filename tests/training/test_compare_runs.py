"""Paired comparison of models on their out-of-fold predictions (training.compare_runs)."""

import csv

import numpy as np
import pytest

from training.compare_runs import compare, main, markdown


def write(folder, files, y, folds, logit):
    folder.mkdir(parents=True)
    with open(folder / "oof_predictions.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label", "fold", "group", "logit", "probability_uncalibrated", "probability"])
        for row in zip(files, y, folds, logit, strict=True):
            w.writerow([row[0], "malignant" if row[1] else "benign", row[2], 0, row[3], 0.5, 0.5])


@pytest.fixture
def runs(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    y = rng.integers(0, 2, n)
    folds = np.arange(n) % 4 + 1
    files = [f"img{i:03d}.jpg" for i in range(n)]
    a = y * 1.0 + rng.normal(0, 1, n)
    b = y * 1.0 + rng.normal(0, 1, n)
    write(tmp_path / "a", files, y, folds, a)
    order = rng.permutation(n)  # row order does not matter
    write(tmp_path / "b", [files[i] for i in order], y[order], folds[order], b[order])
    return tmp_path, y, folds, a, b


def test_per_fold_aucs_and_the_average(runs):
    from sklearn.metrics import roc_auc_score

    tmp, y, folds, a, b = runs
    result = compare([tmp / "a", tmp / "b"])
    m = result["models"]
    assert list(m) == ["a", "b", "average of a + b"]
    want = [roc_auc_score(y[folds == f], ((a + b) / 2)[folds == f]) for f in range(1, 5)]
    np.testing.assert_allclose(m["average of a + b"]["fold_auc"], want)
    assert m["a"]["diff_vs_reference"] == [0.0] * 4 and m["a"]["folds_better"] == 0
    # two independent noisy scores average to a better one
    assert m["average of a + b"]["mean"] > max(m["a"]["mean"], m["b"]["mean"])
    assert "| average of a + b |" in markdown(result)


def test_refuses_runs_with_other_folds(runs):
    tmp, y, folds, a, b = runs
    write(tmp / "c", [f"img{i:03d}.jpg" for i in range(len(y))], y, folds[::-1], a)
    with pytest.raises(ValueError, match="same images"):
        compare([tmp / "a", tmp / "c"])


def test_command_line_writes_markdown(runs, capsys):
    tmp = runs[0]
    assert main([str(tmp / "a"), str(tmp / "b"), "--names", "v2,v3", "--out", str(tmp / "cmp.md")]) == 0
    assert "| v3 |" in capsys.readouterr().out
    assert "paired, against `v2`" in (tmp / "cmp.md").read_text()
