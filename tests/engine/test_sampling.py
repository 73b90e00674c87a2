"""Which samples a run trains on, and in which order."""

from __future__ import annotations

import numpy as np

from posekit.engine.sampling import epoch_batches, training_indices


def test_repeat_passes_over_the_samples_several_times_per_epoch() -> None:
    once = training_indices(20, 5, subset_seed=1, overfit=False)
    thrice = training_indices(20, 5, subset_seed=1, overfit=False, repeat=3)
    assert (
        np.bincount(thrice, minlength=20).tolist()
        == np.bincount(np.tile(once, 3), minlength=20).tolist()
    )
    assert training_indices(20, 4, 0, overfit=True, repeat=2).tolist() == [0, 1, 2, 3] * 2


def test_repeated_epochs_are_shuffled_reproducibly() -> None:
    indices = training_indices(6, None, 0, overfit=False, repeat=2)
    first = epoch_batches(indices, 4, seed=0, epoch=0)
    again = epoch_batches(indices, 4, seed=0, epoch=0)
    assert [[k.index for k in b] for b in first] == [[k.index for k in b] for b in again]
    assert len(first) == 3
