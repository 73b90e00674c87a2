"""The settings of a ``posekit trials`` command and everything a worker process needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posekit.trials.plan import TrialsPlan
from posekit.trials.store import StudySetup

JOURNAL_NAME = "study.journal"


# ---------------------------------------------------------------------------------------------
# The command's settings, passed to worker processes


@dataclass(frozen=True)
class TrialsOptions:
    trials_file: str
    output_dir: str
    base_config: str | None = None
    budget_epochs: int | None = None
    budget_subset: int | None = None
    budget_size: int | None = None
    early_stop_threshold: float | None = None
    early_stop_warmup: int = 0
    pruner: str = "median"
    storage: str | None = None
    study_name: str | None = None
    workers: int = 1
    n_trials: int | None = None
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrialsRun:
    """Everything a worker needs (picklable: workers are spawned)."""

    options: TrialsOptions
    plan: TrialsPlan
    base: dict[str, Any]  # the base config mapping with the command's overrides
    data_settings: dict[str, Any]  # synthetic data paths resolved once, before the workers
    metric: str
    study_name: str
    parent_pid: int = 0
    budget: dict[str, Any] = field(default_factory=dict)

    @property
    def output_dir(self) -> Path:
        return Path(self.options.output_dir)

    def setup(self) -> StudySetup:
        return StudySetup(
            output_dir=self.output_dir,
            journal=self.output_dir / JOURNAL_NAME,
            storage_url=self.options.storage,
            study_name=self.study_name,
            pruner=self.options.pruner,
            spec={**self.plan.spec(), "budget": self.budget, "metric": self.metric},
            n_entries=len(self.plan.entries) if self.plan.entries is not None else None,
        )
