"""The container build, checked without a Docker engine: the serving import chain against its lock,
the locks against each other, the Dockerfile's stages and layer order, `make docker`, and the
docs. tools/container-proof.sh builds and runs both images for real (too slow for the suite)."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import yaml

from conftest import ROOT
from test_serve import free_port

# pyarrow is in the serve lock: the inference log writes Parquet (imported only when it is on).
PIPELINE_ONLY = {"pandas", "evidently", "matplotlib", "pandera", "plotly", "statsmodels"}
# What the default serve image uninstalls from requirements-serve.lock: it serves model.onnx with
# ONNX Runtime (serve-sklearn keeps them, for versions ONNX cannot represent).
SKLEARN_ONLY = {
    "scikit-learn",
    "scipy",
    "joblib",
    "skops",
    "narwhals",
    "cloudpickle",
    "prettytable",
    "wcwidth",
}
SMOKE = (ROOT / "tools/docker-smoke.sh").read_text()
DOCKER_SKIP = "<!-- doc-test: skip (needs a Docker engine) -->"

# As in the serve image: every package outside requirements-serve.lock is absent (its modules
# cannot be imported). Serves on loopback, sends one /predict once ready, records every module
# loaded after start-up, then stops.
PROBE = r"""
import importlib.abc, json, os, signal, sys, threading, time, urllib.request

startup = set(sys.modules)  # site's .pth files (setuptools' _distutils_hack) are not serving
port, out, body, absent = sys.argv[1], sys.argv[2], sys.argv[3], set(json.loads(sys.argv[4]))

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in absent:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Absent())
from mlops import cli

def client():
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):
            try:
                urllib.request.urlopen(url + "/ready", timeout=5).close()
                break
            except OSError:
                time.sleep(0.05)
        request = urllib.request.Request(
            url + "/predict", data=body.encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as reply:
            answer = json.load(reply)
        with open(out, "w") as handle:
            json.dump({"answer": answer, "modules": sorted(set(sys.modules) - startup)}, handle)
    finally:
        os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=client, daemon=True).start()
sys.exit(cli.main(["serve", "--host", "127.0.0.1", "--port", port]))
"""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """A hashed lock as {name: (version, hashes)}."""
    locked: dict[str, tuple[str, frozenset[str]]] = {}
    for block in re.split(r"\n(?=\S)", path.read_text()):
        head = re.match(r"([A-Za-z0-9._-]+)==(\S+)", block)
        if head:
            hashes = frozenset(re.findall(r"--hash=(sha256:[0-9a-f]+)", block))
            locked[canonical(head[1])] = (head[2], hashes)
    return locked


def smoke_body() -> str:
    return re.search(r"^BODY='(.+)'$", SMOKE, re.MULTILINE)[1]


def test_serving_needs_only_what_its_lock_installs(promoted_dir, tmp_path):
    """A real `python -m mlops serve`, with every package outside requirements-serve.lock made
    unimportable, and scikit-learn, scipy and joblib too (the serve image has none: the
    production version has a model.onnx), answers the smoke test's /predict body and loads no
    pipeline-only library."""
    project = tmp_path / "project"
    shutil.copytree(promoted_dir, project)
    assert (project / "models" / "v1" / "model.onnx").is_file()
    locked = (set(pins(ROOT / "requirements-serve.lock")) - SKLEARN_ONLY) | {"mlops"}
    absent = sorted(
        name
        for name, dists in packages_distributions().items()
        if not {canonical(dist) for dist in dists} & locked
    )
    assert set(absent) >= PIPELINE_ONLY | {"sklearn", "scipy", "joblib"}
    out = tmp_path / "probe.json"
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(free_port()), str(out), smoke_body(), json.dumps(absent)],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
        env={
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "DO_NOT_TRACK": "1",
            "MLOPS_INFERENCE_LOG": str(tmp_path / "log"),  # on, as in the image
        },
        timeout=300,
    )
    assert out.exists(), result.stderr[-3000:]
    # The inference log was written at SIGTERM without any pipeline-only library.
    assert len(list((tmp_path / "log").rglob("part-*.parquet"))) == 1, result.stdout[-3000:]
    probe = json.loads(out.read_text())
    (prediction,) = probe["answer"]["predictions"]
    assert 0.0 <= prediction["probability"] <= 1.0
    loaded = {name.split(".")[0] for name in probe["modules"]}
    assert not loaded & set(absent), sorted(loaded & set(absent))


def test_serve_lock_is_the_serve_group_at_the_pipeline_versions():
    """The served model loads with exactly the libraries it was trained with (same pins)."""
    group = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]["serve"]
    serve, pipeline = pins(ROOT / "requirements-serve.lock"), pins(ROOT / "requirements.lock")
    assert {canonical(re.match(r"[A-Za-z0-9._-]+", spec)[0]) for spec in group} <= set(serve)
    for name, pin in serve.items():
        assert pipeline.get(name) == pin, name
    assert not set(serve) & PIPELINE_ONLY


def stages() -> dict[str, list[str]]:
    """The Dockerfile's stages: {name: instructions (continuation lines joined)}."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    result: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("FROM "):
            current = result.setdefault(line.split(" AS ")[-1], [line])
        elif line and not line.startswith("#"):
            current.append(line)
    return result


