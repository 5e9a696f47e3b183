"""Release bundles: export what the gate promoted, import it elsewhere as production (CI)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from candidates import BETTER, WEAK, snapshot, train_candidate
from helpers import run_cli
from mlops import cli, files, model_file, promote, registry, release
from mlops.errors import CheckFailed, InputError


def test_export_writes_the_promoted_version(project, config, tmp_path):
    promote.run(config)
    bundle = tmp_path / "bundle"
    assert release.export_bundle(bundle) == "model-v1"
    written = set(release.BUNDLE_FILES) - {"model.joblib"}
    assert sorted(p.name for p in bundle.iterdir()) == sorted(written)
    assert (bundle / "TAG").read_text() == "model-v1\n"
    metadata = json.loads((bundle / "metadata.json").read_text())
    assert metadata["version"] == "v1"
    assert files.sha256_file(bundle / "model.skops") == metadata["model_sha256"]
    listed = dict(
        reversed(line.split("  ")) for line in (bundle / "SHA256SUMS").read_text().splitlines()
    )
    assert sorted(listed) == sorted(written - {"SHA256SUMS"})
    assert all(files.sha256_file(bundle / name) == sha for name, sha in listed.items())
    card = (bundle / "MODEL_CARD.md").read_text()
    assert card.startswith("# Model v1\n")
    assert metadata["model_sha256"] in card
    assert "| min_accuracy |" in card
    assert json.loads((bundle / "metrics.json").read_text())["accuracy"] == pytest.approx(0.7936)


def test_export_writes_nothing_when_nothing_was_promoted(project, config, tmp_path):
    promote.run(config)
    bundle = tmp_path / "bundle"
    release.export_bundle(bundle)
    promote.run(config)  # unchanged
    assert release.export_bundle(bundle) is None
    assert not (bundle / "TAG").exists()  # a stale bundle is never published again
    train_candidate(config, **WEAK)
    with pytest.raises(CheckFailed):
        promote.run(config)
    assert release.export_bundle(bundle) is None
    assert release.export_bundle(bundle, version="v1") == "model-v1"  # explicit: any version


def test_export_refuses_unknown_or_tampered_versions(project, config, tmp_path):
    with pytest.raises(InputError, match=r"promotion\.json: not found"):
        release.export_bundle(tmp_path / "b")
    promote.run(config)
    with pytest.raises(InputError, match="'v4' is not in"):
        release.export_bundle(tmp_path / "b", version="v4")
    Path("models/v1/model.skops").write_bytes(b"tampered")
    with pytest.raises(InputError, match="sha256 does not match"):
        release.export_bundle(tmp_path / "b")


def test_export_refuses_a_promotion_rolled_back_since(project, config, tmp_path):
    promote.run(config)
    train_candidate(config, **BETTER)
    promote.run(config)
    registry.rollback()
    with pytest.raises(InputError, match="promoted v2, but production is now v1"):
        release.export_bundle(tmp_path / "b")
    assert release.export_bundle(tmp_path / "b", version="v2") == "model-v2"


def test_ci_round_trip_keeps_numbering_and_history(project, config, tmp_path):
    """Run 1 promotes v1 and publishes it; run 2, on a fresh checkout, imports it and gates."""
    promote.run(config)
    first = tmp_path / "release-1"
    release.export_bundle(first)
    shutil.rmtree("models/v1")
    Path("models/registry.json").unlink()  # a fresh CI checkout: no registry
    assert release.import_bundle(first) == "v1"
    imported = registry.read_registry()
    assert imported["production"] == "v1"
    assert [e["event"] for e in imported["history"]] == ["promoted"]  # restored, not re-recorded
    assert registry.consistency_problems() == []
    assert promote.run(config)["decision"] == "unchanged"  # same model: no new release
    assert release.export_bundle(tmp_path / "release-none") is None
    train_candidate(config, **BETTER)
    assert promote.run(config)["decision"] == "promoted"
    assert release.export_bundle(tmp_path / "release-2") == "model-v2"
    history = json.loads((tmp_path / "release-2/registry.json").read_text())["history"]
    assert [(e["from"], e["to"]) for e in history] == [(None, "v1"), ("v1", "v2")]


def test_import_is_idempotent_and_empty_dir_is_a_noop(project, config, tmp_path):
    assert release.import_bundle(tmp_path / "missing") is None
    (tmp_path / "empty").mkdir()
    assert release.import_bundle(tmp_path / "empty") is None
    assert not Path("models/registry.json").exists()
    promote.run(config)
    release.export_bundle(tmp_path / "b")
    before = snapshot(project / "models")
    assert release.import_bundle(tmp_path / "b") == "v1"
    assert snapshot(project / "models") == before


def test_an_empty_import_names_the_production_it_keeps(project, config, tmp_path, caplog):
    promote.run(config)
    (tmp_path / "empty").mkdir()
    with caplog.at_level("INFO", logger="mlops.release"):
        assert release.import_bundle(tmp_path / "empty") is None
    assert "nothing imported (production stays v1)" in caplog.text


def test_import_of_an_older_release_is_recorded(project, config, tmp_path):
    promote.run(config)
    release.export_bundle(tmp_path / "v1")
    train_candidate(config, **BETTER)
    promote.run(config)
    assert release.import_bundle(tmp_path / "v1") == "v1"
    last = registry.read_registry()["history"][-1]
    assert (last["event"], last["from"], last["to"]) == ("imported", "v2", "v1")


def test_rolled_back_release_stays_known_in_ci(project, config, tmp_path):
    """Production moved back to model-v1 on GitHub (v2 marked not latest): the next run must not
    re-promote v2's model nor reuse the name v2."""
    promote.run(config)
    release.export_bundle(tmp_path / "v1")
    train_candidate(config, **BETTER)
    promote.run(config)
    release.export_bundle(tmp_path / "v2")
    download = tmp_path / "download"
    shutil.copytree(tmp_path / "v1", download)
    (download / "releases/model-v2").mkdir(parents=True)
    shutil.copy(tmp_path / "v2/metadata.json", download / "releases/model-v2/metadata.json")
    for name in ("v1", "v2"):  # a fresh CI checkout: only the candidate of this run
        shutil.rmtree(Path("models", name))
    Path("models/registry.json").unlink()
    assert release.import_bundle(download) == "v1"
    data = registry.read_registry()
    assert data["versions"]["v2"]["local"] is False
    result = promote.run(config)  # the candidate is v2's model again
    assert result["decision"] == "unchanged"
    assert registry.next_version(data) == "v3"
    with pytest.raises(InputError, match="files are not here"):
        registry.rollback(version="v2")
    assert "v2 (release only)" in registry.table(data)


