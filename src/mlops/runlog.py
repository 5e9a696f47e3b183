"""The run log: every training run that reached the gate, promoted or not, in models/runs.jsonl.

The gate appends one JSON line per (model sha256, decision): params, data sha256, model sha256,
metrics, git commit, timestamps and the gate's decision. Re-gating the same model with the same
outcome (or "unchanged") appends nothing, so a no-op `make all` leaves the file byte-identical.
`make runs` prints the log as one table, best first or newest first. MLflow mirrors it when
tracking is on (mlops.tracking; `make mlflow-sync`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from mlops import files, layout, tables
from mlops.config import Config
from mlops.errors import InputError
from mlops.registry import MODELS_DIR, PENDING_RUN, locked, read_registry

log = logging.getLogger(__name__)
RUNS_FILE = layout.RUNS
METRICS = ("accuracy", "balanced_accuracy", "roc_auc", "f1", "precision", "recall", "log_loss")


def entry(metadata: dict[str, Any], metrics: dict[str, Any], report: dict[str, Any]) -> dict:
    """One run-log line from the candidate's metadata, its metrics and the gate's report."""
    return {
        "logged_at": report.get("decided_at"),
        "trained_at": metadata.get("created_at"),
        "model_sha256": metadata["model_sha256"],
        "data_sha256": metadata.get("data_sha256"),
        "test_data_sha256": report.get("test_data_sha256"),
        "estimator": metadata.get("estimator"),
        "params": metadata.get("params"),
        "search": metadata.get("search") or {},
        "cross_validation": metadata.get("cross_validation") or {},
        "metrics": {key: metrics.get(key) for key in METRICS},
        "git_commit": metadata.get("git_commit"),
        "decision": report.get("decision"),
        "forced": bool(report.get("forced")),
        "version": report.get("candidate", {}).get("version"),
        "production_before": report.get("production", {}).get("version"),
        "reasons": report.get("reasons", []),
    }


def read_runs(path: Path = RUNS_FILE) -> list[dict[str, Any]]:
    """Every logged run; a broken line is an InputError naming the file and line."""
    path = Path(path)
    if not path.exists():
        return []
    runs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{path}:{number}: not JSON ({exc})") from None
        if not isinstance(item, dict) or "model_sha256" not in item:
            raise InputError(f"{path}:{number}: not a run entry (no model_sha256)")
        runs.append(item)
    return runs


def already_logged(runs: list[dict[str, Any]], item: dict[str, Any]) -> bool:
    same = [run for run in runs if run["model_sha256"] == item["model_sha256"]]
    return any(run.get("decision") == item["decision"] for run in same) or (
        bool(same) and item["decision"] == "unchanged"
    )


def append_locked(item: dict[str, Any], path: Path) -> bool:
    """Append the entry unless this model with this decision is logged (caller holds the lock)."""
    runs = read_runs(path)
    if already_logged(runs, item):
        return False
    old = path.read_bytes() if path.exists() else b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    files.write_bytes(path, old + (json.dumps(item, default=str) + "\n").encode("utf-8"))
    return True


def record(item: dict[str, Any], path: Path = RUNS_FILE) -> bool:
    """Append the entry unless this model with this decision is logged; True when appended."""
    path = Path(path)
    with locked(path.parent):
        appended = append_locked(item, path)
    if appended:
        log.info("run logged to %s (%s)", path, item["decision"])
    return appended


def journal(item: dict[str, Any], reports: dict[str, str]) -> dict[str, Any]:
    """A promotion's journal (models/runs.pending.json): its run-log line and the text of each
    report file it writes once registry.json names the version."""
    return {"run": item, "files": reports}


def recover_locked(models_dir: Path, registry: dict[str, Any], late: bool = True) -> str | None:
    """Finish a promotion's journal: when registry.json names its version with the same model
    (the promotion happened), write its reports and append its run-log line; then remove it.
    When not (killed before registry.json), drop it. The version finished, or None."""
    pending = Path(models_dir) / PENDING_RUN
    if not pending.exists():
        return None
    try:
        found = json.loads(pending.read_text(encoding="utf-8"))
        item, reports = found["run"], found["files"]
    except (ValueError, KeyError, TypeError):
        item, reports = {}, {}
    version = item.get("version")
    entry = registry["versions"].get(version) if isinstance(version, str) else None
    done = entry is not None and entry.get("sha256") == item.get("model_sha256")
    if done:
        for name, text in reports.items():
            if not Path(name).exists() or Path(name).read_text(encoding="utf-8") != text:
                files.write_text(Path(name), text)
        if append_locked(item, Path(models_dir) / RUNS_FILE.name):
            log.info("run logged to %s (%s)", RUNS_FILE, item["decision"])
        if late:
            log.warning("%s's promotion was interrupted after registry.json: finished it", version)
    pending.unlink()
    return version if done else None


def recover(models_dir: Path = MODELS_DIR, late: bool = True) -> str | None:
    """Finish what a promotion's journal says (recover_locked): the promotion itself once
    registry.json names the new version (late=False), or the next command after a kill or a
    full disk."""
    if not (Path(models_dir) / PENDING_RUN).exists():
        return None
    with locked(models_dir):
        return recover_locked(models_dir, read_registry(models_dir), late)


def flat_params(item: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters of the estimator used, plus seed and estimator, as flat MLflow params."""
    params = item.get("params") or {}
    train = params.get("train") or {}
    estimator = item.get("estimator") or train.get("estimator")
    flat: dict[str, Any] = {"estimator": estimator, "seed": params.get("seed")}
    flat.update((train.get("hyperparameters") or {}).get(estimator, {}))
    flat.update(
        {f"best_{k}": v for k, v in (item.get("search") or {}).get("best_params", {}).items()}
    )
    return flat