def test_dockerfile_targets_and_their_contents():
    found = stages()
    assert list(found)[-1] == "serve"  # the default target
    assert {"serve", "serve-sklearn", "pipeline"} <= set(found)
    external = {
        name: lines[0].split()[1] for name, lines in found.items() if "@sha256:" in lines[0]
    }
    assert len(set(external.values())) == 1  # one digest-pinned base image,
    assert list(external) == ["base", "runtime"]  # named twice: the build base and the runtime
    for name, lines in found.items():  # every other stage starts from one of this file's
        assert name in external or lines[0].split()[1] in list(found)[: list(found).index(name)]
    serve, pipeline = "\n".join(found["serve"]), "\n".join(found["pipeline"])
    assert "COPY --from=serve-onnx-deps /app/.venv" in serve
    assert "COPY --from=serve-sklearn-deps /app/.venv" in "\n".join(found["serve-sklearn"])
    uninstall = "\n".join(found["serve-onnx-deps"])
    for name in SKLEARN_ONLY:
        assert f" {name}" in uninstall
    assert found["serve-onnx-deps"][0] == "FROM serve-deps AS serve-onnx-deps"
    assert "pipeline-deps" not in serve
    assert "-r requirements-serve.lock" in "\n".join(found["serve-deps"])
    assert "-r requirements.lock" in "\n".join(found["pipeline-deps"])
    assert "COPY --from=pipeline-deps /app/.venv" in pipeline
    for text in (serve, pipeline):
        assert "USER 10001:0" in text  # group 0: the OpenShift convention
        assert "chgrp 0 models reports" in text
        assert "chmod 2775 models reports" in text
    assert "HEALTHCHECK" in serve
    assert found["serve"][-1].endswith('"--port", "8000"]')
    assert found["pipeline"][-1] == 'CMD ["make", "all"]'
    assert "umask 0002" in "\n".join(found["runtime"])


