"""A model folder uploaded as a .zip: unpacked safely, or refused with a readable reason.

Limits on size, file count and paths keep zip bombs, path traversal and
symbolic links out; every refusal is a ValidationError.
"""

import io
import re
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from django.core.exceptions import ValidationError

from ..runtime import METADATA_FILE

# Limits on an uploaded model folder (.zip). The shipped model folder is
# about 12 MB in 18 files; these leave room for larger networks while
# refusing zip bombs.
MAX_ARCHIVE_BYTES = 300 * 1024 * 1024
MAX_UNPACKED_BYTES = 300 * 1024 * 1024
MAX_ARCHIVE_FILES = 500


def check_archive_size(upload) -> None:
    """ValidationError when the upload itself is over MAX_ARCHIVE_BYTES (checked before unpacking)."""
    size = _size_of(upload)
    if size > MAX_ARCHIVE_BYTES:
        raise ValidationError(f"The archive is {size / 1e6:.0f} MB; the limit is {MAX_ARCHIVE_BYTES / 1e6:.0f} MB.")


def _size_of(upload) -> int:
    upload.seek(0, io.SEEK_END)
    size = upload.tell()
    upload.seek(0)
    return size


def _damaged():
    return ValidationError(
        "The upload is not a zip archive, or it is damaged (truncated?). "
        "Upload the model folder (model.json, model.keras, ...) packed as a .zip."
    )


def unpack_model_archive(upload, target: Path) -> Path:
    """Extract the model folder in ``upload`` (a .zip) under ``target``; return the folder holding model.json."""
    try:
        archive = zipfile.ZipFile(upload)
    except (zipfile.BadZipFile, EOFError, ValueError, OSError):
        raise _damaged() from None
    with archive:
        members = [m for m in archive.infolist() if not _ignorable(m.filename)]
        if len(members) > MAX_ARCHIVE_FILES:
            raise ValidationError(f"The archive holds {len(members)} files; the limit is {MAX_ARCHIVE_FILES}.")
        if sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
            raise ValidationError(f"The archive unpacks to more than {MAX_UNPACKED_BYTES / 1e6:.0f} MB.")
        paths = [_safe_member_path(m) for m in members]
        root = _model_root(paths)
        budget = MAX_UNPACKED_BYTES
        try:
            for member, path in zip(members, paths, strict=True):
                if member.is_dir() or not path.parts:
                    continue
                destination = target.joinpath(*path.parts)
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as src, open(destination, "wb") as out:
                    # The headers' sizes were checked above; count what is
                    # really written too, in case a header lies.
                    for chunk in iter(lambda src=src: src.read(1 << 20), b""):
                        budget -= len(chunk)
                        if budget < 0:
                            raise ValidationError(
                                f"The archive unpacks to more than {MAX_UNPACKED_BYTES / 1e6:.0f} MB."
                            )
                        out.write(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError):
            raise _damaged() from None
        except OSError as exc:  # e.g. a file and a folder of the same name
            raise ValidationError(f"The archive cannot be unpacked: {exc.strerror or exc}.") from None
    return target.joinpath(*root.parts)


def _ignorable(name: str) -> bool:
    # What macOS's "Compress" adds beside the folder.
    parts = name.replace("\\", "/").split("/")
    return parts[0] == "__MACOSX" or parts[-1] == ".DS_Store"


def _safe_member_path(member: zipfile.ZipInfo) -> PurePosixPath:
    name = member.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if path.is_absolute() or re.match(r"^[A-Za-z]:", name) or ".." in path.parts:
        raise ValidationError(f"The archive holds an unsafe path ({member.filename!r}); it was not unpacked.")
    if stat.S_ISLNK(member.external_attr >> 16):
        raise ValidationError(f"The archive holds a symbolic link ({member.filename!r}); it was not unpacked.")
    if member.flag_bits & 0x1:
        raise ValidationError("The archive is encrypted; upload an unencrypted .zip.")
    return PurePosixPath(*[part for part in path.parts if part not in ("", ".")])


def _model_root(paths: list[PurePosixPath]) -> PurePosixPath:
    """Where model.json is: the archive's root, or its one top folder."""
    if PurePosixPath(METADATA_FILE) in paths:
        return PurePosixPath()
    tops = {path.parts[0] for path in paths if path.parts}
    if len(tops) == 1:
        top = PurePosixPath(tops.pop())
        if top / METADATA_FILE in paths:
            return top
    raise ValidationError(
        f"The archive has no {METADATA_FILE}, neither at its root nor in one top folder: "
        "upload a model folder as written by training."
    )
