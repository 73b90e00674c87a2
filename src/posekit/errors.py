"""User-facing errors.

A :class:`UserError` is a mistake the user can fix (bad path, malformed file, bad key). The CLI
prints its message as one line on stderr and exits with status 2, without a traceback. The
message names the file or key and says how to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A mistake in the user's input: reported as one line, exit status 2."""


class ConfigError(UserError):
    """A config file, key or override is wrong."""


class SchemaError(UserError):
    """A keypoint schema is missing or inconsistent."""


class DataError(UserError):
    """A data file (annotation JSON, image, prepared labels) cannot be used."""


class CheckpointError(UserError):
    """A checkpoint or weights file is missing, truncated, corrupt or unsafe."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""`` if none is close."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def one_line(message: str) -> str:
    """Collapse a message to a single line (errors are printed as exactly one line); control
    characters (e.g. a terminal escape in a file name) are shown escaped, never sent."""
    text = " ".join(str(message).split())
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