def test_compose_file_services_and_their_images():
    """docker-compose.yml: mlflow (its own small target), serve (models read-only, a
    healthcheck) and the one-shot pipeline behind a profile, logging to the mlflow service."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"mlflow", "serve", "pipeline"}
    found = stages()
    for service in services.values():
        assert service["build"]["target"] in found
    assert services["mlflow"]["build"]["target"] == "mlflow"
    assert "COPY --from=mlflow-deps /app/.venv /app/.venv" in found["mlflow"]
    assert "-r requirements-mlflow.lock" in "\n".join(found["mlflow-deps"])
    assert "pipeline-deps" not in "\n".join(found["mlflow"])
    assert "./models:/app/models:ro" in services["serve"]["volumes"]
    assert "/health" in " ".join(services["serve"]["healthcheck"]["test"])
    assert services["pipeline"]["profiles"] == ["pipeline"]
    assert services["pipeline"]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert services["pipeline"]["depends_on"]["mlflow"]["condition"] == "service_healthy"
    assert found["pipeline-mlflow"][0].split()[1] == "pipeline"
    assert all(
        port.startswith("127.0.0.1:") for s in services.values() for port in s.get("ports", [])
    )


def test_mlflow_lock_takes_the_dev_locks_versions():
    """requirements-mlflow.lock (the mlflow image, the tracked pipeline image) pins what the
    tests ran: every package at the dev lock's version, and mlflow within the extra's range."""
    mlflow, dev = pins(ROOT / "requirements-mlflow.lock"), pins(ROOT / "requirements-dev.lock")
    for name, pin in mlflow.items():
        assert dev.get(name) == pin, name
    assert mlflow["mlflow"][0].startswith("3.")


def test_layer_order_a_dev_tool_bump_reaches_no_dependency_layer():
    """Dependency stages copy only their lock; the dev lock reaches the pipeline image only
    after every install, and build-tools passes on nothing but its setuptools stanza."""
    for name, lines in stages().items():
        copies = [line for line in lines if line.startswith("COPY") and "--from" not in line]
        installs = [i for i, line in enumerate(lines) if "pip install" in line]
        if name.endswith("-deps") and lines[0].split()[1] == "serve-deps":
            assert copies == [], name  # serve-sklearn-deps, serve-onnx-deps: serve-deps trimmed
        elif name.endswith("-deps"):
            assert len(copies) == 1, name
            assert copies[0].split()[1] in (
                "requirements.lock",
                "requirements-serve.lock",
                "requirements-mlflow.lock",
            )
        dev = [i for i, line in enumerate(lines) if "requirements-dev.lock" in line]
        if name not in ("build-tools",) and dev:
            assert name == "pipeline"
            assert min(dev) > max(installs)
    tools = "\n".join(stages()["wheel"])
    assert "COPY --from=build-tools /build/build-requirements.txt" in tools


def test_serve_venv_strip_leaves_the_wheels_bundled_libraries():
    """strip breaks the auditwheel-patched libraries in *.libs (numpy's OpenBLAS then fails to
    load): only extension modules are stripped, and in serve-deps, whose venv is all serve gets."""
    strips = {
        (name, step)
        for name, lines in stages().items()
        for line in lines
        for step in line.split("&&")
        if re.search(r"\bstrip ", step)
    }
    assert {name for name, _ in strips} == {"serve-deps"}
    assert all("! -path '*.libs/*'" in step for _, step in strips), strips
    assert [line for line in stages()["serve"] if "-deps /app/.venv" in line] == [
        "COPY --from=serve-onnx-deps /app/.venv /app/.venv"
    ]


def test_dockerignore_keeps_what_the_dockerfile_copies():
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = [
        source
        for lines in stages().values()
        for line in lines
        if line.startswith("COPY ") and "--from" not in line
        for source in line.split()[1:-1]
    ]
    assert "requirements-serve.lock" in sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), source


def make_docker(*variables: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-n", "docker", *variables],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_make_docker_builds_both_targets():
    dry = make_docker("IMAGE=registry.example/team/mlops").stdout.splitlines()
    assert dry[:3] == [
        'docker build --target pipeline -t "registry.example/team/mlops:pipeline" .',
        'docker build --target serve-sklearn -t "registry.example/team/mlops:serve-sklearn" .',
        'docker build --target serve -t "registry.example/team/mlops:serve" .',
    ]
    assert 'tools/image-sizes.sh "registry.example/team/mlops"' in dry[3]
    podman = make_docker("ENGINE=podman").stdout.splitlines()
    assert podman[:3] == [  # Docker's format keeps the HEALTHCHECK
        'podman build --format docker --target pipeline -t "mlops:pipeline" .',
        'podman build --format docker --target serve-sklearn -t "mlops:serve-sklearn" .',
        'podman build --format docker --target serve -t "mlops:serve" .',
    ]
    wrong = make_docker("ENGINE=nerdctl")
    assert wrong.returncode != 0
    assert "ENGINE=nerdctl: use docker or podman" in wrong.stderr


def test_readme_docker_commands_are_skipped_by_the_doc_tests():
    """They need a Docker engine: the executable-docs harness skips them, saying why."""
    lines = (ROOT / "README.md").read_text().splitlines()
    blocks = [i for i, line in enumerate(lines) if line.startswith("```") and line != "```"]
    docker = [
        i
        for i in blocks
        if any(
            re.match(r"\s*(docker|podman) ", line)
            for line in lines[i + 1 : lines.index("```", i + 1)]
        )
    ]
    assert docker, "the README shows how to run the images"
    for start in docker:
        assert lines[start - 1] == DOCKER_SKIP, lines[start]
