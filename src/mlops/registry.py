"""The model registry: versioned models under models/ and models/registry.json.

Layout: models/v1, v2, … each hold model.skops (older ones model.joblib until `make
models-upgrade`) and metadata.json (model sha256, metrics, params, data sha256, library
versions, git commit, creation and promotion time). models/registry.json names the production
version, summarises every version (sha256, key metrics) and keeps the full history of
promotions, forced promotions, rollbacks and imports (who, when, why).

Crash safety: a new version is written completely into a temp dir beside its final place, renamed
into place, and only then is registry.json replaced atomically. A crash (even SIGKILL) at any
point leaves registry.json either old or new, each naming a complete, verifiable version; a
leftover temp or orphan version dir is ignored by readers and cleaned by the next promotion.

The run log (models/runs.jsonl) and reports/promotion.* are recovered with the registry as one:
a promotion first writes its run-log line and reports into models/runs.pending.json (the
journal), then the version and registry.json, then the reports and the line, and removes the
journal. A kill (or a full disk) after registry.json leaves the journal; the next command
(mlops.runlog.recover) finishes it when registry.json names its version and drops it when not.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops import files, layout, model_file, tables
from mlops.config import Config
from mlops.errors import InputError

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

log = logging.getLogger(__name__)
MODELS_DIR = layout.MODELS
REGISTRY_FILE = "registry.json"
PENDING_RUN = "runs.pending.json"  # the journal: a promotion's run-log line and reports
VERSION_NAME = re.compile(r"^v([1-9][0-9]*)$")
EVENTS = ("promoted", "forced", "rolled_back", "imported")
# Metrics copied into registry.json for each version (the full set is in its metadata.json).
SUMMARY_METRICS = (
    "accuracy",
    "balanced_accuracy",
    "roc_auc",
    "f1",
    "precision",
    "recall",
    "log_loss",
)
MODEL_FILE = model_file.MODEL_FILE  # registry entries before skops name none: model.joblib
ONNX_FILE = "model.onnx"  # as in mlops.onnx_export: the version's model as ONNX, when it has one
METADATA_FILE = "metadata.json"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def who() -> str:
    """Who acts: $GITHUB_ACTOR in CI, else the git user name, else $USER."""
    if os.environ.get("GITHUB_ACTOR"):
        return os.environ["GITHUB_ACTOR"]
    try:
        out = subprocess.run(
            ["git", "config", "user.name"], capture_output=True, text=True, check=False, timeout=5
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"


def empty_registry() -> dict[str, Any]:
    return {"production": None, "versions": {}, "history": []}


def version_number(name: str) -> int:
    match = VERSION_NAME.match(str(name))
    if not match:
        raise InputError(f"{name!r} is not a version name (v1, v2, …)")
    return int(match.group(1))


def read_registry(models_dir: Path = MODELS_DIR) -> dict[str, Any]:
    """registry.json (an empty registry when there is none); a malformed one is an InputError."""
    path = Path(models_dir) / REGISTRY_FILE
    if not path.exists():
        return empty_registry()
    registry: dict[str, Any] = files.read_json(path)
    problem = _shape_problem(registry)
    if problem:
        raise InputError(f"{path}: {problem}")
    return registry


def _shape_problem(registry: Any) -> str | None:
    if not isinstance(registry, dict):
        return "expected a JSON object"
    for key, kind in (("versions", dict), ("history", list)):
        if not isinstance(registry.get(key), kind):
            return f"`{key}` missing or not a JSON {'object' if kind is dict else 'list'}"
    for name, entry in registry["versions"].items():
        if not VERSION_NAME.match(name) or not isinstance(entry, dict) or "sha256" not in entry:
            return f"versions.{name}: not a version entry with a sha256"
    production = registry.get("production")
    if production is not None and production not in registry["versions"]:
        return f"production {production!r} is not among the versions"
    return None


def write_registry(models_dir: Path, registry: dict[str, Any]) -> None:
    """Replace registry.json atomically (temp file, fsync, rename)."""
    import json

    problem = _shape_problem(registry)
    if problem:  # a bug, not bad input: never write a registry readers would refuse
        raise ValueError(f"refusing to write an inconsistent registry: {problem}")
    text = json.dumps(registry, indent=2, default=str) + "\n"

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    files.atomic_write(Path(models_dir) / REGISTRY_FILE, write)


@contextmanager
def locked(models_dir: Path = MODELS_DIR) -> Iterator[None]:
    """Exclusive lock on the models dir itself (no lock file), for read-modify-write of the
    registry; two promotions or a promotion and a rollback never interleave."""
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(models_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock; so does the kernel when the process dies


def production_version(models_dir: Path = MODELS_DIR) -> str | None:
    """The production version's name, or None; reads registry.json only."""
    return read_registry(models_dir).get("production")


