"""The one typed config: params.yaml loaded and validated, every error naming its key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from mlops.errors import InputError
from mlops.estimators import Estimator, class_name, unknown_parameters

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(ge=1)]
# A category or label as it appears in the data file: a string, an integer or a boolean (floats
# equal to integers are taken as integers: 1.0 in a CSV column with a missing value is the label 1).
Scalar = bool | int | float | str
Period = Literal["year", "quarter", "month", "week", "day"]
StatTest = Literal[
    "psi", "jensenshannon", "wasserstein", "hellinger", "kl_div", "ks", "chisquare", "z", "g_test"
]
# Evidently's stat tests that take one column type only; the rest take both.
NUMERIC_ONLY = frozenset({"wasserstein", "ks"})
CATEGORICAL_ONLY = frozenset({"chisquare", "z", "g_test"})
# Tests whose score is a p-value (drift at or below the threshold); the rest are distances.
P_VALUE_TESTS = frozenset({"ks", "chisquare", "z", "g_test"})


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DataConfig(Section):
    source: Literal["raw", "synthetic"]
    raw_dir: Path = Path("data/raw")
    processed_dir: Path = Path("data/processed")
    time_column: str | None = "year"  # None: each raw file is one period, in file-name order
    period: Period | None = None  # how dates or timestamps in time_column group into periods
    current: Literal["latest"] | int | str = "latest"
    train_periods: Literal["earlier"] | list[int | str] = "earlier"
    test_size: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    @model_validator(mode="after")
    def _period_needs_time(self) -> DataConfig:
        if self.period is not None and self.time_column is None:
            raise ValueError("period: needs a time_column (with none, each file is one period)")
        return self


class SyntheticConfig(Section):
    rows: Annotated[int, Field(ge=100)] = 20_000
    current_rows: Annotated[int, Field(ge=100)] = 5_000
    numeric: PositiveInt = 15
    categorical: Annotated[int, Field(ge=0)] = 5
    categories: Annotated[int, Field(ge=2, le=200)] = 8
    shifted_columns: Annotated[int, Field(ge=0)] = 3
    shift: Annotated[float, Field(ge=0.0)] = 0.5


def plain(value: Scalar) -> Scalar:
    """A float equal to an integer as that integer (CSV columns with gaps read as floats)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def check_values(values: list[Scalar], what: str) -> list[Scalar]:
    """Distinct values of one kind: booleans do not mix with numbers (True == 1 in Python)."""
    values = [plain(value) for value in values]
    kinds = {"bool" if isinstance(v, bool) else type(v).__name__ for v in values}
    kinds = {"number" if kind in ("int", "float") else kind for kind in kinds}
    if "bool" in kinds and "number" in kinds:
        raise ValueError(f"{what}: booleans and numbers mixed; quote them or use one kind")
    seen: set = set()
    for value in values:
        if (type(value), value) in seen:
            raise ValueError(f"{what}: {value!r} listed twice")
        seen.add((type(value), value))
    return values


class NumericRange(Section):
    min: float
    max: float
    max_missing: Fraction | None = None  # this column's own limit (default: schema.max_missing)

    @model_validator(mode="after")
    def _ordered(self) -> NumericRange:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class CategoricalColumn(Section):
    """A categorical feature's allowed values and, optionally, its own missing-value limit."""

    values: Annotated[list[Scalar], Field(min_length=1)]
    max_missing: Fraction | None = None

    @model_validator(mode="after")
    def _distinct(self) -> CategoricalColumn:
        object.__setattr__(self, "values", check_values(self.values, "values"))
        return self


def _as_column(spec: Any) -> Any:
    return {"values": spec} if isinstance(spec, list) else spec


