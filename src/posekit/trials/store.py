"""The Optuna side of ``posekit trials``: storage, the study and its queue, claims, stale trials.

Storage: a journal file in the output folder (one machine, no server), or an RDB URL
(``--storage postgresql://...``) shared by workers on many machines. A trial left RUNNING by a
process that died is failed ("interrupted") and queued again with the same parameters
(Optuna's retry callback): with a database, through Optuna's heartbeat; with the journal file,
through a lock file each running trial holds (``DIR/.trial_locks/trial_N.lock``): the kernel
drops the lock when its process dies, so the next command (or another worker) sees at once
which RUNNING trials have no live owner.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import inspect
import json
import os
import random
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import DuplicatedStudyError, UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from posekit.errors import ConfigError, one_line

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock files, stale trials by age only
    fcntl = None  # type: ignore[assignment]

HEARTBEAT_S = 5  # database storage: a heartbeat every 5 s ...
GRACE_S = 20  # ... and a trial silent for 20 s is stale
UNLOCKED_STALE_S = 60  # journal: a RUNNING trial with no lock file for 60 s is stale
MAX_RETRY = 3  # an interrupted trial runs again at most this often
WAIT_FOR_CREATOR_S = 30.0
SPEC_ATTR, QUEUED_ATTR = "posekit_spec", "posekit_queued"
PRUNERS: dict[str, Callable[[], optuna.pruners.BasePruner]] = {
    "successive-halving": lambda: optuna.pruners.SuccessiveHalvingPruner(),
    "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2),
    "none": lambda: optuna.pruners.NopPruner(),
}


@dataclass(frozen=True)
class StudySetup:
    output_dir: Path
    journal: Path
    storage_url: str | None
    study_name: str
    pruner: str
    spec: dict[str, Any]
    n_entries: int | None  # the list form's entry count; None for a search space

    @property
    def uses_database(self) -> bool:
        return self.storage_url is not None

    def redacted_url(self) -> str:
        import sqlalchemy

        try:
            url = sqlalchemy.engine.make_url(self.storage_url or "")
        except Exception:
            return "the --storage URL"
        return url.render_as_string(hide_password=True)

    def lock_path(self, number: int) -> Path:
        return self.output_dir / ".trial_locks" / f"trial_{number}.lock"


# ---------------------------------------------------------------------------------------------
# Trial states as posekit reads them


def candidate_of(trial: optuna.Trial | FrozenTrial, count: int) -> int:
    return int(trial.suggest_categorical("candidate", list(range(count))))  # type: ignore[union-attr]


def frozen_candidate(trial: FrozenTrial) -> int | None:
    value = trial.params.get("candidate")
    if value is None:
        value = (trial.system_attrs.get("fixed_params") or {}).get("candidate")
    return None if value is None else int(value)


def is_duplicate_trial(trial: FrozenTrial) -> bool:
    return "duplicate_of" in trial.user_attrs


def is_interrupted(trial: FrozenTrial) -> bool:
    """Failed because its process stopped (not because of its parameters)."""
    if trial.state != TrialState.FAIL or is_duplicate_trial(trial):
        return False
    return bool(trial.user_attrs.get("interrupted")) or "error" not in trial.user_attrs


def entry_key(trial: FrozenTrial, list_form: bool) -> Any:
    """Trials that stand for the same entry: the list form's candidate, or a retry chain."""
    if list_form:
        return frozen_candidate(trial)
    return trial.system_attrs.get("failed_trial", trial.number)


def groups(trials: list[FrozenTrial], list_form: bool) -> dict[Any, list[FrozenTrial]]:
    found: dict[Any, list[FrozenTrial]] = {}
    for trial in trials:
        if not is_duplicate_trial(trial):
            found.setdefault(entry_key(trial, list_form), []).append(trial)
    return {key: sorted(group, key=lambda t: t.number) for key, group in found.items()}


@dataclass(frozen=True)
class Progress:
    done: bool
    can_create: bool
    running: list[int]


def progress(study: optuna.Study, setup: StudySetup, n_trials: int) -> Progress:
    """Done when every entry's latest trial is finished (and, for a search space, ``n_trials``
    entries are; nothing is running or waiting)."""
    trials = study.get_trials(deepcopy=False)
    running = [t.number for t in trials if t.state == TrialState.RUNNING]
    waiting = any(t.state == TrialState.WAITING for t in trials)
    list_form = setup.n_entries is not None
    found = groups(trials, list_form)
    settled = sum(1 for group in found.values() if group[-1].state.is_finished())
    if list_form:
        done = all(k in found and found[k][-1].state.is_finished() for k in range(n_trials))
    else:
        done = settled >= n_trials and not running and not waiting
    return Progress(done, len(found) < n_trials, running)


