"""Reading a model folder for registration: what is refused before the model is loaded, and what is
stored beside the model file (ONNX export, model card, evaluation, plots)."""

import pytest
from django.core.exceptions import ValidationError

from inference import registry
from inference.models import ModelActivation, ModelVersion
from tests.conftest import edit_metadata
from training.files import sha256_of

from .helpers import stored_model_files

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "model.json").write_text("{"), "Invalid model metadata"),
        (lambda d: (d / "model.json").unlink(), "model.json not found"),
        (lambda d: edit_metadata(d, file="elsewhere.keras"), "names the model file 'elsewhere.keras'"),
        (lambda d: edit_metadata(d, file="../../model.keras"), "must be a file name in the model folder"),
        (lambda d: edit_metadata(d, name="../../etc"), "name '../../etc' must be"),
        (lambda d: edit_metadata(d, preprocessing="unheard-of"), "preprocessing"),
        (
            lambda d: (d / "roc_curve.png").write_bytes(b"\x89PNG\r\n\x1a\n broken"),
            "roc_curve.png is not a valid PNG",
        ),
        (lambda d: (d / "evaluation.json").write_text("[1, 2"), "evaluation.json is not valid JSON"),
        (lambda d: edit_metadata(d, onnx_file="absent.onnx"), "'absent.onnx', which is not in the model folder"),
    ],
    ids=[
        "bad-json",
        "no-metadata",
        "missing-model-file",
        "file-outside-the-folder",
        "unsafe-name",
        "unknown-preprocessing",
        "broken-plot",
        "bad-evaluation",
        "missing-onnx",
    ],
)
def test_a_bad_model_folder_is_refused_and_the_active_one_stays(active_model, model_copy, damage, message):
    files_before = stored_model_files()
    activations_before = list(ModelActivation.objects.all())
    edit_metadata(model_copy, version="broken")
    damage(model_copy)
    with pytest.raises(ValidationError, match=message):
        registry.register_model_version(model_dir=model_copy, activate=True)
    assert ModelVersion.objects.active() == active_model
    assert ModelVersion.objects.count() == 1
    assert list(ModelActivation.objects.all()) == activations_before
    assert stored_model_files() == files_before


def test_an_onnx_export_is_stored_with_its_checked_sha256(model_copy, no_load_check):
    (model_copy / "model.onnx").write_bytes(b"onnx bytes")
    digest = sha256_of(model_copy / "model.onnx")
    edit_metadata(model_copy, version="onnx", onnx_file="model.onnx", onnx_sha256=digest)
    version, _ = registry.register_model_version(model_dir=model_copy)
    assert version.onnx_sha256 == digest
    assert version.onnx_file.read() == b"onnx bytes"


def test_an_onnx_file_that_is_not_the_exported_one_is_refused(model_copy, no_load_check):
    (model_copy / "model.onnx").write_bytes(b"onnx bytes")
    edit_metadata(model_copy, version="onnx", onnx_file="model.onnx", onnx_sha256="ab" * 32)
    with pytest.raises(ValidationError, match="is not the one exported with this model"):
        registry.register_model_version(model_dir=model_copy)
    assert stored_model_files() == []


def test_a_model_without_card_or_plots_is_registered_without_them(baseline_copy, no_load_check):
    for name in ("MODEL_CARD.md", "evaluation.json", "roc_curve.png", "reliability_diagram.png"):
        (baseline_copy / name).unlink(missing_ok=True)
    version, _ = registry.register_model_version(model_dir=baseline_copy)
    assert (version.model_card, version.evaluation, version.roc_curve.name) == ("", {}, "")