class SchemaConfig(Section):
    target: str
    labels: Annotated[list[Scalar], Field(min_length=2)]  # as in the file; 3 or more: multiclass
    positive: Scalar | None = None  # binary only; None: the minority class of the train split
    numeric: dict[str, NumericRange] = {}
    # A plain list of values is short for {values: [...]} (the column takes schema.max_missing).
    categorical: dict[str, Annotated[CategoricalColumn, BeforeValidator(_as_column)]] = {}
    min_rows: PositiveInt = 100
    max_missing: Fraction = 0.0
    max_duplicate_share: Fraction = 0.3
    min_label_share: Annotated[float, Field(ge=0.0, le=0.5)] = 0.05

    @model_validator(mode="after")
    def _typed(self) -> SchemaConfig:
        object.__setattr__(self, "labels", check_values(self.labels, "labels"))
        if self.positive is not None:
            positive = plain(self.positive)
            if len(self.labels) > 2:
                raise ValueError("positive: only for two labels (multiclass metrics are macro)")
            if not any(type(positive) is type(v) and positive == v for v in self.labels):
                raise ValueError(f"positive: {positive!r} is not one of labels {self.labels}")
            object.__setattr__(self, "positive", positive)
        return self

    @model_validator(mode="after")
    def _disjoint(self) -> SchemaConfig:
        both = sorted(set(self.numeric) & set(self.categorical))
        if both:
            raise ValueError(f"column(s) declared both numeric and categorical: {both}")
        if self.target in self.numeric or self.target in self.categorical:
            raise ValueError(f"target {self.target!r} is also declared as a feature")
        return self


class TrainConfig(Section):
    estimator: Estimator
    hyperparameters: dict[Estimator, dict[str, Any]] = {}
    cv_folds: Annotated[int, Field(ge=0, le=20)] = 0
    search: dict[str, Annotated[list[Any], Field(min_length=1)]] = {}
    native_categorical: bool = False

    @model_validator(mode="after")
    def _known_parameters(self) -> TrainConfig:
        for name, params in self.hyperparameters.items():
            _check_parameters(name, params, f"hyperparameters.{name}")
        _check_parameters(self.estimator, self.search, "search")
        if self.cv_folds == 1:
            raise ValueError("cv_folds must be 0 (off) or at least 2")
        if self.search and self.cv_folds < 2:
            raise ValueError("search needs cv_folds of at least 2")
        return self


def _check_parameters(estimator: str, params: dict[str, Any], where: str) -> None:
    for key in unknown_parameters(estimator, params):
        raise ValueError(f"{where}.{key}: not a parameter of {class_name(estimator)}")


class EvaluateConfig(Section):
    importance_repeats: PositiveInt = 5
    importance_rows: PositiveInt = 2_000


class PromotionConfig(Section):
    min_accuracy: Fraction
    max_regression: Fraction
    min_roc_auc: Fraction | None = None
    min_recall: Fraction | None = None


ColumnKind = Literal["numeric", "categorical"]


class ColumnPolicy(Section):
    """One Evidently stat test and its threshold (a p-value for ks/chisquare/z/g_test)."""

    method: StatTest
    threshold: Annotated[float, Field(gt=0.0)]

    @model_validator(mode="after")
    def _p_value_below_one(self) -> ColumnPolicy:
        if self.method in P_VALUE_TESTS and self.threshold >= 1:
            raise ValueError(f"{self.method} returns a p-value: threshold must be below 1")
        return self

    def check_kind(self, kind: ColumnKind, where: str) -> None:
        wrong = CATEGORICAL_ONLY if kind == "numeric" else NUMERIC_ONLY
        if self.method in wrong:
            raise ValueError(f"{where}: {self.method} does not apply to {kind} columns")


class DriftConfig(Section):
    reference: Literal["train", "test"] = "train"
    fail_on_drift: bool = True
    numeric: ColumnPolicy
    categorical: ColumnPolicy
    columns: dict[str, ColumnPolicy] = {}
    drift_share: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    # Alert when the drifted columns carry at least this share of the model's importance.
    importance_share: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    # Chunks of a batch judged one by one (by period when it holds several, else equal row ranges).
    chunks: Annotated[int, Field(ge=1, le=100)] = 4
    prediction: ColumnPolicy
    performance_tolerance: Fraction = 0.0  # added to every alert margin (mlops.drift.performance)
    sample_size: Annotated[int, Field(ge=1_000)] = 30_000
    min_rows: Annotated[int, Field(ge=50)] = 200
    history_snapshots: Annotated[int, Field(ge=0)] = 100
    # The batch is read in chunks of this many rows; `dask` runs one task per file on a cluster.
    chunk_rows: Annotated[int, Field(ge=1_000, le=10_000_000)] = 200_000
    engine: Literal["local", "dask"] = "local"
    # auto: production's model.onnx with ONNX Runtime when it has one (parity-checked at promotion)
    runtime: Literal["auto", "onnx", "sklearn"] = "auto"

    @model_validator(mode="after")
    def _kinds(self) -> DriftConfig:
        self.numeric.check_kind("numeric", "numeric")
        self.categorical.check_kind("categorical", "categorical")
        self.prediction.check_kind("numeric", "prediction (a probability)")
        return self


