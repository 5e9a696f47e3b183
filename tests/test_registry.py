"""The registry: verified loads, rollback (default and VERSION=vN), listing, consistency."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from candidates import BETTER, CLOSE, add_candidate, snapshot, train_candidate
from helpers import run_cli
from mlops import files, promote, registry, train
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
    x = test.head(200)  # the model file takes raw rows
    assert np.array_equal(model.predict_proba(x), candidate.predict_proba(x))
    assert metadata["version"] == "v1"
    assert metadata["features"] == config.features


def test_tampered_model_is_refused_before_unpickling(project, config, tmp_path):
    promote.run(config)
    marker = tmp_path / "unpickled"
    Path("models/v1/model.skops").write_bytes(pickle.dumps(Explodes(marker)))
    with pytest.raises(InputError, match=r"models/v1/model\.skops: sha256 does not match"):
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
    Path("models/v1/model.skops").unlink()
    with pytest.raises(InputError, match=r"model\.skops: not found"):
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
    x = test.head(200)  # the model file takes raw rows
    assert np.array_equal(model.predict_proba(x), v1_model.predict_proba(x))
    last = registry.read_registry()["history"][-1]
    assert (last["event"], last["from"], last["to"]) == ("rolled_back", "v2", "v1")
    assert last["why"] == "bad predictions in production"
    assert last["who"]
    assert last["when"].endswith("+00:00")
    assert (project / "models/v2/model.skops").is_file()  # nothing is deleted


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
        add_candidate(expected_production="v1", why="a second gate with the same candidate")
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
    Path("models/v1/model.skops").write_bytes(b"tampered")
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


def history_of(*events: tuple, production: str | None, versions: str = "v1 v2 v3") -> dict:
    """A registry dict: (event, from, to[, mode]) tuples in order; every version local."""
    history = [
        {"event": kind, "from": source, "to": target, **({"mode": rest[0]} if rest else {})}
        for kind, source, target, *rest in events
    ]
    entries = {name: {"sha256": name} for name in versions.split()}
    return {"versions": entries, "history": history, "production": production}


PROMOTED_THREE = (("promoted", None, "v1"), ("promoted", "v1", "v2"), ("promoted", "v2", "v3"))


def test_production_stack_follows_promotions_and_both_kinds_of_rollback():
    data = history_of(*PROMOTED_THREE, production="v3")
    assert registry.production_stack(data) == ["v1", "v2", "v3"]
    back = history_of(*PROMOTED_THREE, ("rolled_back", "v3", "v2", "previous"), production="v2")
    assert registry.production_stack(back) == ["v1", "v2"]  # v3 is abandoned
    assert registry.previous_production(back) == "v1"
    jump = history_of(*PROMOTED_THREE, ("rolled_back", "v3", "v1", "explicit"), production="v1")
    assert registry.production_stack(jump) == ["v2", "v3", "v1"]  # v3 is kept to return to
    assert registry.previous_production(jump) == "v3"


def test_a_rollback_recorded_without_a_mode_is_a_default_rollback():
    """Registries written before VERSION=vN existed have no `mode`: each was a step back."""
    old = history_of(*PROMOTED_THREE, ("rolled_back", "v3", "v2"), production="v2")
    assert registry.production_stack(old) == ["v1", "v2"]


def test_only_production_changes_move_the_stack():
    """An event the registry does not know (a hand-written note) leaves the order alone."""
    noted = history_of(*PROMOTED_THREE, ("noted", "v3", "v1"), production="v3")
    assert registry.production_stack(noted) == ["v1", "v2", "v3"]
    unnamed = history_of(*PROMOTED_THREE, ("promoted", "v3", None), production="v3")
    assert registry.production_stack(unnamed) == ["v1", "v2", "v3"]


def test_production_missing_from_the_history_is_still_on_top():
    assert registry.production_stack(history_of(production=None)) == []
    assert registry.production_stack(history_of(production="v2")) == ["v2"]
    edited = history_of(*PROMOTED_THREE, production="v1")  # registry.json edited by hand
    assert registry.production_stack(edited) == ["v2", "v3", "v1"]
    assert registry.previous_production(edited) == "v3"
    assert registry.previous_production(history_of(production="v2")) is None


def test_previous_production_skips_versions_only_in_a_release():
    data = history_of(*PROMOTED_THREE, production="v3")  # entries without `local`: local
    assert registry.previous_production(data) == "v2"
    data["versions"]["v2"]["local"] = False
    assert registry.previous_production(data) == "v1"
    data["versions"]["v1"]["local"] = False
    assert registry.previous_production(data) is None


def test_find_by_sha_and_next_version_read_the_whole_registry():
    data = history_of(*PROMOTED_THREE, production="v3")
    assert registry.find_by_sha(data, "v2") == "v2"
    assert registry.find_by_sha(data, "unknown") is None
    data["history"].append({"event": "rolled_back", "from": "v8", "to": "v3"})  # v8 deleted
    assert registry.next_version(data) == "v9"
    data["history"].append({"event": "imported", "from": None, "to": "candidate"})
    assert registry.next_version(data) == "v9"


def test_verified_model_file_names_what_is_wrong():
    data = {"versions": {"v2": {"sha256": "x"}, "v10": {"sha256": "y"}}, "history": []}
    with pytest.raises(
        InputError, match=r"^version 'v7' is not in the registry \(known: v2, v10\)$"
    ):
        registry.verified_model_file(Path("models"), "v7", data)
    with pytest.raises(InputError, match=r"\(known: none\)$"):
        registry.verified_model_file(Path("models"), "v7", registry.empty_registry())


def plain_model(path: Path, content: bytes) -> dict:
    """A stand-in model file (the registry never unpickles on add or rollback) and its metadata."""
    path.write_bytes(content)
    return {"model_sha256": files.sha256_file(path), "estimator": "stand-in"}


def add(models: Path, model: Path, expected: str | None, kind: str = "promoted", why: str = ""):
    """registry.add_version of a stand-in model file."""
    metadata = {"model_sha256": files.sha256_file(model), "estimator": "stand-in"}
    return registry.add_version(
        models, model, metadata, expected_production=expected, kind=kind, why=why
    )


def test_add_version_and_rollback_on_plain_files(tmp_path, caplog):
    """The registry's own steps, word for word, on a models dir of stand-in files."""
    caplog.set_level("INFO", logger="mlops.registry")
    models = tmp_path / "models"
    first, second = tmp_path / "a.joblib", tmp_path / "b.joblib"
    first.write_bytes(b"model a")
    second.write_bytes(b"model b")
    assert add(models, first, None, why="w1") == "v1"
    sha = files.sha256_file(first)[:12]
    assert f"promoted v1 → production (sha256 {sha})" in caplog.messages
    (models / ".stage-v9-x").mkdir()  # a killed promotion's leftover
    with pytest.raises(InputError, match="this model is already version v1"):
        add(models, first, "v1")
    with pytest.raises(InputError) as stale:
        add(models, second, None)
    assert str(stale.value) == (
        f"{models / 'registry.json'}: production changed to v1 while the gate ran; run it again"
    )
    assert add(models, second, "v1", kind="forced", why="w2") == "v2"
    assert not (models / ".stage-v9-x").exists()
    data = registry.read_registry(models)
    assert data["production"] == "v2"
    assert data["versions"]["v2"]["sha256"] == files.sha256_file(second)
    assert [(e["event"], e["from"], e["to"], e["why"]) for e in data["history"]] == [
        ("promoted", None, "v1", "w1"),
        ("forced", "v1", "v2", "w2"),
    ]
    assert (models / "v2" / "model.joblib").read_bytes() == b"model b"
    stamped = json.loads((models / "v2" / "metadata.json").read_text())
    assert (stamped["version"], stamped["estimator"]) == ("v2", "stand-in")
    assert stamped["promoted_at"]
    assert stamped["promoted_by"]

    assert registry.rollback(models) == "v1"
    assert "rolled back: production v2 → v1" in caplog.messages
    assert registry.rollback(models, version="v2", reason="v1 misbehaves") == "v2"
    assert registry.rollback(models, version="v2") == "v2"
    assert "v2 is already production; nothing to do" in caplog.messages
    history = registry.read_registry(models)["history"]
    assert [(e["event"], e["from"], e["to"], e["why"], e.get("mode")) for e in history[2:]] == [
        ("rolled_back", "v2", "v1", "rollback requested (no reason given)", "previous"),
        ("rolled_back", "v1", "v2", "v1 misbehaves", "explicit"),
    ]


