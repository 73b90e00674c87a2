"""Lightweight OpenPose (Osokin, 2018): MobileNetV1 trunk, CPM, initial + refinement stages.

Module names follow the original repository (``model``, ``cpm``, ``initial_stage``,
``refinement_stages``), so its state dicts and the ImageNet MobileNetV1 weights it starts from
(``mobilenet_sgd_68.848.pth.tar``, keys ``module.model.N...``) load by name. Outputs are named:
one heatmap tensor (K + 1 channels, last = background) and one PAF tensor (2 x limbs) per stage.
``width_mult`` and ``num_channels`` shrink the network for CPU training; 1.0 / 128 is the original.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from posekit.engine.optim import named_leaf_params
from posekit.layers.blocks import conv, conv_dw, conv_dw_no_bn, scaled


@dataclass
class StageOutputs:
    """Per-stage predictions, first stage first. Shapes (B, C, H/stride, W/stride)."""

    heatmaps: list[torch.Tensor]
    pafs: list[torch.Tensor]


def mobilenet_trunk(width_mult: float = 1.0) -> nn.Sequential:
    """MobileNetV1 up to conv5_5 at stride 8: conv4_2 onward dilated instead of strided."""
    c = [scaled(n, width_mult) for n in (32, 64, 128, 256, 512)]
    return nn.Sequential(
        conv(3, c[0], stride=2, bias=False),
        conv_dw(c[0], c[1]),
        conv_dw(c[1], c[2], stride=2),
        conv_dw(c[2], c[2]),
        conv_dw(c[2], c[3], stride=2),
        conv_dw(c[3], c[3]),
        conv_dw(c[3], c[4]),  # conv4_2 (stride 1 instead of 2)
        conv_dw(c[4], c[4], dilation=2, padding=2),
        conv_dw(c[4], c[4]),
        conv_dw(c[4], c[4]),
        conv_dw(c[4], c[4]),
        conv_dw(c[4], c[4]),  # conv5_5
    )


class Cpm(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, bn: bool = False) -> None:
        super().__init__()
        self.align = conv(in_channels, out_channels, kernel_size=1, padding=0, bn=bn)
        self.trunk = nn.Sequential(*(conv_dw_no_bn(out_channels, out_channels) for _ in range(3)))
        self.conv = conv(out_channels, out_channels, bn=bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.align(x)
        return self.conv(x + self.trunk(x))


def _head(in_channels: int, hidden: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        conv(in_channels, hidden, kernel_size=1, padding=0, bn=False),
        conv(hidden, out_channels, kernel_size=1, padding=0, bn=False, relu=False),
    )


class InitialStage(nn.Module):
    def __init__(
        self, channels: int, num_heatmaps: int, num_pafs: int, head_width: int, bn: bool = False
    ) -> None:
        super().__init__()
        self.trunk = nn.Sequential(*(conv(channels, channels, bn=bn) for _ in range(3)))
        self.heatmaps = _head(channels, head_width, num_heatmaps)
        self.pafs = _head(channels, head_width, num_pafs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk(x)
        return self.heatmaps(features), self.pafs(features)


class RefinementStageBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, bn: bool = False) -> None:
        super().__init__()
        self.initial = conv(in_channels, out_channels, kernel_size=1, padding=0, bn=bn)
        self.trunk = nn.Sequential(
            conv(out_channels, out_channels),
            conv(out_channels, out_channels, dilation=2, padding=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        initial = self.initial(x)
        return initial + self.trunk(initial)


class RefinementStage(nn.Module):
    def __init__(
        self, in_channels: int, channels: int, num_heatmaps: int, num_pafs: int, bn: bool = False
    ) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            RefinementStageBlock(in_channels, channels, bn),
            *(RefinementStageBlock(channels, channels, bn) for _ in range(4)),
        )
        self.heatmaps = _head(channels, channels, num_heatmaps)
        self.pafs = _head(channels, channels, num_pafs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk(x)
        return self.heatmaps(features), self.pafs(features)


class LightweightOpenPose(nn.Module):
    """Bottom-up pose network; ``num_heatmaps`` = keypoints + 1, ``num_pafs`` = 2 x limbs."""

    stride = 8

    def __init__(
        self,
        num_heatmaps: int,
        num_pafs: int,
        num_refinement_stages: int = 1,
        num_channels: int = 128,
        width_mult: float = 1.0,
        head_width: int = 512,
        stage_bn: bool = False,
    ) -> None:
        """``stage_bn`` adds BatchNorm to the CPM, initial-stage and refinement-block convs
        that the original leaves without (it speeds up training from scratch)."""
        super().__init__()
        self.model = mobilenet_trunk(width_mult)
        self.cpm = Cpm(scaled(512, width_mult), num_channels, stage_bn)
        self.initial_stage = InitialStage(
            num_channels, num_heatmaps, num_pafs, head_width, stage_bn
        )
        self.refinement_stages = nn.ModuleList(
            RefinementStage(
                num_channels + num_heatmaps + num_pafs,
                num_channels,
                num_heatmaps,
                num_pafs,
                stage_bn,
            )
            for _ in range(num_refinement_stages)
        )

        init_background_bias(self.heatmap_heads())

    def heatmap_heads(self) -> list[nn.Conv2d]:
        """The last convolution of every stage's heatmap branch."""
        stages = [self.initial_stage, *self.refinement_stages]
        return [stage.heatmaps[-1][0] for stage in stages]  # type: ignore[index]

    def forward(self, images: torch.Tensor) -> StageOutputs:
        features = self.cpm(self.model(images))
        heatmaps, pafs = self.initial_stage(features)
        outputs = StageOutputs(heatmaps=[heatmaps], pafs=[pafs])
        for stage in self.refinement_stages:
            heatmaps, pafs = stage(torch.cat([features, heatmaps, pafs], dim=1))
            outputs.heatmaps.append(heatmaps)
            outputs.pafs.append(pafs)
        return outputs