class ScoreConfig(Section):
    """`make score`: batch predictions of the production model."""

    id_columns: list[str] = []  # copied beside each prediction and rejected row
    chunk_rows: Annotated[int, Field(ge=1_000, le=10_000_000)] = 100_000
    engine: Literal["local", "dask"] = "local"  # dask: a task per file on a Dask cluster
    # auto: production's model.onnx with ONNX Runtime when it has one, else scikit-learn
    runtime: Literal["auto", "onnx", "sklearn"] = "auto"


class InferenceLogConfig(Section):
    """`serve.inference_log`: every scored row and its answer, as Parquet (serve/inference_log)."""

    enabled: bool = False
    dir: str = "logs/inference"  # a folder, or a URL such as s3://bucket/prefix
    flush_rows: Annotated[int, Field(ge=1, le=10_000_000)] = 10_000
    flush_seconds: Annotated[float, Field(gt=0.0, le=86_400.0)] = 60.0
    queue_rows: Annotated[int, Field(ge=1, le=100_000_000)] = 200_000

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class AuthConfig(Section):
    """`serve.auth`: bearer tokens for every route but /health and /ready (serve/guard.py)."""

    tokens_file: str | None = None  # one token a line (# comments); $MLOPS_API_TOKENS_FILE too
    tokens_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = "MLOPS_API_TOKENS"
    none: bool = False  # on purpose: no tokens even when bound beyond loopback


class ServeConfig(Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65_535)] = 8000
    max_batch: Annotated[int, Field(ge=1, le=100_000)] = 1_000
    # The model's name in the Open Inference Protocol routes: /v2/models/{model_name}/infer.
    model_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")] = "mlops"
    inference_log: InferenceLogConfig = InferenceLogConfig()
    # Which file answers: auto = models/vN/model.onnx with ONNX Runtime when the version has one,
    # else its model file with scikit-learn; onnx or sklearn insist on one (mlops.serve.onnx_model).
    runtime: Literal["auto", "onnx", "sklearn"] = "auto"
    auth: AuthConfig = AuthConfig()
    docs: bool = True  # /docs (Swagger UI loads its scripts from a CDN); $MLOPS_DOCS=off too


class TrackingConfig(Section):
    """MLflow tracking (src/mlops/tracking.py): a mirror of the file registry, never required."""

    mlflow: bool = False  # on: log to MLFLOW_TRACKING_URI, else to the embedded store in mlruns/
    required: bool = False  # a tracking failure is exit 2 instead of one warning line
    experiment: Annotated[str, Field(min_length=1, max_length=200)] = "mlops"
    registered_model: Annotated[str, Field(min_length=1, max_length=200)] = "mlops"


