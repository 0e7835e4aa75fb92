"""``python -m inference predict``: the worker's answers from the command line, with no Django."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


class TestCommandLine:
    def run_cli(self, *args):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        env.pop("DJANGO_SETTINGS_MODULE", None)  # it must not need Django
        return subprocess.run(
            [sys.executable, "-m", "inference", "predict", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def test_it_prints_one_json_line_per_image_matching_the_worker_path(self, predictor, demo_image_paths, tmp_path):
        not_an_image = tmp_path / "notes.png"
        not_an_image.write_text("hello")
        paths = [str(p) for p in demo_image_paths[:3]] + [str(not_an_image)]
        completed = self.run_cli(*paths)

        assert completed.returncode == 1, completed.stderr
        rows = [json.loads(line) for line in completed.stdout.splitlines()]
        assert [row["file"] for row in rows] == paths
        expected = predictor.predict_sources(demo_image_paths[:3])
        for row, result in zip(rows[:3], expected, strict=True):
            assert row["label"] in {"benign", "malignant", "uncertain"}
            assert row["probability_malignant"] == pytest.approx(result.probability_malignant, abs=1e-5)
            assert row["confidence"] == pytest.approx(result.confidence, abs=1e-5)
            assert row["model_version"] == predictor.version_label
            assert row["out_of_distribution"] is result.out_of_distribution
            assert row["ood_distance"] == pytest.approx(result.ood_distance, rel=1e-4)
        assert "error" in rows[3] and "label" not in rows[3]

    def test_it_prints_the_ood_fields_and_writes_heatmaps(
        self, synthetic, synthetic_model_dir, demo_image_paths, tmp_path
    ):
        paths = demo_image_paths[:2]
        completed = self.run_cli(
            "--model", str(synthetic_model_dir), "--heatmap-dir", str(tmp_path / "heat"), *map(str, paths)
        )

        assert completed.returncode == 0, completed.stderr
        rows = [json.loads(line) for line in completed.stdout.splitlines()]
        for row, path, result in zip(rows, paths, synthetic.predict_sources(paths), strict=True):
            assert row["ood_distance"] == pytest.approx(result.ood_distance, rel=1e-4)
            assert row["out_of_distribution"] is result.out_of_distribution
            assert row["heatmap"] == str(tmp_path / "heat" / f"{path.stem}.heatmap.png")
            assert Path(row["heatmap"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def test_all_good_images_exit_zero(self, demo_image_paths):
        completed = self.run_cli(str(demo_image_paths[0]))
        assert completed.returncode == 0, completed.stderr

    def test_the_backend_can_be_chosen_and_is_reported(self, synthetic_model_dir, demo_image_paths):
        completed = self.run_cli("--backend", "tensorflow", str(demo_image_paths[0]))
        assert completed.returncode == 0, completed.stderr
        assert json.loads(completed.stdout)["backend"] == "tensorflow"
        # The synthetic model has no ONNX export to force.
        completed = self.run_cli("--model", str(synthetic_model_dir), "--backend", "onnx", str(demo_image_paths[0]))
        assert completed.returncode == 2
        assert "no ONNX file" in completed.stderr

    def test_a_broken_model_path_is_a_clear_error(self, tmp_path, demo_image_paths):
        completed = self.run_cli("--model", str(tmp_path), str(demo_image_paths[0]))
        assert completed.returncode == 2
        assert "model.json" in completed.stderr
