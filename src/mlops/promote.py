"""Stage `make promote`: the gate. The candidate reaches production only if it clears the bar.

Criteria (params.yaml `promotion`), all on the current test split (data/processed/test.parquet):
- min_accuracy: candidate accuracy >= min_accuracy (exactly at the threshold passes);
- max_regression: candidate accuracy >= production accuracy * (1 - max_regression). The tolerance
  is a fraction OF production's accuracy (relative, as the issue says: 0.005 of 0.80 allows
  0.004), and production is re-scored on the same split, so a new test split is a fair comparison;
- validation: reports/validation.json has status "passed";
- min_roc_auc, min_recall: optional floors, skipped when null;
- raw_rows_parity: the model file called on the raw test split (columns shuffled) gives the
  fast path's answers (mlops.parity); force cannot override it;
- onnx_parity: the candidate exported to ONNX (mlops.onnx_export) gives scikit-learn's labels and
  probabilities within 1e-5 on the whole test split; force cannot override it. A model ONNX does
  not represent passes it and is served by scikit-learn (registry `served_by`); a promoted version
  stores models/vN/model.onnx and its sha256 as `onnx_sha256` in the registry.

Decisions: "promoted" (exit 0), "unchanged" when the candidate's sha256 equals any known version
(production, or one that was rolled back: never silently re-promoted; exit 0) and production still
meets the policy, "rejected" (exit 1, CheckFailed) when the candidate fails a criterion, or when it
is a known version and production no longer meets the policy's floors (a raised bar is enforced on
what is in production too, never passed silently). Bad input (missing or stale reports, tampered
models) is an InputError (exit 2).
A rejected or unchanged candidate leaves the registry and every version byte-identical.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from mlops import files, layout, parity, registry, runlog, tracking
from mlops.config import Config
from mlops.errors import CheckFailed, InputError
from mlops.train import CANDIDATE_DIR, METADATA_FILE, MODEL_FILE

log = logging.getLogger(__name__)
REPORT_JSON = layout.PROMOTION_JSON
REPORT_MD = layout.PROMOTION_MD
METRICS_REPORT = layout.METRICS
VALIDATION_REPORT = layout.VALIDATION
# Metrics are rounded to 6 digits in metrics.json; a threshold met to within this counts as met.
EPSILON = 1e-9
UNFORCEABLE = ("raw_rows_parity", "onnx_parity")  # force never overrides these
HEADLINES = {"promoted": "✅ promoted", "unchanged": "⚪ unchanged", "rejected": "❌ rejected"}


def candidate_inputs(config: Config) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Candidate metadata, its metrics and the test split's sha256, checked to belong together."""
    metadata = files.read_json(CANDIDATE_DIR / METADATA_FILE)
    model = CANDIDATE_DIR / MODEL_FILE
    if not model.is_file():
        raise InputError(f"{model}: not found (run `make train`)")
    sha = files.sha256_file(model)
    if sha != metadata.get("model_sha256"):
        raise InputError(f"{model}: sha256 does not match {CANDIDATE_DIR / METADATA_FILE}")
    metrics = files.read_json(METRICS_REPORT)
    if metrics.get("status") != "success":
        raise InputError(f"{METRICS_REPORT}: status {metrics.get('status')!r}, not 'success'")
    if metrics.get("model_sha256") != sha:
        raise InputError(
            f"{METRICS_REPORT}: scores another model than the candidate (run `make evaluate`)"
        )
    test_path = config.data.processed_dir / "test.parquet"
    if not test_path.is_file():
        raise InputError(f"{test_path}: not found (run `make data`)")
    test_sha = files.sha256_file(test_path)
    if metrics.get("data_sha256") != test_sha:
        raise InputError(
            f"{METRICS_REPORT}: scored another test split than {test_path} (run `make evaluate`)"
        )
    for key in ("accuracy",):
        if not isinstance(metrics.get(key), int | float):
            raise InputError(f"{METRICS_REPORT}: `{key}` missing or not a number")
    return metadata, metrics, test_sha