def test_rollback_refusals_name_the_problem(tmp_path):
    models, model = tmp_path / "models", tmp_path / "a.joblib"
    with pytest.raises(InputError) as empty:
        registry.rollback(models)
    assert str(empty.value) == (
        "no earlier production version to roll back to (no production model yet)"
    )
    model.write_bytes(b"model a")
    add(models, model, None)
    with pytest.raises(InputError) as alone:
        registry.rollback(models)
    assert str(alone.value) == "no earlier production version to roll back to (production is v1)"
    data = registry.read_registry(models)
    data["versions"]["v1"]["local"] = False
    with pytest.raises(InputError) as remote:
        registry.verified_model_file(models, "v1", data)
    assert str(remote.value) == (
        "v1: its files are not here, only its summary (published as release model-v1: "
        "download it and `make release-import DIR=...`)"
    )
    model_file, listing = models / "v1" / "model.joblib", models / "registry.json"
    model_file.write_bytes(b"tampered")
    with pytest.raises(InputError) as tampered:
        registry.rollback(models, version="v1")
    assert str(tampered.value) == f"{model_file}: sha256 does not match {listing}; refusing to load"
    model_file.unlink()
    with pytest.raises(InputError) as missing:
        registry.rollback(models, version="v1")
    assert str(missing.value) == (
        f"{model_file}: not found, but {listing} lists it; registry files are history and never "
        "re-made: restore it (make release-import DIR=... with its release) or make rollback "
        "VERSION=..."
    )


