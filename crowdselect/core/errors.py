"""User-facing errors: printed without a traceback by the CLI (exit code 2; a `StageError` exits 4)."""

from crowdselect.core.config import ConfigError


class UserError(Exception):
    """A problem with what the user gave (input rows, paths, models); the message says file, row and reason."""


class StageError(Exception):
    """A model stage that could not finish (its engine failed or stalled): the message names the stage, the
    cause, and the shards written and left; rerunning the same command resumes with the shards left."""


__all__ = ["ConfigError", "StageError", "UserError"]
