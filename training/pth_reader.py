"""Read a PyTorch ``state_dict`` file (``.pth``) into NumPy arrays without torch.

Both formats ``torch.save`` has written are understood: the zip archive
(PyTorch >= 1.6: ``<name>/data.pkl`` plus one file per storage under
``<name>/data/``) and the legacy stream (magic number, protocol version,
system info, the pickled object, the list of storage keys, then each storage
as an 8-byte element count followed by its raw little-endian bytes). The
pickle is read by a restricted unpickler that knows only what a state_dict
of tensors needs (``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``
and the typed storage classes) and refuses anything else, so a file cannot run
code the way ``pickle.load`` would let it.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _Storage:
    def __init__(self, dtype, numel: int | None = None):
        self.dtype = np.dtype(dtype)
        self.numel = numel
        self.array: np.ndarray | None = None


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def numpy(self) -> np.ndarray:
        base = self.storage.array
        if not self.size:
            return np.array(base[self.offset])
        item = base.itemsize
        view = np.lib.stride_tricks.as_strided(
            base[self.offset :], shape=self.size, strides=[s * item for s in self.stride], writeable=False
        )
        return np.array(view)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    return _Tensor(storage, offset, size, stride)


class _Unpickler(pickle.Unpickler):
    def __init__(self, fh, storages: dict, load_storage=None):
        super().__init__(fh)
        self.storages, self.load_storage = storages, load_storage

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a state_dict file")

    def persistent_load(self, pid):
        kind = pid[0].decode() if isinstance(pid[0], bytes) else pid[0]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id {kind!r}")
        storage_type, key, _location, numel = pid[1], str(pid[2]), pid[3], pid[4]
        if key not in self.storages:
            storage = _Storage(storage_type, int(numel))
            if self.load_storage is not None:
                storage.array = self.load_storage(key, storage.dtype)
            self.storages[key] = storage
        return self.storages[key]


def read_state_dict(path) -> dict[str, np.ndarray]:
    """The ``.pth`` file's tensors as NumPy arrays, in file order."""
    path = Path(path)
    raw = path.read_bytes()
    if zipfile.is_zipfile(io.BytesIO(raw)):
        state = _read_zip(raw)
    else:
        state = _read_legacy(raw)
    if not isinstance(state, dict):
        raise TypeError(f"{path} holds a {type(state).__name__}, expected a state_dict")
    return {k: v.numpy() for k, v in state.items()}


def _read_zip(raw: bytes):
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        names = zf.namelist()
        pkl = next(n for n in names if n.endswith("/data.pkl") or n == "data.pkl")
        prefix = pkl[: -len("data.pkl")]

        def load(key, dtype):
            return np.frombuffer(zf.read(f"{prefix}data/{key}"), dtype=dtype)

        return _Unpickler(io.BytesIO(zf.read(pkl)), {}, load).load()


def _read_legacy(raw: bytes):
    fh = io.BytesIO(raw)
    magic = pickle.load(fh)
    if magic != LEGACY_MAGIC:
        raise ValueError("not a PyTorch file (bad magic number)")
    pickle.load(fh)  # protocol version
    pickle.load(fh)  # sys info (endianness, type sizes)
    storages: dict[str, _Storage] = {}
    state = _Unpickler(fh, storages).load()
    keys = pickle.load(fh)
    for key in keys:
        storage = storages[str(key)]
        (numel,) = struct.unpack("<q", fh.read(8))
        nbytes = numel * storage.dtype.itemsize
        storage.array = np.frombuffer(fh.read(nbytes), dtype=storage.dtype)
        if len(storage.array) != numel:
            raise ValueError(f"storage {key} is truncated")
    return state
