"""`make mutate`: mutation testing of the pipeline's decisions with mutmut → reports/mutation.json.

mutmut changes one small thing at a time (a comparison, a constant, a boolean) in the functions
below and runs the tests that cover each function, fastest first, stopping at the first failure;
a mutant no test notices "survived" and names a decision no test pins down. Only decision
functions are mutated (the gate, the drift verdict, validation, the registry; configuration:
[tool.mutmut] in pyproject.toml; the working copy is mutants/, git-ignored). Each has unit tests
that need no project, so most mutants die in under a second: all of MUTATED (656 mutants) takes
6 to 35 minutes on two cores (measured runs; the latest took 35), niced, one mutmut child per core.
Not run in CI. `make mutate MUTANTS="glob ..."` checks a subset; results of other mutants stay in
mutants/ (the report lists what is still unchecked). A survivor not explained in EXPLAINED is
a failed check (exit 1).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops import files
from mlops.config import Config
from mlops.errors import CheckFailed, InputError

log = logging.getLogger(__name__)
REPORT = Path("reports/mutation.json")
# mutmut names a mutant module.x_function__mutmut_N; these globs choose the functions mutated.
MUTATED = (
    "mlops.promote.x_at_least__mutmut_*",
    "mlops.promote.x_judge__mutmut_*",
    "mlops.promote.x_production_criteria__mutmut_*",
    "mlops.promote.x_validation_status__mutmut_*",
    "mlops.drift.evidently_run.x_drifted__mutmut_*",
    "mlops.drift.rules.xǁ*ǁjudge__mutmut_*",  # every rule's judge method (mutmut's class mark)
    "mlops.drift.analysis.x_verdict__mutmut_*",
    "mlops.validate.x_check_frame__mutmut_*",
    "mlops.registry.x_previous_production__mutmut_*",
    "mlops.registry.x_production_stack__mutmut_*",
    "mlops.registry.x_next_version__mutmut_*",
    "mlops.registry.x_find_by_sha__mutmut_*",
    "mlops.registry.x_verified_model_file__mutmut_*",
    "mlops.registry.x_add_version__mutmut_*",
    "mlops.registry.x_rollback__mutmut_*",
)
# Survivors that change no behaviour, so no test can kill them: (function, a fragment of the
# mutated line, why). A survivor matching none of these is "unexplained" in the report.
EXPLAINED: tuple[tuple[str, str, str], ...] = (
    (
        "mlops.validate.check_frame",
        "failures = pd.DataFrame(columns=",
        "the empty frame used when every check passes: only its `check` and `failure_case` "
        "columns are read before `column` is assigned, and `index` only for failure rows",
    ),
)
RESULT_LINE = re.compile(r"^\s*(mlops\.[\w.]+__mutmut_\d+): (.+)$")


def mutmut(*argv: str, nice: bool = False) -> str:
    """Run the mutmut CLI of this interpreter's environment (at low priority if `nice`)."""
    command = [sys.executable, "-m", "mutmut", *argv]
    done = subprocess.run(
        ["nice", "-n", "10", *command] if nice else command,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        problem = done.stderr.strip()[-500:]
        raise CheckFailed(f"mutmut {argv[0]} exited {done.returncode}: {problem}")
    return done.stdout


def statuses(listing: str) -> dict[str, str]:
    """mutant name -> status from `mutmut results --all true`."""
    matches = (RESULT_LINE.match(line) for line in listing.splitlines())
    return {m.group(1): m.group(2).strip() for m in matches if m}


def function_of(mutant: str) -> str:
    """mlops.promote.x_judge__mutmut_3 -> mlops.promote.judge; a method's mutant,
    mlops.drift.rules.xǁDegradationǁjudge__mutmut_2 -> mlops.drift.rules.Degradation.judge."""
    module, _, name = mutant.rpartition(".")
    name = name.rsplit("__mutmut_", 1)[0]
    if name.startswith("xǁ"):
        return f"{module}.{'.'.join(name.removeprefix('xǁ').split('ǁ'))}"
    return f"{module}.{name.removeprefix('x_')}"


def explanation(function: str, diff: str) -> str | None:
    added = [line for line in diff.splitlines() if line.startswith("+ ")]
    for name, fragment, why in EXPLAINED:
        if name == function and any(fragment in line for line in added):
            return why
    return None


def run(config: Config, only: str | None = None) -> dict:
    """Mutate the decision functions (or the `only` globs, space-separated), run their tests,
    write the survivors with their diffs."""
    chosen = only.split() if only else list(MUTATED)
    unknown = [glob for glob in chosen if not any(fnmatch.fnmatchcase(glob, p) for p in MUTATED)]
    if unknown:
        raise InputError(f"--only: {', '.join(unknown)} is not one of {', '.join(MUTATED)}")
    mutmut("run", "--max-children", str(os.cpu_count() or 1), *chosen, nice=True)
    result = report()
    if result["unexplained"]:
        raise CheckFailed(
            f"{result['unexplained']} surviving mutant(s) no test notices, listed in {REPORT}: "
            "add a test that kills each, or explain it in mlops.mutation.EXPLAINED"
        )
    return result


def report() -> dict:
    """reports/mutation.json from mutmut's results so far (an interrupted run: partial)."""
    found = {
        name: status
        for name, status in statuses(mutmut("results", "--all", "true")).items()
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in MUTATED)
    }
    survivors = []
    for name in sorted(name for name, status in found.items() if status == "survived"):
        function, diff = function_of(name), mutmut("show", name).strip()
        survivors.append(
            {
                "mutant": name,
                "function": function,
                "diff": diff,
                "explained": explanation(function, diff),
            }
        )
    result: dict[str, Any] = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "functions": sorted({function_of(name) for name in found}),
        "mutants": len(found),
        "by_status": dict(Counter(found.values())),
        "survivors": survivors,
        "unexplained": sum(1 for item in survivors if not item["explained"]),
        "complete": "not checked" not in found.values(),
    }
    files.write_json(REPORT, result)
    log.info(
        "%d mutants of %d functions: %s; %d unexplained survivor(s) in %s",
        len(found),
        len(result["functions"]),
        result["by_status"],
        result["unexplained"],
        REPORT,
    )
    return result
