"""Hand-written ImageNet-style backbones for the top-down models (no torchvision).

Module names follow torchvision (``features.N...`` for MobileNetV2; ``conv1``, ``bn1``,
``layer1``..``layer4`` for ResNet), so the state-dict keys of their ImageNet weights, less the
classifier (``classifier.*`` / ``fc.*``), load by name; timm's ResNet names are the same, its
MobileNetV2 ones are mapped (:mod:`posekit.layers.backbone_weights`, ``backbone_weights``).
Each backbone returns its stride-32 feature map and says how many channels it has in
``out_channels``; ``feature_levels`` gives the stride-8, -16 and -32 maps (channels in
``level_channels``) for the detector.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from posekit.errors import ConfigError, check_parameters, did_you_mean
from posekit.layers.blocks import Fp32DepthwiseConv2d, StridedPointwiseConv2d

# MobileNetV2 inverted-residual stages: expansion t, channels c, repeats n, first stride s.
MOBILENET_V2_STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of ``divisor``, never more than 10% below ``value``
    (torchvision's ``_make_divisible``)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_bn_relu6(
    in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """Conv2d (no bias) + BatchNorm + ReLU6; torchvision's ``Conv2dNormActivation`` keys.
    Strided depthwise convolutions run in float32 under CPU autocast (see
    :class:`Fp32DepthwiseConv2d`)."""
    depthwise = groups > 1 and groups == in_channels
    layer = Fp32DepthwiseConv2d if depthwise and stride > 1 else nn.Conv2d
    return nn.Sequential(
        layer(
            in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2,
            groups=groups, bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU6(inplace=True),
    )  # fmt: skip


class InvertedResidual(nn.Module):
    """Expand (1x1) - depthwise (3x3) - project (1x1, linear); residual when shapes match."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = round(in_channels * expansion)
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(conv_bn_relu6(in_channels, hidden, kernel_size=1))
        layers += [
            conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 features (Sandler et al., 2018) up to the last 1x1 conv, at stride 32."""

    def __init__(self, width_mult: float = 1.0) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ConfigError(f"model.params.width_mult must be positive, got {width_mult}")
        channels = make_divisible(32 * width_mult)
        self.out_channels = make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [conv_bn_relu6(3, channels, stride=2)]
        for expansion, c, repeats, first_stride in MOBILENET_V2_STAGES:
            out = make_divisible(c * width_mult)
            for index in range(repeats):
                stride = first_stride if index == 0 else 1
                layers.append(InvertedResidual(channels, out, stride, expansion))
                channels = out
        layers.append(conv_bn_relu6(channels, self.out_channels, kernel_size=1))
        self.features = nn.Sequential(*layers)
        # the last layer at strides 8 and 16 (before the next strided block), and the end
        self.level_ends = (*_last_at_strides(layers, (8, 16)), len(layers) - 1)
        self.level_channels = (
            _out_channels(layers[self.level_ends[0]]),
            _out_channels(layers[self.level_ends[1]]),
            self.out_channels,
        )
        init_weights(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)

    def feature_levels(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The stride-8, -16 and -32 maps."""
        outputs = []
        x = images
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.level_ends:
                outputs.append(x)
        return outputs


def _layer_stride(layer: nn.Module) -> int:
    convs = [m for m in layer.modules() if isinstance(m, nn.Conv2d)]
    stride = 1
    for conv in convs:
        stride *= int(conv.stride[0])
    return stride


def _last_at_strides(layers: list[nn.Module], strides: tuple[int, ...]) -> list[int]:
    """For each stride in ``strides``, the index of the last layer whose output has it."""
    stride, last = 1, {}
    for index, layer in enumerate(layers):
        stride *= _layer_stride(layer)
        last[stride] = index
    return [last[s] for s in strides]


def _out_channels(layer: nn.Module) -> int:
    convs = [m for m in layer.modules() if isinstance(m, nn.Conv2d)]
    return int(convs[-1].out_channels)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34)."""

    expansion = 1

    def __init__(
        self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 - 3x3 (strided, "ResNet v1.5") - 1x1 with 4x expansion (ResNet-50)."""

    expansion = 4

    def __init__(
        self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = conv3x3(channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, channels * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


# depth -> (block, blocks per stage)
RESNET_LAYOUTS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, ...]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nn.Module):
    """ResNet (He et al., 2016) without the pooling and classifier: the stride-32 map."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        if depth not in RESNET_LAYOUTS:
            raise ConfigError(f"ResNet depth {depth} is unknown; known: {sorted(RESNET_LAYOUTS)}")
        block, counts = RESNET_LAYOUTS[depth]
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.in_channels = 64
        self.layer1 = self._make_layer(block, 64, counts[0], 1)
        self.layer2 = self._make_layer(block, 128, counts[1], 2)
        self.layer3 = self._make_layer(block, 256, counts[2], 2)
        self.layer4 = self._make_layer(block, 512, counts[3], 2)
        self.out_channels = self.in_channels
        self.level_channels = (128 * block.expansion, 256 * block.expansion, self.out_channels)
        init_weights(self)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], channels: int, count: int, stride: int
    ) -> nn.Sequential:
        out_channels = channels * block.expansion
        downsample = None
        if stride != 1 or self.in_channels != out_channels:
            downsample = nn.Sequential(
                (StridedPointwiseConv2d if stride > 1 else nn.Conv2d)(
                    self.in_channels, out_channels, 1, stride, bias=False
                ),
                nn.BatchNorm2d(out_channels),
            )
        blocks = [block(self.in_channels, channels, stride, downsample)]
        self.in_channels = out_channels
        blocks += [block(out_channels, channels) for _ in range(count - 1)]
        return nn.Sequential(*blocks)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.feature_levels(images)[-1]

    def feature_levels(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The stride-8, -16 and -32 maps (``layer2``, ``layer3``, ``layer4``)."""
        x = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(images)))))
        stride8 = self.layer2(x)
        stride16 = self.layer3(stride8)
        return [stride8, stride16, self.layer4(stride16)]


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal (fan out, ReLU) convolutions with zero bias; BatchNorm weight 1, bias 0."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "mobilenet_v2": MobileNetV2,
    "resnet18": partial(ResNet, depth=18),
    "resnet34": partial(ResNet, depth=34),
    "resnet50": partial(ResNet, depth=50),
}


def build_backbone(name: str, **params: object) -> nn.Module:
    """The backbone called ``name`` in :data:`BACKBONES`, built with ``params``."""
    if name not in BACKBONES:
        raise ConfigError(
            f"model.params.backbone {name!r} is unknown; known: {sorted(BACKBONES)}"
            + did_you_mean(name, BACKBONES)
        )
    factory = BACKBONES[name]
    check_parameters(factory, params, f"model.params.backbone_params for backbone {name!r}")
    return factory(**params)
