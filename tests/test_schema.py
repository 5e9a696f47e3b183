"""`make schema`: the profiling rules, the in-place params.yaml rewrite and its bad inputs."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers import run_cli
from mlops import schema
from mlops.config import load_config
from mlops.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def column(values, name: str = "x") -> schema.Column:
    return schema.profile_column(pd.Series(values, name=name))


# ---------------------------------------------------------------- one column at a time


@pytest.mark.parametrize(
    ("values", "kind", "why"),
    [
        ([None, None, None], "left out", "no values"),
        (["a", "a", None, "a"], "left out", "constant"),
        ([7, 7, 7], "left out", "constant"),
        (list(range(50)), "left out", "identifier"),
        ([f"name {i}" for i in range(40)], "left out", "identifier"),
        ([f"t{i % 30}" for i in range(100)], "left out", "free text"),
        (pd.date_range("2024-01-01", periods=5).tolist(), "left out", "TIME="),
        (["b", "a", "b", None], "categorical", "2 text values"),
        ([1.0, 2.0, 3.0, np.nan, 1.0], "categorical", "codes"),
        ([0.5, 1.5, 2.25, 3.0], "numeric", "seen 0.5..3"),
        (list(range(40)) * 2, "numeric", "whole numbers, 40 distinct"),
    ],
)
def test_each_rule_decides_and_says_why(values, kind, why):
    decided = column(values)
    assert decided.kind == kind
    assert why in decided.why


def test_text_categories_at_the_share_limit():
    """Text with more than 20 distinct values is a category up to 10% of the values seen."""
    at_limit = [f"c{i % 25}" for i in range(250)]  # 25 distinct = 10% of 250
    above = [f"c{i % 25}" for i in range(249)]
    assert column(at_limit).kind == "categorical"
    assert column(above).kind == "left out"


def test_whole_numbers_up_to_max_codes_are_codes():
    assert column(list(range(schema.MAX_CODES)) * 2).kind == "categorical"
    assert column(list(range(schema.MAX_CODES + 1)) * 2).kind == "numeric"


def test_categories_keep_their_type_sorted():
    assert column(["b", "a", "c", "a"]).values == ["a", "b", "c"]
    assert column([True, False, None, True]).values == [False, True]
    assert column([3.0, 1.0, 2.0, 1.0]).values == [1, 2, 3]
    assert all(type(v) is int for v in column([3.0, 1.0, 2.0, 1.0]).values)
    assert column(["10", "9", "9"]).values == ["10", "9"]  # text stays text


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (0.17, 80.0, (0, 88)),  # margin 7.98: step 1, not below the 0 that was the floor
        (16, 90, (8, 98)),
        (-43, 1301, (-200, 1500)),  # margin 134.4: step 100
        (0.2, 0.9, (0.13, 0.97)),  # margin 0.07: step 0.01
        (5, 5, (4.5, 5.5)),  # no span: 10% of the value
    ],
)
def test_numeric_range_margin_and_rounding(low, high, expected):
    assert schema.numeric_range(low, high) == expected


@pytest.mark.parametrize(
    ("share", "allowed"),
    [(0.0, 0.0), (0.0015, 0.03), (0.04, 0.06), (0.2009, 0.31), (0.7, 1.0)],
)
def test_missing_allowance_margin(share, allowed):
    assert schema.missing_allowance(share) == allowed


def test_missing_share_is_written_per_column():
    decided = column([1.5, None, 2.5, 3.5, None, 4.5, 5.5, 6.5, 7.5, 8.5])
    assert decided.max_missing == 0.3  # 20% seen: 1.5x
    assert "20.0% missing -> max_missing 0.3" in decided.why


# ---------------------------------------------------------------- labels


def labels(values, positive=None):
    return schema.choose_labels(pd.Series(values, name="y"), positive)


def test_labels_keep_their_native_type_and_positive_is_the_minority():
    assert labels(["no", "yes", "no"])[:2] == (["no", "yes"], "yes")
    found, positive, _ = labels([1.0, 0.0, 0.0, np.nan])
    assert found == [0, 1]
    assert positive == 1
    assert type(positive) is int
    assert labels([True, False, False])[:2] == ([False, True], True)
    assert labels(["a", "b"])[1] == "b"  # a tie: the last label


@pytest.mark.parametrize(
    ("values", "given", "expected"),
    [(["no", "yes", "no"], "no", "no"), ([0, 1, 1], "0", 0), ([True, False], "TRUE", True)],
)
def test_positive_given_as_text_matches_the_label(values, given, expected):
    chosen = labels(values, given)[1]
    assert chosen == expected
    assert type(chosen) is type(expected)


def test_multiclass_has_no_positive():
    found, positive, why = labels(["a", "b", "c", "a"])
    assert (found, positive) == (["a", "b", "c"], None)
    assert "multiclass" in why


@pytest.mark.parametrize(
    ("values", "given", "message"),
    [
        (["x", "x"], None, "TARGET y: one class only ('x')"),
        (list(range(60)), None, "TARGET y: 60 distinct values"),
        (["a", "b", "c"], "a", "POSITIVE: only for a binary target"),
        (["no", "yes"], "maybe", "POSITIVE: 'maybe' is not a label of y"),
    ],
)
def test_labels_that_cannot_be(values, given, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        labels(values, given)


# ---------------------------------------------------------------- the whole table


def table(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "id": np.arange(rows) + seed * rows,
            "colour": rng.choice(["red", "green", "blue"], rows),
            "size": rng.normal(10, 2, rows).round(2),
            "code": rng.integers(1, 5, rows),
            "flag": rng.choice([True, False], rows),
            "note": "same everywhere",
            "when": pd.date_range(f"{2020 + seed}-01-01", periods=rows, freq="D").strftime(
                "%Y-%m-%d"
            ),
            "label": rng.choice(["yes", "no"], rows, p=[0.3, 0.7]),
        }
    )
    frame.loc[::10, "size"] = np.nan
    frame.loc[::25, "colour"] = None
    return frame


def test_profile_of_a_table():
    frame = table()
    periods = pd.Series(pd.Categorical(["a"] * 200 + ["b"] * 200, categories=["a", "b"]))
    result = schema.profile(frame, "label", periods)
    kinds = {c.name: c.kind for c in result.columns}
    assert kinds == {
        "label": "target",
        "id": "left out",
        "colour": "categorical",
        "size": "numeric",
        "code": "categorical",
        "flag": "categorical",
        "note": "left out",
        "when": "left out",  # a distinct date in each row; TIME=when makes it the periods
    }
    assert result.labels == ["no", "yes"]
    assert result.positive == "yes"
    assert result.min_rows == 20  # half of the 40-row test split of 200 history rows
    assert result.min_label_share == round(
        int(frame["label"].value_counts(normalize=True).min() / 2 * 100) / 100, 2
    )


# ---------------------------------------------------------------- the CLI on a scratch project


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """params.yaml and two CSV files (one per period, no time column) in data/raw."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    table(seed=0).to_csv(raw / "2020.csv", index=False)
    table(seed=1).to_parquet(raw / "2021.parquet", index=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def sections(text: str) -> dict[str, str]:
    """params.yaml text cut at its top-level keys (comments before a key belong to it)."""
    parts: dict[str, str] = {}
    current, lines = "(head)", []
    for line in text.splitlines(keepends=True):
        if line and not line[0].isspace() and not line.startswith("#") and ":" in line:
            parts[current] = "".join(lines)
            current, lines = line.split(":")[0], []
        lines.append(line)
    parts[current] = "".join(lines)
    return parts


def test_schema_writes_in_place_and_rerun_changes_nothing(scratch, capsys):
    before = (scratch / "params.yaml").read_text()
    code, err = run_cli(capsys, "schema", "--target", "label")
    assert code == 0, err
    after = (scratch / "params.yaml").read_text()
    old, new = sections(before), sections(after)
    assert list(old) == list(new)  # same sections, same order
    for name in old:
        if name not in ("data", "schema"):
            assert new[name] == old[name], name  # byte for byte, comments included
    assert "  max_missing: 0.0             # share of missing values allowed per column\n" in after
    config = load_config()
    assert config.data.time_column is None
    assert config.data.period is None
    assert config.schema.target == "label"
    assert config.schema.labels == ["no", "yes"]
    assert config.schema.positive == "yes"
    assert config.categorical["colour"] == ["blue", "green", "red"]
    assert config.categorical["flag"] == [False, True]
    assert config.max_missing("colour") == 0.06
    assert config.max_missing("size") == 0.15
    assert "id" not in config.features
    assert "note" not in config.features
    for name in ("id", "colour", "size", "code", "flag", "note", "label"):
        assert any(line.startswith(f"[schema] {name} ") for line in err.splitlines()), name

    code, err = run_cli(capsys, "schema", "--target", "label")
    assert code == 0, err
    assert (scratch / "params.yaml").read_text() == after
    assert "unchanged" in err


def test_time_column_with_dates_is_grouped_by_the_longest_period_that_splits(scratch, capsys):
    code, err = run_cli(capsys, "schema", "--target", "label", "--time", "when")
    assert code == 0, err
    config = load_config()
    assert (config.data.time_column, config.data.period) == ("when", "year")
    assert "when" not in config.features
    code, err = run_cli(
        capsys, "schema", "--target", "label", "--time", "when", "--period", "month"
    )
    assert code == 0, err
    assert load_config().data.period == "month"


def test_strings_that_yaml_would_misread_are_quoted(scratch, capsys):
    raw = scratch / "data" / "raw"
    for seed, path in enumerate((raw / "2020.parquet", raw / "2021.parquet")):
        frame = table(seed=seed)
        frame["answer"] = np.array(["no", "on", "~", "1.5", "null", "a: b"])[np.arange(400) % 6]
        frame.to_parquet(path, index=False)
    (raw / "2020.csv").unlink()
    for _ in range(2):  # the second run reads its own quoting back and changes nothing
        code, err = run_cli(capsys, "schema", "--target", "label")
        assert code == 0, err
    assert load_config().categorical["answer"] == ["1.5", "a: b", "no", "null", "on", "~"]
    assert "unchanged" in err


def corrupt(root: Path, how: str) -> list[str]:
    raw = root / "data" / "raw"
    if how == "disagree":
        table(seed=2).drop(columns="code").to_csv(raw / "2022.csv", index=False)
    elif how == "types":
        table(seed=2).assign(code="one").to_csv(raw / "2022.csv", index=False)
    elif how == "unreadable":
        (raw / "2022.parquet").write_bytes(b"not parquet at all")
    elif how == "one class":
        for path in raw.iterdir():
            path.unlink()
        table().assign(label="yes").to_csv(raw / "2020.csv", index=False)
        table(seed=1).assign(label="yes").to_csv(raw / "2021.csv", index=False)
    elif how == "fraction time":  # `make schema TIME=wind`: numbers, but not whole ones
        for path in raw.iterdir():
            path.unlink()
        table().assign(when=4.7).to_csv(raw / "2020.csv", index=False)
        table(seed=1).assign(when=5).to_csv(raw / "2021.csv", index=False)
    elif how == "bad time":
        frame = table(seed=2)
        frame.loc[7, "when"] = "soon"
        frame.to_csv(raw / "2022.csv", index=False)
    return {
        "disagree": ["--target", "label"],
        "unreadable": ["--target", "label"],
        "types": ["--target", "label"],
        "one class": ["--target", "label"],
        "bad time": ["--target", "label", "--time", "when"],
        "fraction time": ["--target", "label", "--time", "when"],
    }.get(how, [])


@pytest.mark.parametrize(
    ("how", "argv", "message"),
    [
        ("", ["--target", "nope"], "data/raw/2020.csv: TARGET 'nope' is not a column"),
        ("", ["--target", "label", "--time", "nope"], "TIME 'nope' is not a column"),
        ("", ["--target", "label", "--period", "decade"], "PERIOD: 'decade' is not one of"),
        ("", ["--target", "label", "--period", "year"], "PERIOD: needs TIME=<column>"),
        ("", ["--target", "label", "--positive", "maybe"], "POSITIVE: 'maybe' is not a label"),
        ("disagree", [], "data/raw/2022.csv: columns differ from 2020.csv: missing code"),
        ("unreadable", [], "data/raw/2022.parquet: not a readable Parquet file"),
        ("types", [], "data/raw/2022.csv: column code holds text, 2020.csv holds numbers"),
        ("one class", [], "TARGET label: one class only ('yes')"),
        ("bad time", [], "data/raw/2022.csv: column when: 'soon' at row 8 is not a date or time"),
        (
            "fraction time",
            [],
            "data/raw/2020.csv: column when: 4.7 at row 1 is not an integer period; TIME= names "
            "a column of whole-number periods or of dates (then PERIOD=year",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(scratch, capsys, how, argv, message):
    argv = argv or corrupt(scratch, how)
    before = (scratch / "params.yaml").read_bytes()
    code, err = run_cli(capsys, "schema", *argv)
    assert code == 2
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert message in errors[0]
    assert "Traceback" not in err
    assert (scratch / "params.yaml").read_bytes() == before


def test_make_schema_needs_target(tmp_path):
    for name in ("Makefile", "stages.mk", "pyproject.toml", "requirements-dev.lock"):
        shutil.copy2(ROOT / name, tmp_path / name)  # same mtimes: Make reuses the venv
    result = subprocess.run(
        ["make", "schema", f"VENV={ROOT / '.venv'}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "make schema: TARGET=<label column> is required" in result.stderr


def test_a_params_file_that_would_not_validate_is_not_written(scratch, capsys):
    """The result is checked by the same Config as every stage before anything is written:
    here a drift override names a column the new schema no longer has."""
    text = (scratch / "params.yaml").read_text()
    text = text.replace("  columns: {}", "  columns: {SCHL: {method: psi, threshold: 0.2}}")
    (scratch / "params.yaml").write_text(text)
    code, err = run_cli(capsys, "schema", "--target", "label")
    assert code == 2
    assert "drift.columns: not a feature: SCHL" in err
    assert (scratch / "params.yaml").read_text() == text


def test_yaml_round_trip_keeps_the_repository_params_byte_for_byte():
    text = (ROOT / "params.yaml").read_text()
    handler = schema._round_trip()
    out = io.StringIO()
    handler.dump(handler.load(text), out)
    assert out.getvalue() == text
    assert yaml.safe_load(out.getvalue()) == yaml.safe_load(text)


# ------------------------------------------------------- a newest period too small for drift


def test_a_tiny_newest_period_gives_way_to_the_newest_large_enough():
    periods = pd.Series(pd.Categorical(["a"] * 500 + ["b"] * 300 + ["c"] * 63, ["a", "b", "c"]))
    chosen, why = schema.choose_current(periods, "latest", 200)
    assert chosen == "b"
    assert why.startswith("newest period c holds 63 rows, fewer than drift needs (200, drift")
    assert "data.current set to b (300 rows)" in why
    assert schema.choose_current(periods, "latest", 63) == (None, None)  # large enough
    assert schema.choose_current(periods, "a", 200) == (None, None)  # a period chosen: kept
    # The first period has no history before it: never the current one.
    chosen, why = schema.choose_current(periods, "latest", 400)
    assert chosen is None
    assert "`make drift` will refuse the current batch" in why
    # min_rows follows the period chosen: half the smaller of it and the test share before it.
    frame = table(863)
    assert schema.profile(frame, "label", periods, current="b").min_rows == 50  # 20% of 500 / 2


def test_make_schema_then_make_all_on_a_table_whose_newest_month_is_tiny(tmp_path, capsys):
    """Three months of 1,500 rows and a fourth of 63: `make schema PERIOD=month` says so and
    monitors the third; every stage of `make all` (data → drift) then runs."""
    import owndata
    from mlops import data, drift

    root = owndata.make_project(tmp_path / "project")
    raw = root / "data" / "raw"
    owndata.table(63, 9, "2024-04-01").to_csv(raw / "customers_2024-04.csv", index=False)
    data.accept(raw)
    previous = Path.cwd()
    os.chdir(root)
    try:
        argv = ("schema", "--target", "churn", "--time", "signup", "--period", "month")
        code, err = run_cli(capsys, *argv)
        assert code == 0, err
        assert "newest period 2024-04 holds 63 rows" in err
        assert "data.current set to 2024-03 (1500 rows)" in err
        config = load_config()
        assert config.data.current == "2024-03"
        owndata.run_stages(root)
        result = drift.run(load_config())
    finally:
        os.chdir(previous)
    assert result["current_rows"] == 1_500
    manifest = json.loads((root / "data" / "processed" / "manifest.json").read_text())
    assert "2024-04" not in json.dumps(manifest.get("periods", {}))
