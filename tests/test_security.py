"""Tried as an attacker would (issue #25): forged release bundles and model files, and the API
without (or with a wrong) token. Each attempt is refused with one line or one JSON error, writes
nothing, and runs no code: the pickles here would create a marker file if ever unpickled."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from mlops import files, registry, release
from mlops.config import load_config
from mlops.errors import InputError
from mlops.serve import guard

TOKEN = "s3cret-token-0123456789abcdef"
OTHER = "another-token-0123456789abcdef"


class Marker:
    """Unpickling this runs `touch <path>` (through os.system): proof that code ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


# ---------------------------------------------------------------- release bundles and model files


@pytest.fixture(scope="module")
def exported(promoted_dir: Path, tmp_path_factory) -> Path:
    """A genuine release bundle of the session's production v1 (read-only)."""
    bundle = tmp_path_factory.mktemp("release") / "bundle"
    assert release.export_bundle(bundle, "v1", promoted_dir / "models") == "model-v1"
    return bundle


@pytest.fixture
def forged(exported: Path, tmp_path: Path) -> Path:
    """A private copy of the genuine bundle, to be damaged."""
    return Path(shutil.copytree(exported, tmp_path / "bundle"))


@pytest.fixture
def target(promoted_dir: Path, tmp_path: Path) -> Path:
    """An empty project (params.yaml only) to import into."""
    root = tmp_path / "target"
    root.mkdir()
    shutil.copy(promoted_dir / "params.yaml", root / "params.yaml")
    return root


def reseal(bundle: Path) -> None:
    """SHA256SUMS rewritten to match the bundle as it now is: a self-consistent forgery."""
    names = sorted(p.name for p in bundle.iterdir() if p.name != release.MANIFEST_FILE)
    lines = [f"{files.sha256_file(bundle / name)}  {name}\n" for name in names]
    (bundle / release.MANIFEST_FILE).write_text("".join(lines))


def point_metadata_at(bundle: Path, name: str) -> None:
    """metadata.json naming this file and its sha256 (then resealed)."""
    metadata = json.loads((bundle / "metadata.json").read_text())
    metadata.update(model_file=name, model_sha256=files.sha256_file(bundle / name))
    (bundle / "metadata.json").write_text(json.dumps(metadata))
    reseal(bundle)


