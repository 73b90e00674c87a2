from __future__ import annotations

import torch

from posekit.bottomup.layouts import OPENPOSE18
from posekit.bottomup.lw_openpose import (
    LightweightOpenPose,
    StageOutputs,
    lw_openpose_param_groups,
    mobilenet_key,
)
from posekit.bottomup.openpose_vgg import OpenPoseVGG19


def test_named_outputs_per_stage_follow_the_schema() -> None:
    heatmaps, pafs = OPENPOSE18.num_keypoints + 1, 2 * OPENPOSE18.num_limbs
    model = LightweightOpenPose(heatmaps, pafs, num_refinement_stages=2, num_channels=32,
                                width_mult=0.25, head_width=64)  # fmt: skip
    outputs = model(torch.zeros(2, 3, 64, 96))
    assert isinstance(outputs, StageOutputs)
    assert len(outputs.heatmaps) == len(outputs.pafs) == 3
    assert outputs.heatmaps[-1].shape == (2, 19, 8, 12)  # stride 8
    assert outputs.pafs[-1].shape == (2, 38, 8, 12)


def test_any_keypoint_count_builds() -> None:
    model = LightweightOpenPose(15, 2 * 13, num_channels=16, width_mult=0.25, head_width=32)
    outputs = model(torch.zeros(1, 3, 32, 32))
    assert outputs.heatmaps[0].shape[1] == 15 and outputs.pafs[0].shape[1] == 26


def test_original_layout_keeps_the_original_state_dict_names() -> None:
    model = LightweightOpenPose(19, 38)
    keys = model.state_dict().keys()
    # names of the original repository's checkpoint_iter_370000.pth
    names = (
        "model.0.0.weight",
        "model.11.3.weight",
        "cpm.align.0.weight",
        "initial_stage.heatmaps.1.0.weight",
        "refinement_stages.0.trunk.0.initial.0.weight",
    )
    for name in names:
        assert name in keys
    assert model.state_dict()["model.1.0.weight"].shape == (32, 1, 3, 3)
    assert mobilenet_key("model.3.4.weight") == "module.model.3.4.weight"
    assert mobilenet_key("cpm.conv.0.weight") == "cpm.conv.0.weight"


def test_original_param_groups() -> None:
    model = LightweightOpenPose(19, 38, num_channels=16, width_mult=0.25, head_width=16)
    groups = lw_openpose_param_groups(model, base_lr=1.0, weight_decay=5e-4)
    by_id = {id(p): g for g in groups for p in g["params"]}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    depthwise = model.model[1][0].weight
    bn = model.model[1][1].weight
    refinement_weight = model.refinement_stages[0].trunk[0].initial[0].weight
    refinement_bias = model.refinement_stages[0].trunk[0].initial[0].bias
    cpm_bias = model.cpm.align[0].bias
    assert by_id[id(depthwise)]["weight_decay"] == 0 and by_id[id(depthwise)]["lr"] == 1.0
    assert by_id[id(bn)]["weight_decay"] == 0
    assert by_id[id(refinement_weight)]["lr"] == 4.0
    assert by_id[id(refinement_weight)]["weight_decay"] == 5e-4
    assert by_id[id(refinement_bias)]["lr"] == 8.0
    assert by_id[id(cpm_bias)]["lr"] == 2.0


def test_openpose_vgg19_is_the_same_family() -> None:
    model = OpenPoseVGG19(19, 38, num_stages=2)
    outputs = model(torch.zeros(1, 3, 64, 64))
    assert len(outputs.heatmaps) == 2
    assert outputs.heatmaps[1].shape == (1, 19, 8, 8)
    assert outputs.pafs[1].shape == (1, 38, 8, 8)
    seven = model.heatmap_branches[1][0]
    assert seven.kernel_size == (7, 7)


def test_background_channel_starts_at_one() -> None:
    model = LightweightOpenPose(19, 38, num_refinement_stages=2, num_channels=16, width_mult=0.25)
    heads = model.heatmap_heads()
    assert len(heads) == 3
    for head in heads:
        assert head.out_channels == 19
        assert float(head.bias.detach()[-1]) == 1.0
        assert float(head.bias.detach()[:-1].abs().max()) < 1.0  # the default init, untouched
