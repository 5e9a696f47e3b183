from pathlib import Path

import pytest

from helpers import edit_params
from mlops.config import STAGE_SECTIONS, load_config, stage_params, write_stage_stamps
from mlops.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def test_repository_params_load():
    config = load_config(ROOT / "params.yaml")
    assert config.features[0] == "SCHL"
    assert config.features[-1] == "AGEP"
    assert config.schema.target == "employed"
    assert config.promotion.min_accuracy == pytest.approx(0.78)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p.update(extra=1), "params.yaml: extra: unknown key"),
        (lambda p: p["train"].update(estimatr="x"), "train.estimatr: unknown key"),
        (lambda p: p.pop("promotion"), "promotion: missing section"),
        (lambda p: p["promotion"].pop("min_accuracy"), "promotion.min_accuracy: missing key"),
        (
            lambda p: p["promotion"].update(min_accuracy=1.5),
            "promotion.min_accuracy: Input should be",
        ),
        (lambda p: p["promotion"].update(max_regression=-0.1), "promotion.max_regression"),
        (lambda p: p.update(seed="42"), "seed: Input should be a valid integer"),
        (lambda p: p["train"].update(estimator="xgboost"), "train.estimator: Input should be"),
        (lambda p: p["drift"]["numeric"].update(method="magic"), "drift.numeric.method"),
        (lambda p: p["data"].update(test_size=1.0), "data.test_size"),
        (
            lambda p: p["schema"]["numeric"].update(AGEP={"min": 5, "max": 1}),
            "min 5.0 is above max",
        ),
        (lambda p: p["schema"]["numeric"].update(SEX={"min": 1, "max": 2}), "both numeric and"),
        (
            lambda p: p["train"]["hyperparameters"]["random_forest"].update(depth=3),
            "hyperparameters.random_forest.depth: not a parameter of RandomForestClassifier",
        ),
        (lambda p: p["train"].update(search={"max_iter": [10]}), "search needs cv_folds"),
        (lambda p: p["train"].update(cv_folds=1), "cv_folds must be 0"),
        (
            lambda p: p["drift"].update(columns={"nope": {"method": "psi", "threshold": 0.1}}),
            "nope",
        ),
        (lambda p: p["schema"].update(labels=[True, 1]), "labels: booleans and numbers mixed"),
        (lambda p: p["schema"].update(labels=["yes", "yes"]), "labels: 'yes' listed twice"),
        (lambda p: p["schema"].update(labels=[0]), "schema.labels: List should have at least 2"),
        (lambda p: p["schema"].update(positive=2), "schema: positive: 2 is not one of labels"),
        (lambda p: p["schema"].update(positive="1"), "positive: '1' is not one of labels"),
        (
            lambda p: p["schema"].update(labels=["a", "b", "c"], positive="a"),
            "positive: only for two labels",
        ),
        (
            lambda p: p["schema"]["categorical"].update(SEX=[1, 1.0]),
            "schema.categorical.SEX: values: 1 listed twice",
        ),
        (
            lambda p: p["schema"]["categorical"].update(SEX={"values": [1, 2], "max_missing": 2}),
            "schema.categorical.SEX.max_missing: Input should be less than or equal to 1",
        ),
        (
            lambda p: p["schema"]["categorical"].update(SEX={"codes": [1, 2]}),
            "schema.categorical.SEX.values: missing key",
        ),
        (lambda p: p["data"].update(time_column=None, period="month"), "period: needs a time"),
        (lambda p: p["data"].update(period="decade"), "data.period: Input should be"),
    ],
)
def test_bad_params_name_the_key(tmp_path, edit, message):
    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text())
    edit_params(path, edit)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(".", r"\.")) as info:
        load_config(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [("seed: [1", "not valid YAML"), ("- 1\n- 2\n", "mapping of sections"), (None, "not found")],
)
def test_unreadable_params(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(InputError, match=message):
        load_config(path)


def test_params_that_are_no_text_file_are_one_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes(b"seed: 42\ndata:\n  source: r\xe9w\n")
    with pytest.raises(InputError, match=r"params.yaml: not UTF-8 text \(byte 0xe9 at offset 26\)"):
        load_config(path)
    with pytest.raises(InputError, match="is a folder; name the params file itself"):
        load_config(tmp_path)


def test_a_key_written_twice_is_refused_naming_both_lines(tmp_path):
    path = tmp_path / "params.yaml"
    text = (ROOT / "params.yaml").read_text(encoding="utf-8")
    path.write_text(text.replace("seed: 42\n", "seed: 42\nseed: 7\n", 1))
    line = text.splitlines().index("seed: 42") + 1
    with pytest.raises(InputError) as info:
        load_config(path)
    message = str(info.value)
    assert f"key 'seed' on line {line + 1} is already on line {line}" in message
    assert "\n" not in message
    # The same key in two different sections is no duplicate.
    assert load_config(ROOT / "params.yaml").drift.min_rows == 200


def test_stage_stamps_change_only_with_their_sections(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text())
    stamps = tmp_path / "stamps"
    assert write_stage_stamps(load_config(path), stamps) == list(STAGE_SECTIONS)
    assert write_stage_stamps(load_config(path), stamps) == []
    edit_params(path, lambda p: p["evaluate"].update(importance_repeats=3))
    assert write_stage_stamps(load_config(path), stamps) == ["evaluate"]
    edit_params(path, lambda p: p.update(seed=7))
    changed = write_stage_stamps(load_config(path), stamps)
    assert changed == [stage for stage, sections in STAGE_SECTIONS.items() if "seed" in sections]


def test_synthetic_source_generates_feature_names(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text())
    edit_params(path, lambda p: p["data"].update(source="synthetic"))
    config = load_config(path)
    assert config.features[:2] == ["cat_0", "cat_1"]
    assert len(config.features) == config.synthetic.numeric + config.synthetic.categorical
    assert '"seed"' in stage_params(config, "data")


def test_drift_policy_per_column_override_else_type_default(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text())
    override = {"method": "ks", "threshold": 0.01}
    edit_params(path, lambda p: p["drift"].update(columns={"AGEP": override}))
    config = load_config(path)
    assert config.drift_policy("AGEP").model_dump() == override
    assert config.drift_policy("SCHL") == config.drift.categorical
    numeric = [name for name in config.numeric if name != "AGEP"]
    assert all(config.drift_policy(name) == config.drift.numeric for name in numeric)


def test_typed_schema_values_load_as_written(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text())

    def typed(params):
        params["schema"].update(labels=["<=50K", ">50K"], positive=">50K")
        params["schema"]["categorical"].update(
            SEX={"values": ["Male", "Female"], "max_missing": 0.05}, DIS=[True, False], MAR=[1.0, 2]
        )
        params["data"].update(time_column=None)

    edit_params(path, typed)
    config = load_config(path)
    assert config.schema.labels == ["<=50K", ">50K"]
    assert config.schema.positive == ">50K"
    assert config.categorical["SEX"] == ["Male", "Female"]
    assert config.categorical["DIS"] == [True, False]
    assert config.categorical["MAR"] == [1, 2]  # floats equal to integers are integers
    assert type(config.categorical["MAR"][0]) is int
    assert config.max_missing("SEX") == 0.05
    assert config.max_missing("DIS") == config.schema.max_missing == 0.0
    assert config.data.time_column is None
    assert not config.multiclass