def find_by_sha(registry: dict[str, Any], sha256: str) -> str | None:
    """The version whose model has this sha256, if any."""
    for name, entry in registry["versions"].items():
        if entry.get("sha256") == sha256:
            return str(name)
    return None


def version_path(models_dir: Path, version: str) -> Path:
    version_number(version)
    return Path(models_dir) / version


def verified_model_file(models_dir: Path, version: str, registry: dict[str, Any]) -> Path:
    """The version's model file, after checking its sha256 against registry.json."""
    entry = registry["versions"].get(version)
    if entry is None:
        known = ", ".join(sorted(registry["versions"], key=version_number)) or "none"
        raise InputError(f"version {version!r} is not in the registry (known: {known})")
    path = version_path(models_dir, version) / model_file.entry_file(entry, f"versions.{version}")
    if not entry.get("local", True):
        raise InputError(
            f"{version}: its files are not here, only its summary (published as release "
            f"model-{version}: download it and `make release-import DIR=...`)"
        )
    if not path.is_file():
        raise InputError(
            f"{path}: not found, but {Path(models_dir) / REGISTRY_FILE} lists it; registry files "
            "are history and never re-made: restore it (make release-import DIR=... with its "
            "release) or make rollback VERSION=..."
        )
    if path.is_symlink() or files.sha256_file(path) != entry["sha256"]:
        raise InputError(
            f"{path}: sha256 does not match {Path(models_dir) / REGISTRY_FILE}; refusing to load"
        )
    return path


def verified_onnx_file(models_dir: Path, version: str, registry: dict[str, Any]) -> Path | None:
    """The version's model.onnx after checking its sha256 against registry.json (None when the
    registry names none: that version is served by scikit-learn)."""
    entry = registry["versions"].get(version) or {}
    expected = entry.get("onnx_sha256")
    if not expected:
        return None
    path = version_path(models_dir, version) / ONNX_FILE
    if not path.is_file():
        raise InputError(
            f"{path}: not found, but {Path(models_dir) / REGISTRY_FILE} names its onnx_sha256; "
            "restore it (make release-import DIR=... with its release) or make rollback"
        )
    if files.sha256_file(path) != expected:
        raise InputError(
            f"{path}: sha256 does not match {Path(models_dir) / REGISTRY_FILE}; refusing to load"
        )
    return path


def load_version(
    models_dir: Path, version: str, registry: dict[str, Any] | None = None
) -> tuple[Pipeline, dict[str, Any]]:
    """(model, metadata incl. "version") of one version, sha256-verified before decoding."""
    registry = read_registry(models_dir) if registry is None else registry
    path = verified_model_file(models_dir, version, registry)
    metadata = files.read_json(path.parent / METADATA_FILE)
    if metadata.get("model_sha256") != registry["versions"][version]["sha256"]:
        raise InputError(f"{path.parent / METADATA_FILE}: model_sha256 does not match the registry")
    sha256 = registry["versions"][version]["sha256"]
    model = model_file.load_model(path, sha256, str(Path(models_dir) / REGISTRY_FILE))
    return model, {**metadata, "version": version}


def load_production(models_dir: Path = MODELS_DIR) -> tuple[Pipeline, dict[str, Any]] | None:
    """(model, metadata incl. "version") of production, or None when there is none yet.

    The model file's sha256 is checked against registry.json before it is decoded; a mismatch
    is an InputError naming the file.
    """
    registry = read_registry(models_dir)
    production = registry.get("production")
    if production is None:
        return None
    return load_version(models_dir, production, registry)


def next_version(registry: dict[str, Any]) -> str:
    """One above every version number the registry has ever known."""
    numbers = [version_number(name) for name in registry["versions"]]
    for event in registry["history"]:
        for key in ("from", "to"):
            if isinstance(event.get(key), str) and VERSION_NAME.match(event[key]):
                numbers.append(version_number(event[key]))
    return f"v{max(numbers, default=0) + 1}"


