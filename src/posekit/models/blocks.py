"""Small convolution blocks shared by the model families (no torchvision)."""

from __future__ import annotations

from torch import nn


def conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    padding: int = 1,
    bn: bool = True,
    dilation: int = 1,
    stride: int = 1,
    relu: bool = True,
    bias: bool = True,
) -> nn.Sequential:
    """Conv2d [+ BatchNorm] [+ ReLU]; the layout (and state-dict keys) of Lightweight OpenPose."""
    modules: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, bias=bias)
    ]
    if bn:
        modules.append(nn.BatchNorm2d(out_channels))
    if relu:
        modules.append(nn.ReLU(inplace=True))
    return nn.Sequential(*modules)


def conv_dw(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    padding: int = 1,
    stride: int = 1,
    dilation: int = 1,
) -> nn.Sequential:
    """Depthwise-separable conv with BatchNorm and ReLU (MobileNetV1 block)."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels, in_channels, kernel_size, stride, padding,
            dilation=dilation, groups=in_channels, bias=False,
        ),
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )  # fmt: skip


def conv_dw_no_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    """Depthwise-separable conv with ELU and no BatchNorm (the CPM trunk)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, 1, 1, groups=in_channels, bias=False),
        nn.ELU(inplace=True),
        nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False),
        nn.ELU(inplace=True),
    )


def scaled(channels: int, width_mult: float) -> int:
    """Channel count times a width multiplier, at least 8 and a multiple of 8."""
    return max(8, round(channels * width_mult / 8) * 8)