def validation_status() -> str:
    status = files.read_json(VALIDATION_REPORT).get("status")
    if status not in ("passed", "failed"):
        raise InputError(f"{VALIDATION_REPORT}: status {status!r} is neither 'passed' nor 'failed'")
    return str(status)


def score_production(config: Config) -> tuple[str | None, dict[str, Any] | None, str | None, str]:
    """(version, metrics on the current test split or None, sha256, note) of production.

    The production model is loaded sha256-verified (a tampered file is an InputError).
    """
    from mlops.evaluate import score
    from mlops.predictions import matrix_model, model_matrix, model_positive

    found = registry.load_production(registry.MODELS_DIR)
    if found is None:
        return None, None, None, "no production model yet: nothing to compare against"
    model, metadata = found
    version = metadata["version"]
    test = files.read_parquet(config.data.processed_dir / "test.parquet")
    features = metadata.get("features") or config.features
    missing = [name for name in [*features, config.schema.target] if name not in test.columns]
    if missing:
        note = (
            f"production {version} needs column(s) {', '.join(missing)}, absent from the test split"
        )
        return version, None, metadata["model_sha256"], note
    y = test[config.schema.target].to_numpy()
    x, positive = model_matrix(test, metadata, config), model_positive(model, metadata)
    scores = score(matrix_model(model, metadata), x, y, positive)
    metrics = {key: files.plain_json(scores[key]) for key in registry.SUMMARY_METRICS}
    return (
        version,
        metrics,
        metadata["model_sha256"],
        f"production {version} re-scored on the test split",
    )


def parity_criterion(config: Config) -> dict[str, Any]:
    """The candidate file on the raw test split against the fast path (mlops.parity)."""
    from mlops.train import load_candidate

    model, metadata = load_candidate()
    test = files.read_parquet(config.data.processed_dir / "test.parquet")
    found = parity.check(model, metadata, test, config)
    return criterion(
        "raw_rows_parity",
        found["max_difference"],
        parity.TOLERANCE,
        found["passed"],
        **{key: value for key, value in found.items() if key not in ("passed", "max_difference")},
    )


def onnx_criterion(config: Config) -> tuple[dict[str, Any], bytes | None]:
    """The candidate exported to ONNX against scikit-learn on the whole test split
    (mlops.onnx_export); the ONNX bytes the promotion stores (None: scikit-learn serves it)."""
    from mlops import onnx_export
    from mlops.train import load_candidate

    model, metadata = load_candidate()
    test = files.read_parquet(config.data.processed_dir / "test.parquet")
    found = onnx_export.check(model, metadata, test, config)
    data = found.pop("data", None)
    item = criterion(
        "onnx_parity",
        found.pop("max_difference"),
        onnx_export.TOLERANCE,
        found.pop("passed"),
        **found,
    )
    return item, data


def criterion(name: str, value: Any, threshold: Any, passed: bool, **extra: Any) -> dict[str, Any]:
    return {"name": name, "value": value, "threshold": threshold, "passed": passed, **extra}


def at_least(value: Any, threshold: float) -> bool:
    """A number at or above the threshold (within EPSILON); a missing metric never is."""
    return bool(isinstance(value, int | float) and value >= threshold - EPSILON)


def judge(
    config: Config,
    metrics: dict[str, Any],
    validation: str,
    production: str | None,
    production_metrics: dict[str, Any] | None,
    note: str = "production cannot be scored on this test split",
) -> list[dict[str, Any]]:
    """Every criterion with its value, threshold and pass/fail."""
    policy = config.promotion
    accuracy = metrics["accuracy"]
    criteria = [
        criterion(
            "min_accuracy",
            accuracy,
            policy.min_accuracy,
            at_least(accuracy, policy.min_accuracy),
            metric="accuracy",
        )
    ]
    if production is not None:
        if production_metrics is None:
            criteria.append(
                criterion(
                    "max_regression",
                    accuracy,
                    None,
                    False,
                    metric="accuracy",
                    production=production,
                    note=note,
                )
            )
        else:
            base = production_metrics["accuracy"]
            floor = round(base * (1 - policy.max_regression), 6)
            criteria.append(
                criterion(
                    "max_regression",
                    accuracy,
                    floor,
                    at_least(accuracy, floor),
                    metric="accuracy",
                    production=production,
                    production_value=base,
                    tolerance=policy.max_regression,
                )
            )
    criteria.append(criterion("validation", validation, "passed", validation == "passed"))
    for name, metric in (("min_roc_auc", "roc_auc"), ("min_recall", "recall")):
        threshold = getattr(policy, name)
        if threshold is not None:
            value = metrics.get(metric)
            criteria.append(
                criterion(name, value, threshold, at_least(value, threshold), metric=metric)
            )
    return criteria


