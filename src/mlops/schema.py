"""`make schema`: profile the files in data/raw and write params.yaml's `schema` section in place.

The rules, each printed per column with its numbers:
- left out: a column with no values, one value only (constant), or a text/integer column with a
  distinct value in every row (an identifier), or a date column that is not TIME;
- categorical: booleans and text with at most MAX_TEXT_CATEGORIES distinct values or, above
  that, at most TEXT_CATEGORY_SHARE of the non-missing values (more: free text, left out);
  integers (and floats that are all whole numbers) with at most MAX_CODES distinct values;
  allowed values = every value seen, sorted (numbers, then text; False before True);
- numeric: any other number column; range = the observed [min, max] widened by RANGE_MARGIN of
  its span on each side (not below 0 when nothing below 0 was seen), rounded outward to the
  power of ten below that margin;
- max_missing per column: none seen -> 0 (the default); else max(1.5 x seen, seen + 0.02)
  rounded up to a whole percent, at most 1;
- labels: the target's values as in the file (whole floats become ints), sorted; positive =
  POSITIVE, else the minority class (binary only; a tie picks the last label);
- min_rows: half the smallest split the data gives (test share of history, or the current
  period), to two significant digits; max_duplicate_share: max(1.5 x seen, seen + 0.05) rounded
  up to a whole percent, seen = the duplicate share of the most duplicated period;
  min_label_share: half the rarest label's share, rounded down to a whole percent;
- time: TIME's whole numbers are periods as they are; dates and timestamps are grouped by PERIOD,
  by default the longest of year, quarter, month, week, day that gives at least two periods;
- data.current: with `latest`, when the newest period holds fewer rows than drift accepts
  (drift.min_rows), the newest period that holds enough (after at least one earlier period)
  becomes data.current, and the log says so; the periods after it are left out (neither history
  nor current) until they grow. schema.min_rows, half the smallest split counting that period,
  holds for it by construction.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import ValidationError

from mlops import files
from mlops.config import Config, _format, plain
from mlops.data import PERIOD_FREQUENCY, period_labels, raw_files
from mlops.errors import InputError

log = logging.getLogger(__name__)

MAX_CODES = 30
MAX_TEXT_CATEGORIES = 20
TEXT_CATEGORY_SHARE = 0.1
MAX_CATEGORIES = 1_000
MAX_CLASSES = 50
RANGE_MARGIN = 0.1


@dataclass(frozen=True)
class Column:
    """What the profile decided for one column, and why."""

    name: str
    kind: str  # categorical | numeric | left out | target | time
    why: str
    values: list = field(default_factory=list)
    low: float | None = None
    high: float | None = None
    max_missing: float = 0.0


@dataclass(frozen=True)
class Profile:
    """Every decision `make schema` writes into params.yaml."""

    target: str
    labels: list
    positive: Any
    columns: list[Column]
    min_rows: int
    max_duplicate_share: float
    min_label_share: float
    notes: dict[str, str] = field(default_factory=dict)  # why, as comments beside changed keys

    def kept(self, kind: str) -> list[Column]:
        return [column for column in self.columns if column.kind == kind]


def native(value: Any) -> Any:
    """A plain Python scalar as YAML should hold it: whole floats become ints."""
    return plain(value.item() if isinstance(value, np.generic) else value)


def _order(value: Any) -> tuple:
    """Sort key over mixed scalars: booleans, then numbers, then text."""
    if isinstance(value, bool):
        return (0, value, "")
    if isinstance(value, int | float):
        return (1, value, "")
    return (2, 0, str(value))


def distinct(series: pd.Series) -> list:
    """The non-missing values of a column as sorted plain scalars."""
    return sorted({native(v) for v in series.dropna().unique()}, key=_order)


def _round_up(share: float, step: float = 0.01) -> float:
    return min(1.0, round(math.ceil(round(share / step, 6)) * step, 2))


def _round_down(share: float, step: float = 0.01) -> float:
    return round(math.floor(round(share / step, 6)) * step, 2)


def missing_allowance(share: float) -> float:
    """max_missing from the share seen: none -> 0, else 1.5x or +2 points, a whole percent."""
    return 0.0 if share == 0 else _round_up(max(1.5 * share, share + 0.02))


def numeric_range(low: float, high: float) -> tuple[float, float]:
    """[low, high] widened by RANGE_MARGIN of the span, rounded outward to a power of ten."""
    margin = RANGE_MARGIN * (high - low) or RANGE_MARGIN * max(abs(low), 1.0)
    step = 10.0 ** math.floor(math.log10(margin))
    digits = max(0, -math.floor(math.log10(step)))
    lower = low - margin
    if low >= 0:
        lower = max(lower, 0.0)
    bounds = (
        round(math.floor(round(lower / step, 6)) * step, digits),
        round(math.ceil(round((high + margin) / step, 6)) * step, digits),
    )
    return native(bounds[0]), native(bounds[1])


def _whole(series: pd.Series) -> bool:
    values = series.dropna()
    return bool(np.isfinite(values).all() and (values == np.round(values)).all())


def profile_column(series: pd.Series) -> Column:
    """Decide one feature column from its dtype and distinct values."""
    name, rows = str(series.name), len(series)
    present = series.dropna()
    missing = 1 - len(present) / rows if rows else 0.0
    allowance = missing_allowance(missing)
    seen = f"; {missing:.1%} missing -> max_missing {allowance:g}" if missing else ""
    if present.empty:
        return Column(name, "left out", "no values at all")
    count = present.nunique()
    if count == 1:
        return Column(name, "left out", f"constant ({native(present.iloc[0])!r} in every row)")
    dtype = series.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return Column(name, "left out", "dates are not features (TIME=column splits by one)")
    text = pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype)
    whole = not text and _whole(present)
    if (text or whole) and count == rows:
        return Column(name, "left out", f"a distinct value in each of {rows} rows: an identifier")
    if text:
        limit = min(
            MAX_CATEGORIES, max(MAX_TEXT_CATEGORIES, int(TEXT_CATEGORY_SHARE * len(present)))
        )
        if count > limit:
            return Column(
                name,
                "left out",
                f"{count} distinct values in {len(present)}: free text, not a category",
            )
        values = distinct(present)
        return Column(
            name,
            "categorical",
            f"{count} {'true/false' if isinstance(values[0], bool) else 'text'} values"
            f"{_sample(values)}{seen}",
            values,
            max_missing=allowance,
        )
    if whole and count <= MAX_CODES:
        values = distinct(present)
        return Column(
            name,
            "categorical",
            f"whole numbers, {count} distinct (at most {MAX_CODES}): codes{_sample(values)}{seen}",
            values,
            max_missing=allowance,
        )
    low, high = float(present.min()), float(present.max())
    lower, upper = numeric_range(low, high)
    kind = "whole numbers" if whole else "numbers"
    return Column(
        name,
        "numeric",
        f"{kind}, {count} distinct, seen {native(low):g}..{native(high):g}"
        f" -> [{lower:g}, {upper:g}]{seen}",
        low=lower,
        high=upper,
        max_missing=allowance,
    )


def _sample(values: list, shown: int = 6) -> str:
    head = ", ".join(str(v) for v in values[:shown])
    return f": {head}" + (", ..." if len(values) > shown else "")


def choose_labels(series: pd.Series, positive: str | None) -> tuple[list, Any, str]:
    """The labels found, the positive class and why; InputError for a target that cannot be one."""
    name = str(series.name)
    labels = distinct(series)
    if len(labels) < 2:
        raise InputError(
            f"TARGET {name}: one class only ({labels[0] if labels else 'no values'!r})"
        )
    if len(labels) > MAX_CLASSES:
        raise InputError(
            f"TARGET {name}: {len(labels)} distinct values, more than {MAX_CLASSES}: "
            "not a classification target"
        )
    shares = label_shares(series)
    missing = int(series.isna().sum())
    note = f"; {missing} rows without a label" if missing else ""
    if len(labels) > 2:
        if positive is not None:
            raise InputError(
                f"POSITIVE: only for a binary target; {name} has {len(labels)} classes"
            )
        return labels, None, f"{len(labels)} classes (multiclass){_sample(labels)}{note}"
    if positive is not None:
        chosen = _match_label(positive, labels, name)
    else:
        chosen = min(reversed(labels), key=lambda label: shares[label])
    return (
        labels,
        chosen,
        f"labels {labels}; positive {chosen!r} ({_basis(positive, shares[chosen])}){note}",
    )


def label_shares(series: pd.Series) -> dict:
    """Each label's share of the labelled rows, keyed by its plain value."""
    shares: dict = {}
    for value, share in series.value_counts(normalize=True).items():
        shares[native(value)] = shares.get(native(value), 0.0) + float(share)
    return shares


