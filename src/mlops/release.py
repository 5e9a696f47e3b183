"""Release bundles: how the production model outlives CI artifacts (one GitHub Release per version).

`make release-export DIR=d` writes the version this run's gate promoted (or VERSION=vN) into d:
model.skops, model.onnx (when the version has one), metadata.json, metrics.json, registry.json (a
snapshot: every version's summary and the whole history), MODEL_CARD.md (the release notes),
MODEL.md (the short card for whoever serves the model file elsewhere: features, classes, metrics,
the three lines that call it), SHA256SUMS (the manifest: every other file's sha256, TAG included)
and, last, TAG (e.g. "model-v3"); when the
gate promoted nothing it writes nothing. `make release-import DIR=d` installs such a bundle
(downloaded release assets) as the production version, merging the snapshot so version numbers
never repeat and a model that was rolled back is still known; an empty or missing d (no release
yet) is a no-op. It refuses a symlink anywhere in d, any file the manifest does not list, any
listed file whose sha256 differs, and a model that is not a skops file of trusted types: nothing
is ever unpickled. Optional d/releases/<tag>/metadata.json files (other releases' metadata, JSON
only) are merged as versions known by summary only.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from mlops import files, layout, model_file, registry
from mlops.config import Config
from mlops.errors import InputError
from mlops.registry import METADATA_FILE, MODEL_FILE, MODELS_DIR, ONNX_FILE

log = logging.getLogger(__name__)
PROMOTION_REPORT = layout.PROMOTION_JSON
CARD_FILE = "MODEL_CARD.md"
USAGE_FILE = "MODEL.md"
TAG_FILE = "TAG"
METRICS_FILE = "metrics.json"
SNAPSHOT_FILE = "registry.json"
RELEASES_DIR = "releases"
MANIFEST_FILE = "SHA256SUMS"
MANIFEST_LINE = re.compile(r"^([0-9a-f]{64})  ([A-Za-z0-9_.-]+)$")
BUNDLE_FILES = (
    TAG_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    ONNX_FILE,  # only when the version has one (registry onnx_sha256)
    model_file.LEGACY_FILE,
    METADATA_FILE,
    METRICS_FILE,
    SNAPSHOT_FILE,
    CARD_FILE,
    USAGE_FILE,
)


def tag_for(version: str) -> str:
    registry.version_number(version)
    return f"model-{version}"


def promoted_version(report_path: Path = PROMOTION_REPORT) -> str | None:
    """The version the last gate run promoted, or None when it promoted nothing."""
    report = files.read_json(report_path)
    if report.get("decision") != "promoted":
        return None
    version = (report.get("candidate") or {}).get("version")
    if not isinstance(version, str):
        raise InputError(f"{report_path}: decision promoted but no candidate.version")
    return version


def _metrics_table(metrics: dict[str, Any]) -> list[str]:
    """The "Test metrics" section of a card: heading and one row per registry summary metric."""
    rows = [f"| {key} | {_cell(metrics.get(key))} |" for key in registry.SUMMARY_METRICS]
    return ["## Test metrics", "", "| metric | value |", "|---|---:|", *rows]


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "n/a" if value is None else str(value)


def usage_lines(metadata: dict[str, Any]) -> list[str]:
    """How to call the model file: the three lines (raw rows by name), or the legacy input."""
    from mlops.predictions import takes_raw_frame

    libraries = metadata.get("libraries") or {}
    saved = "Libraries it was saved with: " + ", ".join(f"{k} {v}" for k, v in libraries.items())
    if not takes_raw_frame(metadata):
        return [
            "Input: a float64 matrix of the features above, in that order, categories coded "
            f"by this project (mlops.encoding, legacy coding). {saved}."
        ]
    return [
        "A scikit-learn Pipeline that takes raw rows by column name (`feature_names_in_`): a "
        "pandas DataFrame with the features below (any column order, extra columns ignored; "
        "missing values and unknown categories allowed), with scikit-learn alone, no `mlops`. "
        f"{saved}; load it with the same scikit-learn version.",
        "",
        "```python",
        "import skops.io",
        f"trusted = {json.dumps(list(model_file.TRUSTED))}  # beyond skops' defaults",
        'model = skops.io.load("model.skops", trusted=trusted)  # refuses any other type',
        "probabilities = model.predict_proba(rows)  # rows: a pandas DataFrame, columns by name",
        "```",
    ]


def _features_table(metadata: dict[str, Any]) -> list[str]:
    categories = metadata.get("categories") or {}
    lines = ["| feature | type | values |", "|---|---|---|"]
    for name in metadata.get("features") or []:
        values = categories.get(name)
        if values is None:
            lines.append(f"| {name} | number | any (missing: NaN) |")
        else:
            kinds = sorted({type(value).__name__ for value in values})
            shown = ", ".join(json.dumps(value) for value in values)
            lines.append(f"| {name} | category ({'/'.join(kinds)}) | {shown} |")
    return lines


def usage_card(version: str, metadata: dict[str, Any]) -> str:
    """MODEL.md: what a team serving the file elsewhere needs, and nothing else."""
    metrics = metadata.get("metrics") or {}
    classes = metadata.get("classes") or []
    positive = metadata.get("positive")
    lines = [
        f"# Model {version}: how to use the file",
        "",
        *usage_lines(metadata),
        "",
        f"Predicts `{metadata.get('target')}`: classes {', '.join(map(json.dumps, classes))} "
        "(the columns of `predict_proba`, in that order)"
        + (f"; positive class {json.dumps(positive)}." if positive is not None else "."),
        "",
        "## Features",
        "",
        *_features_table(metadata),
        "",
        *_metrics_table(metrics),
        "",
        f"Model sha256 `{metadata.get('model_sha256')}`; train data sha256 "
        f"`{metadata.get('data_sha256')}`; test data sha256 `{metadata.get('test_data_sha256')}`.",
        "",
    ]
    return "\n".join(lines)


def model_card(version: str, metadata: dict[str, Any], registry_data: dict[str, Any]) -> str:
    """MODEL_CARD.md: what the model is, how it was made, how it scored, how to verify it."""
    metrics = metadata.get("metrics") or {}
    gate = metadata.get("gate") or {}
    params = (metadata.get("params") or {}).get("train") or {}
    estimator = metadata.get("estimator") or params.get("estimator")
    hyper = (params.get("hyperparameters") or {}).get(estimator, {})
    promoted = [item for item in registry_data["history"] if item.get("to") == version] or [{}]
    event = promoted[0]
    lines = [
        f"# Model {version}",
        "",
        f"Binary classifier (`{estimator}`, scikit-learn Pipeline) predicting "
        f"`{metadata.get('target')}` from {len(metadata.get('features') or [])} features. "
        + (
            "**Force-promoted: it did not pass the gate.**"
            if gate.get("forced")
            else "It passed the promotion gate."
        ),
        "",
        "| | |",
        "|---|---|",
        f"| version | {version} (tag `{tag_for(version)}`) |",
        f"| model sha256 | `{metadata.get('model_sha256')}` |",
        f"| trained | {metadata.get('created_at')} at commit `{metadata.get('git_commit')}` |",
        f"| promoted | {metadata.get('promoted_at')} by {metadata.get('promoted_by')} |",
        f"| why | {event.get('why', 'n/a')} |",
        f"| train data sha256 | `{metadata.get('data_sha256')}` |",
        f"| train rows | {metadata.get('train_rows')} |",
        f"| test data sha256 | `{metadata.get('test_data_sha256')}` |",
        f"| hyperparameters | {', '.join(f'{k}={v}' for k, v in hyper.items()) or 'defaults'} |",
        f"| features | {', '.join(metadata.get('features') or [])} |",
        "",
        *_metrics_table(metrics),
        "",
    ]
    if gate.get("criteria"):
        lines += [
            "## Gate",
            "",
            "| criterion | value | threshold | passed |",
            "|---|---:|---:|---|",
        ]
        lines += [
            f"| {c['name']} | {_cell(c.get('value'))} | {_cell(c.get('threshold'))} | "
            f"{'yes' if c.get('passed') else '**no**'} |"
            for c in gate["criteria"]
        ]
        lines.append("")
    lines += [
        "## Use",
        "",
        *usage_lines(metadata),
        "",
        f"Features, their types and the three lines in {USAGE_FILE}. "
        "Verify before use: `sha256sum --check SHA256SUMS` and `gh attestation verify` each file; "
        "`make release-import DIR=<downloaded assets>` checks it and installs the model.",
        "Limits: scored on one held-out split of the training periods; watch `make drift` on new "
        "data. Census microdata: do not try to re-identify people.",
        "",
    ]
    return "\n".join(lines)


def export_bundle(
    directory: Path,
    version: str | None = None,
    models_dir: Path = MODELS_DIR,
    report: Path = PROMOTION_REPORT,
) -> str | None:
    """Write the bundle of `version` (default: what the gate just promoted); return its tag."""
    directory, models_dir = Path(directory), Path(models_dir)
    if version is None:
        version = promoted_version(report)
        if version is None:
            _remove_bundle(directory)
            log.info("the gate promoted nothing in this run: no release bundle written")
            return None
        production = registry.production_version(models_dir)
        if production != version:
            raise InputError(
                f"{report}: the gate promoted {version}, but production is now {production}; "
                "not exported (name one: VERSION=vN)"
            )
    registry_data = registry.read_registry(models_dir)
    if version not in registry_data["versions"]:
        raise InputError(f"version {version!r} is not in {models_dir / registry.REGISTRY_FILE}")
    model = registry.verified_model_file(models_dir, version, registry_data)
    if model.name != MODEL_FILE:
        raise InputError(
            f"{model}: a pickle (saved before skops); run `make models-upgrade` and export again"
        )
    metadata = files.read_json(model.parent / METADATA_FILE)
    tag = tag_for(version)
    _remove_bundle(directory)  # TAG first: a bundle without TAG is never published
    directory.mkdir(parents=True, exist_ok=True)
    files.atomic_write(directory / MODEL_FILE, lambda tmp: shutil.copyfile(model, tmp))
    onnx = registry.verified_onnx_file(models_dir, version, registry_data)
    if onnx is not None:
        files.atomic_write(directory / ONNX_FILE, lambda tmp: shutil.copyfile(onnx, tmp))
    files.write_json(directory / METADATA_FILE, {**metadata, "version": version})
    files.write_json(
        directory / METRICS_FILE, {"version": version, **(metadata.get("metrics") or {})}
    )
    files.write_json(directory / SNAPSHOT_FILE, registry_data)
    files.write_text(directory / CARD_FILE, model_card(version, metadata, registry_data))
    files.write_text(directory / USAGE_FILE, usage_card(version, metadata))
    written = [name for name in BUNDLE_FILES[2:] if (directory / name).is_file()]
    listed = {name: files.sha256_file(directory / name) for name in written}
    listed[TAG_FILE] = hashlib.sha256((tag + "\n").encode()).hexdigest()
    files.write_text(
        directory / MANIFEST_FILE, "".join(f"{listed[n]}  {n}\n" for n in sorted(listed))
    )
    files.write_text(directory / TAG_FILE, tag + "\n")
    log.info("release bundle %s written to %s", tag, directory)
    return tag


def _remove_bundle(directory: Path) -> None:
    for name in BUNDLE_FILES:
        (directory / name).unlink(missing_ok=True)


def read_bundle(directory: Path) -> tuple[str, dict[str, Any], dict[str, Any], list[dict]] | None:
    """(version, metadata, registry snapshot, other releases' metadata), verified; None if empty."""
    directory = Path(directory)
    if directory.is_symlink():
        raise InputError(f"{directory}: a symlink; refusing to import")
    if not directory.is_dir() or not any(directory.iterdir()):
        return None
    verify_manifest(directory)
    for name in (MODEL_FILE, METADATA_FILE):
        if not (directory / name).is_file():
            raise InputError(f"{directory}: not a model release bundle ({name} missing)")
    metadata = files.read_json(directory / METADATA_FILE)
    version = metadata.get("version")
    if not isinstance(version, str):
        raise InputError(f"{directory / METADATA_FILE}: no `version`")
    tag = tag_for(version)
    if metadata.get("model_file") != MODEL_FILE:
        raise InputError(f"{directory / METADATA_FILE}: model_file is not {MODEL_FILE}")
    data = model_file.read_verified(
        directory / MODEL_FILE, metadata.get("model_sha256"), str(directory / METADATA_FILE)
    )
    model_file.loads(data, str(directory / MODEL_FILE))  # trusted types only: runs no code
    if metadata.get("onnx_sha256"):
        path = directory / ONNX_FILE
        if not path.is_file() or files.sha256_file(path) != metadata["onnx_sha256"]:
            raise InputError(
                f"{path}: missing or its sha256 does not match {directory / METADATA_FILE} "
                "(onnx_sha256); refusing to import"
            )
    if (directory / TAG_FILE).is_file():
        found = (directory / TAG_FILE).read_text(encoding="utf-8").strip()
        if found != tag:
            raise InputError(f"{directory / TAG_FILE}: says {found!r} but the model is {tag}")
    snapshot = registry.empty_registry()
    if (directory / SNAPSHOT_FILE).is_file():
        snapshot = files.read_json(directory / SNAPSHOT_FILE)
        problem = registry._shape_problem(snapshot)
        if problem:
            raise InputError(f"{directory / SNAPSHOT_FILE}: {problem}")
    others = []
    for path in sorted((directory / RELEASES_DIR).glob(f"*/{METADATA_FILE}")):
        other = files.read_json(path)
        if not isinstance(other.get("version"), str) or "model_sha256" not in other:
            raise InputError(f"{path}: no `version` or `model_sha256`")
        registry.version_number(other["version"])
        others.append(other)
    return version, metadata, snapshot, others


def _listing(directory: Path) -> list[str]:
    """Every entry under directory (relative, sorted); a symlink anywhere is refused."""
    found = []
    for root, dirs, names in os.walk(directory):
        for name in sorted(dirs + names):
            path = Path(root) / name
            if path.is_symlink():
                raise InputError(f"{path}: a symlink in the release bundle; refusing to import")
            if path.is_file():
                found.append(path.relative_to(directory).as_posix())
            elif not path.is_dir():
                raise InputError(f"{path}: not a regular file; refusing to import")
    return sorted(found)


def verify_manifest(directory: Path) -> dict[str, str]:
    """The bundle's SHA256SUMS, checked: every file listed and matching, nothing else present."""
    manifest = directory / MANIFEST_FILE
    present = _listing(directory)
    if MANIFEST_FILE not in present:
        raise InputError(f"{manifest}: missing; not a verifiable release bundle, not imported")
    listed: dict[str, str] = {}
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
        match = MANIFEST_LINE.match(line)
        if not match or match.group(2) not in (*BUNDLE_FILES[2:], TAG_FILE):
            raise InputError(f"{manifest}:{number}: not a `<sha256>  <bundle file>` line")
        listed[match.group(2)] = match.group(1)
    others = f"{RELEASES_DIR}/"  # other releases' metadata: JSON summaries, never a model
    for name in present:
        if name == MANIFEST_FILE or name in listed:
            continue
        if not (name.startswith(others) and name.endswith(f"/{METADATA_FILE}")):
            raise InputError(f"{directory / name}: not listed in {manifest}; refusing to import")
    for name, sha in listed.items():
        if name not in present:
            raise InputError(f"{directory / name}: listed in {manifest} but missing")
        if files.sha256_file(directory / name) != sha:
            raise InputError(
                f"{directory / name}: sha256 does not match {manifest}; refusing to import"
            )
    return listed


def import_bundle(directory: Path, models_dir: Path = MODELS_DIR) -> str | None:
    """Install a downloaded release bundle as the production version; return it (None: empty)."""
    directory, models_dir = Path(directory), Path(models_dir)
    found = read_bundle(directory)
    if found is None:
        production = registry.production_version(models_dir)
        log.info(
            "no release bundle in %s: nothing imported (production stays %s)",
            directory,
            production or "empty: no production model yet",
        )
        return None
    version, metadata, snapshot, others = found
    sha = metadata["model_sha256"]
    with registry.locked(models_dir):
        current = registry.read_registry(models_dir)
        merged = copy.deepcopy(current)
        fresh = not current["versions"] and not current["history"]
        holder = registry.find_by_sha(current, sha)
        if holder not in (None, version) or (
            version in current["versions"] and current["versions"][version]["sha256"] != sha
        ):
            raise InputError(
                f"{directory}: {tag_for(version)} conflicts with the local registry "
                f"({version} or this sha256 is already another model here)"
            )
        for name, entry in snapshot["versions"].items():
            if name not in merged["versions"] and name != version:
                merged["versions"][name] = {**entry, "local": False}
        for other in others:
            if other["version"] not in merged["versions"] and other["version"] != version:
                merged["versions"][other["version"]] = {**registry.summary(other), "local": False}
        seen = {_event_key(item) for item in merged["history"]}
        merged["history"] += [item for item in snapshot["history"] if _event_key(item) not in seen]
        local = current["versions"].get(version, {}).get("local", False)
        entry = current["versions"].get(version, {})
        here = models_dir / version / model_file.entry_file(entry, f"versions.{version}")
        if not (local and here.is_file()):
            registry.clean_leftovers(models_dir, merged)
            onnx = directory / ONNX_FILE
            data = onnx.read_bytes() if metadata.get("onnx_sha256") else None
            registry.install_version(models_dir, version, directory / MODEL_FILE, metadata, data)
        merged["versions"][version] = registry.summary(metadata)
        before = snapshot.get("production") if fresh else current.get("production")
        if before != version:
            why = f"release {tag_for(version)} installed from {directory}"
            merged["history"].append(registry.event("imported", before, version, why))
        merged["production"] = version
        if merged != current:
            registry.write_registry(models_dir, merged)
    log.info("production is %s (release %s, sha256 %s)", version, tag_for(version), sha[:12])
    return version


def _event_key(item: dict[str, Any]) -> tuple:
    return tuple(item.get(key) for key in ("event", "from", "to", "when"))


def export_command(config: Config, directory: Path, version: str | None = None) -> None:
    """CLI `release-export`: the promoted (or given) version as a release bundle in DIR."""
    tag = export_bundle(directory, version)
    if tag:
        print(tag)


def import_command(config: Config, directory: Path) -> None:
    """CLI `release-import`: install the release bundle in DIR as the production version."""
    import_bundle(directory)