def is_duplicate(study: optuna.Study, trial: optuna.Trial, candidate: int) -> int | None:
    """The number of an earlier trial that holds the same entry, if any: finished for good, or
    running and started first. Enqueueing from two processes at once can double an entry."""
    mine = study.get_trials(deepcopy=False)[trial.number]
    for other in study.get_trials(deepcopy=False):
        if other.number == trial.number or is_duplicate_trial(other):
            continue
        if frozen_candidate(other) != candidate or is_interrupted(other):
            continue
        if other.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
            return other.number
        if other.state == TrialState.RUNNING:
            earliest = datetime.datetime.max
            if (other.datetime_start or earliest, other.number) < (
                mine.datetime_start or earliest,
                mine.number,
            ):
                return other.number
    return None


# ---------------------------------------------------------------------------------------------
# Storage and study


@contextlib.contextmanager
def experimental_ok() -> Iterator[None]:
    """Heartbeats and the retry callback are marked experimental in Optuna: no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message=".*Heartbeat of storage is supposed.*")
        yield


def retry_callback() -> Callable[[optuna.Study, FrozenTrial], None]:
    """Optuna's retry callback (its name since 4.9, the older one before), fed a copy of the
    failed trial without its per-run user attributes."""
    callback_type = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    with experimental_ok():
        callback = (callback_type or optuna.storages.RetryFailedTrialCallback)(max_retry=MAX_RETRY)

    def retry(study: optuna.Study, trial: FrozenTrial) -> None:
        clean = copy.deepcopy(trial)
        clean.user_attrs = {}
        with experimental_ok():
            callback(study, clean)

    return retry


def database_url(text: str) -> str:
    """A SQLAlchemy URL; ``postgresql://`` takes psycopg2 when psycopg 3 (SQLAlchemy 2.1's
    default driver) is not installed."""
    import importlib.util

    import sqlalchemy

    try:
        url = sqlalchemy.engine.make_url(text)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        raise ConfigError(
            f"--storage {text!r} is not a database URL; "
            "e.g. postgresql://user@host:5432/db or sqlite:///study.db"
        ) from None
    installed = importlib.util.find_spec
    if url.drivername == "postgresql" and not installed("psycopg") and installed("psycopg2"):
        url = url.set(drivername="postgresql+psycopg2")
    return url.render_as_string(hide_password=False)


def open_storage(setup: StudySetup) -> Any:
    if setup.storage_url is None:
        from optuna.storages.journal import JournalFileBackend

        setup.output_dir.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(setup.journal)))
    import sqlalchemy

    url = database_url(setup.storage_url)
    accepted = inspect.signature(optuna.storages.RDBStorage).parameters
    key = (
        "heartbeat_stale_trial_callback"
        if "heartbeat_stale_trial_callback" in accepted
        else "failed_trial_callback"
    )
    for attempt in range(5):
        try:
            with experimental_ok():
                return optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=HEARTBEAT_S,
                    grace_period=GRACE_S,
                    **{key: retry_callback()},
                )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
            # two commands creating Optuna's tables at the same moment: one wins, the other
            # finds them on the next try
            if attempt == 4:
                raise storage_error(setup, exc) from None
            time.sleep(0.5 + random.random())
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
            raise storage_error(setup, exc) from None
    raise AssertionError("unreachable")


def storage_error(setup: StudySetup, exc: BaseException) -> ConfigError:
    reason = one_line(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
    hint = "pip install 'posekit[postgres]'; " if isinstance(exc, ImportError) else ""
    return ConfigError(
        f"--storage {setup.redacted_url()}: cannot open the database ({reason[:300]}); "
        f"{hint}check the URL, the server and the database name"
    )


def open_study(setup: StudySetup, storage: Any, create: bool) -> optuna.Study:
    """Create the study (and queue the list's entries once), or load it and check that it was
    made from the same trials file and budget."""
    sampler, pruner = optuna.samplers.TPESampler(), PRUNERS[setup.pruner]()
    if create:
        with contextlib.suppress(DuplicatedStudyError):
            study = optuna.create_study(
                storage=storage,
                study_name=setup.study_name,
                direction="maximize",
                sampler=sampler,
                pruner=pruner,
            )
            study.set_user_attr(SPEC_ATTR, setup.spec)
            queue_entries(study, setup)
            return study
    try:
        study = optuna.load_study(
            study_name=setup.study_name, storage=storage, sampler=sampler, pruner=pruner
        )
    except KeyError:
        raise ConfigError(
            f"no study {setup.study_name!r} in the storage; check --study-name"
        ) from None
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise ConfigError(f"study {setup.study_name!r} is not a posekit trials study")
    stored = wait_for_attr(study, SPEC_ATTR)
    if stored is None:
        study.set_user_attr(SPEC_ATTR, setup.spec)
    elif stored != json.loads(json.dumps(setup.spec)):
        raise ConfigError(
            f"study {setup.study_name!r} was started with another trials file, budget or "
            "metric; give the same ones to continue it, or another --study-name / --output-dir"
        )
    if wait_for_attr(study, QUEUED_ATTR) is None:
        queue_entries(study, setup)
    return study


def queue_entries(study: optuna.Study, setup: StudySetup) -> None:
    for index in range(setup.n_entries or 0):
        study.enqueue_trial({"candidate": index}, skip_if_exists=True)
    study.set_user_attr(QUEUED_ATTR, True)


def wait_for_attr(study: optuna.Study, key: str) -> Any:
    """A study attribute its creator sets right after creating it (None after a wait)."""
    deadline = time.monotonic() + WAIT_FOR_CREATOR_S
    while True:
        value = study.user_attrs.get(key)
        if value is not None or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def pop_waiting(study: optuna.Study, storage: Any) -> optuna.Trial | None:
    """Take a waiting trial (never create one): the state change to RUNNING succeeds in only
    one process, as in Optuna's own queue."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if storage.set_trial_state_values(trial._trial_id, state=TrialState.RUNNING):
                return optuna.Trial(study, trial._trial_id)
        except UpdateFinishedTrialError:
            continue
    return None


# ---------------------------------------------------------------------------------------------
# Interrupted trials


def mark_interrupted(study: optuna.Study, storage: Any, trial: FrozenTrial, reason: str) -> bool:
    """Fail a RUNNING trial as interrupted and queue its parameters again (once, however many
    processes try)."""
    try:
        storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
        storage.set_trial_user_attr(trial._trial_id, "error", f"interrupted ({reason})")
        if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
            return False
    except (UpdateFinishedTrialError, KeyError):
        return False
    retry_callback()(study, storage.get_trial(trial._trial_id))
    return True


def sweep_stale(
    setup: StudySetup, study: optuna.Study, storage: Any, say: Callable[[str], None]
) -> None:
    """Fail the RUNNING trials whose process is gone (and queue them again); queue list
    entries that have no trial at all."""
    if setup.uses_database:
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        with experimental_ok():
            optuna.storages.fail_stale_trials(study)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
            if trial.number not in before and is_interrupted(trial):
                say(f"trial {trial.number}: its heartbeat stopped; failed and queued again")
    else:
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if _owner_gone(setup, trial) and mark_interrupted(
                study, storage, trial, "its process stopped"
            ):
                say(f"trial {trial.number}: interrupted earlier; failed and queued again")
    if setup.n_entries and study.user_attrs.get(QUEUED_ATTR):
        present = {frozen_candidate(t) for t in study.get_trials(deepcopy=False)}
        for index in range(setup.n_entries):
            if index not in present:
                study.enqueue_trial({"candidate": index}, skip_if_exists=True)


def _owner_gone(setup: StudySetup, trial: FrozenTrial) -> bool:
    path = setup.lock_path(trial.number)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        started = trial.datetime_start or datetime.datetime.now()
        age = (datetime.datetime.now() - started).total_seconds()
        return age > UNLOCKED_STALE_S
    try:
        if fcntl is None:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its process holds the lock: alive
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return True
    finally:
        os.close(fd)


@contextlib.contextmanager
def _lock_file(path: Path) -> Iterator[None]:
    """Hold a lock file for the trial: created under a temporary name, locked, then renamed,
    so the name never appears unlocked. Removed when the trial ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".lock-", dir=path.parent)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(tmp, path)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.close(fd)


@contextlib.contextmanager
def _heartbeat(storage: Any, trial_id: int) -> Iterator[None]:
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):  # a missed beat is retried; staleness is 20 s
                storage.record_heartbeat(trial_id)
            stop.wait(HEARTBEAT_S)

    thread = threading.Thread(target=beat, name="posekit-trial-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


@contextlib.contextmanager
def trial_guard(
    setup: StudySetup, study: optuna.Study, storage: Any, trial: optuna.Trial
) -> Iterator[None]:
    """While a trial runs: its lock file or heartbeat; if the run is interrupted (Ctrl-C,
    SIGTERM, an error outside training), the trial is failed as interrupted and queued again."""
    guard = (
        _heartbeat(storage, trial._trial_id)
        if setup.uses_database
        else _lock_file(setup.lock_path(trial.number))
    )
    with guard:
        try:
            yield
        except BaseException as exc:
            frozen = storage.get_trial(trial._trial_id)
            if frozen.state == TrialState.RUNNING:
                reason = one_line(f"{type(exc).__name__} {exc}".strip())
                with contextlib.suppress(Exception):
                    mark_interrupted(study, storage, frozen, reason)
            raise
