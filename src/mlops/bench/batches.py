"""Batches past memory: `make drift` and `make score` on a folder of BATCH_ROWS x 20 Parquet files
from the synthetic source (3 shifted columns), against the I/O floor: a fresh interpreter that
only reads the same files once with pyarrow. Every command runs in its own interpreter, so each
peak RSS is its own; drift and the floor alternate and medians are compared (as bench.drift).
"""

from __future__ import annotations

import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from mlops.bench import OWN_PEAK_MIB
from mlops.bench.drift import CHILD, GOAL_PEAK_MIB, child, prepare, ratio
from mlops.config import Config

log = logging.getLogger(__name__)
BATCH_ROWS = 20_000_000
FILES = 20
REFERENCE_ROWS = 200_000
REPEATS = 2
FLOOR = (
    "import json, resource, sys; import pyarrow.dataset as ds; "
    "rows = sum(b.num_rows for b in ds.dataset(sys.argv[1], format='parquet', "
    "partitioning='hive').to_batches()); "
    "use = resource.getrusage(resource.RUSAGE_SELF); "
    f"print(json.dumps({{'rows': rows, 'peak_rss_mib': {OWN_PEAK_MIB}, "
    "'cpu_seconds': use.ru_utime + use.ru_stime}))"
)


def write_batch(folder: Path, bench: Config, rows: int, files: int) -> None:
    """`files` Parquet files of the shifted synthetic source, one generated at a time."""
    from mlops import synthetic

    for number in range(files):
        seed = bench.seed + 1_000 + number
        frame = synthetic.generate(bench, rows // files, shifted=True, seed=seed)
        part = folder / f"day={number:02d}"
        part.mkdir(parents=True)
        frame.to_parquet(part / "part-0.parquet", index=False)
        del frame


def _same_labels(sklearn: Path, onnx: Path) -> bool:
    """Both runs' predictions.parquet give every row the same label."""
    import pyarrow.parquet as pq

    left = pq.read_table(sklearn / "predictions.parquet", columns=["label"])
    right = pq.read_table(onnx / "predictions.parquet", columns=["label"])
    return left.equals(right)


def _peak(run: dict) -> float:
    """A command's peak with its worker processes' (sampled), never below its own exact one."""
    return max(run["tree_peak_rss_mib"], run["peak_rss_mib"])


def set_engine(root: Path, engine: str) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["drift"]["engine"] = params["score"]["engine"] = engine
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def set_runtime(root: Path, runtime: str) -> None:
    """score.runtime: onnx (production's model.onnx) or sklearn (its model file)."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["score"]["runtime"] = runtime
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def measure(
    config: Config,
    rows: int = BATCH_ROWS,
    files: int = FILES,
    repeats: int = REPEATS,
    reference_rows: int = REFERENCE_ROWS,
    dask: bool = True,
    one_file: bool = True,
) -> dict:
    """The section's figures; `dask=False` leaves out the Dask engine's runs, `one_file=False`
    the runs on the first file alone (their figures are then None)."""
    from mlops import synthetic

    with tempfile.TemporaryDirectory(prefix="bench-batches-") as tmp:
        root = Path(tmp)
        bench = prepare(root, config, reference_rows)  # production v1, with its model.onnx
        (root / bench.data.processed_dir / "current.parquet").unlink()
        started = time.perf_counter()
        write_batch(root / "batch", bench, rows, files)
        written = time.perf_counter() - started
        size = sum(p.stat().st_size for p in (root / "batch").rglob("*.parquet"))
        one = root / "one-file" / "day=00"
        one.mkdir(parents=True)
        (one / "part-0.parquet").hardlink_to(root / "batch/day=00/part-0.parquet")
        drift_runs, floor_runs, drift_one, floor_one = [], [], [], []
        for _ in range(repeats):  # the whole batch last: its report is read below
            if one_file:
                floor_one.append(child(root, FLOOR, "one-file"))
                drift_one.append(child(root, CHILD, "drift", "--current", "one-file", ok=(0, 1)))
            floor_runs.append(child(root, FLOOR, "batch"))
            drift_runs.append(child(root, CHILD, "drift", "--current", "batch", ok=(0, 1)))
        report = json.loads((root / "reports/drift.json").read_text())
        set_runtime(root, "sklearn")
        score = child(root, CHILD, "score", "--current", "batch", "--out", "scores")
        scored = json.loads((root / "scores/score.json").read_text())
        set_runtime(root, "onnx")  # the same batch, each chunk through one ONNX Runtime session
        score_onnx = child(root, CHILD, "score", "--current", "batch", "--out", "scores-onnx")
        scored_onnx = json.loads((root / "scores-onnx/score.json").read_text())
        same_labels = _same_labels(root / "scores", root / "scores-onnx")
        set_runtime(root, "auto")
        if dask:
            set_engine(root, "dask")
            dask_drift = child(root, CHILD, "drift", "--current", "batch", ok=(0, 1))
            dask_score = child(root, CHILD, "score", "--current", "batch", "--out", "scores-dask")
            dask_report = json.loads((root / "reports/drift.json").read_text())
    shifted = synthetic.shifted_columns(bench)
    drift_seconds = statistics.median(run["seconds"] for run in drift_runs)
    floor_seconds = statistics.median(run["seconds"] for run in floor_runs)
    fixed = floor_fixed = added = None  # one_file=False: no runs on the first file alone
    if one_file:
        fixed = round(statistics.median(r["seconds"] for r in drift_one), 2)
        floor_fixed = round(statistics.median(r["seconds"] for r in floor_one), 2)
        added = ratio(drift_seconds - fixed, floor_seconds - floor_fixed)
    result = {
        "rows": rows,
        "files": files,
        "columns": len(bench.features),
        "parquet_mib": round(size / 2**20, 1),
        "write_seconds": round(written, 1),
        "reference_rows": reference_rows,
        "shifted_columns": shifted,
        "repeats": repeats,
        "floor_seconds": floor_seconds,
        "floor_cpu_seconds": round(statistics.median(r["cpu_seconds"] for r in floor_runs), 2),
        "floor_peak_rss_mib": round(max(run["peak_rss_mib"] for run in floor_runs), 1),
        "drift_seconds": drift_seconds,
        "drift_cpu_seconds": round(statistics.median(r["cpu_seconds"] for r in drift_runs), 2),
        # with its worker processes (a batch this large is passed on every core)
        "drift_peak_rss_mib": round(max(_peak(run) for run in drift_runs), 1),
        "drift_main_process_peak_rss_mib": round(max(r["peak_rss_mib"] for r in drift_runs), 1),
        "drift_ratio_to_floor": round(drift_seconds / floor_seconds, 3),
        # The same two commands on the first file alone (1/FILES of the rows): what does not grow
        # with the batch (interpreter, imports, model, Evidently's report on the sample), and the
        # ratio of what the other files add to drift against what they add to reading.
        "one_file_drift_seconds": fixed,
        "one_file_floor_seconds": floor_fixed,
        "drift_added_ratio_to_floor_added": added,
        "drift_flagged_columns": report["drifted_columns"],
        "drift_exact_columns": sum(1 for c in report["columns"].values() if c["exact"]),
        "drift_analysis_timings": report["timings"],
        "score_seconds": score["seconds"],
        "score_rows_per_second": round(rows / score["seconds"]),
        "score_peak_rss_mib": round(_peak(score), 1),
        "score_rejected": scored["rejected"],
        # make score from production's model.onnx (ONNX Runtime) on the same batch (#28)
        "score_onnx_seconds": score_onnx["seconds"],
        "score_onnx_rows_per_second": round(rows / score_onnx["seconds"]),
        "score_onnx_speedup": round(score["seconds"] / score_onnx["seconds"], 2),
        "score_onnx_peak_rss_mib": round(_peak(score_onnx), 1),
        "score_onnx_runtime": scored_onnx.get("runtime"),
        "score_onnx_same_labels": same_labels,
        "engines": {"local": {"drift_seconds": drift_seconds, "score_seconds": score["seconds"]}},
        "runs": {
            "drift_seconds": [run["seconds"] for run in drift_runs],
            "floor_seconds": [run["seconds"] for run in floor_runs],
            "one_file_drift_seconds": [run["seconds"] for run in drift_one],
            "one_file_floor_seconds": [run["seconds"] for run in floor_one],
        },
    }
    if dask:
        result["engines"]["dask_local_cluster_2_workers"] = {
            "drift_seconds": dask_drift["seconds"],
            "score_seconds": dask_score["seconds"],
            "same_drift_decisions": dask_report["drifted_columns"] == report["drifted_columns"]
            and dask_report["status"] == report["status"],
        }
    result["goals"] = {
        "drift_peak_under_1_5_gb": result["drift_peak_rss_mib"] < GOAL_PEAK_MIB,
        "drift_within_2x_of_reading": result["drift_ratio_to_floor"] <= 2,
        "flags_exactly_the_shifted_columns": sorted(report["drifted_columns"]) == sorted(shifted),
        "score_onnx_at_least_2x_sklearn": result["score_onnx_speedup"] >= 2,
    }
    log.info(
        "batch of %d rows in %d files: drift %.1fs (floor %.1fs, ratio %.2f), peak %.0f MiB, "
        "flagged %s; score %.0f rows/s (from model.onnx: %.0f rows/s, x%.2f), peak %.0f MiB; "
        "engines %s",
        rows,
        files,
        drift_seconds,
        floor_seconds,
        result["drift_ratio_to_floor"],
        result["drift_peak_rss_mib"],
        report["drifted_columns"],
        result["score_rows_per_second"],
        result["score_onnx_rows_per_second"],
        result["score_onnx_speedup"],
        result["score_peak_rss_mib"],
        result["engines"],
    )
    return result
