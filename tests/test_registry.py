"""The registry: verified loads, rollback (default and VERSION=vN), listing, consistency."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from candidates import BETTER, CLOSE, snapshot, train_candidate
from helpers import run_cli
from mlops import files, promote, registry, train
from mlops.encoding import feature_matrix
from mlops.errors import InputError


class Explodes:
    """A pickle that creates a file when unpickled: proof that loading happens only after the
    sha256 check."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def promote_three(config) -> None:
    """v1 (default model), v2 and v3 (other real models), each promoted in turn."""
    promote.run(config)
    train_candidate(config, **BETTER)
    promote.run(config)
    train_candidate(config, **CLOSE)
    promote.run(config)


def test_no_registry_means_no_production(tmp_path):
    assert registry.production_version(tmp_path) is None
    assert registry.load_production(tmp_path) is None
    assert registry.consistency_problems(tmp_path) == []


def test_load_production_returns_the_promoted_model(project, config):
    promote.run(config)
    model, metadata = registry.load_production()
    candidate, _ = train.load_candidate()
    test = files.read_parquet(config.data.processed_dir / "test.parquet")
    x = feature_matrix(test.head(200), config.features, config.categorical)
    assert np.array_equal(model.predict_proba(x), candidate.predict_proba(x))
    assert metadata["version"] == "v1"
    assert metadata["features"] == config.features


def test_tampered_model_is_refused_before_unpickling(project, config, tmp_path):
    promote.run(config)
    marker = tmp_path / "unpickled"
    Path("models/v1/model.joblib").write_bytes(pickle.dumps(Explodes(marker)))
    with pytest.raises(InputError, match=r"models/v1/model\.joblib: sha256 does not match"):
        registry.load_production()
    assert not marker.exists()
    assert registry.consistency_problems() != []


def test_metadata_disagreeing_with_registry_is_refused(project, config):
    promote.run(config)
    path = Path("models/v1/metadata.json")
    path.write_text(json.dumps({**json.loads(path.read_text()), "model_sha256": "0" * 64}))
    with pytest.raises(InputError, match=r"metadata\.json: model_sha256 does not match"):
        registry.load_production()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "unreadable JSON"),
        ("[]", "expected a JSON object"),
        ('{"production": null, "history": []}', "`versions` missing"),
        ('{"production": "v1", "versions": {}, "history": []}', "production 'v1' is not among"),
        ('{"versions": {"x1": {"sha256": "0"}}, "history": []}', "versions.x1"),
    ],
)
def test_malformed_registry_is_input_error(tmp_path, content, message):
    (tmp_path / "registry.json").write_text(content)
    with pytest.raises(InputError, match=message):
        registry.production_version(tmp_path)


def test_missing_model_file_is_input_error(project, config):
    promote.run(config)
    Path("models/v1/model.joblib").unlink()
    with pytest.raises(InputError, match=r"model\.joblib: not found"):
        registry.load_production()


def test_rollback_restores_byte_identical_files_and_is_recorded(project, config):
    promote.run(config)
    v1_files = snapshot(project / "models/v1")
    v1_model, _ = registry.load_production()
    train_candidate(config, **BETTER)
    promote.run(config)
    assert registry.production_version() == "v2"
    assert registry.rollback(reason="bad predictions in production") == "v1"
    assert registry.production_version() == "v1"
    assert snapshot(project / "models/v1") == v1_files
    model, metadata = registry.load_production()
    assert metadata["version"] == "v1"
    test = files.read_parquet(config.data.processed_dir / "test.parquet")
    x = feature_matrix(test.head(200), config.features, config.categorical)
    assert np.array_equal(model.predict_proba(x), v1_model.predict_proba(x))
    last = registry.read_registry()["history"][-1]
    assert (last["event"], last["from"], last["to"]) == ("rolled_back", "v2", "v1")
    assert last["why"] == "bad predictions in production"
    assert last["who"]
    assert last["when"].endswith("+00:00")
    assert (project / "models/v2/model.joblib").is_file()  # nothing is deleted


def test_rollback_walks_back_through_production_history(project, config):
    promote_three(config)
    assert registry.rollback() == "v2"
    assert registry.rollback() == "v1"
    with pytest.raises(InputError, match="no earlier production version"):
        registry.rollback()


