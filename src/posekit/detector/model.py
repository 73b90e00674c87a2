"""A small real-time DETR (the RT-DETR / D-FINE / DEIM family), written out in plain PyTorch.

- **Backbone:** a ResNet-style CNN of basic blocks (hand-written, no torchvision), widths and
  depths from the size preset; it returns the stride-8, -16 and -32 maps. Or, with
  ``backbone: resnet18|resnet34|resnet50|mobilenet_v2``, one of the shared ImageNet backbones
  (:mod:`posekit.layers.backbones`), whose torchvision / timm weights load with
  ``backbone_weights: FILE``.
- **Encoder** (RT-DETR's hybrid encoder): each level projected to ``hidden_dim``; one
  transformer layer with 2-D sine positions on the stride-32 map only (intra-scale
  interaction, "AIFI"), then a top-down and a bottom-up path of convolution blocks that
  fuse the levels (cross-scale fusion, "CCFF").
- **Query selection:** every encoder position is a proposal (a class score and a box
  relative to its anchor); the ``num_queries`` best become the decoder's initial queries
  and reference boxes. The selected proposals get a loss too (``_enc`` terms).
- **Decoder:** layers of query self-attention, multi-scale deformable cross-attention
  (sampled with ``grid_sample``) and a feed-forward block. Each layer refines the boxes in
  logit space and predicts classes; every layer's output gets the matching loss
  (auxiliary losses), with the look-forward-twice gradient of DINO / RT-DETR.

Boxes are ``cxcywh`` normalised to the input, classes are independent sigmoids (focal or
varifocal loss). Sizes ``tiny`` (CPU) to ``medium`` (GPU) come from :data:`DETECTOR_SIZES`,
any field overridable from ``model.params``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from posekit.errors import ConfigError, did_you_mean
from posekit.layers.backbone_weights import BackboneWeightsReport, load_backbone_weights
from posekit.layers.backbones import BACKBONES, build_backbone
from posekit.layers.blocks import StridedPointwiseConv2d

# The default backbone is posekit's own (two 3x3 stem convs, a strided first stage, SiLU): no
# public ImageNet weights (torchvision, timm) have its layout.
OWN_BACKBONE = "posekit"
NO_PUBLIC_WEIGHTS = (
    "no public ImageNet weights fit it (posekit's own layout); for ImageNet weights set "
    f"model.params.backbone to one of {sorted(BACKBONES)} and backbone_weights=FILE"
)


@dataclass(frozen=True)
class DetectorSize:
    widths: tuple[int, int, int, int, int]  # stem, then the stride-4, 8, 16, 32 stages
    depths: tuple[int, int, int, int]  # basic blocks per stage
    hidden_dim: int
    num_heads: int
    encoder_ffn_dim: int
    fusion_blocks: int  # 3x3 conv blocks in each fusion step of the encoder
    num_queries: int
    num_decoder_layers: int
    decoder_ffn_dim: int
    num_points: int  # deformable sampling points per head and level


DETECTOR_SIZES: dict[str, DetectorSize] = {
    # about 2.1 M parameters: trains on a laptop CPU
    "tiny": DetectorSize((16, 32, 64, 128, 192), (1, 1, 1, 1), 96, 4, 192, 1, 30, 3, 256, 4),
    # RT-DETR-R18-like widths: a GPU model
    "small": DetectorSize((32, 64, 128, 256, 512), (2, 2, 2, 2), 256, 8, 1024, 2, 300, 3, 1024, 4),
    "medium": DetectorSize((64, 64, 128, 256, 512), (3, 4, 6, 3), 256, 8, 1024, 3, 300, 6, 1024, 4),
}


def detector_size(name: str, overrides: dict[str, Any]) -> DetectorSize:
    """The preset ``name`` with ``overrides`` (``model.params``) applied."""
    if name not in DETECTOR_SIZES:
        raise ConfigError(f"model.params.size {name!r} is unknown; known: {sorted(DETECTOR_SIZES)}")
    known = {f.name for f in fields(DetectorSize)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        choices = ["size", "backbone", "backbone_weights", *sorted(known)]
        raise ConfigError(
            f"model.params: unknown detector parameter {unknown[0]!r}"
            f"{did_you_mean(unknown[0], choices)}; known: {choices}"
        )
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    size = replace(DETECTOR_SIZES[name], **values)
    if size.hidden_dim % size.num_heads or (size.hidden_dim // size.num_heads) % 2:
        raise ConfigError(
            f"model.params: hidden_dim {size.hidden_dim} must be a multiple of 2 × num_heads "
            f"({size.num_heads}); change one"
        )
    if len(size.widths) != 5 or len(size.depths) != 4:
        raise ConfigError("model.params: widths needs 5 values and depths 4; fix the lists")
    return size


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def conv_bn_act(
    in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, act: bool = True
) -> nn.Sequential:
    # strided 1x1 (the shortcuts): see StridedPointwiseConv2d for the PyTorch CPU bug it avoids
    layer = StridedPointwiseConv2d if kernel_size == 1 and stride > 1 else nn.Conv2d
    layers: list[nn.Module] = [
        layer(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if act:
        layers.append(nn.SiLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv_bn_act(in_channels, channels, 3, stride)
        self.conv2 = conv_bn_act(channels, channels, 3, act=False)
        self.shortcut = (
            conv_bn_act(in_channels, channels, 1, stride, act=False)
            if stride != 1 or in_channels != channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.conv2(self.conv1(x)) + self.shortcut(x))


class DetectorBackbone(nn.Module):
    """Stem (stride 2) and four stages of basic blocks (strides 4, 8, 16, 32)."""

    def __init__(self, widths: tuple[int, ...], depths: tuple[int, ...]) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            conv_bn_act(3, widths[0], 3, 2), conv_bn_act(widths[0], widths[0], 3)
        )
        stages = []
        for index, depth in enumerate(depths):
            blocks = [BasicBlock(widths[index], widths[index + 1], 2)]
            blocks += [
                BasicBlock(widths[index + 1], widths[index + 1], 1) for _ in range(depth - 1)
            ]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.out_channels = tuple(widths[2:])

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:  # strides 8, 16, 32
        x = self.stem(images)
        outputs = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index >= 1:
                outputs.append(x)
        return outputs


class ImageNetLevels(nn.Module):
    """A shared ImageNet backbone (``net``, torchvision key names) giving the stride-8, -16
    and -32 maps."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.net = build_backbone(name)
        self.out_channels = tuple(self.net.level_channels)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.net.feature_levels(images)


