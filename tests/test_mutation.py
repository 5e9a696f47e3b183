"""make mutate's bookkeeping: mutmut's listing read back, mutants mapped to their functions."""

import pytest

from mlops import mutation
from mlops.errors import InputError


def test_statuses_reads_every_mutant_line():
    listing = (
        "    mlops.promote.x_judge__mutmut_1: killed\n"
        "    mlops.drift.x_verdict__mutmut_12: survived\n"
        "⠋ Generating mutants\n"
    )
    assert mutation.statuses(listing) == {
        "mlops.promote.x_judge__mutmut_1": "killed",
        "mlops.drift.x_verdict__mutmut_12": "survived",
    }


def test_function_of_a_mutant():
    assert (
        mutation.function_of("mlops.drift.evidently_run.x_drifted__mutmut_3")
        == "mlops.drift.evidently_run.drifted"
    )
    assert mutation.function_of("mlops.registry.x_rollback__mutmut_10") == "mlops.registry.rollback"
    assert (
        mutation.function_of("mlops.drift.rules.xǁDegradationǁjudge__mutmut_2")
        == "mlops.drift.rules.Degradation.judge"
    )


def test_every_mutated_function_exists():
    """A renamed function would silently drop out of `make mutate`."""
    import fnmatch
    import importlib

    from mlops.drift import rules

    for pattern in mutation.MUTATED:
        module, _, name = pattern.rpartition(".")
        if name.startswith("xǁ"):  # methods: at least one class of the module has it
            found = [
                f"{module}.xǁ{rule.__class__.__name__}ǁjudge__mutmut_1"
                for rule in rules.RULES
                if callable(rule.judge)
            ]
            assert any(fnmatch.fnmatchcase(m, pattern) for m in found), pattern
            continue
        function = name.removeprefix("x_").removesuffix("__mutmut_*")
        assert callable(getattr(importlib.import_module(module), function)), pattern


def test_a_survivor_is_explained_only_by_a_matching_fragment():
    function, fragment, why = mutation.EXPLAINED[0]
    assert mutation.explanation(function, f"-    old\n+    {fragment}x") == why
    assert mutation.explanation(function, f"-    {fragment}x\n+    other") is None
    assert mutation.explanation("mlops.other.f", f"+    {fragment}") is None


def test_a_subset_outside_the_decision_functions_is_refused(config):
    with pytest.raises(InputError, match=r"--only: mlops\.serve\.x_app__mutmut_\* is not one of"):
        mutation.run(config, only="mlops.serve.x_app__mutmut_*")
