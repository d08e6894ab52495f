"""The exceptions of the harness: bad input (``UserError``, ``ConfigError``: one line, exit code 2),
a combination that does not apply (``NotApplicable``: a skipped record), a case that fails with a
reason (``CaseError``: an error record) and SIGTERM (``Terminated``: handled like Ctrl-C)."""


class UserError(Exception):
    """Bad input from the user (a suite file, a CLI option, a results file).

    The CLI prints ``str(error)`` on one line and exits with code 2; nothing else is printed.
    The message names where (file, key), the value, and what is allowed.
    """


class ConfigError(UserError):
    """A configuration value that is not allowed.

    Raised by case validation (bench/spec/checks.py) without knowing the file; the suite loader
    adds the file and section in front with :meth:`at`.
    """

    def __init__(self, key: str, value: object, allowed: str):
        self.key = key
        self.value = value
        self.allowed = allowed
        super().__init__(f"{key} = {value!r}: {allowed}")

    def at(self, where: str) -> UserError:
        return UserError(f"{where} {self}")


class NotApplicable(Exception):
    """A combination that does not apply on this device or with this torch (a fused optimizer
    torch does not offer here, bf16 on a GPU without it, ...): a ``skipped`` record with the
    reason, never run as something else."""


class CaseError(Exception):
    """A case that cannot run for a reason found only once it runs (a corrupt or mismatched
    checkpoint): an ``error`` record whose reason is this one line, without a traceback."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a CI job's cancel, Slurm's time limit) on the ``bench`` process: handled
    like Ctrl-C (running cases killed, finished records kept), with exit code 143."""
