"""A new schema is a new model lineage: `make schema` archives a registry whose production model
was trained on other columns, so the next `make all` promotes v1 of the new lineage.

The archive is made whole before anything moves: models/registry.json, runs.jsonl and every vN/
are copied into models/archive/.<stamp>.tmp/, which is renamed to models/archive/<stamp>/; only
then is registry.json removed (the registry is empty: the new lineage starts), then runs.jsonl
and the version dirs. A kill at any point loses nothing: before the rename the old registry is
untouched (the next `make schema` archives again); after it the archive holds everything.
"""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

from mlops import files, registry
from mlops.config import Config

log = logging.getLogger(__name__)
ARCHIVE = "archive"


def difference(config: Config, models_dir: Path = registry.MODELS_DIR) -> str | None:
    """How production's columns differ from config's (features and target), or None when they
    match or there is no production model."""
    data = registry.read_registry(models_dir)
    production = data.get("production")
    if production is None:
        return None
    path = registry.version_path(models_dir, production) / registry.METADATA_FILE
    if not path.is_file():
        return None
    metadata = files.read_json(path)
    had = [*(metadata.get("features") or []), metadata.get("target")]
    now = [*config.features, config.schema.target]
    if sorted(map(str, had)) == sorted(map(str, now)):
        return None
    gone = [str(name) for name in had if name not in now]
    new = [str(name) for name in now if name not in had]
    parts = [f"{word} {_few(names)}" for word, names in (("without", gone), ("with", new)) if names]
    return f"production {production} was trained on other columns ({'; '.join(parts)})"


def _few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def archive(models_dir: Path = registry.MODELS_DIR) -> Path:
    """Move the whole registry into models/archive/<UTC stamp>/ (see the module doc); its path."""
    models_dir = Path(models_dir)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with registry.locked(models_dir):
        data = registry.read_registry(models_dir)
        versions = [models_dir / name for name in data["versions"] if (models_dir / name).is_dir()]
        keep = [models_dir / name for name in ("registry.json", "runs.jsonl")]
        target = models_dir / ARCHIVE / stamp
        staged = target.with_name(f".{stamp}.tmp")
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir(parents=True)
        for path in [*keep, *versions]:
            if path.is_dir():
                shutil.copytree(path, staged / path.name)
            elif path.exists():
                shutil.copy2(path, staged / path.name)
        staged.rename(target)
        for path in keep:  # registry.json first: from here the registry is empty
            path.unlink(missing_ok=True)
        for path in versions:
            shutil.rmtree(path)
    return target


def start_new(config: Config, models_dir: Path = registry.MODELS_DIR) -> Path | None:
    """Archive the registry when production's columns differ from config's; say so in one line."""
    why = difference(config, models_dir)
    if why is None:
        return None
    target = archive(models_dir)
    log.info(
        "%s: a new lineage; the registry moved to %s/ (the next `make all` promotes v1)",
        why,
        target,
    )
    return target
