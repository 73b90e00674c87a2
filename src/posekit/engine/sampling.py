"""Deterministic epoch order and per-sample seeds, so a run can resume mid-epoch exactly.

Each epoch's order is a permutation drawn from (seed, epoch); each sample's augmentation
randomness comes from (seed, epoch, index). Nothing depends on worker processes or on how
many batches came before, so skipping the consumed batches restores the stream exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class SampleKey:
    """What a dataset's ``__getitem__`` receives: the index, the seed of its randomness and,
    with per-batch multi-scale training, the batch's input size."""

    index: int
    seed: tuple[int, int, int]
    input_size: int | None = None


def subset_indices(num_samples: int, subset_size: int | None, subset_seed: int) -> np.ndarray:
    """A fixed random subset (sorted), or all indices."""
    if subset_size is None or subset_size >= num_samples:
        return np.arange(num_samples)
    rng = np.random.default_rng(subset_seed)
    return np.sort(rng.choice(num_samples, size=subset_size, replace=False))


def training_indices(
    num_samples: int, subset_size: int | None, subset_seed: int, overfit: bool, repeat: int = 1
) -> np.ndarray:
    """What a run trains on: the overfit samples (the first ``subset_size``, default 10),
    a fixed random subset, or everything; ``repeat`` times over in each epoch."""
    if overfit:
        return np.tile(np.arange(min(num_samples, subset_size or 10)), repeat)
    return np.tile(subset_indices(num_samples, subset_size, subset_seed), repeat)


def epoch_order(indices: np.ndarray, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    if not shuffle:
        return indices.copy()
    return np.random.default_rng([seed, epoch]).permutation(indices)


def epoch_batches(
    indices: np.ndarray,
    batch_size: int,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    sizes: list[int] | None = None,
) -> list[list[SampleKey]]:
    """The epoch's batches (incomplete last batch dropped unless it is the only one).

    With ``sizes``, each batch draws its input size from them (per-batch multi-scale).
    """
    order = epoch_order(indices, seed, epoch, shuffle)
    count = max(1, len(order) // batch_size)
    batch_sizes: list[int | None] = [None] * count
    if sizes:
        picks = np.random.default_rng([seed, epoch, 1]).integers(0, len(sizes), size=count)
        batch_sizes = [int(sizes[p]) for p in picks]
    return [
        [
            SampleKey(int(i), (seed, epoch, int(i)), batch_sizes[b])
            for i in order[b * batch_size : (b + 1) * batch_size]
        ]
        for b in range(count)
    ]


class BatchList:
    """A batch sampler over precomputed batches (what the DataLoader iterates)."""

    def __init__(self, batches: Sequence[list[SampleKey]]) -> None:
        self.batches = list(batches)

    def __iter__(self) -> Iterator[list[SampleKey]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def stack_samples(samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """A batch from samples of equal keys and shapes (every family's ``collate``)."""
    return {key: torch.stack([s[key] for s in samples]) for key in samples[0]}