def _basis(positive: str | None, share: float) -> str:
    return "POSITIVE" if positive is not None else f"the minority class, {share:.1%}"


def _match_label(text: str, labels: list, name: str) -> Any:
    for label in labels:
        if isinstance(label, bool):
            if text.strip().lower() == str(label).lower():
                return label
        elif str(label) == text.strip():
            return label
        elif isinstance(label, int | float):
            try:
                if float(text) == label:
                    return label
            except ValueError:
                pass
    raise InputError(f"POSITIVE: {text!r} is not a label of {name} (labels: {labels})")


def profile(
    frame: pd.DataFrame,
    target: str,
    periods: pd.Series,
    *,
    time_column: str | None = None,
    positive: str | None = None,
    test_size: float = 0.2,
    current: Any = None,
) -> Profile:
    """Decide the schema from every row of every file; periods = each row's period, in order;
    current = the period monitored (None: the newest)."""
    labels, chosen, why = choose_labels(frame[target], positive)
    columns = [Column(target, "target", why)]
    if time_column is not None:
        columns.append(Column(time_column, "time", f"periods: {_periods_note(periods)}"))
    for name in frame.columns:
        if name not in (target, time_column):
            columns.append(profile_column(frame[name]))
    kept = [c.name for c in columns if c.kind in ("categorical", "numeric")]
    if not kept:
        raise InputError(f"TARGET {target}: no other column can be a feature")
    # Splits are drawn from periods: the most duplicated period bounds what a split will show.
    keyed = frame[[*kept, target]].assign(_period=periods.to_numpy())
    duplicates = float(keyed.duplicated().groupby(periods.to_numpy(), observed=True).mean().max())
    shares = label_shares(frame[target])
    rarest = min(shares.values())
    smallest = _smallest_split(periods, test_size, current)
    return Profile(
        target=target,
        labels=labels,
        positive=chosen,
        columns=columns,
        min_rows=_min_rows(smallest),
        max_duplicate_share=_round_up(max(1.5 * duplicates, duplicates + 0.05)),
        min_label_share=min(0.5, _round_down(rarest / 2)),
        notes={
            "positive": "multiclass" if chosen is None else _basis(positive, shares[chosen]),
            "min_rows": f"half the smallest split this data gives ({smallest} rows)",
            "max_duplicate_share": f"{duplicates:.1%} duplicate rows seen",
            "min_label_share": f"rarest label seen: {rarest:.1%} of rows",
        },
    )


