"""model.json: what this code needs of it, and what it refuses."""

import json

import pytest

from inference.runtime import (
    METADATA_FILE,
    MODELS_DIR,
    ModelFileError,
    read_metadata,
    shipped_model_dir,
    validate_metadata,
)
from training.preprocessing import PREPROCESSING_ID


class TestMetadata:
    BASE = {"name": "m", "version": "1", "input_size": 64, "preprocessing": PREPROCESSING_ID, "threshold": 0.5}

    def test_a_complete_record_passes(self):
        validate_metadata(dict(self.BASE))

    @pytest.mark.parametrize(
        "change, message",
        [
            ({"preprocessing": "crop-v0"}, "preprocessing"),
            ({"input_size": 3}, "input_size"),
            ({"threshold": 1.0}, "threshold"),
            ({"format_version": 99}, "format_version"),
        ],
    )
    def test_it_refuses_what_this_code_cannot_honour(self, change, message):
        with pytest.raises(ModelFileError, match=message):
            validate_metadata({**self.BASE, **change})

    @pytest.mark.parametrize("ood", [{"threshold": "far"}, {"threshold": 0}, {}, 3.0])
    def test_an_ood_section_needs_a_positive_threshold(self, ood):
        with pytest.raises(ModelFileError, match="ood"):
            validate_metadata({**self.BASE, "ood": ood})

    def test_it_names_missing_keys(self):
        with pytest.raises(ModelFileError, match="threshold"):
            validate_metadata({k: v for k, v in self.BASE.items() if k != "threshold"})


class TestReading:
    def test_the_shipped_model_is_the_folder_named_in_models_active(self):
        folder = shipped_model_dir()
        assert folder.parent == MODELS_DIR and folder.name == (MODELS_DIR / "ACTIVE").read_text().strip()
        assert read_metadata(folder)["name"]

    def test_a_missing_or_broken_model_json_is_a_model_file_error(self, tmp_path):
        with pytest.raises(ModelFileError, match="model.json is missing"):
            read_metadata(tmp_path)
        (tmp_path / METADATA_FILE).write_text("{")
        with pytest.raises(ModelFileError, match="not valid JSON"):
            read_metadata(tmp_path)
        (tmp_path / METADATA_FILE).write_text(json.dumps({"name": "m"}))
        with pytest.raises(ModelFileError, match="lacks version"):
            read_metadata(tmp_path)
