"""Drift at scale: `python -m mlops drift` on a synthetic 1M x 20 reference and current batch,
against a plain numpy/scipy computation of the same stat tests on the full data.

Drift judges production, as after `make all`: through its model.onnx (drift.runtime auto), and
for comparison through its model file (drift.runtime sklearn, `sklearn_*`).

Both run in fresh interpreters, so each peak RSS is that process's own. The drift time is the
whole command (interpreter start, Evidently import, reading, predictions, report, history); the
baseline time is its computation alone, on data already in memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from mlops.bench import OWN_PEAK_MIB
from mlops.config import Config
from mlops.drift.evidently_run import drifted as is_drifted

log = logging.getLogger(__name__)
ROWS = 1_000_000
MODEL_ROWS = 20_000  # the model only needs to exist: train it on a small synthetic sample
SKLEARN_PARAMS = "params-sklearn.yaml"  # the same params, drift.runtime sklearn
GOAL_PEAK_MIB = 1_536
REPEATS = 3
# Fresh interpreters that print their own peak RSS (MiB) and CPU seconds as their last line.
CHILD = (
    "import json, resource, sys; from mlops import cli; code = cli.main(sys.argv[1:]); "
    "use = resource.getrusage(resource.RUSAGE_SELF); "
    f"print(json.dumps({{'peak_rss_mib': {OWN_PEAK_MIB}, "
    "'cpu_seconds': use.ru_utime + use.ru_stime})); sys.exit(code)"
)
BASELINE = (
    "import json; from mlops.bench.drift import baseline_main; "
    "result = baseline_main(); "
    f"result['peak_rss_mib'] = {OWN_PEAK_MIB}; "
    "print(json.dumps(result))"
)


# --- the baseline: the same tests, numpy/scipy, full data ---------------------------------------


def _binned(reference: np.ndarray, current: np.ndarray, numeric: bool):
    """Evidently's binning: Sturges bins over both samples for numeric columns with more than 20
    distinct values, else one bin per value."""
    if numeric and len(np.unique(reference[:10_000])) > 20:
        edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
        ref = np.histogram(reference, edges)[0] / len(reference)
        cur = np.histogram(current, edges)[0] / len(current)
        return ref, cur
    keys, codes = np.unique(np.concatenate([reference, current]), return_inverse=True)
    ref = np.bincount(codes[: len(reference)], minlength=len(keys)) / len(reference)
    cur = np.bincount(codes[len(reference) :], minlength=len(keys)) / len(current)
    return ref, cur


def _fill_zeroes(share: np.ndarray) -> np.ndarray:
    smallest = share[share > 0].min()
    return np.where(share == 0, smallest / 1e6 if smallest <= 1e-4 else 1e-4, share)


def stat_test(method: str, reference: np.ndarray, current: np.ndarray, numeric: bool) -> float:
    """The score of one of the policy's stat tests, as Evidently defines it."""
    from scipy import stats
    from scipy.spatial import distance

    if method == "wasserstein":
        norm = max(float(np.std(reference)), 0.001)
        return float(stats.wasserstein_distance(reference, current)) / norm
    if method == "ks":
        return float(stats.ks_2samp(reference, current).pvalue)
    ref, cur = _binned(reference, current, numeric)
    if method == "psi":
        ref, cur = _fill_zeroes(ref), _fill_zeroes(cur)
        return float(np.sum((ref - cur) * np.log(ref / cur)))
    if method == "jensenshannon":
        return float(distance.jensenshannon(ref, cur))
    raise ValueError(f"the benchmark baseline does not implement {method!r}")


def baseline(reference: pd.DataFrame, current: pd.DataFrame, config: Config) -> dict[str, dict]:
    """Per feature column: score and drifted, by the configured policy, on every row."""
    out = {}
    for name in config.features:
        policy = config.drift_policy(name)
        score = stat_test(
            policy.method,
            reference[name].to_numpy(dtype=np.float64),
            current[name].to_numpy(dtype=np.float64),
            name in config.numeric,
        )
        drifted = is_drifted(policy.method, score, policy.threshold)
        out[name] = {"method": policy.method, "score": score, "drifted": bool(drifted)}
    return out


def baseline_main() -> dict:
    """In a bench directory: load both frames, then time the baseline computation alone."""
    from mlops.config import load_config

    config = load_config()
    processed = config.data.processed_dir
    started = time.perf_counter()
    reference = pd.read_parquet(processed / "train.parquet", columns=config.features)
    current = pd.read_parquet(processed / "current.parquet", columns=config.features)
    loaded, cpu = time.perf_counter(), time.process_time()
    columns = baseline(reference, current, config)
    done = time.perf_counter()
    return {
        "seconds": round(done - loaded, 3),
        "cpu_seconds": round(time.process_time() - cpu, 3),
        "load_seconds": round(loaded - started, 2),
        "flagged_columns": [name for name, column in columns.items() if column["drifted"]],
    }


