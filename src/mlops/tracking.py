"""MLflow tracking: every candidate, model version and drift check mirrored to MLflow (optional).

models/registry.json and models/runs.jsonl are the source of truth; MLflow mirrors them. On when
params `tracking.mlflow` is true (MLFLOW_TRACKING_URI, else the embedded store under mlruns/) or
MLFLOW_TRACKING_URI is set; mlflow is imported only then. What is logged:
- evaluate: one run per candidate (keyed by its model sha256) in `tracking.experiment`: every
  effective hyperparameter, seed, estimator, data sha256, git commit, test metrics, CV results,
  the four plots, validation.json and the model (signature and input example from the schema);
- promote, rollback: the gate's decision and reasons as tags on that run; each registry version a
  version of `tracking.registered_model` (tag mlops.version), alias `champion` on production;
- drift: one run per check in `<experiment>-monitoring`, metrics and drift.{html,json,md}.
A server that is down or refuses costs one warning line naming the URI (without credentials) and
the pipeline goes on; `tracking.required: true` makes it exit 2. `make mlflow-sync` logs whatever
is missing, and changes nothing when the mirror is complete.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from mlops import files, layout
from mlops.config import Config
from mlops.errors import InputError

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)
EMBEDDED_DIR = Path("mlruns")
EMBEDDED_URI = "sqlite:///mlruns/mlflow.db"
ALIAS = "champion"
SHA_TAG = "mlops.model_sha256"
VERSION_TAG = "mlops.version"
CHECK_TAG = "mlops.drift_check"
MODEL_TAG = "mlops.model_uri"
SUPPORTED = ((3, 1), (4, 0))  # pyproject's extra: mlflow>=3.1,<4
SCHEMES = {"", "file", "sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks"}
# mlflow's HTTP client retries 7 times with exponential backoff (minutes for a down server).
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # our own log line says where it went
    # usage events to MLflow unless "true" (DO_NOT_TRACK=1, as Evidently takes it, is not enough)
    "MLFLOW_DISABLE_TELEMETRY": "true",
}
PROBE_SECONDS = 3.0
JOBS_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"
PLOTS = ("confusion_matrix.png", "roc_curve.png", "precision_recall.png", "feature_importance.png")
TEST_METRICS = ("accuracy", "balanced_accuracy", "roc_auc", "f1", "precision", "recall", "log_loss")
_DOWN: dict[str, str] = {}  # tracking URI -> why, once warned in this process (one line per run)


class Unavailable(Exception):
    """Tracking cannot be used: a one-line reason (no credentials in it)."""


def enabled(config: Config) -> bool:
    """Tracking is on: params `tracking.mlflow`, or MLFLOW_TRACKING_URI set."""
    return config.tracking.mlflow or bool(os.environ.get("MLFLOW_TRACKING_URI"))


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or EMBEDDED_URI


def shown(uri: str) -> str:
    """The URI without user, password or query (tokens go there): safe to print."""
    parts = urlsplit(uri)
    if not parts.netloc:
        return uri.split("?", 1)[0]
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc += f":{port}" if port else ""
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def one_line(exc: BaseException, uri: str) -> str:
    """An exception as one short line, with the URI shown without credentials."""
    text = str(getattr(exc, "message", "") or exc) or type(exc).__name__
    text = text.replace(uri, shown(uri))
    line = next((part.strip() for part in text.splitlines() if part.strip()), text)
    line = re.sub(r"//[^/@\s]*@", "//", line)  # any other URL's user:password@
    return line if len(line) <= 240 else line[:237] + "..."


def check_version() -> str:
    """The installed mlflow's version, refused outside the extra's range."""
    from importlib import metadata as distributions

    try:
        found = distributions.version("mlflow")
    except distributions.PackageNotFoundError:
        try:
            found = distributions.version("mlflow-skinny")
        except distributions.PackageNotFoundError:
            raise Unavailable("mlflow is not installed (pip install '.[mlflow]')") from None
    numbers = tuple(int(part) for part in re.findall(r"\d+", found)[:2])
    low, high = SUPPORTED
    if not low <= numbers < high:
        raise Unavailable(
            f"mlflow {found} is installed; this project needs mlflow>=3.1,<4 "
            "(pip install '.[mlflow]')"
        )
    return found


def probe(uri: str) -> None:
    """A tracking server answers at all (any HTTP status), within PROBE_SECONDS."""
    import urllib.error
    import urllib.request

    parts = urlsplit(uri)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    url = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", ""))
    try:
        with urllib.request.urlopen(url, timeout=PROBE_SECONDS):
            pass
    except urllib.error.HTTPError:
        return  # it answers; refusals (401, 403) are reported by the call that is refused
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        if type(reason).__module__ == "ssl":  # it answers; TLS is MLflow's to check
            return  # (MLFLOW_TRACKING_SERVER_CERT_PATH, MLFLOW_TRACKING_INSECURE_TLS)
        raise Unavailable(f"unreachable ({one_line(reason, uri)})") from None


def connect(uri: str) -> MlflowClient:
    """A client for uri, after the version, the URI's form and (for a server) a quick probe."""
    check_version()
    scheme = urlsplit(uri).scheme
    if scheme not in SCHEMES and not re.fullmatch(r"[a-z]", scheme):  # c:\ on Windows
        raise Unavailable(
            f"not a tracking URI (scheme {scheme!r}; use http(s)://host:port, sqlite:///file.db "
            "or a folder)"
        )
    if scheme in ("http", "https"):
        if not urlsplit(uri).hostname:
            raise Unavailable("not a tracking URI (no host)")
        probe(uri)
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if uri == EMBEDDED_URI:
        EMBEDDED_DIR.mkdir(parents=True, exist_ok=True)
    import mlflow
    from mlflow import MlflowClient

    # its progress lines and notes (no git in an image); our own line says what went where
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def guarded(config: Config, what: str, action: Callable[[MlflowClient], Any]) -> Any:
    """Run action with a client when tracking is on; a failure is one warning line (exit 2 with
    tracking.required), and later calls in this process skip a URI already found failing."""
    if not enabled(config):
        return None
    uri = tracking_uri()
    if uri in _DOWN and not config.tracking.required:
        return None
    connected = False
    try:
        client = connect(uri)
        connected = True
        return action(client)
    except Exception as exc:  # any tracking failure: one line, never a traceback
        message = f"MLflow at {shown(uri)}: {one_line(exc, uri)}"
        if config.tracking.required:
            raise InputError(f"{message} (tracking.required is true)") from None
        if not connected:  # unusable for this process: the next stages do not try again
            _DOWN[uri] = message
        log.warning("%s; %s not logged (make mlflow-sync catches up)", message, what)
        return None


