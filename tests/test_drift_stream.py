"""Drift over batches streamed from files, folders and globs: exact statistics over every row, a
uniform sample, both engines, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from evidently.legacy.calculations.stattests import get_stattest
from evidently.legacy.core import ColumnType

import drift_parts
from drift_parts import analyse
from helpers import edit_params, run_cli
from mlops import cluster
from mlops.config import ColumnPolicy
from mlops.drift import analysis, evidently_run, exact, stream

parts = drift_parts.parts  # the shared fixture
CAR_LOAN = Path(__file__).parent / "data" / "car_loan.parquet"
# drift.json content that differs from run to run by nature
VOLATILE = {"created_at", "seconds", "timings", "batch"}


def evidently_score(method: str, reference: pd.Series, current: pd.Series, kind: str) -> float:
    reference, current = reference.dropna(), current.dropna()
    test = get_stattest(reference, current, kind, method)
    return float(test(reference, current, ColumnType(kind), 0.1).drift_score)


def all_row_stats(reference: pd.Series, current: pd.Series, numeric: bool):
    if numeric:
        stats = exact.NumericStats()
        grid = exact.Grid.of(reference)
        for start in range(0, len(current), 7_000):  # in chunks, as a stream adds them
            stats.add(current.iloc[start : start + 7_000], grid)
        return stats
    stats = exact.CategoricalStats()
    for start in range(0, len(current), 7_000):
        stats.add(current.iloc[start : start + 7_000])
    return stats


# --- exact scores are Evidently's -----------------------------------------------------------------


@pytest.mark.parametrize("method", ["psi", "jensenshannon", "kl_div", "hellinger"])
def test_categorical_scores_from_counts_equal_evidentlys_on_every_row(parts, method):
    """ACS 2015-17 against 2018 (integer codes) and the car-loan data's text categories."""
    loans = pd.read_parquet(CAR_LOAN)
    pairs = [(parts["reference"][c], parts["current"][c]) for c in parts["config"].categorical]
    pairs += [(loans[c].iloc[:10_000], loans[c].iloc[10_000:]) for c in ("salary_range", "set")]
    for reference, current in pairs:
        found = exact.score(method, reference, all_row_stats(reference, current, numeric=False))
        assert found == pytest.approx(evidently_score(method, reference, current, "cat"), rel=1e-9)


def test_wasserstein_from_the_grid_is_within_a_thousandth_of_evidentlys(parts):
    """Car-loan values (continuous, drifted in the second half) and ACS ages (integers)."""
    loans = pd.read_parquet(CAR_LOAN)
    pairs = [
        (loans[c].iloc[:10_000], loans[c].iloc[10_000:])
        for c in ("car_value", "debt_to_income_ratio", "driver_tenure", "loan_length")
    ]
    pairs.append((parts["reference"]["AGEP"], parts["current"]["AGEP"]))
    for reference, current in pairs:
        found = exact.score("wasserstein", reference, all_row_stats(reference, current, True))
        truth = evidently_score("wasserstein", reference, current, "num")
        assert found == pytest.approx(truth, abs=1e-3), reference.name


def test_numeric_summary_is_every_rows():
    loans = pd.read_parquet(CAR_LOAN)
    reference, current = loans["car_value"].iloc[:10_000], loans["car_value"].iloc[10_000:]
    grid = exact.Grid.of(reference)
    stats = all_row_stats(reference, current, numeric=True)
    summary = stats.summary(grid)
    assert summary["rows"] == len(current)
    assert summary["mean"] == pytest.approx(current.mean(), rel=1e-9)
    assert summary["std"] == pytest.approx(current.std(ddof=0), rel=1e-9)
    assert (summary["min"], summary["max"]) == (current.min(), current.max())
    width = (grid.high - grid.low) / exact.GRID_BINS
    for name, q in zip(summary["quantiles"], exact.QUANTILES, strict=True):
        assert abs(summary["quantiles"][name] - current.quantile(q)) <= width


# --- the stream -----------------------------------------------------------------------------------