def init_background_bias(heads: list[nn.Conv2d]) -> None:
    """Start the background channel (the last) at 1, its value almost everywhere.

    From scratch, an output bias moves by about the learning rate per Adam step, so a zero
    start spends the first hundreds of steps only learning that constant.
    """
    with torch.no_grad():
        for head in heads:
            if head.bias is not None:
                head.bias[-1] = 1.0


def mobilenet_key(target_key: str) -> str:
    """Key of a trunk parameter in the ImageNet MobileNetV1 checkpoint's ``state_dict``."""
    return "module." + target_key if target_key.startswith("model.") else target_key


def lw_openpose_param_groups(model: nn.Module, base_lr: float, weight_decay: float) -> list[dict]:
    """The original train.py's groups: no weight decay on BatchNorm and depthwise weights,
    refinement stages at 4x the base learning rate, biases at 2x (trunk, CPM, initial stage)
    or 8x (refinement stages)."""
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    params = dict(model.named_parameters())
    for name, child, param_name in named_leaf_params(model, ""):
        refinement = name.startswith("refinement_stages")
        is_bias = param_name == "bias"
        no_decay = isinstance(child, nn.modules.batchnorm._BatchNorm) or (
            isinstance(child, nn.Conv2d) and child.groups > 1 and child.groups == child.in_channels
        )
        if is_bias:
            lr_mult, decay = (8.0 if refinement else 2.0), 0.0
        else:
            lr_mult, decay = (4.0 if refinement else 1.0), (0.0 if no_decay else weight_decay)
        groups.setdefault((lr_mult, decay), []).append(params[name])
    return [
        {"params": group, "lr": base_lr * lr_mult, "weight_decay": decay, "lr_mult": lr_mult}
        for (lr_mult, decay), group in sorted(groups.items())
    ]