# --- what a candidate's run holds ----------------------------------------------------------------


def _kind(values: list[Any]) -> str:
    if values and all(isinstance(value, bool) for value in values):
        return "boolean"
    if values and all(isinstance(value, int) and not isinstance(value, bool) for value in values):
        return "long"
    if values and all(isinstance(value, int | float) for value in values):
        return "double"
    return "string"


def signature(config: Config) -> Any:
    """The model's signature from the schema: one column per raw feature, then the label."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    inputs: list[ColSpec | TensorSpec] = [
        ColSpec(_kind(list(values)), name, required=config.max_missing(name) == 0)
        for name, values in config.categorical.items()
    ]
    inputs += [
        ColSpec("double", name, required=config.max_missing(name) == 0) for name in config.numeric
    ]
    outputs = Schema([ColSpec(_kind(list(config.schema.labels)), config.schema.target)])
    return ModelSignature(inputs=Schema(inputs), outputs=outputs)


def input_example(config: Config) -> Any:
    """One request row of raw columns built from the schema: the first allowed category, the
    middle of each numeric range (0 when unbounded)."""
    import pandas as pd

    row: dict[str, Any] = {name: values[0] for name, values in config.categorical.items()}
    for name, spec in config.numeric.items():
        middle = (spec.min + spec.max) / 2
        row[name] = float(round(middle)) if abs(middle) < 1e12 else 0.0
    return pd.DataFrame([row], columns=config.features)


def _final_estimator(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    return steps[-1][1] if steps else model


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value) if callable(value) else str(value)
    return text[:6000]


def run_params(item: dict[str, Any], model: Any = None) -> dict[str, str]:
    """Estimator, seed, data sha256, git commit and every hyperparameter: the fitted estimator's
    effective ones (defaults included) when the model is at hand, else the configured ones."""
    params = item.get("params") or {}
    train = params.get("train") or {}
    estimator = item.get("estimator") or train.get("estimator")
    flat: dict[str, Any] = {
        "estimator": estimator,
        "seed": params.get("seed"),
        "data_sha256": item.get("data_sha256"),
        "git_commit": item.get("git_commit"),
        "cv_folds": train.get("cv_folds"),
    }
    if model is not None:
        effective = _final_estimator(model).get_params(deep=False)
        flat.update({f"model.{k}": v for k, v in effective.items()})
    else:
        configured = (train.get("hyperparameters") or {}).get(estimator, {})
        flat.update({f"model.{k}": v for k, v in configured.items()})
    best = (item.get("search") or {}).get("best_params") or {}
    flat.update({f"search.best_{k}": v for k, v in best.items()})
    return {key: _value(value) for key, value in flat.items() if value is not None}


def run_metrics(item: dict[str, Any]) -> dict[str, float]:
    """Test metrics, and cross-validation means and spreads when CV was on."""
    metrics = {
        key: float(value)
        for key, value in (item.get("metrics") or {}).items()
        if key in TEST_METRICS and isinstance(value, int | float) and not isinstance(value, bool)
    }
    for name, scores in (item.get("cross_validation") or {}).items():
        for stat in ("mean", "std"):
            if isinstance(scores.get(stat), int | float):
                metrics[f"cv_{name}_{stat}"] = float(scores[stat])
    best = (item.get("search") or {}).get("best_roc_auc")
    if isinstance(best, int | float):
        metrics["search_best_roc_auc"] = float(best)
    return metrics


def gate_tags(item: dict[str, Any]) -> dict[str, str]:
    """The gate's decision and reasons (from a runs.jsonl entry) as run tags."""
    if not item.get("decision"):
        return {}
    return {
        "gate.decision": str(item["decision"]),
        "gate.forced": str(bool(item.get("forced"))).lower(),
        "gate.reasons": "; ".join(item.get("reasons") or [])[:8000],
        "gate.version": str(item.get("version") or "-"),
        "gate.production_before": str(item.get("production_before") or "-"),
        "gate.decided_at": str(item.get("logged_at") or ""),
    }