def production_criteria(
    config: Config,
    production: str,
    production_metrics: dict[str, Any] | None,
    validation: str,
    note: str,
) -> list[dict[str, Any]]:
    """The policy's floors applied to production, re-scored on the current test split."""
    if production_metrics is None:
        return [criterion("scored", None, None, False, production=production, note=note)]
    floors = judge(config, production_metrics, validation, None, None)
    return [{**item, "production": production} for item in floors]


def production_reason(item: dict[str, Any]) -> str:
    production = item["production"]
    if item["name"] == "scored":
        return f"production {production} cannot be checked against the policy: {item['note']}"
    if item["name"] == "validation":
        return f"production {production} cannot be judged: {failure_reason(item)}"
    shown = "n/a" if not isinstance(item["value"], int | float) else f"{item['value']:.4f}"
    return (
        f"production {production} no longer meets {item['name']} {item['threshold']:g} "
        f"({item['metric']} {shown} on the current test split)"
    )


def failure_reason(item: dict[str, Any]) -> str:
    name, value, threshold = item["name"], item["value"], item["threshold"]
    if name == "validation":
        return f"validation {value} (see reports/validation.json)"
    if name == "raw_rows_parity":
        if not item["takes_raw_rows"]:
            return "the model file does not take raw rows by column name (retrain: make train)"
        return (
            f"the model file on raw rows differs from the fast path: largest probability "
            f"difference {value:.3g} (test row {item['row']}, tolerance {threshold:g}), "
            f"{item['labels_differ']} label(s) differ"
        )
    if name == "onnx_parity":
        return (
            f"the ONNX export differs from scikit-learn: largest probability difference "
            f"{value:.3g} (test row {item['row']}, tolerance {threshold:g}), "
            f"{item['labels_differ']} label(s) differ; not promoted (docs/runbook.md)"
        )
    if name == "max_regression":
        if threshold is None:
            return f"cannot compare with production {item['production']}: {item['note']}"
        return (
            f"accuracy {value:.4f} is more than {item['tolerance']:g} (relative) below production "
            f"{item['production']} ({item['production_value']:.4f}; floor {threshold:.4f})"
        )
    shown = "n/a" if not isinstance(value, int | float) else f"{value:.4f}"
    return f"{item['metric']} {shown} < {threshold} (promotion.{name})"


def identical_reason(registry_data: dict[str, Any], version: str) -> str:
    """Why an identical candidate changes nothing, and what to do if it should be production."""
    if version == registry_data.get("production"):
        return f"candidate is identical to production {version} (same sha256): nothing to do"
    left = [item for item in registry_data["history"] if item.get("from") == version]
    again = f"to make it production on purpose: make rollback VERSION={version}"
    if left and left[-1].get("event") == "rolled_back":
        last = left[-1]
        return (
            f"candidate is identical to {version}, rolled back on {last.get('when')} by "
            f"{last.get('who')} ({last.get('why')}): not re-promoted; {again}"
        )
    if left:
        last = left[-1]
        return (
            f"candidate is identical to {version}, replaced by {last.get('to')} on "
            f"{last.get('when')}: not promoted again; {again}"
        )
    return f"candidate is identical to {version} (not production): not promoted again; {again}"