def write_parts(root: Path, frame: pd.DataFrame, files: int, *, hive: bool = True) -> Path:
    """frame cut into `files` Parquet files under root/batch (hive folders day=N)."""
    folder = root / "batch"
    for number, rows in enumerate(np.array_split(np.arange(len(frame)), files)):
        where = folder / f"day={number}" if hive else folder
        where.mkdir(parents=True, exist_ok=True)
        frame.iloc[rows].to_parquet(where / f"part-{number}.parquet", index=False)
    return folder


def read(config, parts_, spec, **drift):
    config = config.model_copy(update={"drift": config.drift.model_copy(update=drift)})
    _, info = parts_["model"], parts_["info"]
    return stream.read(
        config, spec, parts_["reference"], info["features"], info["categories"], checked=True
    )


def test_arrow_columns_count_as_pandas_reads_them(tmp_path):
    """The pass counts straight from Arrow where it can (numbers, integer codes, text) and through
    pandas otherwise; either way the statistics are the ones pandas' reading would give."""
    import pyarrow as pa

    from mlops import batches

    rng = np.random.default_rng(3)
    rows = 5_000
    with_gaps = rng.random(rows) < 0.1
    table = pa.table(
        {
            "codes": pa.array(rng.integers(0, 9, rows)),  # np.bincount
            "gappy_codes": pa.array(rng.integers(1, 5, rows), mask=with_gaps),  # floats in pandas
            "negative": pa.array(rng.integers(-3, 3, rows)),
            "far": pa.array(rng.integers(10**12, 10**12 + 5, rows)),  # counted from 10**12 up
            "wide": pa.array(rng.integers(0, 10**12, rows)),  # too wide for bincount: pandas
            "text": pa.array(rng.choice(["a", "b", "é"], rows).tolist(), mask=with_gaps),
            "flags": pa.array(rng.random(rows) < 0.5),  # pandas
            "number": pa.array(rng.normal(5, 2, rows), mask=with_gaps),
            "whole": pa.array(rng.integers(0, 100, rows)),
        }
    )
    chunk = batches.Chunk(table.to_batches()[0], "t.parquet", 0)
    frame = table.to_pandas()
    for name in ("codes", "gappy_codes", "negative", "far", "wide", "text", "flags"):
        streamed, read = exact.CategoricalStats(), exact.CategoricalStats()
        missing = stream._count(chunk, name, streamed)
        assert missing == read.add(frame[name]), name
        assert streamed.counts == read.counts, name
        assert [type(k) for k in streamed.counts] == [type(k) for k in read.counts], name
        assert streamed.summary() == read.summary(), name
    for name in ("number", "whole"):
        grid = exact.Grid.of(frame[name].iloc[:1_000])
        streamed, read = exact.NumericStats(), exact.NumericStats()
        streamed.add_numbers(stream._numbers(chunk, name), grid)
        read.add(frame[name], grid)
        assert streamed.summary(grid) == read.summary(grid), name
        assert (streamed.counts == read.counts).all(), name
    assert stream._numbers(chunk, "text") is None  # text in a numeric column: pandas says which


