"""Training samples that cannot be read, and data-loader workers that die.

``data.bad_images`` chooses what an unreadable sample (a corrupt, truncated or missing image)
does in the middle of an epoch: ``stop`` ends the run with a one-line error naming the file;
``skip`` replaces it by the next readable sample and counts it (``skipped`` in the batch,
``skipped_samples`` in the train state and results.csv). Either way the choice is
deterministic, so a resumed run sees the same samples.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch.utils.data import Dataset

from posekit.engine.sampling import SampleKey
from posekit.errors import DataError, UserError

MAX_BAD_IN_A_ROW = 16


class GuardedSamples(Dataset):
    """A family's training data set with the ``data.bad_images`` policy applied."""

    def __init__(self, dataset: Any, policy: str) -> None:
        self.dataset = dataset
        self.policy = policy

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        size = len(self.dataset)
        for attempt in range(min(MAX_BAD_IN_A_ROW, size)):
            try:
                sample = self.dataset[replace(key, index=(key.index + attempt) % size)]
            except DataError as exc:
                if self.policy == "stop":
                    message = f"{exc} (or set data.bad_images=skip to skip such files)"
                    raise DataError(message) from None
                continue
            sample["skipped"] = torch.tensor(attempt)  # unreadable samples replaced here
            return sample
        raise DataError(
            f"{min(MAX_BAD_IN_A_ROW, size)} unreadable samples in a row from sample "
            f"{key.index}; check the images folder (posekit check-data finds them all)"
        )


def worker_error_line(exc: UserError) -> str:
    """A user error raised in a loader worker comes back with the worker's traceback in
    its message; keep the original one-line message."""
    text = str(exc).strip()
    if "DataLoader worker process" not in text:
        return text
    last = text.splitlines()[-1]
    return last.split(": ", 1)[1] if ": " in last else last


def is_worker_death(exc: RuntimeError) -> bool:
    """PyTorch says "exited unexpectedly" or "is killed by signal", depending on which of its
    checks notices first."""
    text = str(exc)
    return "DataLoader worker" in text and (
        "exited unexpectedly" in text or "killed by signal" in text
    )


def worker_death_message(exc: RuntimeError, saved: str) -> str:
    first = str(exc).strip().splitlines()[0]
    return (
        f"a data loader worker died ({first}); the progress so far is in {saved}: continue "
        "with --resume (data.num_workers=0 runs the data loading in this process and shows "
        "the cause)"
    )
