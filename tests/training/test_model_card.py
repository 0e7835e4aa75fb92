"""The model cards of both kinds against goldens rendered before the two
writers were merged (tests/training/fixtures/model_card/)."""

import json
from pathlib import Path

import pytest

from training import export, report

FIXTURES = Path(__file__).parent / "fixtures" / "model_card"


def load(name):
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def golden(name):
    return (FIXTURES / name).read_text(encoding="utf-8")


def test_baseline_card_matches_golden():
    meta = load("baseline_inputs.json")["meta"]
    assert export.model_card(meta, meta["metrics"]["summary"]) == golden("baseline.md")


@pytest.mark.parametrize("bare", [False, True])
def test_transfer_card_matches_golden(bare):
    inputs = load("transfer_inputs.json")
    meta, baseline, rob = inputs["meta"], inputs["baseline"], inputs["robustness"]
    if bare:
        meta = {k: v for k, v in meta.items() if k not in ("onnx_file", "onnx_sha256")}
        baseline = rob = None
    card = report.model_card(meta, inputs["cv_report"], baseline, rob)
    assert card == golden("transfer_bare.md" if bare else "transfer.md")