def _periods_note(periods: pd.Series) -> str:
    counts = periods.value_counts(sort=False)
    shown = ", ".join(f"{label} ({count})" for label, count in counts.items())
    return (
        f"{len(counts)}: {shown}" if len(counts) <= 8 else f"{len(counts)}, last {counts.index[-1]}"
    )


def _smallest_split(periods: pd.Series, test_size: float, current: Any = None) -> int:
    """Rows in the smallest split: the test share of history, or the current period."""
    counts = periods.value_counts(sort=False)
    position = len(counts) - 1 if current is None else list(counts.index).index(current)
    rows = int(counts.iloc[position])
    history = int(counts.iloc[:position].sum()) or rows
    return min(rows, math.floor(history * test_size))


def choose_current(periods: pd.Series, configured: Any, need: int) -> tuple[Any, str | None]:
    """(the period data.current should name, or None to leave it; why): with `latest`, a newest
    period under `need` rows gives way to the newest one with enough rows after some history."""
    counts = periods.value_counts(sort=False)
    if configured != "latest" or len(counts) < 2 or int(counts.iloc[-1]) >= need:
        return None, None
    newest = f"newest period {counts.index[-1]} holds {int(counts.iloc[-1])} rows"
    enough: list[Any] = [label for label, rows in list(counts.items())[1:] if rows >= need]
    if not enough:
        return None, (
            f"{newest} and no later-than-first period holds {need} (drift.min_rows): "
            "`make drift` will refuse the current batch; try a longer PERIOD"
        )
    chosen = enough[-1]
    after = list(counts.index)[list(counts.index).index(chosen) + 1 :]
    return native(chosen), (
        f"{newest}, fewer than drift needs ({need}, drift.min_rows): "
        f"data.current set to {chosen} ({int(counts[chosen])} rows), the newest period with "
        f"enough; {', '.join(map(str, after))} left out until it grows (re-run `make schema` then)"
    )