def candidate_item(metadata: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """A runs.jsonl-shaped entry for a candidate the gate has not seen yet."""
    return {
        "model_sha256": metadata["model_sha256"],
        "data_sha256": metadata.get("data_sha256"),
        "estimator": metadata.get("estimator"),
        "params": metadata.get("params"),
        "search": metadata.get("search") or {},
        "cross_validation": metadata.get("cross_validation") or {},
        "metrics": {key: metrics.get(key) for key in TEST_METRICS},
        "git_commit": metadata.get("git_commit"),
        "trained_at": metadata.get("created_at"),
    }


# --- the mirror ----------------------------------------------------------------------------------


def experiment_id(client: MlflowClient, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return found.experiment_id
    location = None
    if tracking_uri() == EMBEDDED_URI:
        location = (EMBEDDED_DIR / "artifacts").resolve().as_uri()
    return client.create_experiment(name, artifact_location=location)


def runs_by_tag(client: MlflowClient, experiment: str, tag: str) -> dict[str, Any]:
    """Every run of the experiment carrying tag, by that tag's value (the oldest run wins)."""
    found: dict[str, Any] = {}
    token = None
    while True:
        page = client.search_runs(
            [experiment],
            filter_string=f"tags.`{tag}` != ''",
            max_results=1000,
            order_by=["attributes.start_time DESC"],
            page_token=token,
        )
        for run in page:
            found[run.data.tags[tag]] = run
        token = page.token
        if not token:
            return found


class Mirror:
    """Writes to one tracking store what the files say and it lacks; counts what it wrote."""

    def __init__(self, client: MlflowClient, config: Config) -> None:
        self.client = client
        self.config = config
        self.experiment = experiment_id(client, config.tracking.experiment)
        self.runs = runs_by_tag(client, self.experiment, SHA_TAG)
        self.changes = 0

    def _fill(self, run_id: str, existing: Any, params: dict, metrics: dict, tags: dict) -> None:
        """Log only the params, metrics and tags the run lacks or holds differently (a param
        cannot change: a different value stays as first logged)."""
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        data = existing.data if existing is not None else None
        have_params = data.params if data else {}
        have_metrics = data.metrics if data else {}
        have_tags = data.tags if data else {}
        new_params = [Param(k, v) for k, v in params.items() if k not in have_params]
        new_metrics = [Metric(k, v, now, 0) for k, v in metrics.items() if have_metrics.get(k) != v]
        new_tags = [RunTag(k, v) for k, v in tags.items() if have_tags.get(k) != v]
        if new_params or new_metrics or new_tags:
            self.client.log_batch(run_id, metrics=new_metrics, params=new_params, tags=new_tags)
            self.changes += 1

    def candidate_run(
        self,
        item: dict[str, Any],
        *,
        model: Any = None,
        model_file: Path | None = None,
        artifacts: tuple[Path, ...] = (),
    ) -> str:
        """The run of this model sha256, created or completed; returns its id."""
        sha = item["model_sha256"]
        existing = self.runs.get(sha)
        before = self.changes
        if model is None and model_file is not None and self._needs_model(existing):
            from mlops.model_file import load_model

            model = load_model(model_file, sha)
        if existing is None:
            run = self.client.create_run(
                self.experiment,
                run_name=f"{item.get('estimator') or 'model'}-{sha[:10]}",
                tags={SHA_TAG: sha},
                start_time=None,
            )
            run_id = run.info.run_id
            self.changes += 1
        else:
            run_id = existing.info.run_id
        tags = {
            SHA_TAG: sha,
            "mlflow.source.git.commit": str(item.get("git_commit") or ""),
            "mlops.trained_at": str(item.get("trained_at") or ""),
            **gate_tags(item),
        }
        self._fill(run_id, existing, run_params(item, model), run_metrics(item), tags)
        if existing is None or existing.data.tags.get("mlops.artifacts") != "logged":
            present = [path for path in artifacts if path.is_file()]
            for path in present:
                self.client.log_artifact(run_id, str(path))
            if present:
                self.client.set_tag(run_id, "mlops.artifacts", "logged")
                self.changes += 1
        if model is not None and self._needs_model(existing):
            self._log_model(run_id, model)
        if existing is None or existing.info.status != "FINISHED":
            self.client.set_terminated(run_id, "FINISHED")
            self.changes += existing is not None
        if self.changes != before:
            self.runs[sha] = self.client.get_run(run_id)
        return run_id

    @staticmethod
    def _needs_model(existing: Any) -> bool:
        return existing is None or MODEL_TAG not in existing.data.tags

    def _log_model(self, run_id: str, model: Any) -> None:
        from importlib import metadata as distributions

        import mlflow
        import mlflow.sklearn

        requirements = [
            f"{name}=={distributions.version(name)}"
            for name in ("scikit-learn", "numpy", "scipy", "pandas", "joblib")
        ]
        from skops.io import dumps, get_untrusted_types

        # skops, not pickle; the types to trust are this model's own (it was trained here).
        trusted = get_untrusted_types(data=dumps(model))
        with mlflow.start_run(run_id=run_id), warnings.catch_warnings():
            # mlflow checks the input example by predicting it: sklearn's feature-name notes
            warnings.simplefilter("ignore", UserWarning)
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=signature(self.config),
                input_example=input_example(self.config),
                pip_requirements=requirements,
                serialization_format="skops",
                skops_trusted_types=trusted,
            )
        self.client.set_tag(run_id, MODEL_TAG, info.model_uri)
        self.changes += 1

    def registered_model(self) -> Any:
        from mlflow.exceptions import MlflowException

        name = self.config.tracking.registered_model
        try:
            return self.client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise Unavailable(
                    f"tracking.registered_model {name!r}: refused ({one_line(exc, '')})"
                ) from None
        try:
            created = self.client.create_registered_model(
                name, description="Mirrors models/registry.json; alias champion = production."
            )
        except MlflowException as exc:
            raise Unavailable(
                f"tracking.registered_model {name!r}: refused ({one_line(exc, '')})"
            ) from None
        self.changes += 1
        return created

    def versions(self, registry_data: dict[str, Any], models_dir: Path) -> dict[str, Any]:
        """Each local registry version as a model version (tag mlops.version), in order; the
        champion alias on production. Returns the model versions by registry version."""
        from mlops.registry import version_number

        model = self.registered_model()
        name = model.name
        known: dict[str, Any] = {
            mv.tags[VERSION_TAG]: mv
            for mv in self.client.search_model_versions(f"name = '{name}'", max_results=10_000)
            if mv.tags.get(VERSION_TAG)
        }
        for version in sorted(registry_data["versions"], key=version_number):
            entry = registry_data["versions"][version]
            if version in known or not entry.get("local", True):
                continue
            folder = Path(models_dir) / version
            metadata = files.read_json(folder / "metadata.json")
            item = {**candidate_item(metadata, metadata.get("metrics") or {})}
            name_of_file = entry.get("model_file", "model.joblib")  # as mlops.model_file.entry_file
            run_id = self.candidate_run(item, model_file=folder / name_of_file)
            source = self.runs[metadata["model_sha256"]].data.tags[MODEL_TAG]
            known[version] = self.client.create_model_version(
                name,
                source=source,
                run_id=run_id,
                model_id=source.rsplit("/", 1)[-1],
                tags={VERSION_TAG: version, SHA_TAG: metadata["model_sha256"]},
                description=f"{version} of models/registry.json",
            )
            self.changes += 1
        production = registry_data.get("production")
        aliases = dict(getattr(model, "aliases", {}) or {})
        current = aliases.get(ALIAS)
        if production in known:
            target = str(known[production].version)
            if str(current) != target:
                self.client.set_registered_model_alias(name, ALIAS, target)
                self.changes += 1
        elif current is not None:
            self.client.delete_registered_model_alias(name, ALIAS)
            self.changes += 1
        return known

    def monitoring_run(self, key: str, metrics: dict, tags: dict, artifacts: tuple = ()) -> str:
        """One drift check's run in <experiment>-monitoring (keyed by its time and batch)."""
        experiment = experiment_id(self.client, f"{self.config.tracking.experiment}-monitoring")
        existing = self.client.search_runs(
            [experiment], filter_string=f"tags.`{CHECK_TAG}` = '{_quoted(key)}'", max_results=1
        )
        if existing:
            run = existing[0]
        else:
            run = self.client.create_run(
                experiment, run_name=f"drift-{key[:19]}", tags={CHECK_TAG: key}
            )
            self.changes += 1
        run_id = run.info.run_id
        self._fill(run_id, run if existing else None, {}, metrics, {CHECK_TAG: key, **tags})
        if run.data.tags.get("mlops.artifacts") != "logged":
            present = [path for path in artifacts if Path(path).is_file()]
            for path in present:
                self.client.log_artifact(run_id, str(path))
            if present:
                self.client.set_tag(run_id, "mlops.artifacts", "logged")
                self.changes += 1
        if run.info.status != "FINISHED":
            self.client.set_terminated(run_id, "FINISHED")
        return run_id


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _metric_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", str(name))[:200]


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, int | float) else None