def test_rollback_skips_a_version_whose_files_are_only_in_a_release(project, config):
    promote_three(config)
    data = registry.read_registry()
    data["versions"]["v2"]["local"] = False  # as after importing v3 from its release alone
    del data["versions"]["v1"]["local"]  # written before releases existed: local
    registry.write_registry(Path("models"), data)
    assert registry.previous_production(data) == "v1"
    assert registry.rollback() == "v1"
    with pytest.raises(InputError, match="only its summary"):
        registry.rollback(version="v2")


def test_a_model_already_in_the_registry_is_never_added_twice(project, config):
    """Checked again under the lock: another gate may have promoted the same model meanwhile."""
    promote.run(config)
    before = snapshot(project / "models")
    with pytest.raises(InputError, match="this model is already version v1"):
        registry.add_version(
            Path("models"),
            Path("models/candidate/model.joblib"),
            json.loads(Path("models/candidate/metadata.json").read_text()),
            expected_production="v1",
            kind="promoted",
            why="a second gate with the same candidate",
        )
    assert snapshot(project / "models") == before


def test_rollback_to_a_named_version(project, config):
    promote_three(config)
    assert registry.rollback(version="v1") == "v1"
    last = registry.read_registry()["history"][-1]
    assert (last["from"], last["to"], last["mode"]) == ("v3", "v1", "explicit")
    assert registry.rollback() == "v3"  # the previous production: undoes the explicit switch
    assert registry.rollback(version="v3") == "v3"  # already production: nothing to do


def test_rollback_refusals(project, config):
    with pytest.raises(InputError, match="no production model yet"):
        registry.rollback()
    promote.run(config)
    with pytest.raises(InputError, match="not a version name"):
        registry.rollback(version="latest")
    with pytest.raises(InputError, match=r"'v7' is not in the registry \(known: v1\)"):
        registry.rollback(version="v7")
    train_candidate(config, **BETTER)
    promote.run(config)
    Path("models/v1/model.joblib").write_bytes(b"tampered")
    before = snapshot(project / "models")
    with pytest.raises(InputError, match="sha256 does not match"):
        registry.rollback()
    assert snapshot(project / "models") == before


def test_rollback_cli(project, config, capsys):
    promote.run(config)
    train_candidate(config, **BETTER)
    promote.run(config)
    code, err = run_cli(capsys, "rollback", "--version", "v9")
    assert code == 2
    assert "'v9' is not in the registry" in err
    code, err = run_cli(capsys, "rollback", "--reason", "incident 7")
    assert code == 0
    assert "rolled back: production v2 → v1" in err
    code, err = run_cli(capsys, "rollback", "--version", "v1")
    assert code == 0
    assert "already production" in err


def test_models_lists_versions_metrics_and_production(project, config, capsys):
    registry.list_command(config)
    assert "no model versions yet" in capsys.readouterr().out
    promote.run(config)
    train_candidate(config, **BETTER)
    promote.run(config)
    registry.rollback(reason="testing the list")
    capsys.readouterr()
    registry.list_command(config)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["version", "accuracy", "roc_auc"]
    assert lines[1].split()[0] == "v2"
    assert lines[2].split()[:2] == ["*", "v1"]
    assert "* production: v1" in out
    assert "rolled_back v2 → v1" in out
    assert "testing the list" in out


def test_next_version_never_reuses_a_number():
    data = registry.empty_registry()
    assert registry.next_version(data) == "v1"
    data["history"].append({"event": "promoted", "from": "v4", "to": "v5"})
    assert registry.next_version(data) == "v6"
    data["versions"]["v9"] = {"sha256": "x"}
    assert registry.next_version(data) == "v10"


def test_written_registry_is_consistent_or_refused(tmp_path):
    with pytest.raises(ValueError, match="inconsistent registry"):
        registry.write_registry(tmp_path, {"production": "v1", "versions": {}, "history": []})
    assert not (tmp_path / "registry.json").exists()


def test_who_prefers_github_actor(monkeypatch):
    monkeypatch.setenv("GITHUB_ACTOR", "octocat")
    assert registry.who() == "octocat"
    monkeypatch.delenv("GITHUB_ACTOR")
    monkeypatch.setenv("PATH", "")  # no git: fall back to $USER
    monkeypatch.setenv("USER", "someone")
    assert registry.who() == "someone"
