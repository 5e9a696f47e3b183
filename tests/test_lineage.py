"""make schema on other columns: the old registry archived whole, a new lineage from v1."""

from __future__ import annotations

import logging
import shutil

from helpers import edit_params
from mlops import lineage, registry
from mlops.config import load_config


def test_the_same_columns_keep_the_registry(promoted_dir, tmp_path, monkeypatch):
    root = tmp_path / "p"
    shutil.copytree(promoted_dir, root)
    monkeypatch.chdir(root)
    before = (root / "models/registry.json").read_bytes()
    assert lineage.start_new(load_config()) is None
    assert (root / "models/registry.json").read_bytes() == before
    assert not (root / "models/archive").exists()


def test_other_columns_archive_the_registry_whole(promoted_dir, tmp_path, monkeypatch, caplog):
    root = tmp_path / "p"
    shutil.copytree(promoted_dir, root)
    monkeypatch.chdir(root)
    old = {p.name: p.read_bytes() for p in (root / "models").glob("*.json*")}
    model = (root / "models/v1/model.skops").read_bytes()
    edit_params(root / "params.yaml", lambda p: p["schema"]["categorical"].pop("MAR"))
    with caplog.at_level(logging.INFO, logger="mlops.lineage"):
        archived = lineage.start_new(load_config())
    assert archived.parent == registry.MODELS_DIR / "archive"
    archived = root / archived
    assert {name: (archived / name).read_bytes() for name in old} == old
    assert (archived / "v1/model.skops").read_bytes() == model
    assert not (root / "models/registry.json").exists()
    assert not (root / "models/v1").exists()
    assert registry.next_version(registry.read_registry()) == "v1"
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("production v1 was trained on other columns (without MAR): a new")
    assert "models/archive/" in line
    assert "(the next `make all` promotes v1)" in line
    assert [p.name for p in (root / "models/archive").iterdir()] == [archived.name]