def drift_content(result: dict[str, Any]) -> tuple[str, dict[str, float], dict[str, str]]:
    """(key, metrics, tags) of one drift check from reports/drift.json's content."""
    perf = result.get("performance") or {}
    prediction = result.get("prediction_drift") or {}
    values: dict[str, Any] = {
        "alert": result.get("status") == "alert",
        "dataset_drift": result.get("dataset_drift"),
        "share_drifted": result.get("share_drifted"),
        "importance_drifted": result.get("importance_drifted"),
        "drifted_columns": len(result.get("drifted_columns") or []),
        "prediction_drift.score": prediction.get("score"),
        "prediction_drift.drifted": prediction.get("drifted"),
        "performance.degraded": perf.get("degraded"),
        "current_rows": result.get("current_rows"),
    }
    for group in ("current", "estimated", "reference"):
        for name, value in (perf.get(group) or {}).items():
            values[f"performance.{group}.{name}"] = value
    for name, column in (result.get("columns") or {}).items():
        values[f"column.{_metric_name(name)}.score"] = column.get("score")
        values[f"column.{_metric_name(name)}.drifted"] = column.get("drifted")
    metrics = {k: number for k, v in values.items() if (number := _number(v)) is not None}
    model = result.get("model") or {}
    tags = {
        "drift.status": str(result.get("status")),
        "drift.batch": str(result.get("batch")),
        "drift.model": str(model.get("version") or model.get("source") or ""),
        "drift.alerts": "; ".join(result.get("alerts") or [])[:8000],
        "drift.drifted_columns": ", ".join(result.get("drifted_columns") or [])[:8000],
    }
    return f"{result.get('created_at')} {result.get('batch')}", metrics, tags