def reseal(bundle: Path) -> None:
    """Rewrite SHA256SUMS to match the bundle as it now is (a self-consistent forgery)."""
    names = [p.name for p in sorted(bundle.iterdir()) if p.is_file() and p.name != "SHA256SUMS"]
    lines = [f"{files.sha256_file(bundle / name)}  {name}\n" for name in names]
    (bundle / "SHA256SUMS").write_text("".join(lines))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: (b / "model.skops").write_bytes(b"x"), "sha256 does not match"),
        (lambda b: (b / "TAG").write_text("model-v9\n"), "says 'model-v9'"),
        (lambda b: (b / "metadata.json").unlink(), r"not a model release bundle \(metadata"),
        (lambda b: (b / "registry.json").write_text("[]"), "expected a JSON object"),
        (
            lambda b: (b / "metadata.json").write_text('{"model_sha256": "x"}'),
            "no `version`",
        ),
    ],
)
def test_bad_bundles_are_refused(project, config, tmp_path, damage, message):
    """Each damage behind a manifest that matches it (so the check after the manifest speaks)."""
    promote.run(config)
    bundle = tmp_path / "b"
    release.export_bundle(bundle)
    shutil.rmtree("models")
    damage(bundle)
    reseal(bundle)
    with pytest.raises(InputError, match=message):
        release.import_bundle(bundle)
    assert not Path("models/registry.json").exists()


def test_import_conflicting_with_local_versions_is_refused(project, config, tmp_path):
    promote.run(config)
    release.export_bundle(tmp_path / "b")
    metadata = json.loads((tmp_path / "b/metadata.json").read_text())
    train_candidate(config, **BETTER)
    promote.run(config)
    (tmp_path / "b/metadata.json").write_text(json.dumps({**metadata, "version": "v2"}))
    (tmp_path / "b/TAG").unlink()
    reseal(tmp_path / "b")
    with pytest.raises(InputError, match="conflicts with the local registry"):
        release.import_bundle(tmp_path / "b")


