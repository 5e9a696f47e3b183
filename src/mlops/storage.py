"""Local paths and object-storage URLs (s3://bucket/prefix, gs://...) through pyarrow.fs.

S3 credentials come from the standard AWS variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_SESSION_TOKEN, AWS_PROFILE, AWS_REGION or AWS_DEFAULT_REGION, an instance or OIDC role) and
AWS_ENDPOINT_URL points at an S3-compatible store (MinIO, Ceph, moto). An object appears only
once its upload is complete, so a remote write is published whole, as a local rename is.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from pathlib import Path
from typing import Any

from mlops.errors import InputError


def is_url(spec: str | os.PathLike) -> bool:
    """A URL such as s3://bucket/prefix (a local path never holds "://": Path folds it)."""
    return "://" in str(spec)


def reason(exc: BaseException) -> str:
    """An Arrow or OS error in one line, without Arrow's request ids."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.split(" (Request ID", 1)[0]


def filesystem(spec: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path within it) for a URL; InputError naming it when unusable."""
    from pyarrow import fs

    try:
        return fs.FileSystem.from_uri(spec)
    except (OSError, ValueError, ImportError) as exc:
        raise InputError(f"{spec}: not a usable storage URL ({reason(exc)})") from None


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def list_files(spec: str) -> list[str]:
    """Files a URL names, as paths within its filesystem: the object itself, every object under
    the prefix, or those a glob (*, ?, [..], ** in the last parts) matches; sorted."""
    from pyarrow import fs

    system, path = filesystem(spec)
    if glob.has_magic(path):
        base = path[: min(path.find(c) for c in "*?[" if c in path)].rsplit("/", 1)[0]
        pattern = path.replace("**/", "*")
        found = [p for p in _walk(system, base, spec) if fnmatch.fnmatchcase(p, pattern)]
        if not found:
            raise InputError(f"{spec}: the pattern matches no file")
        return sorted(found)
    try:
        info = system.get_file_info(path)
    except OSError as exc:
        raise InputError(f"{spec}: cannot read ({reason(exc)})") from None
    if info.type == fs.FileType.File:
        return [path]
    if info.type == fs.FileType.NotFound:
        raise InputError(f"{spec}: no such file or folder")
    return sorted(_walk(system, path, spec))


def _walk(system: Any, base: str, spec: str) -> list[str]:
    from pyarrow import fs

    try:
        infos = system.get_file_info(fs.FileSelector(base, recursive=True, allow_not_found=True))
    except OSError as exc:
        raise InputError(f"{spec}: cannot list ({reason(exc)})") from None
    return [info.path for info in infos if info.type == fs.FileType.File]


def write_bytes(spec: str | Path, data: bytes) -> None:
    """Publish data at a local path (temp file, then rename) or a URL (one upload)."""
    if not is_url(spec):
        from mlops import files

        files.write_bytes(Path(spec), data)
        return
    system, path = filesystem(str(spec))
    with system.open_output_stream(path) as out:
        out.write(data)


def upload_folder(local: Path, spec: str) -> None:
    """Every file of a local folder to the same names under a URL prefix."""
    for path in sorted(local.iterdir()):
        if path.is_file():
            write_bytes(join(spec, path.name), path.read_bytes())


def local_or_url(text: str | os.PathLike | None) -> str | Path | None:
    """A CLI argument: URLs stay text (Path would fold "s3://" to "s3:/"), the rest are paths."""
    if text is None:
        return None
    return str(text) if is_url(text) else Path(text)