def _min_rows(smallest: int) -> int:
    """Half the smallest split, to two significant digits (at least 1)."""
    half = smallest // 2
    if half < 1:
        return 1
    scale = 10 ** max(0, len(str(half)) - 2)
    return half // scale * scale


# --- reading data/raw -----------------------------------------------------------------------


def read_raw(directory: Path) -> dict[Path, pd.DataFrame]:
    """Every CSV and Parquet file in directory, in file-name order, with the same columns."""
    paths = raw_files(Path(directory)) if Path(directory).is_dir() else []
    if not paths:
        raise InputError(f"{directory}: no .csv or .parquet files to profile")
    frames = {path: files.read_table(path, []) for path in paths}
    first, *others = paths
    expected = list(frames[first].columns)
    for path in others:
        columns = list(frames[path].columns)
        missing = [c for c in expected if c not in columns]
        extra = [c for c in columns if c not in expected]
        if missing or extra:
            parts = [f"missing {', '.join(missing)}"] if missing else []
            parts += [f"extra {', '.join(extra)}"] if extra else []
            raise InputError(f"{path}: columns differ from {first.name}: {'; '.join(parts)}")
    seen: dict[str, tuple[str, Path]] = {}
    for path, frame in frames.items():
        for name in expected:
            kind = value_kind(frame[name])
            if kind is None:
                continue
            if name in seen and seen[name][0] != kind:
                earlier, where = seen[name]
                raise InputError(
                    f"{path}: column {name} holds {kind}, {where.name} holds {earlier}"
                )
            seen.setdefault(name, (kind, path))
    return frames


KINDS = {
    "integer": "numbers",
    "floating": "numbers",
    "mixed-integer-float": "numbers",
    "decimal": "numbers",
    "boolean": "true/false",
    "string": "text",
    "datetime64": "dates",
    "datetime": "dates",
    "date": "dates",
}


def value_kind(series: pd.Series) -> str | None:
    """What a column's values are (numbers, text, true/false, dates); None when all missing."""
    inferred = pd.api.types.infer_dtype(series, skipna=True)
    return None if inferred == "empty" else KINDS.get(inferred, inferred)


SCHEMA_PERIOD_HINT = (
    "TIME= names a column of whole-number periods or of dates (then PERIOD=year, quarter, "
    "month, week or day); leave TIME out and each file is one period"
)


def file_periods(
    frames: dict[Path, pd.DataFrame], time_column: str | None, period: str | None
) -> tuple[pd.Series, str | None]:
    """Each row's period (ordered in time, or by file name), and the period length for dates."""
    if time_column is None:
        if period is not None:
            raise InputError("PERIOD: needs TIME=<column> (without TIME each file is one period)")
        stems = [pd.Series(path.stem, index=frame.index) for path, frame in frames.items()]
        return _ordered(pd.concat(stems, ignore_index=True), [p.stem for p in frames]), None
    columns = {path: _time_values(path, frame[time_column]) for path, frame in frames.items()}
    if all(pd.api.types.is_numeric_dtype(column.dtype) for column in columns.values()):
        if period is not None:
            raise InputError(
                f"PERIOD: {time_column} holds whole-number periods already; leave PERIOD out"
            )
        # Parsed as `make data` parses it, so both see the same periods.
        values = pd.concat(
            [
                period_labels(column, None, str(path), hint=SCHEMA_PERIOD_HINT)
                for path, column in columns.items()
            ],
            ignore_index=True,
        ).astype("int64")
        return _ordered(values, sorted(values.unique())), None
    days = pd.concat(
        [period_labels(column, "day", str(path)) for path, column in columns.items()],
        ignore_index=True,
    )
    period = period or _coarsest(days)
    labels = days.dt.asfreq(PERIOD_FREQUENCY[period])
    return _ordered(labels.astype(str), [str(p) for p in sorted(labels.unique())]), period


def _ordered(labels: pd.Series, order: list) -> pd.Series:
    return pd.Series(pd.Categorical(labels, categories=order, ordered=True))