def history_content(entry: dict[str, Any]) -> tuple[str, dict[str, float], dict[str, str]]:
    """(key, metrics, tags) of one check from reports/history/drift.jsonl (fewer details)."""
    result = {
        "created_at": entry.get("created_at"),
        "batch": entry.get("batch"),
        "status": entry.get("status"),
        "dataset_drift": entry.get("dataset_drift"),
        "share_drifted": entry.get("share_drifted"),
        "importance_drifted": entry.get("importance_drifted"),
        "drifted_columns": entry.get("drifted_columns"),
        "prediction_drift": {
            "score": entry.get("prediction_score"),
            "drifted": entry.get("prediction_drifted"),
        },
        "performance": {
            "degraded": entry.get("degraded"),
            "current": entry.get("performance"),
            "estimated": entry.get("estimated"),
        },
        "current_rows": entry.get("current_rows"),
        "model": {"version": entry.get("model")},
    }
    return drift_content(result)


# --- the stages' hooks and the commands ----------------------------------------------------------

REPORTS = layout.REPORTS
HISTORY_LOG = layout.DRIFT_LOG
CANDIDATE_DIR = layout.CANDIDATE


def candidate_artifacts() -> tuple[Path, ...]:
    return (*(REPORTS / name for name in PLOTS), layout.VALIDATION)