def summary(metadata: dict[str, Any]) -> dict[str, Any]:
    """The registry.json entry of a version, from its metadata.json."""
    metrics = metadata.get("metrics") or {}
    return {
        "sha256": metadata["model_sha256"],
        "model_file": model_file.entry_file(metadata, "metadata.json"),
        "estimator": metadata.get("estimator"),
        "created_at": metadata.get("created_at"),
        "promoted_at": metadata.get("promoted_at"),
        "data_sha256": metadata.get("data_sha256"),
        "test_data_sha256": metadata.get("test_data_sha256"),
        "git_commit": metadata.get("git_commit"),
        "onnx_sha256": metadata.get("onnx_sha256"),
        "served_by": "onnx" if metadata.get("onnx_sha256") else "sklearn",
        "metrics": {key: metrics.get(key) for key in SUMMARY_METRICS if key in metrics},
        "local": True,
    }


def event(kind: str, source: str | None, target: str, why: str, **extra: Any) -> dict[str, Any]:
    assert kind in EVENTS, kind
    return {
        "event": kind,
        "from": source,
        "to": target,
        "who": who(),
        "when": now(),
        "why": why,
        **extra,
    }


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_tree(path: Path) -> None:
    """Remove a directory by renaming it aside first, so it is never seen half-deleted."""
    trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=path.parent))
    os.replace(path, trash / path.name)
    shutil.rmtree(trash)


def clean_leftovers(models_dir: Path, registry: dict[str, Any]) -> list[str]:
    """Remove temp files, temp dirs and orphan version dirs a killed promotion left (locked)."""
    removed = []
    for path in sorted(Path(models_dir).iterdir()):
        if path.is_file() and path.name.startswith(".") and path.name.endswith(".tmp"):
            path.unlink()  # a temp file of an atomic write that was killed before its rename
            removed.append(path.name)
            continue
        if not path.is_dir():
            continue
        orphan = VERSION_NAME.match(path.name) and path.name not in registry["versions"]
        if path.name.startswith((".stage-", ".trash-")):
            shutil.rmtree(path)
        elif orphan:
            _remove_tree(path)
        else:
            continue
        removed.append(path.name)
    if removed:
        log.info("removed leftovers of an interrupted promotion: %s", ", ".join(removed))
    return removed


