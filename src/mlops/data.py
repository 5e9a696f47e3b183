"""Stage `make data`: verify raw files against their checksums, then split by period.

Periods come from data.time_column: integers as they are, dates or timestamps grouped by
data.period; with no time column each raw file (CSV or Parquet) is one period, in file-name order.
The newest period (or data.current) is the current batch; the earlier ones are history.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from mlops import files, synthetic
from mlops.config import Config
from mlops.errors import InputError

log = logging.getLogger(__name__)
CHECKSUMS = "SHA256SUMS"
PERIOD_FREQUENCY = {"year": "Y", "quarter": "Q", "month": "M", "week": "W", "day": "D"}
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


def raw_files(raw_dir: Path) -> list[Path]:
    """The data files in raw_dir (CSV and Parquet), in file-name order."""
    return sorted(p for p in raw_dir.iterdir() if p.suffix.lower() in files.TABLE_SUFFIXES)


def verify_raw(raw_dir: Path) -> dict[str, str]:
    """Return {file name: sha256} for every raw file, or raise naming the first bad file."""
    if not raw_dir.is_dir():
        raise InputError(f"{raw_dir}: not a directory")
    csvs = raw_files(raw_dir)
    if not csvs:
        raise InputError(f"{raw_dir}: no CSV or Parquet files")
    recorded = recorded_checksums(raw_dir)
    for name in sorted(set(recorded) - {path.name for path in csvs}):
        raise InputError(
            f"{raw_dir / name}: listed in {CHECKSUMS} but missing (restore it, e.g. "
            f"`git checkout -- {raw_dir / name}`, or drop it from the record: `make accept-data`)"
        )
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
    """Record the checksums of every raw file (the deliberate act of accepting data)."""
    old = recorded_checksums(raw_dir) if (raw_dir / CHECKSUMS).is_file() else {}
    new = {path.name: files.sha256_file(path) for path in raw_files(raw_dir)}
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


DATA_PERIOD_HINT = "for dates set data.period (year, quarter, month, week or day)"


def period_labels(
    column: pd.Series, period: str | None, source: str, hint: str = DATA_PERIOD_HINT
) -> pd.Series:
    """Each row's period: integers as they are, dates or timestamps grouped by `period`.

    hint ends the message about a value that is no period: what to set (make schema says TIME=
    and PERIOD=, make data says data.period)."""
    name = column.name
    if column.isna().any():
        row = int(column.isna().to_numpy().argmax())
        raise InputError(
            f"{source}: column {name}: no value at row {row + 1} (every row needs a period)"
        )
    if period is None and pd.api.types.is_datetime64_any_dtype(column):
        raise InputError(
            f"{source}: column {name} holds timestamps: set data.period (year, quarter, month, "
            "week or day) to group them"
        )
    if period is None:
        numbers = pd.to_numeric(column, errors="coerce")
        bad = column.notna() & (numbers.isna() | (numbers % 1 != 0))
        if bad.any():
            row = int(bad.idxmax())
            raise InputError(
                f"{source}: column {name}: {_shown(column[row])} at row {row + 1} is not an "
                f"integer period; {hint}"
            )
        return numbers.astype("Int64")
    try:
        stamps = pd.to_datetime(column, utc=True, format="mixed")
    except (ValueError, TypeError, OverflowError):
        parsed = [_parses(value) for value in column]
        row = parsed.index(False)
        raise InputError(
            f"{source}: column {name}: {_shown(column.iloc[row])} at row {row + 1} is not a date "
            "or time"
        ) from None
    return stamps.dt.tz_localize(None).dt.to_period(PERIOD_FREQUENCY[period])


def _shown(value: object) -> str:
    """A value as the file holds it: 4.7, 'spring' (never np.float64(4.7))."""
    value = value.item() if hasattr(value, "item") else value
    return repr(value)


def _parses(value: Any) -> bool:
    try:
        pd.to_datetime(value, utc=True)
    except (ValueError, TypeError, OverflowError):
        return False
    return True


def load_raw(config: Config) -> tuple[pd.DataFrame, pd.Series, dict[str, str]]:
    """(every raw row, each row's period, {file name: sha256}); files are read in name order."""
    checksums = verify_raw(config.data.raw_dir)
    time_column = config.data.time_column
    required = [*config.features, config.schema.target, *([time_column] if time_column else [])]
    frames, periods = [], []
    for name in checksums:
        path = config.data.raw_dir / name
        frame = files.read_table(path, required)
        frames.append(frame)
        if time_column is None:
            periods.append(pd.Series(Path(name).stem, index=frame.index))
        else:
            periods.append(period_labels(frame[time_column], config.data.period, str(path)))
    frame = pd.concat(frames, ignore_index=True)
    return frame, pd.concat(periods, ignore_index=True), checksums


def plain_labels(column: pd.Series) -> pd.Series:
    """Float labels that are all whole numbers (1.0/0.0) as integers, as the schema lists them."""
    if pd.api.types.is_float_dtype(column) and column.notna().all() and (column % 1 == 0).all():
        return column.astype("int64")
    return column


def split_periods(
    frame: pd.DataFrame, periods: pd.Series, config: Config
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(training periods, current period, their labels) as configured; unknown ones are errors."""
    spec = config.data
    if spec.time_column is None:
        ordered = list(dict.fromkeys(periods))  # one period per file, in file-name order
    else:
        ordered = sorted(periods.unique().tolist())
    labels = [_label(period) for period in ordered]
    named = [str(label) for label in labels]  # params.yaml may write 2018 or "2024-03"
    if len(ordered) < 2:
        raise InputError(
            f"{spec.raw_dir}: one period ({named[0]}); need history and a current batch: "
            "at least two periods or, with no time column, two files"
        )
    wanted = named[-1] if spec.current == "latest" else str(spec.current)
    if wanted not in named:
        raise InputError(f"params.yaml: data.current: period {wanted} not in the data {labels}")
    position = named.index(wanted)
    current = ordered[position]
    if spec.train_periods == "earlier":
        training = ordered[:position]
    else:
        asked = [str(period) for period in spec.train_periods]
        bad = [
            p
            for p, name in zip(spec.train_periods, asked, strict=True)
            if name not in named or name == wanted
        ]
        if bad:
            raise InputError(f"params.yaml: data.train_periods: {bad} absent or the current period")
        training = [period for period, name in zip(ordered, named, strict=True) if name in asked]
    if not training:
        raise InputError(f"params.yaml: data: no training periods before current period {wanted}")
    names = {"current": _label(current), "train": [_label(period) for period in training]}
    return frame[periods.isin(training)], frame[periods == current], names


def _label(period: object) -> int | str:
    """A period as the manifest and params.yaml name it: an integer, or text such as 2024Q1."""
    return int(period) if isinstance(period, int | np.integer) else str(period)


def run(config: Config) -> dict:
    """Write train, test and current parquet files plus a manifest to data.processed_dir."""
    if config.data.source == "synthetic":
        spec = config.synthetic
        history = synthetic.generate(config, spec.rows, shifted=False, seed=config.seed)
        current = synthetic.generate(config, spec.current_rows, shifted=True, seed=config.seed + 1)
        sources: dict[str, str] = {"synthetic": spec.model_dump_json()}
        periods: dict = {"current": "synthetic-shifted", "train": ["synthetic"]}
    else:
        frame, labels, sources = load_raw(config)
        frame[config.schema.target] = plain_labels(frame[config.schema.target])
        history, current, periods = split_periods(frame, labels, config)
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
