import json
import shutil
from pathlib import Path

import pytest

from helpers import run_cli
from mlops import cli, summary
from mlops.config import load_config

ROOT = Path(__file__).resolve().parents[1]
GITHUB = {
    "GITHUB_SERVER_URL": "https://github.example",
    "GITHUB_REPOSITORY": "team/model",
    "GITHUB_RUN_ID": "4242",
    "GITHUB_SHA": "0123456789abcdef0123",
}
METRICS = {
    "accuracy": 0.79,
    "roc_auc": 0.85,
    "f1": 0.83,
    "log_loss": 0.46,
    "status": "success",
    "rows_processed": 7500,
}
DRIFT = {
    "dataset_drift": True,
    "share_drifted": 0.375,
    "drifted_columns": ["AGEP", "SCHL"],
    "columns": {
        "AGEP": {"method": "psi", "score": 0.31, "threshold": 0.1, "drifted": True},
        "SCHL": {"method": "psi", "score": 0.12, "threshold": 0.1, "drifted": True},
        "SEX": {"method": "psi", "score": 0.01, "threshold": 0.1, "drifted": False},
    },
    "prediction_drift": {"method": "psi", "score": 0.2, "drifted": True},
    "performance": {"reference": {"accuracy": 0.79}, "current": None, "degraded": False},
    "status": "drift",
}


