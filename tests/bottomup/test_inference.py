from __future__ import annotations

import numpy as np
import torch

from posekit.bottomup.inference import (
    inference_input_size,
    input_size_for,
    map_to_input,
    network_maps,
    predict_people,
)
from posekit.bottomup.layouts import openpose18_layout
from posekit.bottomup.lw_openpose import LightweightOpenPose
from posekit.config import InferenceConfig


def test_input_sizes() -> None:
    assert input_size_for((425, 640), 368, 8) == (368, 560)  # 554.2 padded to the stride
    assert inference_input_size((425, 640), InferenceConfig(input_height=256), 1.5, 8) == (
        384,
        584,
    )
    assert inference_input_size((425, 640), InferenceConfig(letterbox=512), 1.0, 8) == (512, 512)
    cells = np.array([[0.0, 0.0, 1.0], [2.0, 1.0, 1.0]]).T
    assert np.allclose(map_to_input(8) @ cells, [[3.5, 19.5], [3.5, 11.5]])


def test_multiscale_and_flip_maps_keep_the_base_grid() -> None:
    torch.manual_seed(0)
    model = LightweightOpenPose(19, 38, num_channels=8, width_mult=0.25, head_width=8).eval()
    image = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    layout = openpose18_layout()
    device = torch.device("cpu")
    single = network_maps(model, image, layout, InferenceConfig(input_height=64), 8, device)
    both = network_maps(
        model, image, layout, InferenceConfig(input_height=64, scales=[1.0, 1.5], flip=True), 8,
        device,
    )  # fmt: skip
    assert single[0].shape == both[0].shape == (19, 8, 11)
    assert single[1].shape == both[1].shape == (38, 8, 11)
    assert np.array_equal(single[2], both[2])  # the base scale's image -> input matrix
    assert not np.allclose(single[0], both[0])
    people = predict_people(model, image, layout, InferenceConfig(input_height=64), 8, device)
    assert people.keypoints.shape[1:] == (17, 3)
