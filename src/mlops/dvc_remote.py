"""data/raw in a DVC remote: `make data-remote`, the pull before `make data`, accept-data's push.

Used only when data/raw.dvc exists (or is being made), and it imports nothing of DVC: it runs
this interpreter's `dvc` (`python -m dvc`) with DVC's analytics off. The check before `make data`
compares the files with DVC's own manifest of the folder (its .dir file in .dvc/cache), hashing
only files whose size or mtime changed since the last check; DVC runs only to pull."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from mlops.config import Config
from mlops.errors import InputError

DVC_ENV = {"DVC_NO_ANALYTICS": "1", "DVC_NO_UPDATE_CHECK": "1"}
REMOTE_NAME = "storage"
INSTALL = "pip install '.[dvc]'"


def pointer(config: Config) -> Path:
    """data/raw.dvc: DVC's pointer file beside the raw folder."""
    raw = Path(config.data.raw_dir)
    return raw.with_name(f"{raw.name}.dvc")


def dvc(*args: str, check: str | None = None) -> subprocess.CompletedProcess:
    """Run `dvc ARGS` (this interpreter's); with check, a failure is an InputError."""
    try:
        installed = importlib.util.find_spec("dvc") is not None
    except ImportError:  # a broken or blocked installation
        installed = False
    if not installed:
        raise InputError(f"DVC is not installed (data/raw is in a DVC remote): {INSTALL}")
    done = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **DVC_ENV},
    )
    if check and done.returncode:
        raise InputError(f"{check}: {problem(done.stdout + done.stderr)}")
    return done


def problem(output: str) -> str:
    """DVC's error, as one line that says what to do."""
    text = " ".join(output.split())
    lowered = text.lower()
    hints = (
        (
            "unsaved files",
            "files in data/raw differ from data/raw.dvc and are in no DVC cache: "
            "`make accept-data` keeps them, `dvc checkout --force data/raw` discards them",
        ),
        ("no remote provided", "no DVC remote: set one with `make data-remote REMOTE=<url>`"),
        (
            "forbidden",
            "the remote refused access (403): check its credentials or role (AWS_ACCESS_KEY_ID"
            " / AWS_SECRET_ACCESS_KEY; docs/runbook.md, DVC remote) and run the command again",
        ),
        (
            "invalidaccesskeyid",
            "the remote refused the credentials (AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY, or the role): fix them and run the command again",
        ),
        (
            "signaturedoesnotmatch",
            "the remote refused the credentials (AWS_SECRET_ACCESS_KEY): "
            "fix them and run the command again",
        ),
        (
            "access denied",
            "the remote denied access: check the credentials or role "
            "(docs/runbook.md, DVC remote) and run the command again",
        ),
        (
            "unable to locate credentials",
            "no credentials for the remote: set AWS_ACCESS_KEY_ID "
            "and AWS_SECRET_ACCESS_KEY (or a profile or role) and run the command again",
        ),
        (
            "nosuchbucket",
            "the remote's bucket does not exist: create it, or point the remote "
            "elsewhere with `make data-remote REMOTE=<url>`",
        ),
        (
            "could not connect",
            "the remote is unreachable: check the network or its URL "
            "(`dvc remote list`) and run the command again",
        ),
        (
            "connect timeout",
            "the remote is unreachable: check the network or its URL "
            "(`dvc remote list`) and run the command again",
        ),
        (
            "checkout failed",
            "files of data/raw.dvc are in neither the DVC cache nor the remote "
            "(or the remote is unreachable): on the machine that made the pointer run "
            "`dvc push data/raw`, or check the remote with `dvc remote list`",
        ),
        (
            "missing cache files",
            "files of data/raw.dvc are not in the DVC cache: on the machine "
            "that made the pointer run `dvc push data/raw`",
        ),
    )
    for needle, hint in hints:
        if needle in lowered:
            return hint
    last = next((line for line in reversed(output.splitlines()) if "ERROR" in line), text)
    return f"dvc: {last.strip().removeprefix('ERROR: ')[:300]}"


def md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tracked(pointer_file: Path) -> str | None:
    """The md5 of the folder a pointer names (`<md5>.dir`), or None when it names none."""
    import yaml

    try:
        outs = yaml.safe_load(pointer_file.read_text(encoding="utf-8"))["outs"]
        return str(outs[0]["md5"])
    except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError):
        return None


def manifest(root: Path, folder_md5: str) -> dict[str, str] | None:
    """{relative path: md5} from DVC's cache entry of the folder, or None when not cached."""
    entry = root / ".dvc" / "cache" / "files" / "md5" / folder_md5[:2] / folder_md5[2:]
    try:
        return {item["relpath"]: item["md5"] for item in json.loads(entry.read_text())}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def workspace_state(raw: Path, expected: dict[str, str], known: dict) -> dict | None:
    """{name: [size, mtime_ns, md5]} of the files the manifest lists when each matches it, else
    None. Files whose size and mtime are as `known` records are not hashed again."""
    state = {}
    for name, md5 in sorted(expected.items()):
        try:
            stat = (raw / name).stat()
        except OSError:
            return None
        size, mtime = stat.st_size, stat.st_mtime_ns
        seen = known.get(name)
        digest = seen[2] if seen and seen[:2] == [size, mtime] else md5_file(raw / name)
        if digest != md5:
            return None
        state[name] = [size, mtime, digest]
    return state