def make_legacy(version: str = "v1") -> None:
    """Turn a skops version back into what versions saved before skops were: a model.joblib
    named by neither metadata.json nor registry.json (no model_file)."""
    import joblib

    folder = Path("models") / version
    model, _ = registry.load_version(Path("models"), version)
    joblib.dump(model, folder / "model.joblib")
    (folder / "model.skops").unlink()
    sha = files.sha256_file(folder / "model.joblib")
    metadata = files.read_json(folder / "metadata.json")
    metadata.pop("model_file")
    files.write_json(folder / "metadata.json", {**metadata, "model_sha256": sha})
    data = registry.read_registry()
    entry = data["versions"][version]
    entry.pop("model_file")
    data["versions"][version] = {**entry, "sha256": sha}
    registry.write_registry(Path("models"), data)


def test_models_upgrade_converts_legacy_versions_to_skops(project, config, capsys):
    promote.run(config)
    make_legacy()
    model, metadata = registry.load_production()  # a legacy pickle: still readable
    legacy_sha = metadata["model_sha256"]
    assert run_cli(capsys, "models-upgrade")[0] == 0
    assert capsys.readouterr().out == ""  # run_cli took stderr; stdout went with it
    assert registry.upgrade_models() == []
    folder = project / "models/v1"
    assert not (folder / "model.joblib").exists()
    entry = registry.read_registry()["versions"]["v1"]
    assert entry["model_file"] == "model.skops"
    assert entry["legacy_sha256"] == legacy_sha
    assert entry["sha256"] == files.sha256_file(folder / "model.skops")
    assert files.read_json(folder / "metadata.json")["model_sha256"] == entry["sha256"]
    assert registry.consistency_problems() == []
    upgraded, metadata = registry.load_production()
    assert metadata["version"] == "v1"
    rows = files.read_parquet(config.data.processed_dir / "test.parquet")[config.features]
    np.testing.assert_array_equal(upgraded.predict_proba(rows), model.predict_proba(rows))


def test_models_upgrade_refuses_a_tampered_legacy_pickle(project, config, tmp_path):
    promote.run(config)
    make_legacy()
    marker = tmp_path / "unpickled"
    Path("models/v1/model.joblib").write_bytes(pickle.dumps(Explodes(marker)))
    before = Path("models/registry.json").read_bytes()
    with pytest.raises(InputError, match=r"model\.joblib: sha256 does not match"):
        registry.upgrade_models()
    assert not marker.exists()
    assert Path("models/registry.json").read_bytes() == before
    assert not Path("models/v1/model.skops").exists()
