"""The checkpoint files of a run folder: names, keep-last-K, finding the latest."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from posekit.errors import CheckpointError

CHECKPOINTS_DIR = "checkpoints"
LAST = "last.pth"
BEST = "best.pth"
STAGE_BEST = {1: "best_stg1.pth", 2: "best_stg2.pth"}
_NUMBERED = re.compile(r"checkpoint_(epoch|iter)_(\d+)\.pth")


def epoch_file(epoch: int) -> str:
    return f"checkpoint_epoch_{epoch}.pth"


def iter_file(iteration: int) -> str:
    return f"checkpoint_iter_{iteration}.pth"


def numbered_files(folder: Path, kind: str) -> list[Path]:
    """``checkpoint_{kind}_N.pth`` files, oldest (smallest N) first."""
    found = []
    for path in folder.glob(f"checkpoint_{kind}_*.pth"):
        match = _NUMBERED.fullmatch(path.name)
        if match:
            found.append((int(match.group(2)), path))
    return [path for _, path in sorted(found)]


def prune(folder: Path, keep_last: int | None) -> list[Path]:
    """Delete all but the newest ``keep_last`` epoch and iteration files; returns the deleted."""
    if keep_last is None:
        return []
    removed = []
    for kind in ("epoch", "iter"):
        for path in numbered_files(folder, kind)[:-keep_last]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def latest_checkpoint(work_dir: Path) -> Path:
    """``--resume auto``: the most recently written checkpoint of the run folder."""
    folder = work_dir / CHECKPOINTS_DIR
    candidates = [
        path
        for path in (
            folder / LAST,
            *numbered_files(folder, "iter"),
            *numbered_files(folder, "epoch"),
        )
        if path.is_file()
    ]
    if not candidates:
        raise CheckpointError(
            f"--resume auto: no checkpoint in {folder}; start the run without --resume"
        )
    return max(candidates, key=lambda p: (p.stat().st_mtime_ns, p.name == LAST))
