"""User-facing errors. The CLI turns any of these into one clear line and exit code 2.

They live in hw_models because it is the package every other one may import.
"""


class ClusterSimError(Exception):
    """Bad input: the message names what is wrong and what is allowed."""


class ClusterSimWarning(UserWarning):
    """A result is still given, but the user should know something (the CLI prints one
    ``warning: ...`` line per warning on stderr)."""


class UnknownPresetError(ClusterSimError):
    def __init__(self, kind: str, name: str, allowed: list[str]):
        super().__init__(f"unknown {kind} {name!r}; allowed: {', '.join(sorted(allowed))}")


class InfeasiblePlanError(ClusterSimError):
    """A parallelism plan that cannot run (indivisible sizes, wrong GPU count)."""


class OutOfMemoryError(ClusterSimError):
    """A plan whose per-rank memory exceeds the device's capacity."""
