"""Top-down pose networks: one person crop in, per-keypoint predictions out.

A backbone from :mod:`posekit.layers.backbones` (stride 32) and one of two heads:

* ``heatmap``: SimpleBaseline (Xiao et al., 2018): deconvolutions back to stride 4, then a 1x1
  conv to one heatmap per keypoint.
* ``simcc``: SimCC / RTMPose-like (without the GAU): a 7x7 conv to one map per keypoint,
  flattened, an MLP, then one classification over ``round(W * r)`` x-bins and one over
  ``round(H * r)`` y-bins per keypoint (``r`` = ``simcc_split_ratio``).

Submodules are ``backbone`` and ``head`` so a backbone is frozen by the prefix ``"backbone."``.
``backbone_weights`` (a torchvision or timm ImageNet file) is loaded into the backbone when the
model is built (:mod:`posekit.layers.backbone_weights`); ``backbone_weights_report`` says what
was loaded, or that the backbone starts from random weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from posekit.errors import ConfigError, did_you_mean
from posekit.layers.backbone_weights import BackboneWeightsReport, load_backbone_weights
from posekit.layers.backbones import build_backbone

BACKBONE_STRIDE = 32
HEAD_KINDS = ("heatmap", "simcc")
WIDTH_MULT_BACKBONES = frozenset({"mobilenet_v2"})  # backbones that take ``width_mult``


@dataclass
class TopDownOutputs:
    """Predictions of a top-down model; the fields of the other head stay ``None``."""

    heatmaps: torch.Tensor | None = None  # (N, K, H/4, W/4) for the heatmap head
    simcc_x: torch.Tensor | None = None  # (N, K, round(W*r)) for the SimCC head
    simcc_y: torch.Tensor | None = None  # (N, K, round(H*r))


class HeatmapHead(nn.Module):
    """SimpleBaseline head: [ConvTranspose2d(k4, s2, p1) + BN + ReLU] per entry of
    ``deconv_channels`` (each doubles the resolution), then a 1x1 conv to ``num_keypoints``."""

    def __init__(
        self, in_channels: int, num_keypoints: int, deconv_channels: Sequence[int] = (256, 256, 256)
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for channels in deconv_channels:
            layers += [
                nn.ConvTranspose2d(in_channels, channels, 4, 2, 1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
            in_channels = channels
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(in_channels, num_keypoints, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Normal(0, 0.001) deconvolution and final weights, zero final bias, BN 1 / 0."""
        for module in self.modules():
            if isinstance(module, nn.ConvTranspose2d | nn.Conv2d):
                nn.init.normal_(module.weight, std=0.001)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.deconv_layers(features))


class SimCCHead(nn.Module):
    """RTMPose-like SimCC head without the gated attention unit.

    ``input_hw`` is the image size (height, width): it fixes the feature size the MLP flattens,
    ``ceil(H / 32) * ceil(W / 32)``, and the bin counts ``round(W * r)`` and ``round(H * r)``.
    """

    def __init__(
        self,
        in_channels: int,
        num_keypoints: int,
        input_hw: Sequence[int],
        split_ratio: float = 2.0,
        hidden: int = 256,
        final_kernel: int = 7,
    ) -> None:
        super().__init__()
        height, width = input_hw
        self.feature_hw = (
            math.ceil(height / BACKBONE_STRIDE),
            math.ceil(width / BACKBONE_STRIDE),
        )
        self.final_layer = nn.Conv2d(
            in_channels, num_keypoints, final_kernel, padding=final_kernel // 2
        )
        self.mlp = nn.Sequential(
            nn.Linear(self.feature_hw[0] * self.feature_hw[1], hidden), nn.ReLU(inplace=True)
        )
        self.cls_x = nn.Linear(hidden, round(width * split_ratio))
        self.cls_y = nn.Linear(hidden, round(height * split_ratio))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tracing = torch.jit.is_tracing()  # ONNX export: the shapes are fixed by the example
        if not tracing and tuple(features.shape[-2:]) != self.feature_hw:
            raise ValueError(
                f"SimCC head built for {self.feature_hw} features (input_size / 32), "
                f"got {tuple(features.shape[-2:])}: feed images of the model's input_size"
            )
        hidden = self.mlp(self.final_layer(features).flatten(2))
        return self.cls_x(hidden), self.cls_y(hidden)