def ordered(runs: list[dict[str, Any]], sort: str) -> list[dict[str, Any]]:
    if sort == "date":  # newest first; the log is in order, so a later line wins a tie
        indexed = sorted(enumerate(runs), key=lambda p: (str(p[1].get("logged_at") or ""), p[0]))
        return [run for _, run in reversed(indexed)]
    if sort != "best":
        raise InputError(f"--sort: {sort!r} (choose best or date)")

    def key(run: dict[str, Any]) -> tuple:
        metrics = run.get("metrics") or {}
        return tuple(
            -metrics[name] if isinstance(metrics.get(name), int | float) else float("inf")
            for name in ("accuracy", "roc_auc")
        )

    return sorted(runs, key=key)


def table(runs: list[dict[str, Any]]) -> str:
    header = (
        "logged",
        "decision",
        "version",
        "estimator",
        "accuracy",
        "roc_auc",
        "f1",
        "recall",
        "params",
        "model",
        "data",
        "commit",
    )
    rows: list[tuple[str, ...]] = [header]
    for run in runs:
        metrics = run.get("metrics") or {}
        params = flat_params(run)
        params.pop("estimator", None)
        rows.append(
            (
                str(run.get("logged_at") or "?"),
                str(run.get("decision")) + (" (forced)" if run.get("forced") else ""),
                str(run.get("version") or "-"),
                str(run.get("estimator") or "?"),
                *(
                    tables.number(metrics.get(name))
                    for name in ("accuracy", "roc_auc", "f1", "recall")
                ),
                " ".join(f"{k}={v}" for k, v in params.items()),
                str(run.get("model_sha256", ""))[:10],
                str(run.get("data_sha256") or "")[:10],
                str(run.get("git_commit") or "")[:8],
            )
        )
    return tables.aligned(rows)


def show_command(config: Config, sort: str = "best") -> None:
    """CLI `runs`: every logged run as one comparable table (best accuracy first, or newest)."""
    runs = read_runs(RUNS_FILE)
    if not runs:
        print(f"no runs logged yet in {RUNS_FILE} (the gate logs each one: make promote)")
        return
    print(table(ordered(runs, sort)))
    print(
        f"\n{len(runs)} run(s), sorted by {'accuracy, then ROC-AUC' if sort == 'best' else 'date'}"
    )
