from __future__ import annotations

import pytest
import torch
from torch import nn

from posekit.errors import ConfigError
from posekit.layers.backbones import BACKBONES, MobileNetV2, ResNet, build_backbone


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_torchvision_without_classifier() -> None:
    # torchvision resnet18: 11,689,512 - fc (512 * 1000 + 1000); mobilenet_v2: 3,504,872 -
    # classifier (1280 * 1000 + 1000)
    assert count(ResNet(18)) == 11_176_512
    assert count(MobileNetV2()) == 2_223_872
    assert count(MobileNetV2(0.5)) == 687_680  # torchvision mobilenet_v2(width_mult=0.5)


@pytest.mark.parametrize(
    ("name", "channels", "size"),
    [
        ("mobilenet_v2", 1280, (256, 192)),
        ("mobilenet_v2", 1280, (128, 96)),
        ("resnet18", 512, (256, 192)),
        ("resnet18", 512, (128, 96)),
        ("resnet34", 512, (128, 96)),
        ("resnet50", 2048, (64, 64)),
    ],
)
def test_stride_32_feature_map(name: str, channels: int, size: tuple[int, int]) -> None:
    backbone = build_backbone(name)
    assert backbone.out_channels == channels
    with torch.no_grad():
        features = backbone(torch.zeros(2, 3, *size))
    assert features.shape == (2, channels, size[0] // 32, size[1] // 32)


def test_width_mult_scales_mobilenet() -> None:
    narrow, wide = MobileNetV2(0.5), MobileNetV2(1.4)
    assert narrow.out_channels == 1280 and wide.out_channels == 1792
    assert narrow.features[1].conv[-1].num_features == 8  # 16 * 0.5
    assert count(narrow) < count(MobileNetV2()) < count(wide)


def test_resnet_keys_look_like_torchvision() -> None:
    keys = ResNet(18).state_dict().keys()
    for key in ("conv1.weight", "bn1.running_var", "layer1.0.conv2.weight",
                "layer2.0.downsample.0.weight", "layer4.1.bn2.bias"):  # fmt: skip
        assert key in keys
    assert "layer1.0.conv3.weight" in ResNet(50).state_dict()
    assert not any(key.startswith("fc.") for key in keys)


def test_init_is_kaiming_and_batchnorm_identity() -> None:
    torch.manual_seed(0)
    model = ResNet(18)
    std = model.layer1[0].conv1.weight.std().item()
    assert abs(std - (2 / (64 * 9)) ** 0.5) < 0.005  # fan out = 64 * 3 * 3
    bn = model.layer3[1].bn2
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


def test_unknown_names_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"model.params.backbone 'resnet81' is unknown; known: "):
        build_backbone("resnet81")
    with pytest.raises(ConfigError, match="backbone_params"):
        build_backbone("resnet18", width_mult=0.5)
    with pytest.raises(ConfigError, match="depth"):
        ResNet(101)
    assert set(BACKBONES) == {"mobilenet_v2", "resnet18", "resnet34", "resnet50"}
