"""`make drift`: read the batch, reference, test split and model; analyse; write and record."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mlops import files, tracking
from mlops.config import Config
from mlops.drift import html_report
from mlops.drift.analysis import analyse
from mlops.drift.evidently_run import import_evidently
from mlops.drift.history import REPORTS, record
from mlops.drift.inputs import load_current, load_model, load_reference, load_test
from mlops.drift.markdown import markdown, model_name
from mlops.errors import CheckFailed, InputError
from mlops.registry import locked

log = logging.getLogger(__name__)


SUFFIXES = (".html", ".json", ".md")


def write_generation(result: dict, snapshot: Any, prefix: Path) -> Path:
    """drift.{html,json,md} of this run in a new generation folder (reports/.drift-generations/
    g-*), not yet what reports/drift.* show."""
    folder, name = prefix.parent, prefix.name
    generations = folder / f".{name}-generations"
    generations.mkdir(parents=True, exist_ok=True)
    generation = Path(tempfile.mkdtemp(prefix="g-", dir=generations))
    os.chmod(generation, 0o755)
    html = generation / f"{name}.html"
    files.write_text(html, html_report.page(result, snapshot.get_html_str(as_iframe=False)))
    files.write_json(generation / f"{name}.json", result)
    files.write_text(generation / f"{name}.md", markdown(result, html.name))
    return generation


def switch(prefix: Path, generation: Path) -> None:
    """reports/drift.html etc. are fixed links into .drift-current; the link .drift-current is
    switched to the generation in one rename, so a reader (or a kill at any point) sees the three
    of one run, never a mix; older generations are removed (the caller holds the lock)."""
    folder, name = prefix.parent, prefix.name
    current = folder / f".{name}-current"
    for suffix in SUFFIXES:  # the stable paths (an older plain file replaced)
        _link(prefix.with_suffix(suffix), f"{current.name}/{name}{suffix}")
    _link(current, f"{generation.parent.name}/{generation.name}")  # the switch: one rename
    for old in generation.parent.iterdir():
        if old != generation:
            shutil.rmtree(old, ignore_errors=True)


def _link(path: Path, target: str) -> None:
    """path as a symlink to target, replaced atomically (each run the same writes)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.link.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def report(
    config: Config, current: Path | str | None, *, prefix: Path, labels: Path | str | None = None
) -> dict:
    """Stream and check the batch, analyse it, write the reports, record the run; return
    drift.json's content."""
    reference = load_reference(config)
    test = load_test(config)
    model, model_info = load_model(config)
    features = model_info.get("features") or config.features
    for name, frame in (("the reference split", reference), ("test", test)):
        missing = [c for c in features if c not in frame.columns]
        if missing:
            raise InputError(
                f"{name}: missing column(s) {', '.join(missing)} that the {model_info['source']} "
                "model was trained with: promote a model trained on this schema, or roll back"
            )
    batch = load_current(config, current, reference, model_info, labels, model)
    log.info(
        "comparing %s (%d rows in %d file(s)%s) with %s (%d rows); model: %s",
        batch.name,
        batch.total,
        batch.files,
        "" if batch.labelled else ", no labels",
        config.drift.reference,
        len(reference),
        model_name(model_info),
    )
    if model_info.get("note"):
        log.warning("%s", model_info["note"])
    result, snapshot = analyse(
        config,
        reference,
        batch,
        test,
        labelled=batch.labelled,
        batch=batch.name,
        model=model,
        model_info=model_info,
    )
    with locked(prefix.parent):  # two drift runs at once: each writes and records whole
        generation = write_generation(result, snapshot, prefix)
        try:  # a run is in the history and in reports/drift.*, or in neither
            undo = record(result, snapshot, config.drift.history_snapshots)
            try:
                switch(prefix, generation)
            except BaseException:
                undo()
                raise
        except BaseException:
            shutil.rmtree(generation, ignore_errors=True)
            raise
    perf = result["performance"]
    log.info(
        "%s: %d of %d columns drifted (share %.2f, importance %s), prediction %s %.3f, "
        "performance %s (%s), %d chunk(s); reports %s.{html,json,md}",
        result["status"],
        len(result["drifted_columns"]),
        len(result["columns"]),
        result["share_drifted"],
        "n/a" if result["importance_drifted"] is None else f"{result['importance_drifted']:.2f}",
        result["prediction_drift"]["method"],
        result["prediction_drift"]["score"],
        "degraded" if perf["degraded"] else "ok",
        perf["judged_by"],
        len(result["chunks"]),
        prefix,
    )
    return result


def run(
    config: Config, current: Path | str | None = None, labels: Path | str | None = None
) -> dict:
    """`make drift [CURRENT=<file|folder|glob|s3://...> [LABELS=...]]`: exit 1 (CheckFailed) on
    an alert with fail_on_drift."""
    import_evidently()
    result = report(config, current, prefix=REPORTS / "drift", labels=labels)
    if tracking.enabled(config):
        tracking.log_drift(config, result, REPORTS / "drift")
    if result["status"] == "alert":
        message = "; ".join(result["alerts"]) + " (see reports/drift.html)"
        if config.drift.fail_on_drift:
            raise CheckFailed(message)
        log.warning("%s; drift.fail_on_drift is false: not failing", message)
    return result
