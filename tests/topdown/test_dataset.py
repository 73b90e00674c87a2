"""Top-down samples: crops, targets that decode back to the keypoints, reproducible seeds."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from posekit.config import PosekitConfig
from posekit.data.transforms import warp_keypoints
from posekit.engine.sampling import SampleKey
from posekit.topdown.codecs.heatmap import decode_heatmaps
from posekit.topdown.codecs.simcc import decode_simcc
from posekit.topdown.dataset import person_instances
from posekit.topdown.inference import crop_people
from posekit.topdown.task import TopDownTask

CPU = torch.device("cpu")


def test_every_labelled_person_is_a_sample(topdown_config: Callable[..., PosekitConfig]) -> None:
    task = TopDownTask(topdown_config(), CPU)
    assert task.train_data is not None
    data = task.train_data.sets[0]
    people = sum(int((r.keypoints[:, :, 2] > 0).any(axis=1).sum()) for r in data.images)
    assert len(person_instances(data)) == people > len(data.images)
    assert len(task.train_dataset(1, 0)) == people


def test_unaugmented_heatmap_targets_decode_to_the_keypoints(
    topdown_config: Callable[..., PosekitConfig],
) -> None:
    task = TopDownTask(topdown_config("training.overfit=true", input_size=[128, 96]), CPU)
    dataset = task.train_dataset(1, 0)
    assert task.train_data is not None
    data = task.train_data.sets[0]
    for index in range(3):
        sample = dataset[SampleKey(index, (0, 0, index))]
        assert sample["image"].shape == (3, 128, 96)
        assert sample["heatmaps"].shape == (17, 32, 24)  # stride 4
        image_index, person = person_instances(data)[index]
        record = data.images[image_index]
        _, matrices = crop_people(
            np.zeros((record.height, record.width, 3), np.uint8),
            record.boxes[person : person + 1], task.spec,
        )  # fmt: skip
        expected = warp_keypoints(record.keypoints[person][None], matrices[0], (128, 96))[0]
        decoded, _ = decode_heatmaps(sample["heatmaps"][None].numpy(), (128, 96))
        used = sample["weights"].numpy() > 0
        assert used.sum() >= 3
        np.testing.assert_allclose(decoded[0][used], expected[used, :2], atol=0.2)


def test_simcc_targets_decode_to_the_same_points(
    topdown_config: Callable[..., PosekitConfig],
) -> None:
    size = [128, 96]
    heatmap_task = TopDownTask(topdown_config("training.overfit=true", input_size=size), CPU)
    simcc_task = TopDownTask(
        topdown_config("training.overfit=true", head="simcc", input_size=size), CPU
    )
    key = SampleKey(1, (0, 0, 1))
    heatmap_sample = heatmap_task.train_dataset(1, 0)[key]
    simcc_sample = simcc_task.train_dataset(1, 0)[key]
    assert simcc_sample["simcc_x"].shape == (17, 192)
    assert simcc_sample["simcc_y"].shape == (17, 256)
    from_heatmaps, _ = decode_heatmaps(heatmap_sample["heatmaps"][None].numpy(), (128, 96))
    from_simcc, _ = decode_simcc(
        simcc_sample["simcc_x"][None].numpy(), simcc_sample["simcc_y"][None].numpy()
    )
    used = (heatmap_sample["weights"] > 0).numpy() & (simcc_sample["weights"] > 0).numpy()
    np.testing.assert_allclose(from_simcc[0][used], from_heatmaps[0][used], atol=0.2)


def test_augmented_samples_follow_their_seed(topdown_config: Callable[..., PosekitConfig]) -> None:
    dataset = TopDownTask(topdown_config(), CPU).train_dataset(1, 0)
    first = dataset[SampleKey(2, (0, 1, 2))]
    again = dataset[SampleKey(2, (0, 1, 2))]
    other = dataset[SampleKey(2, (0, 2, 2))]
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["image"], other["image"])
