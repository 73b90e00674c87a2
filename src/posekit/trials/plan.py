"""The trials file of ``posekit trials``: a list of override entries, or a search space.

```json
[{"training.optimizer.lr": 1e-4}, {"training.optimizer.lr": 1e-3, "training.batch_size": 8}]
{"training.optimizer.lr": {"low": 1e-5, "high": 1e-3, "log": true},
 "training.batch_size": {"choices": [4, 8]}}
```
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from posekit.errors import ConfigError


@dataclass(frozen=True)
class TrialsPlan:
    """The list form (``entries``: dotted overrides per trial) or the search-space form."""

    entries: list[dict[str, Any]] | None = None
    space: dict[str, dict[str, Any]] | None = None
    n_trials: int = 0

    @property
    def keys(self) -> list[str]:
        if self.space is not None:
            return list(self.space)
        keys: list[str] = []
        for entry in self.entries or []:
            keys.extend(k for k in entry if k not in keys)
        return keys

    def spec(self) -> dict[str, Any]:
        return {"entries": self.entries} if self.entries is not None else {"space": self.space}


_SPACE_KEYS = {"low", "high", "log", "step", "choices"}


def load_plan(path: str | Path, n_trials: int | None) -> TrialsPlan:
    """Read and check the trials file (list of overrides, or a search space + ``n_trials``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"trials file {path} not found; check --trials-file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            "fix the file"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({type(exc).__name__})") from None
    if isinstance(data, list):
        if n_trials is not None:
            raise ConfigError(
                "--n-trials is for a search-space trials file; a list runs each entry"
            )
        if not data or not all(isinstance(e, dict) and e for e in data):
            raise ConfigError(
                f"{path}: a list of trials must hold mappings of overrides, e.g. "
                '[{"training.optimizer.lr": 1e-4}]'
            )
        return TrialsPlan(entries=data, n_trials=len(data))
    if isinstance(data, dict) and data:
        for key, spec in data.items():
            _check_space_entry(path, key, spec)
        if n_trials is None or n_trials < 1:
            raise ConfigError(f"{path} is a search space: give --n-trials N (N >= 1)")
        return TrialsPlan(space=data, n_trials=n_trials)
    raise ConfigError(
        f"{path}: expected a list of override mappings or a search-space mapping "
        '(e.g. {"training.optimizer.lr": {"low": 1e-5, "high": 1e-3, "log": true}})'
    )


def _check_space_entry(path: Path, key: str, spec: Any) -> None:
    where = f"{path}: {key!r}"
    if not isinstance(spec, dict) or not spec or set(spec) - _SPACE_KEYS:
        raise ConfigError(
            f"{where}: give {{'low': ..., 'high': ...}} (optional 'log', 'step') or "
            f"{{'choices': [...]}}; allowed keys {sorted(_SPACE_KEYS)}"
        )
    if "choices" in spec:
        choices = spec["choices"]
        scalar = (type(None), bool, int, float, str)
        if set(spec) != {"choices"} or not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: 'choices' must be a non-empty list, alone")
        if not all(isinstance(c, scalar) for c in choices):
            raise ConfigError(f"{where}: choices must be numbers, strings, booleans or null")
        return
    low, high = spec.get("low"), spec.get("high")
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
    if not numbers or low > high:  # type: ignore[operator]
        raise ConfigError(f"{where}: 'low' and 'high' must be numbers with low <= high")
    if spec.get("log") and low <= 0:  # type: ignore[operator]
        raise ConfigError(f"{where}: a log range needs low > 0")
    step = spec.get("step")
    if step is not None and (spec.get("log") or not isinstance(step, (int, float)) or step <= 0):
        raise ConfigError(f"{where}: 'step' must be a positive number, without 'log'")


def suggest(trial: optuna.Trial, key: str, spec: dict[str, Any]) -> Any:
    if "choices" in spec:
        return trial.suggest_categorical(key, spec["choices"])
    low, high, log, step = spec["low"], spec["high"], bool(spec.get("log")), spec.get("step")
    if all(isinstance(v, int) for v in (low, high)) and isinstance(step, (int, type(None))):
        return trial.suggest_int(key, low, high, step=step or 1, log=log)
    return trial.suggest_float(key, float(low), float(high), log=log, step=step)