def markdown(report: dict[str, Any]) -> str:
    """reports/promotion.md: headline first, then criteria and metrics tables (a PR comment)."""
    decision = report["decision"]
    candidate, production = report["candidate"], report["production"]
    headline = HEADLINES[decision]
    if decision == "promoted":
        headline += f" {candidate['version']}" + (" (FORCED)" if report["forced"] else "")
    lines = [f"### Promotion gate: {headline}", ""]
    lines += [f"- {reason}" for reason in report["reasons"]]
    lines += ["", "| criterion | value | threshold | result |", "|---|---:|---:|---|"]
    for item in report["criteria"]:
        result = "pass" if item["passed"] else "**fail**"
        lines.append(
            f"| {item['name']} | {_cell(item['value'])} | {_cell(item['threshold'])} | {result} |"
        )
    prod_name = production["version"] or "none"
    lines += ["", f"| metric | candidate | production ({prod_name}) |", "|---|---:|---:|"]
    prod_metrics = production["metrics"] or {}
    for key in registry.SUMMARY_METRICS:
        lines.append(
            f"| {key} | {_cell(candidate['metrics'].get(key))} | {_cell(prod_metrics.get(key))} |"
        )
    lines += [
        "",
        f"Candidate sha256 `{candidate['sha256'][:12]}`"
        + (
            f", production {prod_name} `{production['sha256'][:12]}`"
            if production["sha256"]
            else ""
        )
        + f"; both scored on the test split `{report['test_data_sha256'][:12]}`.",
    ]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "n/a" if value is None else str(value)
    if isinstance(value, float) and 0 < abs(value) < 1e-4:
        return f"{value:.1e}"  # raw_rows_parity's difference and tolerance
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def run(config: Config, force_reason: str | None = None) -> dict[str, Any]:
    """The gate: decide, promote when it passes, write reports/promotion.{json,md} and the run log.

    force_reason (FORCE_REASON in Make): promote even though criteria failed, recorded as
    "forced" with that reason. It never overrides bad input or an identical candidate.
    """
    if force_reason is not None and not force_reason.strip():
        raise InputError("--force-reason: empty; a forced promotion must say why")
    models_dir = registry.MODELS_DIR
    runlog.recover(models_dir)  # a promotion killed before its run-log line: add it first
    metadata, metrics, test_sha = candidate_inputs(config)
    validation = validation_status()
    registry_data = registry.read_registry(models_dir)
    production, production_metrics, production_sha, note = score_production(config)
    criteria = judge(config, metrics, validation, production, production_metrics, note)
    criteria.append(parity_criterion(config))
    onnx_item, onnx_data = onnx_criterion(config)
    criteria.append(onnx_item)
    failed = [item for item in criteria if not item["passed"]]
    unforceable = [item for item in failed if item["name"] in UNFORCEABLE]
    identical = registry.find_by_sha(registry_data, metadata["model_sha256"])
    forced = False
    version = None
    production_failed: list[dict[str, Any]] = []
    if identical and production is not None:
        production_failed = [
            item
            for item in production_criteria(
                config, production, production_metrics, validation, note
            )
            if not item["passed"]
        ]
    if identical:
        decision = "rejected" if production_failed else "unchanged"
        reasons = [production_reason(item) for item in production_failed]
        if production_failed:
            reasons.append(
                f"candidate is identical to {identical} (same sha256), so nothing new can "
                "replace production: train one that meets the policy, roll back to a version "
                "that does, or revise the policy (docs/runbook.md)"
            )
        else:
            reasons.append(identical_reason(registry_data, identical))
        version = identical
        if force_reason:
            reasons.append("--force-reason ignored: force never re-promotes a known model")
    elif failed and (not force_reason or unforceable):
        decision, reasons = "rejected", [failure_reason(item) for item in failed]
        if force_reason:
            reasons.append("--force-reason ignored: it never overrides " + unforceable[0]["name"])
    else:
        decision = "promoted"
        forced = bool(failed)
        reasons = [note] if production is None else []
        if forced:
            reasons += [f"FORCED by {registry.who()}: {(force_reason or '').strip()}"]
            reasons += [f"failed: {failure_reason(item)}" for item in failed]
        else:
            reasons.append(f"all {len(criteria)} criteria passed")
    candidate_metrics = {key: metrics.get(key) for key in registry.SUMMARY_METRICS}
    found = {
        "decision": decision,
        "reasons": reasons,
        "forced": forced,
        "criteria": criteria,
        "metadata": metadata,
        "candidate_metrics": candidate_metrics,
        "production": production,
        "production_sha": production_sha,
        "production_metrics": production_metrics,
        "note": note,
        "production_failed": production_failed,
        "test_sha": test_sha,
    }
    if decision == "promoted":
        gate = {"decision": decision, "forced": forced, "criteria": criteria}
        version_metadata = {
            **metadata,
            "metrics": {
                **candidate_metrics,
                "confusion_matrix": metrics.get("confusion_matrix"),
                "rows_processed": metrics.get("rows_processed"),
            },
            "test_data_sha256": test_sha,
            "feature_importance": metrics.get("feature_importance"),
            "gate": gate,
            "onnx_sha256": hashlib.sha256(onnx_data).hexdigest() if onnx_data else None,
            "onnx_note": onnx_item.get("note"),
        }
        why = "; ".join(reasons)
        if forced:
            overrode = "; ".join(failure_reason(item) for item in failed)
            why = f"{(force_reason or '').strip()} (overrode: {overrode})"
        made: dict[str, Any] = {}

        def journal(new: str) -> dict[str, Any]:
            made["report"] = report = report_of(found, config, version=new)
            texts = {str(REPORT_JSON): files.json_text(report), str(REPORT_MD): markdown(report)}
            return runlog.journal(runlog.entry(metadata, metrics, report), texts)

        version = registry.add_version(
            models_dir,
            CANDIDATE_DIR / MODEL_FILE,
            version_metadata,
            expected_production=production,
            kind="forced" if forced else "promoted",
            why=why,
            journal=journal,
            onnx=onnx_data,
        )
        report: dict[str, Any] = made["report"]
        after_promotion(version)
    else:
        report = report_of(found, config, version=version)
        files.write_json(REPORT_JSON, report)
        files.write_text(REPORT_MD, markdown(report))
        runlog.record(runlog.entry(metadata, metrics, report))
    if tracking.enabled(config):  # after the files: MLflow mirrors them, never the other way
        tracking.mirror_registry(config, "the gate's decision")
    summary_line = f"{decision}: {'; '.join(reasons)}"
    if decision == "rejected":
        raise CheckFailed(f"candidate rejected: {'; '.join(reasons)}")
    log.info("%s", summary_line)
    return report


