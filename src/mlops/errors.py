"""The two ways a stage says no, mapped to exit codes by the CLI."""


class InputError(Exception):
    """Input that cannot be used at all (file, params, CLI argument): exit code 2."""

    exit_code = 2


class CheckFailed(Exception):
    """A check that ran and said no (validation, gate, drift): exit code 1."""

    exit_code = 1
