from __future__ import annotations

import torch
from torch import nn

from posekit.bottomup.lw_openpose import LightweightOpenPose
from posekit.layers.fusion import fold_batchnorm


def test_folded_model_computes_the_same_outputs() -> None:
    torch.manual_seed(0)
    model = LightweightOpenPose(19, 38, num_channels=16, width_mult=0.25, head_width=16)
    model.train()
    with torch.no_grad():  # move the running statistics away from their defaults
        for _ in range(3):
            model(torch.randn(2, 3, 64, 64))
    model.eval()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the input is kept
    image = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected, found = model(image), folded(image)
    for a, b in zip(expected.heatmaps + expected.pafs, found.heatmaps + found.pafs, strict=True):
        assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()
