"""``posekit trials``: budgeted hyperparameter trials on Optuna.

Every trial is an Optuna trial: a short training run (``--budget-*``) in ``DIR/trial_{number}``
that reports its metric after each epoch and can be pruned. The study lives in a journal file in
the output folder, or in a database (``--storage``) that workers on many machines share. Running
the same command again continues the study: finished trials are kept, a trial left RUNNING by a
killed process is failed ("interrupted") and its parameters run again.

Which trial runs what: the list form enqueues its entries once (as a categorical "candidate"
index), workers only take waiting trials, and a trial that finds its entry already claimed by
an earlier one steps aside (``duplicate_of``); the search-space form asks the sampler for new
trials until ``--n-trials`` are settled. :mod:`posekit.trials.report` writes the results.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from posekit.config import apply_overrides, config_from_mapping, load_merged_mapping
from posekit.data.sources import expected_metric
from posekit.engine.control import TrainingStopped
from posekit.errors import ConfigError, UserError, one_line
from posekit.tasks import task_class
from posekit.trials.options import TrialsOptions, TrialsRun
from posekit.trials.plan import load_plan, suggest
from posekit.trials.store import (
    GRACE_S,
    PRUNERS,
    StudySetup,
    candidate_of,
    experimental_ok,
    is_duplicate,
    open_storage,
    open_study,
    pop_waiting,
    progress,
    sweep_stale,
    trial_guard,
)

POLL_S = 1.0


def budget_settings(options: TrialsOptions, model_name: str) -> dict[str, Any]:
    """The config keys the budget flags set (the input size's keys are the family's)."""
    settings: dict[str, Any] = {}
    if options.budget_epochs is not None:
        settings["training.max_epochs"] = options.budget_epochs
    if options.budget_subset is not None:
        settings["training.subset_size"] = options.budget_subset
    if options.budget_size is not None:  # validation at the size the trial trains at
        settings.update(task_class(model_name).input_size_settings(options.budget_size))
    return settings


def check_options(options: TrialsOptions) -> None:
    for flag, value in (
        ("--budget-epochs", options.budget_epochs),
        ("--budget-subset", options.budget_subset),
        ("--budget-size", options.budget_size),
        ("--workers", options.workers),
    ):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be 1 or more (got {value})")
    if options.budget_size is not None and options.budget_size < 32:
        raise ConfigError(f"--budget-size must be 32 or more (got {options.budget_size})")
    if options.pruner not in PRUNERS:
        raise ConfigError(f"--pruner {options.pruner!r} is unknown; known: {sorted(PRUNERS)}")
    if options.early_stop_warmup < 0:
        raise ConfigError("--early-stop-warmup must be 0 or more")


def prepare_run(options: TrialsOptions, say: Callable[[str], None]) -> TrialsRun:
    """Check the flags, the trials file and the base config (with the budget) up front."""
    from posekit.commands.train import ensure_synthetic_data

    check_options(options)
    plan = load_plan(options.trials_file, options.n_trials)
    base = load_merged_mapping(options.base_config) if options.base_config else {}
    base = apply_overrides(base, list(options.overrides))
    source = options.base_config or "config"
    model_name = config_from_mapping(base, None, None, source, announce=False).model.name
    budget = budget_settings(options, model_name)
    cfg = config_from_mapping(base, budget, None, f"{source} + budget flags")
    resolved = ensure_synthetic_data(cfg, say)
    data_settings = {}
    if resolved.data != cfg.data:
        for split in ("train", "val"):
            for key in ("labels", "images"):
                value = getattr(getattr(resolved.data, split), key)
                if value is not None:
                    data_settings[f"data.{split}.{key}"] = value
    metric = expected_metric(resolved)
    if resolved.data.val.labels is None:
        say(f"no validation data: trials are ranked by minus the training loss (not {metric})")
        metric = "-loss"
    name = options.study_name or Path(os.path.abspath(options.output_dir)).name
    return TrialsRun(options, plan, base, data_settings, metric, name, os.getpid(), budget)


# ---------------------------------------------------------------------------------------------
# One trial


class EpochReporter:
    """``on_epoch`` for :func:`posekit.commands.train.train`: report, then prune or go on."""

    def __init__(self, run: TrialsRun, trial: optuna.Trial) -> None:
        self.run, self.trial = run, trial
        self.value: float | None = None

    def __call__(self, epoch: int, row: dict[str, Any]) -> None:
        loss = float(row.get("loss", math.nan))
        metric = self.run.metric
        value = float(row[metric]) if metric in row else -loss
        self.trial.set_user_attr("loss", loss)
        self.trial.set_user_attr("epoch", epoch)
        if not math.isfinite(value):
            return
        self.value = value
        self.trial.report(value, epoch)
        threshold = self.run.options.early_stop_threshold
        warm = epoch > self.run.options.early_stop_warmup
        if threshold is not None and warm and value < threshold:
            raise optuna.TrialPruned(
                f"{metric} {value:.4g} < early-stop threshold {threshold:g} at epoch {epoch}"
            )
        if self.trial.should_prune():
            raise optuna.TrialPruned(
                f"{self.run.options.pruner} pruner at epoch {epoch}: {metric} {value:.4g} "
                "behind the other trials"
            )


def trial_overrides(run: TrialsRun, trial: optuna.Trial) -> dict[str, Any]:
    if run.plan.entries is not None:
        return dict(run.plan.entries[candidate_of(trial, len(run.plan.entries))])
    return {key: suggest(trial, key, spec) for key, spec in (run.plan.space or {}).items()}


def trial_config(run: TrialsRun, overrides: dict[str, Any], work_dir: Path) -> Any:
    settings = {
        **run.budget,
        **run.data_settings,
        **overrides,
        "work_dir": str(work_dir),
        "training.eval_interval": 1,
        "training.resume": None,
        "training.exist_ok": True,  # a trial retried after a kill starts its folder over
    }
    source = f"{run.options.trials_file} entry"
    return config_from_mapping(run.base, settings, None, source)


def run_trial(
    run: TrialsRun, study: optuna.Study, trial: optuna.Trial, say: Callable[[str], None]
) -> None:
    """Train one trial and tell Optuna how it ended (complete, pruned or failed + why)."""
    from posekit.commands.train import train

    number = trial.number
    overrides = trial_overrides(run, trial)
    work_dir = run.output_dir / f"trial_{number}"
    trial.set_user_attr("overrides", overrides)
    trial.set_user_attr("work_dir", str(work_dir))
    trial.set_user_attr("metric", run.metric)
    shown = ", ".join(f"{k}={v}" for k, v in overrides.items())
    say(f"trial {number}: {shown} -> {work_dir}")
    reporter = EpochReporter(run, trial)
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
        cfg = trial_config(run, overrides, work_dir)
        train(cfg, say=lambda line: say(f"  [trial {number}] {line}"), on_epoch=reporter)
    except optuna.TrialPruned as exc:
        trial.set_user_attr("pruned_reason", one_line(str(exc)))
        study.tell(trial, state=TrialState.PRUNED)
        say(f"trial {number}: pruned ({one_line(str(exc))})")
        return
    except (KeyboardInterrupt, TrainingStopped) as exc:
        if isinstance(exc, KeyboardInterrupt) or exc.exit_code == 130:
            raise  # the worker marks it interrupted and queues it again
        fail(study, trial, one_line(str(exc)), say)
        return
    except Exception as exc:
        text = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        fail(study, trial, one_line(text), say)
        return
    if reporter.value is None:
        fail(study, trial, f"no finite {run.metric} was reported", say)
        return
    study.tell(trial, reporter.value)
    say(f"trial {number}: complete, {run.metric} {reporter.value:.4g}")


def fail(study: optuna.Study, trial: optuna.Trial, error: str, say: Callable[[str], None]) -> None:
    trial.set_user_attr("error", error)
    study.tell(trial, state=TrialState.FAIL)
    say(f"trial {trial.number}: failed: {error}")


# ---------------------------------------------------------------------------------------------
# Workers


def work(run: TrialsRun, say: Callable[[str], None], create: bool = False) -> optuna.Study:
    """Take trials until the study is done (waiting while other workers finish theirs)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    setup = run.setup()
    storage = open_storage(setup)
    study = open_study(setup, storage, create)
    waiting_said = False
    while True:
        if run.parent_pid and os.getppid() != run.parent_pid:
            say("the posekit trials command is gone: this worker stops")
            return study
        sweep_stale(setup, study, storage, say)
        trial = pop_waiting(study, storage)
        if trial is None:
            state = progress(study, setup, run.plan.n_trials)
            if state.done:
                return study
            if state.can_create and run.plan.space is not None:
                with experimental_ok():
                    trial = study.ask()
            else:
                if not waiting_said:
                    stale = f"; one silent for {GRACE_S} s is failed and queued again"
                    say(
                        f"waiting for trials {state.running} running in other processes"
                        + (stale if setup.uses_database else "")
                    )
                    waiting_said = True
                time.sleep(POLL_S)
                continue
        waiting_said = False
        try:
            run_guarded(run, setup, study, storage, trial, say)
        except TrainingStopped as exc:
            reason = one_line(str(exc)).split(";")[0]
            raise TrainingStopped(
                f"trial {trial.number}: {reason}; it is queued again: run the same command to "
                "continue the study",
                exc.exit_code,
            ) from None