def test_release_commands_through_the_cli(project, config, tmp_path, capsys):
    assert run_cli(capsys, "promote")[0] == 0
    assert cli.main(["release-export", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.strip() == "model-v1"
    shutil.rmtree(project / "models")
    assert run_cli(capsys, "release-import", str(tmp_path / "nothing"))[0] == 0
    assert run_cli(capsys, "release-import", str(tmp_path / "out"))[0] == 0
    assert registry.production_version(project / "models") == "v1"
    (tmp_path / "out/model.skops").write_bytes(b"x")
    refused = subprocess.run(
        [sys.executable, "-m", "mlops", "release-import", str(tmp_path / "out")],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0
    assert "model.skops: sha256 does not match" in refused.stderr


# What the model file needs, at the lock's versions: scikit-learn and its own dependencies,
# skops (+ packaging, prettytable, wcwidth) for the file format, pandas for the rows.
SKLEARN_ONLY = (
    "sklearn",
    "scikit_learn",
    "numpy",
    "scipy",
    "joblib",
    "cloudpickle",
    "skops",
    "packaging",
    "prettytable",
    "wcwidth",
    "narwhals",
    "threadpoolctl",
    "pandas",
    "dateutil",
    "python_dateutil",
    "pytz",
    "tzdata",
    "six",
)


def sklearn_only_python(root: Path) -> Path:
    """A fresh virtual environment (no pip, offline) that sees only SKLEARN_ONLY's folders and
    dist-info of this venv's site-packages, through one .pth file; its python."""
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])
    shelf = root / "packages"
    shelf.mkdir(parents=True)
    for entry in site.iterdir():
        stem = entry.name.split("-")[0].removesuffix(".py").removesuffix(".libs")
        if stem in SKLEARN_ONLY:
            (shelf / entry.name).symlink_to(entry)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    target = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(target, "sklearn_only.pth").write_text(f"{shelf}\n")
    return python


def test_the_bundled_model_serves_raw_rows_with_scikit_learn_alone(project, config, tmp_path):
    """make release-export's model file, in a venv without this package: the three lines of its
    MODEL.md on raw rows (shuffled columns, an extra one) give production's answers."""
    from mlops.predictions import model_matrix, predict

    promote.run(config)
    bundle = tmp_path / "bundle"
    assert release.export_bundle(bundle) == "model-v1"
    usage = (bundle / "MODEL.md").read_text()
    metadata = json.loads((bundle / "metadata.json").read_text())
    assert usage.startswith("# Model v1: how to use the file\n")
    for text in (
        'model = skops.io.load("model.skops", trusted=trusted)',
        "model.predict_proba(rows)",
        metadata["data_sha256"],
        "| MAR | category (int) | 1, 2, 3, 4, 5 |",
        "| AGEP | number |",
        "classes 0, 1",
        "| accuracy | 0.79",
    ):
        assert text in usage, text
    test = files.read_parquet(config.data.processed_dir / "test.parquet").head(500)
    rows = test[config.features].sample(frac=1.0, axis=1, random_state=3).assign(note="extra")
    rows.to_pickle(tmp_path / "rows.pkl")  # pandas alone reads it back (no pyarrow there)
    python = sklearn_only_python(tmp_path / "env")
    script = (
        "import sys\n"
        "try:\n    import mlops\nexcept ImportError:\n    pass\n"
        "else:\n    raise SystemExit('mlops is importable')\n"
        "import numpy, pandas, skops.io\n"
        "rows = pandas.read_pickle(sys.argv[2])\n"
        f"model = skops.io.load(sys.argv[1], trusted={list(model_file.TRUSTED)!r})\n"
        "numpy.save(sys.argv[3], model.predict_proba(rows))\n"
    )
    out = tmp_path / "proba.npy"
    done = subprocess.run(
        [
            str(python),
            "-I",
            "-c",
            script,
            str(bundle / "model.skops"),
            str(tmp_path / "rows.pkl"),
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    import numpy as np

    model, meta = registry.load_production()
    _, want = predict(model[1:], model_matrix(test, meta, config), None)
    np.testing.assert_allclose(np.load(out), want, rtol=0, atol=1e-9)
    missing = subprocess.run(
        [str(python), "-I", "-c", "import mlops"], capture_output=True, text=True, cwd=tmp_path
    )
    assert missing.returncode != 0
    assert "No module named 'mlops'" in missing.stderr
