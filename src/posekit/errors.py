"""User-facing errors.

A :class:`UserError` is a mistake the user can fix (bad path, malformed file, bad key). The CLI
prints its message as one line on stderr and exits with status 2, without a traceback. The
message names the file or key and says how to fix it.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable, Mapping

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


def check_parameters(
    factory: Callable[..., object],
    params: Mapping[str, object],
    where: str,
    given: Iterable[str] = (),
) -> None:
    """Refuse, in one line, ``params`` that ``factory`` does not take (with the closest name
    and the names it takes) or a required one that is missing; ``given`` names the
    parameters the caller passes itself (not the user's to set)."""
    given = tuple(given)
    signature = inspect.signature(factory)
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        return
    taken = [
        name for name, p in signature.parameters.items()
        if name not in given and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]  # fmt: skip
    for name in params:
        if name not in taken:
            raise ConfigError(
                f"{where}: unknown parameter {name!r}{did_you_mean(name, taken)}; known: {taken}"
            )
    try:
        signature.bind(**{name: None for name in given}, **params)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}; check the parameter names") from None


def one_line(message: str) -> str:
    """Collapse a message to a single line (errors are printed as exactly one line); control
    characters (e.g. a terminal escape in a file name) are shown escaped, never sent."""
    text = " ".join(str(message).split())
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