def run_guarded(
    run: TrialsRun,
    setup: StudySetup,
    study: optuna.Study,
    storage: Any,
    trial: optuna.Trial,
    say: Callable[[str], None],
) -> None:
    with trial_guard(setup, study, storage, trial):
        if run.plan.entries is not None:
            candidate = candidate_of(trial, len(run.plan.entries))
            earlier = is_duplicate(study, trial, candidate)
            if earlier is not None:
                trial.set_user_attr("duplicate_of", earlier)
                study.tell(trial, state=TrialState.FAIL)
                say(f"trial {trial.number}: entry {candidate} already taken by trial {earlier}")
                return
        run_trial(run, study, trial, say)


def worker_main(run: TrialsRun, index: int) -> None:
    """A spawned worker: its share of the CPU threads, then :func:`work`."""
    import sys

    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(max(1, (cores or 1) // run.options.workers))

    def say(line: str) -> None:
        print(f"[worker {index}] {line}", flush=True)

    try:
        work(run, say)
    except UserError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr, flush=True)
        sys.exit(2)
    except (KeyboardInterrupt, TrainingStopped):
        sys.exit(130)


def run_workers(run: TrialsRun, say: Callable[[str], None]) -> list[int]:
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=worker_main, args=(run, index), name=f"posekit-trials-{index}")
        for index in range(run.options.workers)
    ]
    for process in processes:
        process.start()
    say(f"{len(processes)} workers started (torch threads per worker: cores // {len(processes)})")
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:  # each worker stops its trial (queued again) and ends
        for process in processes:
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGINT)
        for process in processes:
            process.join(timeout=60)
        raise
    return [process.exitcode or 0 for process in processes]


def run_trials(options: TrialsOptions, say: Callable[[str], None] = print) -> int:
    """``posekit trials``: run (or continue) the study, then write the CSV, plot and best
    config. Returns the exit status."""
    from posekit.trials.report import write_report

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run = prepare_run(options, say)
    setup = run.setup()
    where = setup.redacted_url() if options.storage else str(setup.journal)
    say(f"study {run.study_name!r} in {where}; metric {run.metric}")
    codes: list[int] = []
    if options.workers == 1:  # in this process, with torch's own thread count
        study = work(replace(run, parent_pid=0), say, create=True)
    else:
        study = open_study(setup, open_storage(setup), create=True)
        codes = run_workers(run, say)
    for path in write_report(run, study, say):
        say(f"wrote {path}")
    bad = [code for code in codes if code]
    if bad:
        say(f"{len(bad)} worker(s) ended with an error (exit status {max(bad)})")
        return max(bad)
    return 0