class TopDownPoseNet(nn.Module):
    """Backbone + heatmap or SimCC head for crops of ``input_size`` (height, width)."""

    def __init__(
        self,
        num_keypoints: int,
        backbone: str = "resnet18",
        head: str = "heatmap",
        input_size: tuple[int, int] | list[int] = (256, 192),
        deconv_channels: tuple[int, ...] | list[int] = (256, 256, 256),
        simcc_split_ratio: float = 2.0,
        simcc_hidden: int = 256,
        width_mult: float = 1.0,
        backbone_params: dict | None = None,
        backbone_weights: str | None = None,
    ) -> None:
        super().__init__()
        if head not in HEAD_KINDS:
            raise ConfigError(
                f"model.params.head {head!r} is unknown; known: {list(HEAD_KINDS)}"
                + did_you_mean(head, HEAD_KINDS)
            )
        if len(input_size) != 2 or any(int(side) % BACKBONE_STRIDE for side in input_size):
            raise ConfigError(
                f"model.params.input_size must be [height, width], multiples of "
                f"{BACKBONE_STRIDE} (the backbone stride), e.g. [256, 192]; got {input_size}"
            )
        self.head_kind = head
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.simcc_split_ratio = simcc_split_ratio
        params = backbone_arguments(backbone, width_mult, backbone_params)
        self.backbone = build_backbone(backbone, **params)
        self.backbone_name = backbone
        self.backbone_weights_report = (
            load_backbone_weights(self.backbone, backbone, str(backbone_weights))
            if backbone_weights
            else BackboneWeightsReport(backbone)
        )
        in_channels = int(self.backbone.out_channels)
        if head == "heatmap":
            if 2 ** len(deconv_channels) > BACKBONE_STRIDE:
                raise ConfigError(
                    "model.params.deconv_channels: at most 5 deconvolutions (stride 32 to 1), "
                    f"got {len(deconv_channels)}"
                )
            self.stride = BACKBONE_STRIDE // 2 ** len(deconv_channels)
            self.head: nn.Module = HeatmapHead(in_channels, num_keypoints, deconv_channels)
        else:
            self.stride = BACKBONE_STRIDE  # of the features; the bins are 1 / simcc_split_ratio
            self.head = SimCCHead(
                in_channels, num_keypoints, self.input_size, simcc_split_ratio, simcc_hidden
            )

    def forward(self, images: torch.Tensor) -> TopDownOutputs:
        features = self.backbone(images)
        if self.head_kind == "heatmap":
            return TopDownOutputs(heatmaps=self.head(features))
        simcc_x, simcc_y = self.head(features)
        return TopDownOutputs(simcc_x=simcc_x, simcc_y=simcc_y)


def backbone_arguments(
    backbone: str, width_mult: float, backbone_params: dict | None
) -> dict[str, object]:
    """Keyword arguments of :func:`build_backbone`: ``width_mult`` goes to the backbones that
    take one (explicit ``backbone_params`` win); any other backbone must leave it at 1."""
    params: dict[str, object] = dict(backbone_params or {})
    if backbone in WIDTH_MULT_BACKBONES:
        params.setdefault("width_mult", width_mult)
    elif width_mult != 1.0:
        raise ConfigError(
            f"model.params.width_mult {width_mult} needs one of {sorted(WIDTH_MULT_BACKBONES)}; "
            f"backbone {backbone!r} has a fixed width, leave width_mult at 1.0"
        )
    return params
