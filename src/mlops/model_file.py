"""Model files that run no code on load: skops (`model.skops`) with an explicit trusted-type list.

save_model writes byte-stable files (same model → same bytes): skops names array members and
memo ids after object addresses and stamps the zip entries with the clock, so the archive is
rewritten with ids in order of appearance and a fixed timestamp. load_model checks the sha256 of
the bytes it read before anything is decoded, then refuses any type outside TRUSTED (one line,
InputError). A legacy `model.joblib` (a pickle) is still read, only behind a matching sha256,
until `make models-upgrade` converts it (see docs/runbook.md).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

from mlops import files
from mlops.errors import InputError

MODEL_FILE = "model.skops"
LEGACY_FILE = "model.joblib"
NAMES = (MODEL_FILE, LEGACY_FILE)
# Types beyond skops' own defaults (scikit-learn estimators, numpy, builtins) that the models of
# every estimator in mlops.estimators hold; tests/test_model_file.py fits each and checks this.
TRUSTED = (
    "functools.partial",
    "numpy.dtype",  # SimpleImputer's fitted dtype (a numeric column with gaps)
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
    "sklearn.utils.validation.check_array",
)
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
MEMBER = re.compile(r"^(?:[0-9]+|[0-9a-f-]{36})\.(npy|npz|bin)$")


def _canonical(data: bytes) -> bytes:
    """The same skops archive with ids numbered in order of appearance and no timestamps."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        schema = json.loads(archive.read("schema.json"))
        members = {name: archive.read(name) for name in archive.namelist() if name != "schema.json"}
    ids: dict[int, int] = {}
    names: dict[str, str] = {}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key == "__id__" and isinstance(value, int):
                    out[key] = ids.setdefault(value, len(ids))
                else:
                    out[key] = walk(value)
            return out
        if isinstance(node, list):
            return [walk(item) for item in node]
        if isinstance(node, str) and node in members and MEMBER.match(node):
            return names.setdefault(node, f"{len(names)}.{node.rsplit('.', 1)[1]}")
        return node

    schema = walk(schema)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for old, new in names.items():
            data = _zero_padding(members[old]) if old.endswith(".npy") else members[old]
            archive.writestr(zipfile.ZipInfo(new, ZIP_TIME), data)
        text = json.dumps(schema, indent=2)
        archive.writestr(zipfile.ZipInfo("schema.json", ZIP_TIME), text)
    return buffer.getvalue()


def _zero_padding(data: bytes) -> bytes:
    """A structured array's bytes with its padding zeroed: scikit-learn's tree node records have
    padding that holds whatever memory was there before (other bytes on every fit)."""
    import numpy as np

    array = np.load(io.BytesIO(data), allow_pickle=False)
    fields = array.dtype.fields
    if not fields or sum(dtype.itemsize for dtype, *_ in fields.values()) == array.dtype.itemsize:
        return data
    clean = np.zeros(array.shape, array.dtype)
    for name in array.dtype.names:
        clean[name] = array[name]
    out = io.BytesIO()
    np.save(out, clean, allow_pickle=False)
    return out.getvalue()


def dumps(model: Any) -> bytes:
    """The byte-stable skops encoding of a model."""
    import skops.io

    return _canonical(skops.io.dumps(model))


def save_model(model: Any, path: Path) -> str:
    """Write `model` as a skops file at path (atomically); return its sha256."""
    data = dumps(model)
    files.write_bytes(Path(path), data)
    return hashlib.sha256(data).hexdigest()


def untrusted_types(data: bytes) -> list[str]:
    """Types in a skops file that neither skops' defaults nor TRUSTED allow."""
    import skops.io

    return sorted(set(skops.io.get_untrusted_types(data=data)) - set(TRUSTED))


def loads(data: bytes, where: str) -> Any:
    """Decode skops bytes, refusing untrusted types and anything malformed with one line."""
    import skops.io

    try:
        untrusted = untrusted_types(data)
    except Exception as exc:  # a damaged or forged archive: whatever skops raises, one line
        unreadable = f"{where}: not a readable skops model file ({exc.__class__.__name__})"
        raise InputError(unreadable) from None
    if untrusted:
        raise InputError(
            f"{where}: refusing to load: untrusted types {', '.join(untrusted)} "
            "(a model file may only hold the estimators' own types)"
        )
    try:
        return skops.io.loads(data, trusted=list(TRUSTED))
    except Exception as exc:
        unreadable = f"{where}: not a readable skops model file ({exc.__class__.__name__})"
        raise InputError(unreadable) from None


def read_verified(path: Path, sha256: str | None, against: str = "its metadata") -> bytes:
    """The file's bytes, refused unless their sha256 is `sha256` (read once: no swap after)."""
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        raise InputError(f"{path}: not found (or not a regular file)")
    data = path.read_bytes()
    if not sha256 or hashlib.sha256(data).hexdigest() != sha256:
        raise InputError(f"{path}: sha256 does not match {against}; refusing to load")
    return data


def load_model(path: Path, sha256: str | None, against: str = "its metadata") -> Any:
    """The model in path, after its sha256; skops with TRUSTED types, or a legacy joblib."""
    path = Path(path)
    if path.name not in NAMES:
        raise InputError(f"{path}: not a model file name ({' or '.join(NAMES)})")
    data = read_verified(path, sha256, against)
    if path.name == LEGACY_FILE:
        import joblib  # a pickle: only ever reached behind a matching sha256

        return joblib.load(io.BytesIO(data))
    return loads(data, str(path))


def model_path(folder: Path) -> Path:
    """The model file in a version or candidate folder: model.skops, else a legacy model.joblib."""
    folder = Path(folder)
    legacy = folder / LEGACY_FILE
    current = folder / MODEL_FILE
    return legacy if legacy.is_file() and not current.exists() else current


def entry_file(entry: dict[str, Any], where: str) -> str:
    """A registry entry's (or metadata's) model file name; entries before skops name none."""
    name = entry.get("model_file", LEGACY_FILE)
    if name not in NAMES:
        raise InputError(f"{where}: model_file {name!r} is not {' or '.join(NAMES)}")
    return name
