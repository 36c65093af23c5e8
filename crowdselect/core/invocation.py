"""The command this process runs, as a user would type it again: `crowdselect select --config ...`.

The CLI records its arguments once (`record`); run.json and the dataset card write `command()`. A run
started from Python (a test, a notebook calling `run_select`) has none, and says so rather than guess.
"""

from __future__ import annotations

import shlex

_ARGV: list[str] | None = None


def record(argv: list[str]) -> None:
    """The arguments after `crowdselect` (what `cli.main` parsed)."""
    global _ARGV
    _ARGV = list(argv)


def command() -> str | None:
    """The recorded command (`as_command`), or None when no command line was recorded."""
    return None if _ARGV is None else as_command(_ARGV)


def as_command(argv: list[str]) -> str:
    """`crowdselect ARG ...`, quoted for a POSIX shell.

    >>> as_command(["select", "--out", "runs/my sel"])
    "crowdselect select --out 'runs/my sel'"
    """
    return shlex.join(["crowdselect", *argv])
