"""training.files: the one sha256 helper."""

import hashlib
import subprocess
import sys
from pathlib import Path

from training.files import CHUNK, sha256_of

REPO = Path(__file__).resolve().parents[2]


def test_sha256_of_matches_hashlib_across_chunk_boundaries(tmp_path):
    for size in (0, 1, CHUNK - 1, CHUNK, 2 * CHUNK + 7):
        data = bytes(i % 251 for i in range(size))
        path = tmp_path / f"f{size}"
        path.write_bytes(data)
        assert sha256_of(path) == hashlib.sha256(data).hexdigest()
        assert sha256_of(str(path)) == sha256_of(path)


def test_sha256_of_known_value(tmp_path):
    path = tmp_path / "abc.txt"
    path.write_bytes(b"abc")
    assert sha256_of(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_importing_it_pulls_in_no_heavy_module():
    code = (
        "import sys; import training.files; "
        "heavy = {'numpy', 'tensorflow', 'keras', 'PIL', 'django'} & set(sys.modules); print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
