"""File I/O shared by the stages: atomic writes, checksums and strict CSV reading."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.errors import InputError

if TYPE_CHECKING:  # pandas is imported where a table is read: serving never needs it
    import pandas as pd


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call write(tmp) on a temp file beside path, fsync it, then rename it over path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; readable like any other file
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def json_text(payload: Any) -> str:
    """The pipeline's JSON files' text: indented, keys in order, a final newline."""
    return json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n"


def plain_json(value: Any) -> Any:
    """numpy scalars and nested dicts to plain JSON-able Python values, floats rounded to 6
    decimals for stable diffs (metrics.json, the gate's comparison)."""
    import numpy as np  # loaded by every caller already; files.py itself stays numpy-free

    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, np.generic):  # numpy scalars only, as evaluate's helper did
        value = value.item()
    if isinstance(value, float):
        return round(value, 6)
    return value


def write_json(path: Path, payload: Any) -> None:
    write_text(path, json_text(payload))


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def read_json(path: Path) -> Any:
    """Read a JSON file the pipeline wrote; a missing or broken one is an input error."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: not found (run the stage that writes it first)") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable JSON ({exc})") from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


TABLE_SUFFIXES = (".csv", ".parquet")


def read_table(path: Path, required: list[str]) -> pd.DataFrame:
    """A CSV or Parquet file (by its suffix) with rows and the required columns, or a one-line
    InputError naming the file and what is wrong with it."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    parquet = path.suffix.lower() == ".parquet"
    try:
        frame = pd.read_parquet(path) if parquet else pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: empty file") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        kind = "Parquet file" if parquet else "CSV"
        raise InputError(f"{path}: not a readable {kind} ({reason})") from None
    if frame.empty:
        raise InputError(f"{path}: header only, no rows" if not parquet else f"{path}: no rows")
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


def read_parquet(path: Path) -> pd.DataFrame:
    import pandas as pd

    try:
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise InputError(f"{path}: not found (run `make data` first)") from None