def refused_import(bundle: Path, target: Path, message: str) -> None:
    """`mlops release-import bundle` in target: exit 2, one line naming why, nothing written."""
    done = subprocess.run(
        [sys.executable, "-m", "mlops", "release-import", str(bundle)],
        cwd=target,
        capture_output=True,
        text=True,
        env={**os.environ, "DO_NOT_TRACK": "1"},
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(lines) == 1, done.stderr
    assert message in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    models = target / "models"
    assert not models.exists() or not any(p for p in models.rglob("*") if p.name != ".lock")


def evil_pickle(marker: Path) -> bytes:
    return pickle.dumps(Marker(marker))


def test_the_genuine_bundle_imports(exported, target):
    shutil.copytree(exported, target / "bundle")
    done = subprocess.run(
        [sys.executable, "-m", "mlops", "release-import", "bundle"],
        cwd=target,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert registry.production_version(target / "models") == "v1"


def test_a_self_consistent_pickle_bundle_is_never_unpickled(forged, target, tmp_path):
    """The issue's bundle: a pickle whose sha256 metadata.json (and the manifest) agree with."""
    marker = tmp_path / "pwned"
    (forged / "model.joblib").write_bytes(evil_pickle(marker))
    point_metadata_at(forged, "model.joblib")
    refused_import(forged, target, "model_file is not model.skops")
    (forged / "model.skops").unlink()
    reseal(forged)
    refused_import(forged, target, "not a model release bundle (model.skops missing)")
    assert not marker.exists()


def test_a_pickle_named_model_skops_is_refused(forged, target, tmp_path):
    marker = tmp_path / "pwned"
    (forged / "model.skops").write_bytes(evil_pickle(marker))
    point_metadata_at(forged, "model.skops")
    refused_import(forged, target, "not a readable skops model file")
    assert not marker.exists()


def smuggled(model_bytes: bytes, marker: Path) -> bytes:
    """The skops file with one of its arrays replaced by an object array: a pickle inside."""
    source = zipfile.ZipFile(io.BytesIO(model_bytes))
    victim = next(name for name in source.namelist() if name.endswith(".npy"))
    payload = io.BytesIO()
    np.save(payload, np.array([Marker(marker)], dtype=object), allow_pickle=True)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name in source.namelist():
            data = payload.getvalue() if name == victim else source.read(name)
            archive.writestr(name, data)
    return out.getvalue()


def test_a_pickle_smuggled_into_a_skops_file_is_refused(forged, target, tmp_path):
    marker = tmp_path / "pwned"
    (forged / "model.skops").write_bytes(smuggled((forged / "model.skops").read_bytes(), marker))
    point_metadata_at(forged, "model.skops")
    refused_import(forged, target, "not a readable skops model file")
    assert not marker.exists()


def test_a_registry_entry_with_a_smuggled_pickle_is_refused(promoted_dir, tmp_path):
    """Even with registry.json and metadata.json rewritten to match (the registry's own check)."""
    models = Path(shutil.copytree(promoted_dir / "models", tmp_path / "models"))
    marker = tmp_path / "pwned"
    path = models / "v1" / "model.skops"
    path.write_bytes(smuggled(path.read_bytes(), marker))
    sha = files.sha256_file(path)
    data = registry.read_registry(models)
    data["versions"]["v1"]["sha256"] = sha
    registry.write_registry(models, data)
    metadata = files.read_json(models / "v1/metadata.json")
    files.write_json(models / "v1/metadata.json", {**metadata, "model_sha256": sha})
    with pytest.raises(InputError, match="not a readable skops model file") as refused:
        registry.load_production(models)
    assert "\n" not in str(refused.value)
    assert not marker.exists()


def test_a_symlinked_model_is_refused(forged, target):
    """The issue's /etc/hostname: a symlink never becomes models/vN/model.skops."""
    (forged / "model.skops").unlink()
    (forged / "model.skops").symlink_to("/etc/hostname")
    refused_import(forged, target, "a symlink in the release bundle")


def test_a_symlinked_bundle_file_is_refused_even_when_the_sums_match(forged, target, tmp_path):
    real = tmp_path / "elsewhere.skops"
    shutil.move(forged / "model.skops", real)
    (forged / "model.skops").symlink_to(real)  # same bytes, same sha256: still refused
    refused_import(forged, target, "a symlink in the release bundle")


def test_a_file_not_in_the_manifest_is_refused(forged, target):
    (forged / "sitecustomize.py").write_text("import os; os.system('touch pwned')\n")
    refused_import(forged, target, "sitecustomize.py: not listed in")
    assert not (target / "pwned").exists()


def test_a_bundle_without_a_manifest_or_with_a_wrong_sum_is_refused(forged, target):
    sums = (forged / release.MANIFEST_FILE).read_text()
    (forged / release.MANIFEST_FILE).write_text(sums.replace(sums[:8], "00000000", 1))
    refused_import(forged, target, "sha256 does not match")
    (forged / release.MANIFEST_FILE).unlink()
    refused_import(forged, target, "SHA256SUMS: missing")


# ---------------------------------------------------------------- the API


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_API_TOKENS")}
    return {**env, "OMP_NUM_THREADS": "1", "DO_NOT_TRACK": "1", **extra}


@pytest.fixture(scope="module")
def secured(promoted_dir: Path, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """`python -m mlops serve` on loopback with two tokens (from $MLOPS_API_TOKENS): its URL and
    its log file."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out = tmp_path_factory.mktemp("secured") / "server.log"
    with open(out, "wb") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlops", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=promoted_dir,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=serve_env(MLOPS_API_TOKENS=f"{TOKEN},{OTHER}"),
        )
    try:
        import time

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert server.poll() is None, out.read_text()
            try:
                if httpx.get(f"{url}/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise AssertionError("the server did not become ready")
        yield url, out
    finally:
        server.terminate()
        server.wait(timeout=30)


def row(promoted_dir: Path) -> dict:
    config = load_config(promoted_dir / "params.yaml")
    frame = files.read_parquet(promoted_dir / config.data.processed_dir / "test.parquet").head(1)
    return {name: frame[name].iloc[0].item() for name in config.features}


def assert_401(answer: httpx.Response) -> None:
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    if "error" in body:  # the Open Inference Protocol routes' own shape
        assert "bearer token" in body["error"]
    else:
        item = {"field": "authorization", "reason": ANY, "type": "unauthorized"}
        assert body == {"detail": [item]}


class _Any:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str)


ANY = _Any()
PROTECTED = ["/metadata", "/metrics", "/docs", "/openapi.json", "/v2", "/v2/models/mlops", "/nope"]


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        f"Bearer {TOKEN[:-1]}",
        f"Bearer {TOKEN}x",
        f"Bearer  {TOKEN}",
        f"Bearer\t{TOKEN}",
        f"Bearer {TOKEN[:8]} {TOKEN[8:]}",
        f"Bearer {TOKEN[:8]}\t{TOKEN[8:]}",
        f"Basic {TOKEN}",
        f"Token {TOKEN}",
        f"Bearer {TOKEN},{OTHER}",
        TOKEN,
    ],
    ids=lambda value: repr(value),
)
def test_missing_wrong_empty_or_padded_tokens_are_401(secured, promoted_dir, authorization):
    url, log_file = secured
    headers = {} if authorization is None else {"Authorization": authorization}
    for path in PROTECTED:
        assert_401(httpx.get(url + path, headers=headers))
    body = {"instances": [row(promoted_dir)]}
    assert_401(httpx.post(f"{url}/predict", json=body, headers=headers))
    assert_401(httpx.post(f"{url}/v2/models/mlops/infer", json={"inputs": []}, headers=headers))
    text = log_file.read_text()
    assert TOKEN[:12] not in text  # never logged, not even a wrong one
    assert OTHER[:12] not in text


def test_either_token_opens_every_route_and_probes_need_none(secured, promoted_dir):
    url, _ = secured
    for token in (TOKEN, OTHER):
        bearer = {"Authorization": f"Bearer {token}"}
        body = {"instances": [row(promoted_dir)]}
        answer = httpx.post(f"{url}/predict", json=body, headers=bearer)
        assert answer.status_code == 200, answer.text
        for path in ("/metadata", "/metrics", "/docs", "/openapi.json", "/v2/models/mlops"):
            assert httpx.get(url + path, headers=bearer).status_code == 200, path
    wrong = "Bearer wrong-but-long-enough"
    twice = [("Authorization", f"Bearer {TOKEN}"), ("Authorization", wrong)]
    assert_401(httpx.get(f"{url}/metadata", headers=twice))  # one header, or none counts
    lower = {"Authorization": f"bearer {TOKEN}"}  # the scheme is case-insensitive (RFC 9110)
    assert httpx.get(f"{url}/metadata", headers=lower).status_code == 200
    for path in ("/health", "/ready", "/v2/health/live", "/v2/health/ready"):
        assert httpx.get(url + path).status_code == 200, path


def test_attacker_host_and_forwarded_headers_change_nothing(secured, promoted_dir):
    url, log_file = secured
    forged = {
        "Host": "evil.example",
        "X-Forwarded-For": "10.6.6.6, 127.0.0.1",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "https",
        "X-Real-IP": "127.0.0.1",
        "Forwarded": "for=127.0.0.1;host=evil.example",
    }
    assert_401(httpx.get(f"{url}/metadata", headers=forged))
    body = {"instances": [row(promoted_dir)]}
    assert_401(httpx.post(f"{url}/predict", json=body, headers=forged))
    bearer = {**forged, "Authorization": f"Bearer {TOKEN}", "X-Request-ID": "attack-1"}
    answer = httpx.post(f"{url}/predict", json=body, headers=bearer)
    assert answer.status_code == 200
    spec = httpx.get(f"{url}/openapi.json", headers=bearer).json()
    assert "evil" not in json.dumps(spec)
    lines = [json.loads(line) for line in log_file.read_text().splitlines() if "attack-1" in line]
    assert lines
    assert all(line["client"].startswith("127.0.0.1:") for line in lines)
    assert "evil" not in log_file.read_text()
    assert "10.6.6.6" not in log_file.read_text()


def test_413_and_other_errors_share_one_json_shape(secured, promoted_dir):
    url, log_file = secured
    bearer = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    huge = b'{"instances": [' + b" " * 3_000_000 + b"]}"

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(huge), 65_536):
            yield huge[start : start + 65_536]

    for content in (huge, chunks()):  # Content-Length, then chunked (no length given)
        answer = httpx.post(f"{url}/predict", content=content, headers=bearer)
        assert answer.status_code == 413
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["detail"][0]["type"] == "too_large"
    for status, answer in (
        (404, httpx.get(f"{url}/nope", headers=bearer)),
        (405, httpx.get(f"{url}/predict", headers=bearer)),
        (422, httpx.post(f"{url}/predict", content=b"{}", headers=bearer)),
        (
            422,
            httpx.post(
                f"{url}/predict",
                json={"instances": [row(promoted_dir)]},
                headers={**bearer, "Content-Type": "application/jsonp"},
            ),
        ),
    ):
        assert answer.status_code == status
        (item,) = answer.json()["detail"][:1]
        assert set(item) == {"field", "reason", "type"}
    secret = "do-not-log-this-body-value"
    httpx.post(f"{url}/predict", json={"instances": [{"AGEP": secret}]}, headers=bearer)
    assert secret not in log_file.read_text()


def test_serving_beyond_loopback_without_tokens_is_refused(promoted_dir):
    done = subprocess.run(
        [sys.executable, "-m", "mlops", "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        cwd=promoted_dir,
        capture_output=True,
        text=True,
        env=serve_env(),
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert "refusing to serve beyond loopback without API tokens" in done.stderr
    assert "Uvicorn running" not in done.stdout


def test_tokens_are_checked_at_start_and_none_is_on_purpose(promoted_dir, tmp_path, monkeypatch):
    config = load_config(promoted_dir / "params.yaml")
    monkeypatch.delenv("MLOPS_API_TOKENS", raising=False)
    monkeypatch.delenv(guard.FILE_ENV, raising=False)
    assert guard.load_tokens(config) == ()
    guard.check_binding(config, "127.0.0.1", ())
    guard.check_binding(config, "::1", ())
    for host in ("0.0.0.0", "::", "192.0.2.1", "example.org"):
        with pytest.raises(InputError, match="beyond loopback"):
            guard.check_binding(config, host, ())
    on_purpose = config.serve.model_copy(
        update={"auth": config.serve.auth.model_copy(update={"none": True})}
    )
    guard.check_binding(config.model_copy(update={"serve": on_purpose}), "0.0.0.0", ())
    secrets = tmp_path / "tokens"
    secrets.write_text(f"# rotated 2026-12-01\n{TOKEN}\n\n{OTHER}\n")
    monkeypatch.setenv(guard.FILE_ENV, str(secrets))
    assert guard.load_tokens(config) == tuple(sorted((TOKEN.encode(), OTHER.encode())))
    secrets.write_text("short\n")
    with pytest.raises(InputError, match="token 1 is not 16 to 512") as refused:
        guard.load_tokens(config)
    assert "short" not in str(refused.value)
    monkeypatch.delenv(guard.FILE_ENV)
    monkeypatch.setenv("MLOPS_API_TOKENS", TOKEN)
    with pytest.raises(InputError, match=r"serve\.auth\.none is true but tokens"):
        guard.load_tokens(config.model_copy(update={"serve": on_purpose}))


def test_docs_can_be_switched_off_for_an_offline_image(promoted_dir, monkeypatch):
    """Swagger UI loads its scripts from a CDN: serve.docs false (or MLOPS_DOCS=off, as the
    image sets) serves no /docs page; /redoc (a CDN too) is never served."""
    from fastapi.testclient import TestClient

    from mlops import serve

    config = load_config(promoted_dir / "params.yaml")
    off = config.model_copy(update={"serve": config.serve.model_copy(update={"docs": False})})
    app = serve.create_app(off, promoted_dir / "models", poll_seconds=3600, tokens=())
    with TestClient(app) as client:
        for path in ("/docs", "/redoc"):
            answer = client.get(path)
            assert answer.status_code == 404
            assert answer.json()["detail"][0]["type"] == "not_found"
    monkeypatch.setenv("MLOPS_DOCS", "off")
    assert serve.make_server(config, "127.0.0.1", free_port()).config.app.docs_url is None
    monkeypatch.setenv("MLOPS_DOCS", "on")
    assert serve.make_server(config, "127.0.0.1", free_port()).config.app.docs_url == "/docs"