def seen_file(stamp: Path) -> Path:
    """Beside the stamp: each file's size, mtime and md5 when last checked (not a Make input)."""
    return stamp.with_name(f"{stamp.stem}.seen.json")


def up_to_date(config: Config, stamp: Path, root: Path = Path()) -> dict | None:
    """{"md5": folder md5, "files": {name: [size, mtime_ns, md5]}} when data/raw already matches
    data/raw.dvc (nothing to pull), else None."""
    folder = tracked(root / pointer(config))
    if folder is None:
        raise InputError(f"{pointer(config)}: not a DVC pointer (expected outs: - md5: ...)")
    expected = manifest(root, folder)
    if expected is None:
        return None
    try:
        known = json.loads(seen_file(stamp).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    files = known.get("files", {}) if known.get("md5") == folder else {}
    state = workspace_state(root / config.data.raw_dir, expected, files)
    return None if state is None else {"md5": folder, "files": state}


def pull_command(config: Config, stamp: Path) -> None:
    """Before `make data`: `dvc pull data/raw` when files are missing or differ from
    data/raw.dvc. The stamp (the files' md5s) is rewritten only when one changed (then Make
    re-runs data); beside it, <stamp>.mk lists the files for Make (RAW_PULLED: a newer one, or a
    missing one, makes Make check again)."""
    from mlops.files import write_text

    if not pointer(config).is_file():
        return
    state = up_to_date(config, stamp)
    if state is None:
        raw = config.data.raw_dir
        print(f"==> dvc pull {raw} (files missing or differing from {pointer(config)})")
        dvc("pull", str(raw), check=f"{pointer(config)}: dvc pull {raw}")
        state = up_to_date(config, stamp)
        if state is None:
            raise InputError(
                f"{raw}: does not match {pointer(config)} after dvc pull (a corrupted DVC cache "
                f"file?): `dvc pull --force {raw}` fetches it again"
            )
    raw = Path(config.data.raw_dir)
    names = sorted(state["files"])
    md5s = {"md5": state["md5"], "files": {name: state["files"][name][2] for name in names}}
    for path, text in (
        (stamp, json.dumps(md5s, sort_keys=True) + "\n"),
        (seen_file(stamp), json.dumps(state, sort_keys=True) + "\n"),
        (stamp.with_suffix(".mk"), f"RAW_PULLED := {' '.join(str(raw / n) for n in names)}\n"),
    ):
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            write_text(path, text)


def accept_command(config: Config) -> None:
    """`make accept-data`: record the sha256 of the raw files; with data/raw.dvc also `dvc add`
    them and `dvc push` them to the remote."""
    from mlops import data

    data.accept_command(config)
    if pointer(config).is_file():
        raw = str(config.data.raw_dir)
        dvc("add", raw, check=f"{pointer(config)}: dvc add {raw}")
        dvc("push", raw, check=f"{pointer(config)}: dvc push {raw}")
        print(f"data/raw pushed; commit the pointer: git add {pointer(config)} && git commit")


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=False)


def remote_command(config: Config, remote: str) -> None:
    """`make data-remote REMOTE=<url>`: move data/raw out of git into a DVC remote (idempotent)."""
    from mlops import data

    raw = str(config.data.raw_dir)
    if not remote:
        raise InputError("make data-remote: REMOTE=<url> is required (a folder, s3://..., ...)")
    if git("rev-parse", "--is-inside-work-tree").returncode:
        raise InputError("make data-remote: not a git checkout (run it in the project's clone)")
    changed = git("status", "--porcelain", "--untracked-files=all", "--", raw).stdout.split("\n")
    moved = pointer(config).is_file()  # a run before: the index's deletions are its own
    changed = [line for line in changed if line.strip() and not (moved and line[:2] == "D ")]
    if changed:
        raise InputError(
            f"{raw}: uncommitted changes ({changed[0].strip()}...): `make accept-data` and commit "
            f"them first"
        )
    data.verify_raw(Path(raw))  # only accepted data goes to the remote
    if not Path(".dvc").is_dir():
        dvc("init", "--quiet", check="dvc init")
    dvc("config", "core.analytics", "false", check="dvc config")
    dvc("remote", "add", "--force", "--default", REMOTE_NAME, remote, check="dvc remote add")
    if git("ls-files", "--", raw).stdout.strip():
        git("rm", "-r", "--cached", "--quiet", "--", raw)  # the files stay on disk
    dvc("add", raw, check=f"dvc add {raw}")
    dvc("push", raw, check=f"dvc push {raw} to {remote}")
    gitignore = str(Path(raw).parent / ".gitignore")
    staged = [str(pointer(config)), gitignore, ".dvc/config", ".dvc/.gitignore", ".dvcignore"]
    git("add", "--", *[name for name in staged if Path(name).exists()])
    print(
        f"{raw} is in the DVC remote {remote} and out of git's index (kept on disk).\n"
        f"Next: git commit -m 'data: {raw} in DVC' && git push\n"
        f"Elsewhere, `make data` pulls it (credentials for the remote: docs/runbook.md)."
    )