def sine_positions_2d(
    height: int, width: int, dim: int, temperature: float = 10000.0
) -> torch.Tensor:
    """(H*W, dim) fixed 2-D sine-cosine positions (row-major), as RT-DETR's encoder uses."""
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
        indexing="ij",
    )  # fmt: skip
    out_x = xs.reshape(-1, 1) * omega[None]
    out_y = ys.reshape(-1, 1) * omega[None]
    return torch.cat([out_x.sin(), out_x.cos(), out_y.sin(), out_y.cos()], dim=1)


class EncoderLayer(nn.Module):
    """Post-norm transformer layer; positions are added to queries and keys only."""

    def __init__(self, dim: int, heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, dim))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        query = x + positions
        x = self.norm1(x + self.attention(query, query, x, need_weights=False)[0])
        return self.norm2(x + self.ffn(x))


class FusionBlock(nn.Module):
    """Two concatenated levels (2·dim channels) fused back to dim: a 1x1 projection and
    residual 3x3 conv blocks (a light CSP/RepC3)."""

    def __init__(self, dim: int, blocks: int) -> None:
        super().__init__()
        self.reduce = conv_bn_act(2 * dim, dim, 1)
        self.blocks = nn.ModuleList(conv_bn_act(dim, dim, 3) for _ in range(blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x)
        for block in self.blocks:
            x = x + block(x)
        return x


class HybridEncoder(nn.Module):
    def __init__(self, in_channels: tuple[int, ...], size: DetectorSize) -> None:
        super().__init__()
        dim = size.hidden_dim
        self.projections = nn.ModuleList(conv_bn_act(c, dim, 1, act=False) for c in in_channels)
        self.intra_scale = EncoderLayer(dim, size.num_heads, size.encoder_ffn_dim)
        self.laterals = nn.ModuleList(conv_bn_act(dim, dim, 1) for _ in in_channels[1:])
        self.top_down = nn.ModuleList(FusionBlock(dim, size.fusion_blocks) for _ in in_channels[1:])
        self.downsamples = nn.ModuleList(conv_bn_act(dim, dim, 3, 2) for _ in in_channels[1:])
        self.bottom_up = nn.ModuleList(
            FusionBlock(dim, size.fusion_blocks) for _ in in_channels[1:]
        )
        self.dim = dim

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        levels = [project(f) for project, f in zip(self.projections, features, strict=True)]
        top = levels[-1]
        batch, dim, height, width = top.shape
        positions = sine_positions_2d(height, width, dim).to(top.device, top.dtype)
        tokens = self.intra_scale(top.flatten(2).transpose(1, 2), positions[None])
        levels[-1] = tokens.transpose(1, 2).reshape(batch, dim, height, width)
        # top-down (FPN): coarse to fine
        inner = [levels[-1]]
        for step in range(len(levels) - 1, 0, -1):
            high = self.laterals[step - 1](inner[0])
            inner[0] = high
            upsampled = F.interpolate(high, size=levels[step - 1].shape[-2:], mode="nearest")
            fused = self.top_down[step - 1](torch.cat([upsampled, levels[step - 1]], dim=1))
            inner.insert(0, fused)
        # bottom-up (PAN): fine to coarse
        outputs = [inner[0]]
        for step in range(len(levels) - 1):
            down = self.downsamples[step](outputs[-1])
            if down.shape[-2:] != inner[step + 1].shape[-2:]:
                down = F.interpolate(down, size=inner[step + 1].shape[-2:], mode="nearest")
            outputs.append(self.bottom_up[step](torch.cat([down, inner[step + 1]], dim=1)))
        return outputs


class MLP(nn.Module):
    def __init__(self, in_dim: int, hidden: int, out_dim: int, layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < len(self.layers) - 1:
                x = F.relu(x)
        return x


def deformable_sample(
    value: torch.Tensor,  # (B, S, heads, head_dim), S = sum of H*W over levels
    shapes: list[tuple[int, int]],  # (H, W) of each level
    locations: torch.Tensor,  # (B, Q, heads, L, P, 2) in [0, 1], x then y
    weights: torch.Tensor,  # (B, Q, heads, L, P), softmax over L*P
) -> torch.Tensor:  # (B, Q, heads * head_dim)
    """Multi-scale deformable attention (Zhu et al. 2021) with ``grid_sample``: the plain
    PyTorch form of the CUDA kernel, bilinear with zero padding, in float32."""
    batch, _, heads, head_dim = value.shape
    _, queries, _, levels, points, _ = locations.shape
    grids = 2 * locations.float() - 1
    sampled = []
    start = 0
    for level, (height, width) in enumerate(shapes):
        level_value = value[:, start : start + height * width].float()
        start += height * width
        level_value = level_value.permute(0, 2, 3, 1).reshape(
            batch * heads, head_dim, height, width
        )
        grid = (
            grids[:, :, :, level].permute(0, 2, 1, 3, 4).reshape(batch * heads, queries, points, 2)
        )
        sampled.append(
            F.grid_sample(
                level_value, grid, mode="bilinear", padding_mode="zeros", align_corners=False
            )
        )  # (B*heads, head_dim, Q, P)
    stacked = torch.stack(sampled, dim=-2)  # (B*heads, head_dim, Q, L, P)
    attention = (
        weights.float().permute(0, 2, 1, 3, 4).reshape(batch * heads, 1, queries, levels, points)
    )
    out = (stacked * attention).sum(dim=(-1, -2))  # (B*heads, head_dim, Q)
    return out.reshape(batch, heads * head_dim, queries).transpose(1, 2)


class DeformableAttention(nn.Module):
    def __init__(self, dim: int, heads: int, levels: int, points: int) -> None:
        super().__init__()
        self.heads, self.levels, self.points = heads, levels, points
        self.offsets = nn.Linear(dim, heads * levels * points * 2)
        self.attention_weights = nn.Linear(dim, heads * levels * points)
        self.value_projection = nn.Linear(dim, dim)
        self.output_projection = nn.Linear(dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR's start: each head looks in its own direction, further for later
        points; uniform attention."""
        nn.init.zeros_(self.offsets.weight)
        angles = torch.arange(self.heads, dtype=torch.float32) * (2 * math.pi / self.heads)
        directions = torch.stack([angles.cos(), angles.sin()], -1)
        directions = directions / directions.abs().max(-1, keepdim=True).values
        grid = directions[:, None, None, :].repeat(1, self.levels, self.points, 1)
        grid = grid * torch.arange(1, self.points + 1, dtype=torch.float32)[None, None, :, None]
        with torch.no_grad():
            self.offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_projection.weight)
        nn.init.zeros_(self.value_projection.bias)
        nn.init.xavier_uniform_(self.output_projection.weight)
        nn.init.zeros_(self.output_projection.bias)

    def forward(
        self,
        query: torch.Tensor,  # (B, Q, D)
        reference: torch.Tensor,  # (B, Q, 4) cxcywh in [0, 1]
        memory: torch.Tensor,  # (B, S, D)
        shapes: list[tuple[int, int]],
    ) -> torch.Tensor:
        batch, queries, dim = query.shape
        heads, levels, points = self.heads, self.levels, self.points
        value = self.value_projection(memory).reshape(batch, -1, heads, dim // heads)
        offsets = self.offsets(query).reshape(batch, queries, heads, levels, points, 2)
        weights = self.attention_weights(query).reshape(batch, queries, heads, levels * points)
        weights = weights.softmax(-1).reshape(batch, queries, heads, levels, points)
        centre = reference[:, :, None, None, None, :2]
        half_size = reference[:, :, None, None, None, 2:] * 0.5
        locations = centre + offsets / points * half_size
        out = deformable_sample(value, shapes, locations, weights).to(query.dtype)
        return self.output_projection(out)


class DecoderLayer(nn.Module):
    def __init__(self, size: DetectorSize, levels: int) -> None:
        super().__init__()
        dim = size.hidden_dim
        self.self_attention = nn.MultiheadAttention(dim, size.num_heads, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attention = DeformableAttention(dim, size.num_heads, levels, size.num_points)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, size.decoder_ffn_dim), nn.ReLU(inplace=True),
            nn.Linear(size.decoder_ffn_dim, dim),
        )  # fmt: skip
        self.norm3 = nn.LayerNorm(dim)

    def forward(
        self,
        target: torch.Tensor,
        query_positions: torch.Tensor,
        reference: torch.Tensor,
        memory: torch.Tensor,
        shapes: list[tuple[int, int]],
    ) -> torch.Tensor:
        query = target + query_positions
        target = self.norm1(
            target + self.self_attention(query, query, target, need_weights=False)[0]
        )
        cross = self.cross_attention(target + query_positions, reference, memory, shapes)
        target = self.norm2(target + cross)
        return self.norm3(target + self.ffn(target))


@dataclass
class DetectorOutputs:
    """Every decoder layer's (class logits (B, Q, C), boxes (B, Q, 4) cxcywh); the last is
    the prediction. ``encoder`` is the selected proposals' pair (their loss)."""

    layers: list[tuple[torch.Tensor, torch.Tensor]]
    encoder: tuple[torch.Tensor, torch.Tensor]

    @property
    def logits(self) -> torch.Tensor:
        return self.layers[-1][0]

    @property
    def boxes(self) -> torch.Tensor:
        return self.layers[-1][1]


def level_anchors(
    shapes: list[tuple[int, int]], device: torch.device, base_size: float = 0.05
) -> tuple[torch.Tensor, torch.Tensor]:  # (S, 4) logit anchors, (S, 1) valid
    """An anchor box per encoder position (centre of its cell, side ``base_size · 2^level``),
    in logit space; anchors touching the border are marked invalid (RT-DETR)."""
    anchors = []
    for level, (height, width) in enumerate(shapes):
        ys, xs = torch.meshgrid(
            torch.arange(height, dtype=torch.float32, device=device),
            torch.arange(width, dtype=torch.float32, device=device),
            indexing="ij",
        )
        centres = torch.stack([(xs + 0.5) / width, (ys + 0.5) / height], -1).reshape(-1, 2)
        sides = torch.full_like(centres, base_size * 2.0**level)
        anchors.append(torch.cat([centres, sides], -1))
    boxes = torch.cat(anchors)
    valid = ((boxes > 0.01) & (boxes < 0.99)).all(-1, keepdim=True)
    logits = torch.log(boxes / (1 - boxes)).masked_fill(~valid, float("inf"))
    return logits, valid


class RTDetr(nn.Module):
    """The detector: ``forward(images)`` gives :class:`DetectorOutputs` (normalised boxes)."""

    family = "detector"

    def __init__(
        self,
        num_classes: int = 1,
        size: str = "tiny",
        backbone: str = OWN_BACKBONE,
        backbone_weights: str | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__()
        if backbone != OWN_BACKBONE and backbone not in BACKBONES:
            raise ConfigError(
                f"model.params.backbone {backbone!r} is unknown for the detector; known: "
                f"{[OWN_BACKBONE, *sorted(BACKBONES)]}"
            )
        if backbone_weights and backbone == OWN_BACKBONE:
            raise ConfigError(
                "model.params.backbone_weights: the detector's default backbone is posekit's "
                "own (3x3 stem convs, a strided first stage, SiLU) and no public ImageNet "
                f"weights fit it; set model.params.backbone to one of {sorted(BACKBONES)} "
                "for ImageNet weights, or remove backbone_weights"
            )
        self.size = detector_size(size, overrides)
        self.size_name = size
        self.backbone_name = backbone
        self.num_classes = num_classes
        spec = self.size
        dim = spec.hidden_dim
        self.backbone: nn.Module
        if backbone == OWN_BACKBONE:
            self.backbone = DetectorBackbone(spec.widths, spec.depths)
            self.backbone_weights_report = BackboneWeightsReport(
                f"of rtdetr ({size})", note=NO_PUBLIC_WEIGHTS
            )
        else:
            self.backbone = ImageNetLevels(backbone)
            self.backbone_weights_report = BackboneWeightsReport(backbone)
        self.encoder = HybridEncoder(self.backbone.out_channels, spec)
        levels = len(self.backbone.out_channels)
        self.proposal_projection = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim))
        self.proposal_scores = nn.Linear(dim, num_classes)
        self.proposal_boxes = MLP(dim, dim, 4, 3)
        self.query_position = MLP(4, 2 * dim, dim, 2)
        self.decoder = nn.ModuleList(
            DecoderLayer(spec, levels) for _ in range(spec.num_decoder_layers)
        )
        self.score_heads = nn.ModuleList(nn.Linear(dim, num_classes) for _ in self.decoder)
        self.box_heads = nn.ModuleList(MLP(dim, dim, 4, 3) for _ in self.decoder)
        self.reset_parameters()
        if backbone_weights:  # after reset_parameters, which re-initialises every conv
            self.backbone_weights_report = load_backbone_weights(
                self.backbone.net, backbone, str(backbone_weights)
            )

    def reset_parameters(self) -> None:
        prior = -math.log((1 - 0.01) / 0.01)  # focal-loss prior: start at p = 0.01
        for head in [self.proposal_scores, *self.score_heads]:
            nn.init.zeros_(head.weight)
            nn.init.constant_(head.bias, prior)
        for mlp in [self.proposal_boxes, *self.box_heads]:
            nn.init.zeros_(mlp.layers[-1].weight)
            nn.init.zeros_(mlp.layers[-1].bias)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images: torch.Tensor) -> DetectorOutputs:
        levels = self.encoder(self.backbone(images))
        shapes = [(int(f.shape[2]), int(f.shape[3])) for f in levels]
        memory = torch.cat([f.flatten(2).transpose(1, 2) for f in levels], dim=1)  # (B, S, D)
        anchors, valid = level_anchors(shapes, memory.device)
        proposals = self.proposal_projection(memory * valid.to(memory.dtype))
        proposal_logits = self.proposal_scores(proposals)
        proposal_boxes = self.proposal_boxes(proposals).float() + anchors
        count = min(self.size.num_queries, memory.shape[1])
        best = proposal_logits.detach().float().amax(-1).masked_fill(~valid.squeeze(-1), -1e4)
        top = best.topk(count, dim=1).indices  # (B, Q)
        gather = top[..., None]
        selected_boxes = proposal_boxes.gather(1, gather.expand(-1, -1, 4)).sigmoid()
        encoder_pair = (
            proposal_logits.gather(1, gather.expand(-1, -1, self.num_classes)),
            selected_boxes,
        )
        target = proposals.gather(1, gather.expand(-1, -1, proposals.shape[-1])).detach()
        reference = selected_boxes.detach()
        previous = reference  # keeps the gradient of the previous refinement (LFT)
        layers = []
        for index, layer in enumerate(self.decoder):
            positions = self.query_position(reference.to(target.dtype))
            target = layer(target, positions, reference.to(target.dtype), memory, shapes)
            delta = self.box_heads[index](target).float()
            refined = (delta + inverse_sigmoid(reference)).sigmoid()
            boxes = refined if index == 0 else (delta + inverse_sigmoid(previous)).sigmoid()
            layers.append((self.score_heads[index](target), boxes))
            previous, reference = refined, refined.detach()
        return DetectorOutputs(layers, encoder_pair)