def prepare(config: Config) -> None:
    """Start importing mlflow (and skops, its model format) on another thread, so that the
    evaluate stage's scoring and plots hide most of it (mlops.imports)."""
    if not enabled(config) or tracking_uri() in _DOWN:
        return
    try:
        check_version()  # an mlflow outside the range is reported when used, not imported here
    except Unavailable:
        return
    threading.Thread(target=_warm, name="import mlflow", daemon=True).start()


def _warm() -> None:
    """Import mlflow, its sklearn flavour and skops (the model format), then let mlflow map every
    installed distribution to its modules (what it does the first time it checks a model's
    requirements, about a second in a large venv); in one thread, in this order: a second
    thread importing parts of mlflow at the same time can meet it half-initialised."""
    from mlops.imports import heavy_imports

    with contextlib.suppress(Exception), heavy_imports():
        for name in ("mlflow", "mlflow.models", "mlflow.sklearn", "skops.io"):
            importlib.import_module(name)
        importlib.import_module("mlflow.utils.requirements_utils")._init_packages_to_modules_map()


def log_candidate(config: Config, model: Any, metadata: dict, metrics: dict) -> None:
    """evaluate: the candidate's run with its params, metrics, plots, validation and model."""

    def action(client: MlflowClient) -> None:
        mirror = Mirror(client, config)
        mirror.candidate_run(
            candidate_item(metadata, metrics), model=model, artifacts=candidate_artifacts()
        )
        log.info("MLflow: candidate %s logged to %s", metadata["model_sha256"][:12], _where())

    guarded(config, "the candidate's run", action)


def mirror_registry(config: Config, what: str = "the registry") -> None:
    """promote, rollback: the gate's tags, the registered versions and the champion alias."""
    if enabled(config):
        guarded(config, what, lambda client: sync_into(client, config, drift=False))


def log_drift(config: Config, result: dict, prefix: Path) -> None:
    """drift: the check's run in <experiment>-monitoring with drift.{html,json,md}."""

    def action(client: MlflowClient) -> None:
        key, metrics, tags = drift_content(result)
        artifacts = tuple(prefix.with_suffix(s) for s in (".html", ".json", ".md"))
        mirror = _bare_mirror(client, config)
        mirror.monitoring_run(key, metrics, tags, artifacts)
        log.info("MLflow: drift check logged to %s", _where())

    guarded(config, "the drift check", action)


def _bare_mirror(client: MlflowClient, config: Config) -> Mirror:
    """A Mirror for monitoring runs only (no look-up of the candidates' runs)."""
    mirror = Mirror.__new__(Mirror)
    mirror.client, mirror.config, mirror.changes = client, config, 0
    return mirror


def _where() -> str:
    return shown(tracking_uri())