def test_sample_is_uniform_in_batch_order_and_independent_of_chunk_size(parts, tmp_path):
    current = parts["current"].drop(columns=["year"]).reset_index(drop=True)
    folder = write_parts(tmp_path, current, 4)
    small = read(parts["config"], parts, folder, sample_size=2_000, chunk_rows=1_000)
    large = read(parts["config"], parts, folder, sample_size=2_000, chunk_rows=1_000_000)
    assert small.total == large.total == len(current)
    assert small.files == 4
    pd.testing.assert_frame_equal(small.sample, large.sample)
    assert np.array_equal(small.rows, large.rows)
    assert len(small.rows) == 2_000
    assert np.all(np.diff(small.rows) > 0)  # batch order, no row twice
    expected = current.iloc[small.rows].reset_index(drop=True)
    pd.testing.assert_frame_equal(small.sample[expected.columns], expected, check_dtype=False)
    per_file = np.bincount(np.searchsorted(np.cumsum([len(current) // 4] * 4), small.rows, "right"))
    assert all(400 <= count <= 600 for count in per_file[:4]), per_file  # 500 ± 5 sd
    for name in parts["config"].categorical:
        assert small.categorical[name].counts == large.categorical[name].counts
        assert sum(small.categorical[name].counts.values()) == len(current)
    assert np.array_equal(small.numeric["AGEP"].counts, large.numeric["AGEP"].counts)


def test_exact_statistics_overrule_the_sample_where_they_disagree(parts):
    """A threshold put between the sample's score and the all-row score of a column: the all-row
    score decides, and drift.json keeps the sample's verdict it overruled."""
    config = parts["config"]
    small = config.model_copy(
        update={"drift": config.drift.model_copy(update={"sample_size": 1_000})}
    )
    current = parts["current"]
    first = analyse(parts, current, small)
    assert first["sampled"] is True
    assert all(column["exact"] for column in first["columns"].values())
    assert first["current_rows"] == len(current)
    name = "SCHL"
    all_rows = first["columns"][name]["score"]
    reference = analysis.sample(parts["reference"], 1_000, config.seed)
    batch = stream.from_frame(
        small, current, parts["reference"], config.features, config.categorical, name="b"
    )
    tests = {name: small.drift_policy(name)}
    in_sample = evidently_run.scores(reference, batch.sample, tests, set(config.categorical))
    sample_score = in_sample[name]["score"]
    assert sample_score != pytest.approx(all_rows, rel=1e-3)
    threshold = round((sample_score + all_rows) / 2, 6)
    between = small.model_copy(
        update={
            "drift": small.drift.model_copy(
                update={"columns": {name: ColumnPolicy(method="psi", threshold=threshold)}}
            )
        }
    )
    result = analyse(parts, current, between)
    column = result["columns"][name]
    assert column["exact"] is True
    assert column["score"] == all_rows
    assert column["drifted"] is (all_rows >= threshold)
    assert result["exact_overruled"][name] == {
        "sample_score": sample_score,
        "sample_drifted": sample_score >= threshold,
        "exact_score": all_rows,
        "exact_drifted": all_rows >= threshold,
    }
    assert (name in result["drifted_columns"]) is (all_rows >= threshold)


def test_unsampled_batches_are_exact_by_evidently_itself(parts):
    config = parts["config"]
    large = config.model_copy(
        update={"drift": config.drift.model_copy(update={"sample_size": 10_000_000})}
    )
    result = analyse(parts, parts["current"], large)
    assert result["sampled"] is False
    assert result["exact_overruled"] == {}
    assert all(column["exact"] for column in result["columns"].values())


def test_p_value_tests_are_left_to_the_sample(parts):
    config = parts["config"]
    ks = config.model_copy(
        update={
            "drift": config.drift.model_copy(
                update={
                    "sample_size": 1_000,
                    "numeric": ColumnPolicy(method="ks", threshold=0.05),
                }
            )
        }
    )
    result = analyse(parts, parts["current"], ks)
    assert result["columns"]["AGEP"]["exact"] is False
    assert result["columns"]["SCHL"]["exact"] is True
    stats = result["current_stats"]["AGEP"]
    assert stats["rows"] == len(parts["current"])
    assert stats["mean"] == pytest.approx(parts["current"]["AGEP"].mean(), rel=1e-9)


# --- make drift CURRENT=<folder|glob>, both engines ---------------------------------------------


def drift_json(root: Path) -> dict:
    found = json.loads((root / "reports/drift.json").read_text())
    return {key: value for key, value in found.items() if key not in VOLATILE}


def test_dask_engine_decides_exactly_as_the_local_one(project, capsys, monkeypatch):
    """A 2-worker LocalCluster, one task per file: the same drift.json, verdicts and scores."""
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    current = pd.read_parquet("data/processed/current.parquet").drop(columns=["year"])
    write_parts(project, current, 3)
    outcomes = {}
    for engine in ("local", "dask"):
        edit_params(
            project / "params.yaml",
            lambda p, e=engine: p["drift"].update(engine=e, sample_size=5_000, chunk_rows=4_000),
        )
        code, err = run_cli(capsys, "drift", "--current", "batch/*/*.parquet")
        assert code in (0, 1), err  # 1: its first quarter alerts (rows in file order, no year)
        outcomes[engine] = code, drift_json(project)
    assert outcomes["dask"][1]["policy"].pop("engine") == "dask"
    assert outcomes["local"][1]["policy"].pop("engine") == "local"
    assert outcomes["dask"] == outcomes["local"]
    outcomes = {engine: found for engine, (_, found) in outcomes.items()}
    assert outcomes["local"]["current_files"] == 3
    assert outcomes["local"]["current_rows"] == len(current)


def test_a_large_batch_is_passed_on_every_core_with_the_same_result(project, capsys, monkeypatch):
    """Above POOL_BYTES the local engine passes one file per process: the same drift.json as one
    process, and a bad value still stops it with the same one line (exit 2)."""
    current = pd.read_parquet("data/processed/current.parquet").drop(columns=["year"])
    write_parts(project, current, 3)
    edit_params(
        project / "params.yaml",
        lambda p: p["drift"].update(sample_size=5_000, chunk_rows=4_000),
    )
    outcomes = []
    for pool_bytes in (stream.POOL_BYTES, 0):  # the 3 small files: one process, then a pool
        monkeypatch.setattr(stream, "POOL_BYTES", pool_bytes)
        code, err = run_cli(capsys, "drift", "--current", "batch")
        assert code in (0, 1), err
        outcomes.append((code, drift_json(project)))
    assert outcomes[0] == outcomes[1]
    assert outcomes[1][1]["current_files"] == 3
    Path("reports/drift.json").unlink()
    assert bad_batch(project, "bad value") == "batch"
    code, err = run_cli(capsys, "drift", "--current", "batch")
    assert code == 2
    assert err.strip().splitlines()[-1].endswith(BAD["bad value"])
    assert not Path("reports/drift.json").exists()


# --- bad input ----------------------------------------------------------------------------------


def bad_batch(root: Path, name: str) -> str:
    current = pd.read_parquet(root / "data/processed/current.parquet").drop(columns=["year"])
    head = current.head(3_000).reset_index(drop=True)
    folder = write_parts(root, head, 3, hive=False)
    second = folder / "part-1.parquet"
    if name == "no match":
        return "batch/*.csv"
    if name == "schemas disagree":
        head.iloc[1000:2000].astype({"AGEP": str}).to_parquet(second, index=False)
    elif name == "unreadable":
        second.write_bytes(b"PAR1 this is not a Parquet file")
    elif name == "missing column":
        head.iloc[1000:2000].drop(columns=["SCHL"]).to_parquet(second, index=False)
    elif name == "bad value":
        rows = head.iloc[1000:2000].reset_index(drop=True)
        rows.loc[17, "AGEP"] = 140
        rows.to_parquet(second, index=False)
    elif name == "too many missing":
        edit_params(
            root / "params.yaml",
            lambda p: p["schema"]["categorical"].update(
                MAR={"values": p["schema"]["categorical"]["MAR"], "max_missing": 0.1}
            ),
        )
        rows = head.iloc[1000:2000].astype({"MAR": float}).reset_index(drop=True)
        rows.loc[:399, "MAR"] = np.nan
        rows.to_parquet(second, index=False)
    elif name == "unreachable scheduler":
        edit_params(root / "params.yaml", lambda p: p["drift"].update(engine="dask"))
    return "batch"


BAD = {
    "no match": "batch/*.csv: the pattern matches no file",
    "schemas disagree": "part-1.parquet: column AGEP holds text, an earlier file holds numbers",
    "unreadable": "batch/part-1.parquet: not a readable Parquet file",
    "missing column": "batch/part-1.parquet: missing column(s) SCHL",
    "bad value": (
        "batch/part-1.parquet: column AGEP: value out of range "
        "(1 row(s); first: data row 18 (1-based), value 140)"
    ),
    "too many missing": "batch: column MAR: too many missing values (share 0.133 > max_missing",
    "unreachable scheduler": "DASK_SCHEDULER_ADDRESS=tcp://127.0.0.1:9: no Dask scheduler answers",
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_batches_are_one_line_exit_2_and_leave_no_report(project, capsys, monkeypatch, name):
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:9")
    monkeypatch.setattr(cluster, "CONNECT_SECONDS", 1)  # the real client's retries, shorter
    spec = bad_batch(project, name)
    code, err = run_cli(capsys, "drift", "--current", spec)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert BAD[name] in lines[0]
    assert not (project / "reports/drift.json").exists()
    assert not list((project / "reports").glob("*.tmp"))