@pytest.fixture
def reports(tmp_path, monkeypatch):
    """An empty project directory with reports/, made the working directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reports").mkdir()
    return tmp_path / "reports"


@pytest.fixture(scope="module")
def cfg():
    return load_config(ROOT / "params.yaml")


def write(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))


def test_marker_first_and_missing_reports_stated(reports, cfg):
    text = summary.render(cfg, {})
    assert text.splitlines()[0] == summary.MARKER
    assert "No metrics: `reports/metrics.json` not found" in text
    assert "No gate decision: `reports/promotion.json` not found" in text
    assert "No drift report: `reports/drift.json` not found" in text
    assert "Local run: reports are in `reports/`" in text


def test_unreadable_report_is_stated(reports, cfg):
    (reports / "metrics.json").write_text("{not json")
    assert "`reports/metrics.json` is unreadable (JSONDecodeError)" in summary.render(cfg, {})


def test_candidate_only_when_no_production(reports, cfg):
    write(reports / "metrics.json", METRICS)
    write(
        reports / "promotion.json",
        {"decision": "promoted", "reasons": ["first model"], "production": None},
    )
    text = summary.render(cfg, {})
    assert "| accuracy | 0.7900 |" in text
    assert "No production model yet" in text
    assert "**Decision: ✅ promoted**" in text  # no candidate version in this report
    assert "- first model" in text
    assert f"accuracy ≥ {cfg.promotion.min_accuracy}, and at most " in text
    assert f"{cfg.promotion.max_regression:.1%} below production's accuracy" in text


def test_candidate_against_production_and_rejection(reports, cfg):
    write(reports / "metrics.json", METRICS)
    write(
        reports / "promotion.json",
        {
            "decision": "rejected",
            "reasons": "accuracy 0.7900 is more than 0.005 below production 0.8000",
            "production": {
                "version": "v3",
                "metrics": {"accuracy": 0.80, "roc_auc": 0.85, "log_loss": 0.50},
            },
            "criteria": {
                "min_accuracy": {"value": 0.79, "threshold": 0.78, "passed": True},
                "max_regression": {"value": -0.01, "threshold": 0.005, "passed": False},
            },
        },
    )
    text = summary.render(cfg, {})
    assert "| metric | candidate | production (v3) | Δ |" in text
    assert "| accuracy | 0.7900 | 0.8000 | -0.0100 ▼ |" in text
    assert "| roc_auc | 0.8500 | 0.8500 | ±0 |" in text
    assert "| log_loss | 0.4600 | 0.5000 | -0.0400 ▲ |" in text  # lower log loss is better
    assert "| f1 | 0.8300 | n/a | n/a |" in text
    assert "**Decision: ❌ rejected**" in text
    assert "- accuracy 0.7900 is more than 0.005 below production 0.8000" in text
    assert "| max_regression | -0.0100 | 0.0050 | **fail** |" in text
    assert "| min_accuracy | 0.7900 | 0.7800 | pass |" in text


def test_promoted_version_and_forced(reports, cfg):
    report = {
        "decision": "promoted",
        "candidate": {"version": "v4"},
        "forced": True,
        "production": {"version": "v3", "metrics": None},
    }
    write(reports / "promotion.json", report)
    assert "**Decision: ✅ promoted → v4 (**FORCED**)**" in summary.render(cfg, {})


def test_production_from_flat_keys_or_registry(reports, cfg):
    write(reports / "metrics.json", METRICS)
    write(
        reports / "promotion.json",
        {
            "decision": "unchanged",
            "production_version": "v2",
            "production_metrics": {"accuracy": 0.79},
            "criteria": [{"name": "validation", "passed": None}],
        },
    )
    text = summary.render(cfg, {})
    assert "production (v2)" in text
    assert "| validation | n/a | n/a | n/a |" in text
    assert "unchanged (identical to production)" in text
    (reports / "promotion.json").unlink()
    write(
        Path("models/registry.json"),
        {"production": "v5", "versions": {"v5": {"metrics": {"accuracy": 0.7}}}},
    )
    assert "| accuracy | 0.7900 | 0.7000 | +0.0900 ▲ |" in summary.render(cfg, {})
    write(Path("models/registry.json"), {"production": "v5"})
    assert summary.production_metrics(None, {"production": "v5"}) == ("v5", {})


def test_drift_section(reports, cfg):
    write(reports / "drift.json", {**DRIFT, "status": "alert", "alerts": ["dataset drift: 2"]})
    text = summary.render(cfg, {})
    assert "**🚨 Drift alert**\n\n- dataset drift: 2\n" in text
    assert "Dataset drift: yes (share of drifted columns 0.375)" in text
    assert "| AGEP | psi | 0.3100 | 0.1000 |" in text
    assert "| SCHL | psi | 0.1200 | 0.1000 |" in text
    assert "| SEX |" not in text
    assert "- Prediction drift: **drifted** (psi 0.2000, threshold n/a)" in text
    assert "- Performance on current data: no labels" in text


def test_drift_importance_estimate_and_chunks(reports, cfg):
    estimated = {"accuracy": 0.71, "roc_auc": 0.8, "method": "CBPE"}
    write(
        reports / "drift.json",
        {
            **DRIFT,
            "status": "alert",
            "importance_drifted": 0.62,
            "importance_share": 0.5,
            "columns": {
                **DRIFT["columns"],
                "AGEP": {**DRIFT["columns"]["AGEP"], "importance": 0.6},
            },
            "performance": {**DRIFT["performance"], "estimated": estimated, "degraded": True},
            "chunks": [{"status": "ok"}, {"status": "alert"}],
        },
    )
    text = summary.render(cfg, {})
    assert "Importance of the drifted columns: 0.620 of the model's (alert at ≥ 0.5000)" in text
    assert "| AGEP | psi | 0.3100 | 0.1000 | 0.600 |" in text
    assert "| SCHL | psi | 0.1200 | 0.1000 | n/a |" in text
    assert "no labels; estimated (CBPE) **degraded** (accuracy 0.7900 → 0.7100, roc_auc" in text
    assert "- Chunks over time: ok → alert" in text


def test_drift_clean_and_degraded(reports, cfg):
    write(
        reports / "drift.json",
        {
            **DRIFT,
            "status": "ok",
            "dataset_drift": False,
            "drifted_columns": [],
            "performance": {
                "reference": {"accuracy": 0.8},
                "current": {"accuracy": 0.7},
                "degraded": True,
            },
        },
    )
    text = summary.render(cfg, {})
    assert "**✅ No drift**" in text
    assert "Dataset drift: no (share of drifted columns 0.375)" in text
    assert "No column drifted." in text
    assert "- Performance on current data: **degraded** (accuracy 0.8000 → 0.7000)" in text
    write(reports / "drift.json", {"status": "odd", "performance": {"current": {"f1": 0.8}}})
    text = summary.render(cfg, {})
    assert "**❔ status odd**" in text
    assert "Dataset drift: unknown" in text
    assert "within tolerance (f1 n/a → 0.8000)" in text


def test_real_drift_alert_report(reports, cfg):
    """drift.json as `make drift-demo` wrote it on the embedded data (an alert)."""
    shutil.copy(Path(__file__).parent / "fixtures/summary/drift_alert.json", reports / "drift.json")
    text = summary.render(cfg, {}, sections=("drift",))
    assert "**🚨 Drift alert**" in text
    assert "- accuracy degraded: 0.705 on current vs 0.791 on test" in text
    assert "| SCHL | psi | 0.5834 | 0.1000 |" in text
    assert "| AGEP | wasserstein | 0.5321 | 0.1000 |" in text
    assert "- Model: production v1" in text
    assert "- Rows: reference 30000, current 12500" in text


def test_artifact_links_from_github_env(reports, cfg):
    env = {
        **GITHUB,
        "ARTIFACT_URL_REPORTS": "https://github.example/a/1",
        "ARTIFACT_URL_CANDIDATE_MODEL": "https://github.example/a/2",
        "ARTIFACT_URL_X": "",
    }
    text = summary.render(cfg, env)
    assert "## ML pipeline report for `0123456789ab`" in text
    assert "- [candidate-model](https://github.example/a/2)" in text
    assert "- [reports](https://github.example/a/1)" in text
    assert "[x]" not in text
    assert "(https://github.example/team/model/actions/runs/4242)" in text
    assert "`gh run download 4242 --repo team/model`" in text
    assert "Local run" not in text


def test_cli_writes_the_file_with_real_pipeline_reports(project, capsys, monkeypatch):
    for name in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID", "GITHUB_SHA"):
        monkeypatch.delenv(name, raising=False)
    code, _ = run_cli(capsys, "summary", "--output", "reports/summary.md")
    assert code == 0
    text = (project / "reports/summary.md").read_text()
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert f"| accuracy | {metrics['accuracy']:.4f} |" in text
    assert text.startswith(summary.MARKER + "\n")
    assert cli.main(["summary"]) == 0
    assert capsys.readouterr().out == text
    shutil.rmtree(project / "reports")
    code, _ = run_cli(capsys, "summary", "--output", "out/summary.md")
    assert code == 0
    assert "No metrics" in (project / "out/summary.md").read_text()


def test_sections_drift_only(reports, cfg, capsys):
    write(reports / "drift.json", DRIFT)
    write(reports / "metrics.json", METRICS)
    text = summary.render(cfg, GITHUB, sections=summary.parse_sections("drift, artifacts"))
    assert text.splitlines()[:2] == [summary.MARKER, "## Drift report for `0123456789ab`"]
    assert "### Drift" in text
    assert "### Artifacts" in text
    assert "### Metrics" not in text
    assert "### Promotion gate" not in text
    assert summary.parse_sections(None) == summary.SECTIONS
    shutil.copy(ROOT / "params.yaml", "params.yaml")
    code, err = run_cli(capsys, "summary", "--sections", "drift,bogus")
    assert code == 2
    assert "--sections: bogus (choose from metrics, gate, drift, artifacts)" in err
    assert run_cli(capsys, "summary", "--sections", ",")[0] == 2


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        ({"classes": ["no", "yes"], "positive": "yes"}, "Positive class: `yes` (precision, recall"),
        (
            {"classes": ["a", "b", "c"], "positive": None},
            "Classes: `a`, `b`, `c`; precision, recall and F1 are macro averages",
        ),
    ],
)
def test_metrics_say_which_class_they_speak_of(reports, cfg, extra, line):
    write(reports / "metrics.json", {**METRICS, **extra})
    assert line in summary.render(cfg, {})