class Config(Section):
    """Everything params.yaml holds."""

    seed: Annotated[int, Field(ge=0)]
    data: DataConfig
    synthetic: SyntheticConfig
    schema_: SchemaConfig = Field(alias="schema")
    train: TrainConfig
    evaluate: EvaluateConfig
    promotion: PromotionConfig
    drift: DriftConfig
    score: ScoreConfig = ScoreConfig()
    serve: ServeConfig
    tracking: TrackingConfig = TrackingConfig()

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)

    @property
    def schema(self) -> SchemaConfig:  # type: ignore[override]
        return self.schema_

    @property
    def categorical(self) -> dict[str, list[Scalar]]:
        """Categorical features and their allowed values (generated names for synthetic data)."""
        if self.data.source == "synthetic":
            codes: list[Scalar] = list(range(self.synthetic.categories))
            return {f"cat_{i}": codes for i in range(self.synthetic.categorical)}
        return {name: spec.values for name, spec in self.schema.categorical.items()}

    @property
    def numeric(self) -> dict[str, NumericRange]:
        """Numeric features and their allowed ranges (unbounded for synthetic data)."""
        if self.data.source == "synthetic":
            unbounded = NumericRange(min=-1e300, max=1e300)
            return {f"num_{i:02d}": unbounded for i in range(self.synthetic.numeric)}
        return dict(self.schema.numeric)

    @property
    def features(self) -> list[str]:
        """Model inputs in a fixed order: categorical first, then numeric."""
        return [*self.categorical, *self.numeric]

    @property
    def multiclass(self) -> bool:
        return len(self.schema.labels) > 2

    def max_missing(self, column: str) -> float:
        """The share of missing values allowed in one feature: its own limit, else the schema's."""
        spec = self.schema.numeric.get(column) or self.schema.categorical.get(column)
        own = getattr(spec, "max_missing", None)
        return self.schema.max_missing if own is None else own

    def drift_policy(self, column: str) -> ColumnPolicy:
        """One feature's stat test and threshold: its drift.columns override, else its type's."""
        if column in self.drift.columns:
            return self.drift.columns[column]
        return self.drift.numeric if column in self.numeric else self.drift.categorical

    @model_validator(mode="after")
    def _columns_declared(self) -> Config:
        if self.data.source == "raw" and not self.features:
            raise ValueError("schema: declare at least one numeric or categorical feature")
        unknown = sorted(set(self.drift.columns) - set(self.features))
        if self.data.source == "raw" and unknown:
            raise ValueError(f"drift.columns: not a feature: {', '.join(unknown)}")
        for name, policy in self.drift.columns.items():
            kind: ColumnKind = "categorical" if name in self.categorical else "numeric"
            policy.check_kind(kind, f"drift.columns.{name}")
        return self


# The params sections each stage reads: Make re-runs a stage only when one of them changes.
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "data": ("seed", "data", "synthetic", "schema"),
    "validate": ("schema",),
    "train": ("seed", "data", "schema", "train"),
    "evaluate": ("seed", "schema", "evaluate"),
    "promote": ("promotion",),
    "drift": ("seed", "schema", "drift"),
}


def _format(error: ValidationError, source: Path) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        message = "missing section" if len(first["loc"]) == 1 else "missing key"
    elif first["type"] == "extra_forbidden":
        message = "unknown key"
    elif "input" in first and not isinstance(first["input"], dict | list):
        message += f" (got {first['input']!r})"
    return f"{source}: {where}: {message}" if where else f"{source}: {message}"


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in first:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} on line {line} is already on line {first[key]}"
                )
            first[key] = line
        return super().construct_mapping(node, deep)


def load_config(path: Path | str = "params.yaml") -> Config:
    """Read and validate params.yaml; any problem is an InputError naming the key."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder; name the params file itself") from None
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
        ) from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping of sections at the top level")
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise InputError(_format(exc, path)) from None


def stage_params(config: Config, stage: str) -> str:
    """The canonical JSON of the sections one stage reads."""
    dumped = config.model_dump(mode="json", by_alias=True)
    return json.dumps({key: dumped[key] for key in STAGE_SECTIONS[stage]}, sort_keys=True)


def write_stage_stamps(config: Config, directory: Path) -> list[str]:
    """Rewrite each stage's params stamp only when its sections changed; return those stages."""
    from mlops.files import write_text

    changed = []
    for stage in STAGE_SECTIONS:
        stamp = directory / f"{stage}.json"
        content = stage_params(config, stage) + "\n"
        if not stamp.is_file() or stamp.read_text(encoding="utf-8") != content:
            write_text(stamp, content)
            changed.append(stage)
    return changed


def stamps_command(config: Config, directory: Path) -> None:
    """CLI: refresh the per-stage params stamps Make depends on."""
    write_stage_stamps(config, directory)
