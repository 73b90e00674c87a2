"""The original OpenPose (Cao et al., 2017) as in the tensorboy PyTorch port: VGG19 trunk to
conv4_2 plus the CPM layers conv4_3_CPM / conv4_4_CPM (stride 8), a 3x3 first stage and
``num_stages - 1`` refinement stages of 7x7 convolutions, each stage with a PAF branch and a
heatmap branch. Same targets, loss, decoding and named outputs as Lightweight OpenPose.
"""

from __future__ import annotations

import torch
from torch import nn

from posekit.bottomup.lw_openpose import StageOutputs, init_background_bias


def _conv_relu(in_channels: int, out_channels: int, kernel: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2),
        nn.ReLU(inplace=True),
    ]


def vgg19_trunk() -> nn.Sequential:
    """VGG19 conv1_1 .. conv4_2, then conv4_3_CPM (256) and conv4_4_CPM (128)."""
    layers: list[nn.Module] = []
    plan = [
        (3, 64), (64, 64), "pool", (64, 128), (128, 128), "pool", (128, 256), (256, 256),
        (256, 256), (256, 256), "pool", (256, 512), (512, 512), (512, 256), (256, 128),
    ]  # fmt: skip
    for step in plan:
        if step == "pool":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers.extend(_conv_relu(*step, kernel=3))  # type: ignore[misc]
    return nn.Sequential(*layers)


def _branch(in_channels: int, out_channels: int, first: bool) -> nn.Sequential:
    if first:
        body = [*_conv_relu(in_channels, 128, 3), *_conv_relu(128, 128, 3),
                *_conv_relu(128, 128, 3), *_conv_relu(128, 512, 1)]  # fmt: skip
        last_in = 512
    else:
        body = [*_conv_relu(in_channels, 128, 7)]
        for _ in range(4):
            body.extend(_conv_relu(128, 128, 7))
        body.extend(_conv_relu(128, 128, 1))
        last_in = 128
    return nn.Sequential(*body, nn.Conv2d(last_in, out_channels, 1))


class OpenPoseVGG19(nn.Module):
    stride = 8

    def __init__(self, num_heatmaps: int, num_pafs: int, num_stages: int = 6) -> None:
        super().__init__()
        self.model = vgg19_trunk()
        features = 128
        stage_in = features + num_heatmaps + num_pafs
        self.paf_branches = nn.ModuleList(
            _branch(features if s == 0 else stage_in, num_pafs, s == 0) for s in range(num_stages)
        )
        self.heatmap_branches = nn.ModuleList(
            _branch(features if s == 0 else stage_in, num_heatmaps, s == 0)
            for s in range(num_stages)
        )

        init_background_bias([branch[-1] for branch in self.heatmap_branches])

    def forward(self, images: torch.Tensor) -> StageOutputs:
        features = self.model(images)
        outputs = StageOutputs(heatmaps=[], pafs=[])
        stage_input = features
        for paf_branch, heatmap_branch in zip(
            self.paf_branches, self.heatmap_branches, strict=True
        ):
            pafs, heatmaps = paf_branch(stage_input), heatmap_branch(stage_input)
            outputs.pafs.append(pafs)
            outputs.heatmaps.append(heatmaps)
            stage_input = torch.cat([pafs, heatmaps, features], dim=1)
        return outputs
