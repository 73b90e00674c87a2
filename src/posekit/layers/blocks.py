"""Small convolution blocks shared by the model families (no torchvision)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def cpu_layout(images: torch.Tensor) -> torch.Tensor:
    """``images`` (B, C, H, W) as channels-last on the CPU, where oneDNN's convolutions are
    fastest with it (the models are converted the same way); elsewhere unchanged."""
    if images.device.type == "cpu":
        return images.contiguous(memory_format=torch.channels_last)
    return images


class Fp32DepthwiseConv2d(nn.Conv2d):
    """A depthwise convolution that runs in float32 when training under CPU bf16 autocast.

    For strided and dilated depthwise convolutions oneDNN's bf16 kernels are much slower
    than its fp32 ones on these CPUs (forward + backward, batch 8, channels_last: 64 channels
    184² stride 2, 125 ms against 35 ms; 512 channels 46² dilation 2, 266 against 131 ms),
    while plain stride-1 ones are about even and the 1x1 and full convolutions gain from
    bf16. In the whole Lightweight OpenPose step (368², batch 8, bf16) this takes 3 refinement
    stages from 4.76 to 5.43 img/s and 1 stage from 6.27 to 7.18 (interleaved A/B in one
    process). Inference (no gradients) keeps bf16: forward alone, bf16 is a little faster
    (batch 1, 256x456: 44.3 against 41.6 frames/s). Elsewhere (fp32, CUDA) this is a plain
    ``nn.Conv2d``, with the same parameters and state-dict keys.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        training = torch.is_grad_enabled()
        if training and x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                return super().forward(x.float())
        return super().forward(x)


class StridedPointwiseConv2d(nn.Conv2d):
    """A strided 1x1 convolution computed as the 1x1 convolution of every ``stride``-th pixel
    (the same numbers: a 1x1 kernel without padding only reads those pixels).

    PyTorch 2.13's CPU kernel for strided 1x1 convolutions of channels-last inputs with few
    channels corrupts the heap in the backward pass on AMD EPYC CPUs ("free(): invalid next
    size"; 8 channels 48x48 stride 2, 4 channels, 8 channels 96x96; not 16 or more channels,
    nor contiguous inputs), which killed the detector's multi-scale training. Same parameters
    and state-dict keys as ``nn.Conv2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        step_y, step_x = self.stride
        return F.conv2d(x[..., ::step_y, ::step_x], self.weight, self.bias)


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
    slow_in_bf16 = stride > 1 or dilation > 1
    depthwise = Fp32DepthwiseConv2d if slow_in_bf16 else nn.Conv2d
    return nn.Sequential(
        depthwise(
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
