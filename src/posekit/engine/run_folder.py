"""A run folder is never overwritten by accident, and one process trains in it at a time.

A new run (not a resume) into a folder that holds a run (a checkpoint or results) stops with
one line, unless ``training.exist_ok`` (``--exist-ok``): then the old folder is renamed aside
(``<name>.old-<time>``), never deleted; so are the leftovers of a run killed before its first
checkpoint, without asking. While a run trains, it holds an exclusive
``flock`` on ``<folder>/.posekit.lock``; the kernel drops it when the process ends, however
it ends, so a killed run leaves no stuck lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from posekit.errors import ConfigError

LOCK_NAME = ".posekit.lock"
# a folder holds a run when it has a checkpoint or a results row; a run killed before its
# first checkpoint leaves only leftovers (config.yaml, TensorBoard events, plots)
LEFTOVERS = ("config.yaml", "tensorboard", "plots", "progress.csv")


def previous_run(work_dir: Path) -> list[str]:
    """What in ``work_dir`` shows an earlier run that got somewhere (empty when none)."""
    found = []
    checkpoints = work_dir / "checkpoints"
    if checkpoints.is_dir() and any(checkpoints.glob("*.pth")):
        found.append("checkpoints")
    if (work_dir / "results.csv").is_file():
        found.append("results.csv")
    return found


def leftovers(work_dir: Path) -> list[str]:
    """Files of an earlier run that stopped before its first checkpoint."""
    return [name for name in LEFTOVERS if (work_dir / name).exists()]


def aside_name(work_dir: Path, now: float | None = None) -> Path:
    """A free sibling name for the old run: ``<name>.old-YYYYmmdd-HHMMSS[-N]``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    candidate = work_dir.with_name(f"{work_dir.name}.old-{stamp}")
    number = 1
    while candidate.exists():
        number += 1
        candidate = work_dir.with_name(f"{work_dir.name}.old-{stamp}-{number}")
    return candidate


def refuse_or_move_aside(work_dir: Path, exist_ok: bool) -> Path | None:
    """For a new run: refuse a folder holding a run in one line, or with ``exist_ok`` rename
    it aside (returned) so the new run starts in an empty folder. The leftovers of a run
    that never saved a checkpoint are moved aside without asking (nothing is deleted)."""
    found = previous_run(work_dir)
    if found and not exist_ok:
        raise ConfigError(
            f"{work_dir} holds a run ({', '.join(found)}): continue it with --resume, train "
            "into another --work-dir, or pass --exist-ok to start over (the old run is moved "
            "aside, not deleted)"
        )
    if not found and not leftovers(work_dir):
        return None
    target = aside_name(work_dir)
    work_dir.rename(target)
    return target


@contextlib.contextmanager
def run_lock(work_dir: Path) -> Iterator[None]:
    """Hold ``work_dir``'s lock for the duration; another process holding it is one line."""
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / LOCK_NAME
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(handle, 32).decode("ascii", "replace").strip() or "unknown"
            raise ConfigError(
                f"{work_dir} is in use by another posekit run (process {holder}); wait for it "
                "to end or train into another --work-dir"
            ) from None
        os.ftruncate(handle, 0)
        os.write(handle, str(os.getpid()).encode())
        yield
    finally:
        os.close(handle)  # closing drops the lock


def is_locked(work_dir: Path) -> bool:
    """Whether a process holds ``work_dir``'s lock now."""
    path = work_dir / LOCK_NAME
    if not path.is_file():
        return False
    handle = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(handle)
    return False
