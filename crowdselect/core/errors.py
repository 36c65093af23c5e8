"""User-facing errors: printed without a traceback by the CLI, exit code 2."""

from crowdselect.core.config import ConfigError


class UserError(Exception):
    """A problem with what the user gave (input rows, paths, models); the message says file, row and reason."""


__all__ = ["ConfigError", "UserError"]