def install_version(
    models_dir: Path,
    version: str,
    source: Path,
    metadata: dict[str, Any],
    onnx: bytes | None = None,
) -> None:
    """Write models/<version>/ completely into a temp dir, then rename it into place (with
    model.onnx when given: its sha256 must be metadata's onnx_sha256)."""
    models_dir = Path(models_dir)
    stage = Path(tempfile.mkdtemp(prefix=f".stage-{version}-", dir=models_dir))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(stage, 0o777 & ~umask)  # mkdtemp makes 0700; readable like any new dir instead
    name = model_file.entry_file(metadata, f"{source}'s metadata")
    try:
        shutil.copyfile(source, stage / name)
        with open(stage / name, "rb+") as handle:
            os.fsync(handle.fileno())
        if files.sha256_file(stage / name) != metadata["model_sha256"]:
            raise InputError(f"{source}: changed while it was being copied; run the gate again")
        if onnx is not None:
            _write_onnx(stage / ONNX_FILE, onnx, metadata.get("onnx_sha256"))
        files.write_json(stage / METADATA_FILE, metadata)
        _fsync_dir(stage)
        target = models_dir / version
        if target.exists():  # an orphan of an interrupted promotion, not in the registry
            _remove_tree(target)
        os.rename(stage, target)
        _fsync_dir(models_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _write_onnx(path: Path, data: bytes, expected: str | None) -> None:
    """model.onnx into a version's staging dir, synced; its sha256 must be the one recorded."""
    import hashlib

    if hashlib.sha256(data).hexdigest() != expected:
        raise InputError(f"{path.name}: sha256 differs from the metadata's onnx_sha256")
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def add_version(
    models_dir: Path,
    model_file: Path,
    metadata: dict[str, Any],
    *,
    expected_production: str | None,
    kind: str,
    why: str,
    journal: Callable[[str], dict[str, Any]] | None = None,
    onnx: bytes | None = None,
) -> str:
    """Promote: install a new version and make it production; return its name.

    Order: journal(version) (the gate's run-log line and reports, see mlops.runlog.recover) into
    models/runs.pending.json, the version dir completely (temp dir + rename), then registry.json
    atomically last.
    expected_production guards against another promotion or rollback since the gate decided.
    """
    models_dir = Path(models_dir)
    with locked(models_dir):
        registry = read_registry(models_dir)
        if registry.get("production") != expected_production:
            raise InputError(
                f"{models_dir / REGISTRY_FILE}: production changed to "
                f"{registry.get('production')} while the gate ran; run it again"
            )
        existing = find_by_sha(registry, metadata["model_sha256"])
        if existing:
            raise InputError(f"this model is already version {existing}")
        clean_leftovers(models_dir, registry)
        version = next_version(registry)
        if journal is not None:
            from mlops import runlog  # runlog imports this module

            runlog.recover_locked(models_dir, registry)  # a journal a killed promotion left
            files.write_json(models_dir / PENDING_RUN, journal(version))
        stamped = {**metadata, "version": version, "promoted_at": now(), "promoted_by": who()}
        install_version(models_dir, version, model_file, stamped, onnx)
        registry["versions"][version] = summary(stamped)
        registry["history"].append(event(kind, registry.get("production"), version, why))
        registry["production"] = version
        write_registry(models_dir, registry)
    log.info("%s %s → production (sha256 %s)", kind, version, metadata["model_sha256"][:12])
    return version


def production_stack(registry: dict[str, Any]) -> list[str]:
    """Production versions in the order they are returned to by rollback (current last).

    A promotion, forced promotion or import pushes; a default rollback abandons the version it
    leaves; a rollback to an explicit version moves that version to the top.
    """
    stack: list[str] = []
    for item in registry["history"]:
        kind, source, target = item.get("event"), item.get("from"), item.get("to")
        if kind == "rolled_back" and item.get("mode", "previous") == "previous" and source:
            stack = [name for name in stack if name != source]
        if kind in EVENTS and target:
            stack = [name for name in stack if name != target] + [target]
    production = registry.get("production")
    if production:  # a hand-edited or pre-history registry: production is on top all the same
        stack = [name for name in stack if name != production] + [production]
    return stack


def previous_production(registry: dict[str, Any]) -> str | None:
    """The version `make rollback` returns to: the production before the current one."""
    production = registry.get("production")
    for name in reversed(production_stack(registry)):
        entry = registry["versions"].get(name)
        if name != production and entry and entry.get("local", True):
            return name
    return None


def rollback(
    models_dir: Path = MODELS_DIR, version: str | None = None, reason: str | None = None
) -> str:
    """Make the previous production version (or `version`) production again; return it."""
    models_dir = Path(models_dir)
    if version is not None:
        version_number(version)
    with locked(models_dir):
        registry = read_registry(models_dir)
        current = registry.get("production")
        target = version or previous_production(registry)
        if target is None:
            raise InputError(
                "no earlier production version to roll back to"
                + (f" (production is {current})" if current else " (no production model yet)")
            )
        verified_model_file(models_dir, target, registry)  # never roll back to a tampered model
        verified_onnx_file(models_dir, target, registry)
        if target == current:
            log.info("%s is already production; nothing to do", target)
            return target
        mode = "explicit" if version else "previous"
        why = reason or "rollback requested (no reason given)"
        registry["history"].append(event("rolled_back", current, target, why, mode=mode))
        registry["production"] = target
        write_registry(models_dir, registry)
    log.info("rolled back: production %s → %s", current, target)
    return target


def consistency_problems(models_dir: Path = MODELS_DIR) -> list[str]:
    """Everything wrong with the registry on disk (empty when production is loadable)."""
    models_dir = Path(models_dir)
    try:
        registry = read_registry(models_dir)
    except InputError as exc:
        return [str(exc)]
    problems = []
    for name, entry in registry["versions"].items():
        if not entry.get("local", True):
            continue
        try:
            path = verified_model_file(models_dir, name, registry)
            verified_onnx_file(models_dir, name, registry)
            metadata = files.read_json(path.parent / METADATA_FILE)
            if metadata.get("model_sha256") != entry["sha256"]:
                problems.append(f"{name}: metadata.json sha256 differs from the registry")
        except InputError as exc:
            problems.append(str(exc))
    return problems


def table(registry: dict[str, Any]) -> str:
    """A fixed-width table of the versions (newest first) with production marked."""
    header = (
        "",
        "version",
        "accuracy",
        "roc_auc",
        "f1",
        "recall",
        "estimator",
        "promoted",
        "sha256",
    )
    rows = [header]
    names = sorted(registry["versions"], key=version_number, reverse=True)
    for name in names:
        entry = registry["versions"][name]
        metrics = entry.get("metrics") or {}
        rows.append(
            (
                "*" if name == registry.get("production") else "",
                name + ("" if entry.get("local", True) else " (release only)"),
                *(
                    tables.number(metrics.get(key))
                    for key in ("accuracy", "roc_auc", "f1", "recall")
                ),
                str(entry.get("estimator") or "?"),
                str(entry.get("promoted_at") or "?"),
                str(entry.get("sha256", ""))[:12],
            )
        )
    return tables.aligned(rows)


def history_lines(registry: dict[str, Any], last: int = 10) -> list[str]:
    lines = []
    for item in registry["history"][-last:]:
        lines.append(
            f"{item.get('when')}  {item.get('event'):<11} {item.get('from') or '-'} → "
            f"{item.get('to')}  by {item.get('who')}: {item.get('why')}"
        )
    return lines


def list_command(config: Config) -> None:
    """CLI `models`: the versions, their metrics, which is production, and recent history."""
    registry = read_registry(MODELS_DIR)
    if not registry["versions"]:
        print(f"no model versions yet in {MODELS_DIR}/ (the gate creates v1: make promote)")
        return
    print(table(registry))
    print(f"\n* production: {registry.get('production') or 'none'}")
    lines = history_lines(registry)
    if lines:
        print(f"\nhistory (last {len(lines)} of {len(registry['history'])}):")
        print("\n".join(f"  {line}" for line in lines))
    for problem in consistency_problems(MODELS_DIR):
        log.warning("registry problem: %s", problem)


def rollback_command(config: Config, version: str | None = None, reason: str | None = None) -> None:
    """CLI `rollback`: restore the previous production version, or --version vN."""
    rollback(MODELS_DIR, version=version, reason=reason)
    from mlops import tracking

    if tracking.enabled(config):  # the champion alias follows production
        tracking.mirror_registry(config, "the rollback")


def upgrade_models(models_dir: Path = MODELS_DIR) -> list[str]:
    """Convert every local legacy model.joblib version to model.skops; return the versions done.

    Each legacy file is unpickled only behind its registry sha256, re-saved with skops and must
    pass the trusted-type check. Order per version: model.skops, metadata.json, then
    registry.json (atomic), then the pickle goes; an interrupted run leaves a version that is
    refused, never a wrong one, and running again finishes it.
    """
    models_dir = Path(models_dir)
    done = []
    with locked(models_dir):
        registry = read_registry(models_dir)
        for name in sorted(registry["versions"], key=version_number):
            entry = registry["versions"][name]
            folder = version_path(models_dir, name)
            metadata = files.read_json(folder / METADATA_FILE) if entry.get("local", True) else {}
            if model_file.entry_file(entry, f"versions.{name}") != model_file.LEGACY_FILE:
                continue
            if metadata.get("model_file") == MODEL_FILE:  # interrupted after metadata.json
                sha256 = metadata["model_sha256"]
                model_file.load_model(folder / MODEL_FILE, sha256, str(folder / METADATA_FILE))
            else:
                legacy = model_file.load_model(
                    verified_model_file(models_dir, name, registry), entry["sha256"], REGISTRY_FILE
                )
                sha256 = model_file.save_model(legacy, folder / MODEL_FILE)
                model_file.load_model(folder / MODEL_FILE, sha256)  # the trusted-type check
                files.write_json(
                    folder / METADATA_FILE,
                    {
                        **metadata,
                        "model_sha256": sha256,
                        "model_file": MODEL_FILE,
                        "legacy_sha256": entry["sha256"],
                    },
                )
            registry["versions"][name] = {
                **entry,
                "sha256": sha256,
                "model_file": MODEL_FILE,
                "legacy_sha256": entry["sha256"],
            }
            write_registry(models_dir, registry)
            (folder / model_file.LEGACY_FILE).unlink(missing_ok=True)
            log.info("%s: model.joblib → model.skops (sha256 %s)", name, sha256[:12])
            done.append(name)
    return done


def upgrade_command(config: Config) -> None:
    """CLI `models-upgrade`: every legacy pickle in the registry re-saved as a skops file."""
    done = upgrade_models(MODELS_DIR)
    print(f"upgraded to {MODEL_FILE}: {', '.join(done)}" if done else "nothing to upgrade")
