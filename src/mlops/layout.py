"""Where the stages meet: every file one command writes and another reads, relative to the project
folder (the working directory of `make` and of `python -m mlops`).

One definition each; modules import them from here (stages.py builds Make's and DVC's stage
outputs from them). Pure paths: importing this loads nothing else.
"""

from __future__ import annotations

from pathlib import Path

# data → validate → train → evaluate → promote → drift
PROCESSED = Path("data/processed")  # data.processed_dir's default (params.yaml may move it)
SPLITS = ("train.parquet", "test.parquet", "current.parquet", "manifest.json")

REPORTS = Path("reports")
VALIDATION = REPORTS / "validation.json"
METRICS = REPORTS / "metrics.json"
PLOTS = tuple(
    REPORTS / f"{name}.png"
    for name in ("confusion_matrix", "roc_curve", "precision_recall", "feature_importance")
)
PROMOTION_JSON = REPORTS / "promotion.json"
PROMOTION_MD = REPORTS / "promotion.md"
DRIFT = REPORTS / "drift"  # drift.{html,json,md}
DRIFT_HISTORY = REPORTS / "history"
DRIFT_LOG = DRIFT_HISTORY / "drift.jsonl"  # one line per drift run
RUN_LOG = REPORTS / "run.log"  # one line per command, for people
SCORES = REPORTS / "scores"  # `make score`'s default OUT

MODELS = Path("models")
CANDIDATE = MODELS / "candidate"  # model.skops and metadata.json of `make train`
REGISTRY = MODELS / "registry.json"
RUNS = MODELS / "runs.jsonl"  # one line per gated run, for machines