def sync_into(client: MlflowClient, config: Config, *, drift: bool = True) -> int:
    """Mirror models/runs.jsonl, models/registry.json (and the drift history) into the store;
    returns how many writes it made (0 when the mirror was complete)."""
    from mlops import model_file as model_files
    from mlops import registry, runlog
    from mlops.registry import METADATA_FILE

    mirror = Mirror(client, config)
    registry_data = registry.read_registry(registry.MODELS_DIR)
    candidate = CANDIDATE_DIR / METADATA_FILE
    candidate_sha = files.read_json(candidate).get("model_sha256") if candidate.is_file() else None
    metrics_file = layout.METRICS
    scored = files.read_json(metrics_file) if metrics_file.is_file() else {}
    by_sha = {entry["sha256"]: name for name, entry in registry_data["versions"].items()}
    latest: dict[str, dict[str, Any]] = {}  # a model gated twice: its run shows the last decision
    for item in runlog.read_runs(runlog.RUNS_FILE):
        latest[item["model_sha256"]] = item
    for sha, item in latest.items():
        model_file = None
        if sha in by_sha and registry_data["versions"][by_sha[sha]].get("local", True):
            entry = registry_data["versions"][by_sha[sha]]
            name = model_files.entry_file(entry, f"versions.{by_sha[sha]}")
            model_file = registry.MODELS_DIR / by_sha[sha] / name
        elif sha == candidate_sha:
            model_file = model_files.model_path(CANDIDATE_DIR)
        if model_file is not None and (
            not model_file.is_file() or files.sha256_file(model_file) != sha
        ):
            model_file = None  # never log a model other than the one the run names
        artifacts = candidate_artifacts() if scored.get("model_sha256") == sha else ()
        mirror.candidate_run(item, model_file=model_file, artifacts=artifacts)
    mirror.versions(registry_data, registry.MODELS_DIR)
    if drift:
        sync_drift(mirror)
    return mirror.changes


def read_history() -> list[dict[str, Any]]:
    """reports/history/drift.jsonl's entries (as mlops.drift.history reads them, without
    importing the drift stage)."""
    import json

    entries = []
    if HISTORY_LOG.is_file():
        for line in HISTORY_LOG.read_text(encoding="utf-8").splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
    return entries


def sync_drift(mirror: Mirror) -> None:
    latest_file = layout.DRIFT.with_suffix(".json")
    latest = files.read_json(latest_file) if latest_file.is_file() else None
    latest_key = drift_content(latest)[0] if latest else None
    for entry in read_history():
        key, metrics, tags = history_content(entry)
        if key == latest_key:
            continue
        mirror.monitoring_run(key, metrics, tags)
    if latest:
        key, metrics, tags = drift_content(latest)
        artifacts = tuple(REPORTS / f"drift{s}" for s in (".html", ".json", ".md"))
        mirror.monitoring_run(key, metrics, tags, artifacts)


def sync_command(config: Config) -> int:
    """CLI `mlflow-sync`: rebuild the mirror from the files; tracking off: the embedded store.
    Asked for explicitly, so a failure is exit 2."""
    uri = tracking_uri()
    try:
        client = connect(uri)
        changes = sync_into(client, config)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"MLflow at {shown(uri)}: {one_line(exc, uri)}") from None
    log.info(
        "MLflow at %s: %s",
        shown(uri),
        f"{changes} write(s) made" if changes else "already in sync, nothing written",
    )
    return changes


def ui_command(config: Config, host: str | None = None, port: int | None = None) -> None:
    """CLI `mlflow-ui`: sync into the embedded store under mlruns/, then serve MLflow's UI."""
    import subprocess
    import sys

    os.environ["MLFLOW_TRACKING_URI"] = EMBEDDED_URI
    sync_command(config)
    host, port = host or "127.0.0.1", port or 5000
    log.info("MLflow UI on http://%s:%d (Ctrl-C stops it)", host, port)
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        EMBEDDED_URI,
        "--default-artifact-root",
        (EMBEDDED_DIR / "artifacts").resolve().as_uri(),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # MLflow 3's server starts seven job-runner processes (GenAI jobs this project never queues)
    # unless told not to: about 10 s more to start and their memory, for nothing.
    env = {**os.environ}
    env.setdefault(JOBS_ENV, "false")
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run(command, check=False, env=env)