def report_of(found: dict[str, Any], config: Config, version: str | None) -> dict[str, Any]:
    """reports/promotion.json's content from the gate's findings (as run collects them)."""
    decision = found["decision"]
    return {
        "decision": decision,
        "reasons": found["reasons"],
        "forced": found["forced"],
        "criteria": found["criteria"],
        "candidate": {
            "version": version,
            "sha256": found["metadata"]["model_sha256"],
            "data_sha256": found["metadata"].get("data_sha256"),
            "metrics": found["candidate_metrics"],
        },
        "production": {
            "version": found["production"],
            "sha256": found["production_sha"],
            "metrics": found["production_metrics"],
            "note": found["note"],
            "failed": found["production_failed"],
        },
        "production_after": version if decision == "promoted" else found["production"],
        "test_data_sha256": found["test_sha"],
        "policy": config.promotion.model_dump(mode="json"),
        "decided_at": registry.now(),
        "decided_by": registry.who(),
    }


def after_promotion(version: str) -> None:
    """What follows a finished promotion (registry.json names the new version): its journal's
    reports and run-log line (mlops.runlog.recover). The promotion stands whatever happens here,
    so a failed write (a full disk) is a warning and the command still succeeds; the journal
    stays and the next command finishes it."""
    try:
        runlog.recover(late=False)
    except OSError as exc:
        log.warning(
            "promoted %s, but its reports and run-log line were not written (%s): the promotion "
            "stands; the next command writes them (from models/%s)",
            version,
            exc.strerror or exc,
            registry.PENDING_RUN,
        )
