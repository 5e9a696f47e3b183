"""Stage `make data`: verify raw files against their checksums, then split by period."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from mlops import files, synthetic
from mlops.config import Config
from mlops.errors import InputError

log = logging.getLogger(__name__)
CHECKSUMS = "SHA256SUMS"
README_BLOCK = re.compile(r"(<!-- sha256:begin -->\n).*?(<!-- sha256:end -->)", re.DOTALL)


def recorded_checksums(raw_dir: Path) -> dict[str, str]:
    path = raw_dir / CHECKSUMS
    if not path.is_file():
        raise InputError(f"{path}: not found (record checksums with `make accept-data`)")
    recorded = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-f]{64}", parts[0]):
            raise InputError(f"{path}: line {number}: expected '<sha256>  <file name>'")
        recorded[parts[1].lstrip("*")] = parts[0]
    return recorded


def verify_raw(raw_dir: Path) -> dict[str, str]:
    """Return {file name: sha256} for every raw CSV, or raise naming the first bad file."""
    csvs = sorted(raw_dir.glob("*.csv"))
    if not csvs:
        raise InputError(f"{raw_dir}: no CSV files")
    recorded = recorded_checksums(raw_dir)
    for name in sorted(set(recorded) - {path.name for path in csvs}):
        raise InputError(f"{raw_dir / name}: listed in {CHECKSUMS} but missing")
    actual = {}
    for path in csvs:
        if path.name not in recorded:
            raise InputError(f"{path}: no recorded sha256 (accept it with `make accept-data`)")
        actual[path.name] = files.sha256_file(path)
        if actual[path.name] != recorded[path.name]:
            raise InputError(
                f"{path}: sha256 mismatch (recorded {recorded[path.name][:12]}…, "
                f"found {actual[path.name][:12]}…); accept with `make accept-data`"
            )
    return actual


def accept(raw_dir: Path) -> list[str]:
    """Record the checksums of every raw CSV (the deliberate act of accepting data)."""
    old = recorded_checksums(raw_dir) if (raw_dir / CHECKSUMS).is_file() else {}
    new = {path.name: files.sha256_file(path) for path in sorted(raw_dir.glob("*.csv"))}
    listing = "".join(f"{digest}  {name}\n" for name, digest in new.items())
    files.write_text(raw_dir / CHECKSUMS, listing)
    readme = raw_dir / "README.md"
    if readme.is_file():
        table = "".join(f"| `{name}` | `{digest}` |\n" for name, digest in new.items())
        block = f"| file | sha256 |\n|---|---|\n{table}"
        text = readme.read_text(encoding="utf-8")
        files.write_text(readme, README_BLOCK.sub(lambda m: m[1] + block + m[2], text))
    changed = [name for name, digest in new.items() if old.get(name) != digest]
    for name in changed:
        log.info("accepted %s (%s)", name, new[name][:12])
    return changed


def load_raw(config: Config) -> tuple[pd.DataFrame, dict[str, str]]:
    checksums = verify_raw(config.data.raw_dir)
    required = [*config.features, config.schema.target, config.data.time_column]
    frames = [files.read_csv(config.data.raw_dir / name, required) for name in checksums]
    return pd.concat(frames, ignore_index=True), checksums


def split_periods(frame: pd.DataFrame, config: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training periods, current period) as configured; unknown periods are input errors."""
    column, spec = config.data.time_column, config.data
    periods = sorted(frame[column].dropna().unique().tolist())
    current = periods[-1] if spec.current == "latest" else spec.current
    if current not in periods:
        raise InputError(f"params.yaml: data.current: period {current} not in the data {periods}")
    if spec.train_periods == "earlier":
        training = [period for period in periods if period < current]
    else:
        training = list(spec.train_periods)
        bad = [period for period in training if period not in periods or period == current]
        if bad:
            raise InputError(f"params.yaml: data.train_periods: {bad} absent or the current period")
    if not training:
        raise InputError(f"params.yaml: data: no training periods before current period {current}")
    return frame[frame[column].isin(training)], frame[frame[column] == current]


def run(config: Config) -> dict:
    """Write train, test and current parquet files plus a manifest to data.processed_dir."""
    if config.data.source == "synthetic":
        spec = config.synthetic
        history = synthetic.generate(config, spec.rows, shifted=False, seed=config.seed)
        current = synthetic.generate(config, spec.current_rows, shifted=True, seed=config.seed + 1)
        sources: dict[str, str] = {"synthetic": spec.model_dump_json()}
        periods: dict = {"current": "synthetic-shifted", "train": ["synthetic"]}
    else:
        frame, sources = load_raw(config)
        history, current = split_periods(frame, config)
        column = config.data.time_column
        periods = {
            "current": current[column].iloc[0].item(),
            "train": sorted(history[column].unique().tolist()),
        }
    train, test = train_test_split(
        history,
        test_size=config.data.test_size,
        random_state=config.seed,
        stratify=history[config.schema.target].astype(str),
    )
    out = config.data.processed_dir
    splits = {"train": train, "test": test, "current": current}
    for name, split in splits.items():
        files.write_parquet(out / f"{name}.parquet", split.reset_index(drop=True))
        log.info("%s: %d rows", name, len(split))
    manifest = {
        "source": config.data.source,
        "periods": periods,
        "rows": {name: len(split) for name, split in splits.items()},
        "raw_sha256": sources,
        "sha256": {name: files.sha256_file(out / f"{name}.parquet") for name in splits},
    }
    files.write_json(out / "manifest.json", manifest)
    return manifest


def accept_command(config: Config) -> None:
    """CLI: accept the raw files as they are now."""
    changed = accept(config.data.raw_dir)
    log.info("%d file(s) new or changed; %s updated", len(changed), config.data.raw_dir / CHECKSUMS)