# --- the measurement ----------------------------------------------------------------------------


def bench_params(config: Config, model_rows: int = MODEL_ROWS) -> dict:
    """params.yaml of the benchmark: the project's, with the synthetic source."""
    params = config.model_dump(mode="json", by_alias=True)
    params["data"]["source"] = "synthetic"
    params["synthetic"].update(rows=model_rows, current_rows=model_rows // 4)
    params["drift"]["columns"] = {}  # overrides name the project's columns, not synthetic ones
    # The model only needs to be production: the small splits pass validation, any accuracy the
    # gate.
    params["schema"]["min_rows"] = min(params["schema"]["min_rows"], model_rows // 4)
    params["promotion"].update(min_accuracy=0.0, min_roc_auc=None, min_recall=None)
    return params


def prepare(root: Path, config: Config, rows: int, model_rows: int = MODEL_ROWS) -> Config:
    """A project directory: production trained on a small synthetic sample (with its model.onnx),
    two frames to compare."""
    from mlops import synthetic

    params = bench_params(config, model_rows)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    bench = Config.model_validate(params)
    sklearn = {**params, "drift": {**params["drift"], "runtime": "sklearn"}}
    (root / SKLEARN_PARAMS).write_text(yaml.safe_dump(sklearn, sort_keys=False))
    processed = root / bench.data.processed_dir
    processed.mkdir(parents=True)
    splits = (
        ("train", model_rows, 1),
        ("test", model_rows // 4, 2),
        ("current", model_rows // 4, 3),
    )
    for split, size, seed in splits:
        frame = synthetic.generate(bench, size, shifted=False, seed=bench.seed + seed)
        frame.to_parquet(processed / f"{split}.parquet", index=False)
    stages = ["validate", "train", "evaluate", "promote"]  # in one process, as `make all` runs them
    subprocess.run(
        [sys.executable, "-m", "mlops", "stages", "--stamps", ".make", *stages],
        cwd=root,
        check=True,
        capture_output=True,
    )
    reference = synthetic.generate(bench, rows, shifted=False, seed=bench.seed + 101)
    reference.to_parquet(processed / "train.parquet", index=False)
    del reference
    current = synthetic.generate(bench, rows, shifted=True, seed=bench.seed + 102)
    current.to_parquet(processed / "current.parquet", index=False)
    return bench


def child(root: Path, code: str, *argv: str, ok: tuple[int, ...] = (0,)) -> dict:
    """A fresh interpreter's run: its wall seconds and the peak resident memory of it and every
    process it started (`tree_peak_rss_mib`, sampled every 50 ms), overridden by the JSON of its
    last line."""
    started = time.perf_counter()
    with subprocess.Popen(
        [sys.executable, "-c", code, *argv],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        peak = TreePeak(process.pid)
        peak.start()
        stdout, stderr = process.communicate()
        peak.stop()
    seconds = time.perf_counter() - started
    if process.returncode not in ok:
        raise RuntimeError(f"{' '.join(argv) or 'baseline'} exited {process.returncode}: {stderr}")
    return {
        "seconds": round(seconds, 2),
        "tree_peak_rss_mib": round(peak.mib, 1),
        **json.loads(stdout.strip().splitlines()[-1]),
    }


class TreePeak(threading.Thread):
    """The sum of the peaks (VmHWM) of a process and of every descendant seen, read every 50 ms
    from /proc (Linux): a command's worker processes count too. An upper bound of the tree's
    peak, since the processes need not peak together."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self._done = pid, threading.Event()
        self.peaks: dict[int, int] = {}

    @property
    def mib(self) -> float:
        return sum(self.peaks.values()) / 1024

    def run(self) -> None:
        while not self._done.wait(0.05):
            for pid, kib in tree_peaks_kib(self.pid).items():
                self.peaks[pid] = max(self.peaks.get(pid, 0), kib)

    def stop(self) -> None:
        self._done.set()
        self.join()


def tree_peaks_kib(pid: int) -> dict[int, int]:
    """{pid: VmHWM in KiB} of the process and its living descendants."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = {}, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        with contextlib.suppress(OSError, ValueError, IndexError):
            status = Path(f"/proc/{current}/status").read_text()
            found[current] = int(status.split("VmHWM:")[1].split()[0])
    return found


def median_of(values: Iterable[float]) -> float | None:
    """The median, rounded to 0.01; None when there is nothing."""
    found = list(values)
    return round(statistics.median(found), 2) if found else None


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator else None


def measure(
    config: Config,
    rows: int = ROWS,
    model_rows: int = MODEL_ROWS,
    repeats: int = REPEATS,
    sklearn: bool = True,
) -> dict:
    """Drift vs baseline times, their ratio, flagged columns and peak memory.

    The two commands alternate `repeats` times and the medians are compared: on a shared machine
    the same command's time varies by ±20% from minute to minute (measured), the ratio far less.
    """
    from mlops import synthetic

    drift_runs: list[dict] = []
    sklearn_runs: list[dict] = []
    baseline_runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        root = Path(tmp)
        bench = prepare(root, config, rows, model_rows)
        shifted = synthetic.shifted_columns(bench)
        for _ in range(repeats):
            if sklearn:
                argv = ("--params", SKLEARN_PARAMS, "drift")
                sklearn_runs.append(child(root, CHILD, *argv, ok=(0, 1)))
            drift_runs.append(child(root, CHILD, "drift", ok=(0, 1)))
            baseline_runs.append(child(root, BASELINE))  # its own "seconds": the computation
        report = json.loads((root / "reports" / "drift.json").read_text())
    drift_seconds = statistics.median(run["seconds"] for run in drift_runs)
    drift_cpu = statistics.median(run["cpu_seconds"] for run in drift_runs)
    sklearn_seconds = median_of(run["seconds"] for run in sklearn_runs)
    sklearn_cpu = median_of(run["cpu_seconds"] for run in sklearn_runs)
    scipy_seconds = statistics.median(run["seconds"] for run in baseline_runs)
    scipy_cpu = statistics.median(run["cpu_seconds"] for run in baseline_runs)
    peak = max(run["peak_rss_mib"] for run in drift_runs)
    scipy_flagged = baseline_runs[-1]["flagged_columns"]
    result = {
        "rows": rows,
        "columns": {"numeric": len(bench.numeric), "categorical": len(bench.categorical)},
        "shifted_columns": shifted,
        "policy": {
            "numeric": bench.drift.numeric.model_dump(),
            "categorical": bench.drift.categorical.model_dump(),
            "sample_size": bench.drift.sample_size,
        },
        "repeats": repeats,
        # medians over the repeats; every run is listed below
        "model_runtime": report["model"]["runtime"],
        "drift_seconds": drift_seconds,
        "drift_cpu_seconds": round(drift_cpu, 2),
        "drift_analysis_seconds": report["seconds"],
        "drift_analysis_timings": report["timings"],
        "drift_peak_rss_mib": round(peak, 1),
        "drift_flagged_columns": report["drifted_columns"],
        "sampled": report["sampled"],
        "baseline_seconds": scipy_seconds,
        "baseline_cpu_seconds": scipy_cpu,
        "baseline_load_seconds": baseline_runs[-1]["load_seconds"],
        "baseline_peak_rss_mib": round(max(run["peak_rss_mib"] for run in baseline_runs), 1),
        "baseline_flagged_columns": scipy_flagged,
        # drift (the whole command) / baseline (its computation alone); wall and CPU time
        "ratio": ratio(drift_seconds, scipy_seconds),
        "cpu_ratio": ratio(drift_cpu, scipy_cpu),
        "analysis_ratio": ratio(report["seconds"], scipy_seconds),
        # the same command judging production through its model file (drift.runtime sklearn)
        "sklearn_seconds": sklearn_seconds,
        "sklearn_cpu_seconds": sklearn_cpu,
        "sklearn_ratio": None if sklearn_seconds is None else ratio(sklearn_seconds, scipy_seconds),
        "runs": {
            "drift_seconds": [run["seconds"] for run in drift_runs],
            "sklearn_seconds": [run["seconds"] for run in sklearn_runs],
            "baseline_seconds": [run["seconds"] for run in baseline_runs],
        },
    }
    result["goals"] = {
        "faster_than_baseline": result["ratio"] is not None and result["ratio"] < 1,
        "less_cpu_than_baseline": result["cpu_ratio"] is not None and result["cpu_ratio"] < 1,
        "flags_exactly_the_shifted_columns": sorted(report["drifted_columns"]) == sorted(shifted),
        "same_decisions_as_full_data": sorted(report["drifted_columns"]) == sorted(scipy_flagged),
        "peak_under_1_5_gb": result["drift_peak_rss_mib"] < GOAL_PEAK_MIB,
    }
    log.info(
        "drift on %d rows (median of %d, %s): %.1fs, %.1f CPU-s (model file: %s s, %s CPU-s; "
        "baseline %.1fs, %.1f CPU-s; ratios %.2f, %.2f), peak %.0f MiB, flagged %s",
        rows,
        repeats,
        result["model_runtime"],
        result["drift_seconds"],
        result["drift_cpu_seconds"],
        result["sklearn_seconds"],
        result["sklearn_cpu_seconds"],
        result["baseline_seconds"],
        result["baseline_cpu_seconds"],
        result["ratio"] or float("nan"),
        result["cpu_ratio"] or float("nan"),
        result["drift_peak_rss_mib"],
        result["drift_flagged_columns"],
    )
    return result
