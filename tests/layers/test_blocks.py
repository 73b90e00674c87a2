"""Shared convolution blocks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from posekit.layers.blocks import Fp32DepthwiseConv2d, StridedPointwiseConv2d, conv_dw


def test_strided_and_dilated_depthwise_convs_run_in_float32_under_cpu_autocast() -> None:
    torch.manual_seed(0)
    conv = Fp32DepthwiseConv2d(8, 8, 3, 1, 2, dilation=2, groups=8, bias=False)
    x = torch.randn(2, 8, 12, 12, requires_grad=True)
    expected = conv(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = conv(x.to(torch.bfloat16))
        ordinary = torch.nn.functional.conv2d(x, conv.weight, None, 1, 2, 2, 8)
    assert inside.dtype == torch.float32 and ordinary.dtype == torch.bfloat16
    # exact up to the input's rounding to bf16, which autocast would have done anyway
    torch.testing.assert_close(inside, expected, atol=0.05, rtol=0.02)
    inside.sum().backward()
    assert x.grad is not None and conv.weight.grad is not None
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(x).dtype == torch.bfloat16  # inference keeps bf16 (faster forward alone)


def test_conv_dw_uses_it_only_where_bf16_is_slow() -> None:
    assert isinstance(conv_dw(8, 16, stride=2)[0], Fp32DepthwiseConv2d)
    assert isinstance(conv_dw(8, 16, dilation=2, padding=2)[0], Fp32DepthwiseConv2d)
    plain = conv_dw(8, 16)[0]
    assert type(plain) is torch.nn.Conv2d
    # same parameters either way: state-dict keys of the original repository are kept
    assert conv_dw(8, 16, stride=2).state_dict().keys() == conv_dw(8, 16).state_dict().keys()


@pytest.mark.parametrize("channels_last", [False, True])
def test_strided_pointwise_conv_equals_the_plain_one(channels_last: bool) -> None:
    torch.manual_seed(0)
    plain = nn.Conv2d(8, 12, 1, 2, bias=True)
    strided = StridedPointwiseConv2d(8, 12, 1, 2, bias=True)
    strided.load_state_dict(plain.state_dict())
    for height, width in ((48, 48), (47, 33)):
        images = torch.rand(4, 8, height, width)
        if channels_last:
            images = images.to(memory_format=torch.channels_last)
        a = images.clone().requires_grad_()
        b = images.clone().requires_grad_()
        expected, found = plain(a), strided(b)
        assert found.shape == expected.shape
        assert torch.allclose(found, expected, atol=1e-6)
        found.sum().backward()  # the plain kernel's backward crashed here (channels-last)
        assert torch.equal(b.grad[..., 1::2, :], torch.zeros_like(b.grad[..., 1::2, :]))
        if not channels_last:
            expected.sum().backward()
            assert torch.allclose(a.grad, b.grad, atol=1e-6)
            assert torch.allclose(plain.weight.grad, strided.weight.grad, atol=1e-4)
        plain.zero_grad()
        strided.zero_grad()
