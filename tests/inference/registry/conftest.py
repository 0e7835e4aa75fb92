"""The registry tests run the real child-process load check, once per distinct model."""

import json
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from inference.registry import load_check
from inference.runtime import read_metadata
from tests.factories import UserFactory
from training.files import sha256_of


@pytest.fixture(scope="session")
def _load_check_results():
    return {}


@pytest.fixture(autouse=True)
def _one_load_check_per_model(settings, monkeypatch, _load_check_results):
    """The child-process load check is real, but runs once per distinct model file, ONNX file and metadata
    in this session (the shipped model takes seconds to load). Its timeout is generous: the test machine's
    cores are shared, and speed is measured in bench/, not here."""
    seen = _load_check_results

    def check(model_dir):
        metadata = read_metadata(model_dir)
        model_file = Path(model_dir) / metadata.get("file", "model.keras")
        onnx_file = Path(model_dir) / metadata["onnx_file"] if metadata.get("onnx_file") else None
        onnx_digest = sha256_of(onnx_file) if onnx_file is not None and onnx_file.is_file() else None
        rest = {k: v for k, v in metadata.items() if k not in ("name", "version")}
        key = (sha256_of(model_file), onnx_digest, json.dumps(rest, sort_keys=True))
        if key not in seen:
            try:
                seen[key] = load_check.check_model_loads(model_dir)
            except ValidationError as exc:
                seen[key] = exc
        if isinstance(seen[key], ValidationError):
            raise ValidationError(seen[key].messages)
        return seen[key]

    setattr(settings, load_check.LOAD_CHECK_SETTING, check)
    settings.SKINCARE_MODEL_CHECK_SECONDS = 300


@pytest.fixture
def admin_user(db):
    return UserFactory(username="ml-lead")