def _coarsest(days: pd.Series) -> str:
    """The longest period that splits the data into at least two periods (day when none does)."""
    for name, freq in PERIOD_FREQUENCY.items():
        if days.dt.asfreq(freq).nunique() >= 2:
            return name
    return "day"


def _time_values(path: Path, series: pd.Series) -> pd.Series:
    """The time column of one file, refused when a value is missing or true/false."""
    name = series.name
    if series.isna().any():
        row = int(np.flatnonzero(series.isna().to_numpy())[0])
        raise InputError(f"{path}: column {name}: no time value in row {row + 1}")
    if pd.api.types.is_bool_dtype(series.dtype):
        raise InputError(f"{path}: column {name}: true/false is not a time")
    return series


# --- writing params.yaml ----------------------------------------------------------------------

INFERRED = "inferred by `make schema` from data/raw: review, edit, commit"
COMMENT_COLUMN = 31  # where params.yaml's end-of-line comments start


def _round_trip():
    """A ruamel.yaml round-trip loader/dumper that re-emits params.yaml byte for byte."""
    from ruamel.yaml import YAML

    handler = YAML()
    handler.width = 4096  # never re-wrap a long line
    handler.preserve_quotes = True  # "no" stays a string for PyYAML, which reads params.yaml
    handler.allow_unicode = True
    handler.representer.add_representer(
        type(None), lambda dumper, _: dumper.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    return handler


def _scalar(value: Any) -> Any:
    """Quote text that PyYAML (which reads params.yaml) would read as something else."""
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    if not isinstance(value, str):
        return value
    try:
        plain = yaml.safe_load(value) == value
    except yaml.YAMLError:
        plain = False
    return value if plain and value.strip() == value else DoubleQuotedScalarString(value)


def _flow(value: list | dict) -> Any:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    node: CommentedSeq | CommentedMap
    if isinstance(value, list):
        node = CommentedSeq([_scalar(v) for v in value])
    else:
        node = CommentedMap(
            (k, _flow(v) if isinstance(v, list) else _scalar(v)) for k, v in value.items()
        )
    node.fa.set_flow_style()
    return node


def canonical(value: Any) -> Any:
    """Values compared by type too: 1, 1.0 and True differ, as they do in the schema."""
    if isinstance(value, dict):
        return tuple((str(k), canonical(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return ("list", *(canonical(v) for v in value))
    if isinstance(value, bool) or value is None:
        return (type(value).__name__, value)
    if isinstance(value, int):
        return ("int", int(value))
    if isinstance(value, float):
        return ("float", float(value))
    return ("str", str(value))


def schema_section(result: Profile) -> dict[str, Any]:
    """The `schema` keys `make schema` owns, as plain values."""
    numeric, categorical = {}, {}
    for column in result.kept("numeric"):
        numeric[column.name] = {"min": column.low, "max": column.high}
        if column.max_missing:
            numeric[column.name]["max_missing"] = column.max_missing
    for column in result.kept("categorical"):
        categorical[column.name] = (
            {"values": column.values, "max_missing": column.max_missing}
            if column.max_missing
            else column.values
        )
    return {
        "target": result.target,
        "labels": result.labels,
        "positive": result.positive,
        "min_rows": result.min_rows,
        "max_missing": 0.0,
        "max_duplicate_share": result.max_duplicate_share,
        "min_label_share": result.min_label_share,
        "numeric": numeric,
        "categorical": categorical,
    }


def data_keys(config_data: dict, time_column: str | None, period: str | None, labels: list) -> dict:
    """data.time_column and data.period; current/train_periods back to their defaults when
    they name a period this data does not have."""
    keys: dict[str, Any] = {"time_column": time_column, "period": period}
    current = config_data.get("current", "latest")
    if current != "latest" and str(current) not in {str(label) for label in labels}:
        keys["current"] = "latest"
    chosen = config_data.get("train_periods", "earlier")
    if chosen != "earlier" and not {str(p) for p in chosen} <= {str(label) for label in labels}:
        keys["train_periods"] = "earlier"
    return keys


def _assign(
    mapping: Any, key: str, value: Any, after: str | None, read: dict, comment: str | None = None
) -> None:
    """Set mapping[key] keeping its place and comment (or writing `comment`); a value that is
    already there (as PyYAML reads it: `read`) is left untouched, so a re-run rewrites nothing."""
    if key in mapping and key in read and canonical(read[key]) == canonical(value):
        return
    if isinstance(value, dict):
        from ruamel.yaml.comments import CommentedMap

        node = CommentedMap(
            (k, _flow(v) if isinstance(v, list | dict) else _scalar(v)) for k, v in value.items()
        )
    else:
        node = _flow(value) if isinstance(value, list) else _scalar(value)
    if key in mapping:
        mapping[key] = node
    else:
        keys = list(mapping)
        mapping.insert(keys.index(after) + 1 if after in keys else len(keys), key, node)
    if isinstance(value, dict):  # the old comment described the old columns
        comment = INFERRED
    if comment:
        mapping.yaml_add_eol_comment(comment, key, column=COMMENT_COLUMN)


def update_params(text: str, result: Profile, data: dict[str, Any], where: Path) -> str:
    """params.yaml text with `schema` and the data keys replaced; all else byte for byte."""
    handler = _round_trip()
    document, read = handler.load(text), yaml.safe_load(text)
    for section, keys in (("data", data), ("schema", schema_section(result))):
        if not isinstance(read.get(section), dict):
            raise InputError(f"{where}: {section}: missing section")
        previous = None
        for key, value in keys.items():
            note = result.notes.get(key) if section == "schema" else None
            _assign(document[section], key, value, previous, read[section], note)
            previous = key
    out = io.StringIO()
    handler.dump(document, out)
    updated = out.getvalue()
    reread = yaml.safe_load(updated)
    for section, keys in (("data", data), ("schema", schema_section(result))):
        for key, value in keys.items():
            if canonical(reread[section][key]) != canonical(value):
                raise InputError(f"{where}: {section}.{key}: cannot be written as YAML faithfully")
    try:
        Config.model_validate(reread)
    except ValidationError as exc:
        raise InputError(_format(exc, where)) from None
    return updated


def run(
    config: Config,
    target: str,
    time: str | None = None,
    period: str | None = None,
    positive: str | None = None,
    into: Path = Path("params.yaml"),
) -> Profile:
    """Profile data/raw, print each decision, write schema and data keys into params.yaml."""
    if period is not None and period not in PERIOD_FREQUENCY:
        raise InputError(f"PERIOD: {period!r} is not one of {', '.join(PERIOD_FREQUENCY)}")
    frames = read_raw(config.data.raw_dir)
    first = next(iter(frames))
    for name, role in ((target, "TARGET"), (time, "TIME")):
        if name is not None and name not in frames[first].columns:
            columns = ", ".join(map(str, frames[first].columns))
            raise InputError(f"{first}: {role} {name!r} is not a column (columns: {columns})")
    if time is not None and time == target:
        raise InputError(f"TIME: {time!r} is the target; choose another column")
    periods, period = file_periods(frames, time, period)
    frame = pd.concat(frames.values(), ignore_index=True)
    into = Path(into)
    try:
        text = into.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{into}: unreadable ({exc.strerror})") from None
    current = yaml.safe_load(text).get("data", {})
    # drift.min_rows: the schema.min_rows in params.yaml is the old data's; the one written here
    # is half the smallest split, the chosen period included, so that period always meets it.
    need = config.drift.min_rows
    chosen, why = choose_current(periods, current.get("current", "latest"), need)
    if why:
        log.warning("%s", why)
    result = profile(
        frame,
        target,
        periods,
        time_column=time,
        positive=positive,
        test_size=config.data.test_size,
        current=chosen,
    )
    width = max(len(c.name) for c in result.columns)
    for column in result.columns:
        log.info("%-*s  %-11s  %s", width, column.name, column.kind, column.why)
    log.info(
        "rows: min_rows %d, max_duplicate_share %g, min_label_share %g",
        result.min_rows,
        result.max_duplicate_share,
        result.min_label_share,
    )
    labels = list(periods.cat.categories)
    keys = data_keys(current, time, period, labels)
    if chosen is not None:
        keys["current"] = chosen
    updated = update_params(text, result, keys, into)
    if updated == text:
        log.info("%s: unchanged (the data gives the schema it already has)", into)
    else:
        files.write_text(into, updated)
        log.info("%s: schema written; review it with `git diff %s`, then commit", into, into)
    from mlops import lineage
    from mlops.config import load_config

    lineage.start_new(load_config(into))  # another schema: a new lineage, the old one archived
    return result
