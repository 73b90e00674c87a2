from __future__ import annotations

import pytest
import torch
from torch import nn

from posekit.errors import ConfigError
from posekit.layers.fusion import fold_batchnorm
from posekit.topdown.model import HeatmapHead, TopDownOutputs, TopDownPoseNet


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v2"])
@pytest.mark.parametrize("size", [(256, 192), (128, 96)])
def test_heatmap_head_outputs_at_stride_4(backbone: str, size: tuple[int, int]) -> None:
    model = TopDownPoseNet(17, backbone=backbone, input_size=size, deconv_channels=(64, 64, 64))
    assert model.stride == 4 and model.head_kind == "heatmap" and model.input_size == size
    with torch.no_grad():
        outputs = model(torch.zeros(2, 3, *size))
    assert isinstance(outputs, TopDownOutputs)
    assert outputs.heatmaps is not None and outputs.simcc_x is None and outputs.simcc_y is None
    assert outputs.heatmaps.shape == (2, 17, size[0] // 4, size[1] // 4)


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v2"])
@pytest.mark.parametrize("size", [(256, 192), (128, 96)])
def test_simcc_head_outputs_bins(backbone: str, size: tuple[int, int]) -> None:
    model = TopDownPoseNet(17, backbone=backbone, head="simcc", input_size=list(size),
                           simcc_split_ratio=2.0, width_mult=1.0)  # fmt: skip
    with torch.no_grad():
        outputs = model(torch.zeros(2, 3, *size))
    assert outputs.heatmaps is None
    assert outputs.simcc_x is not None and outputs.simcc_y is not None
    assert outputs.simcc_x.shape == (2, 17, size[1] * 2)
    assert outputs.simcc_y.shape == (2, 17, size[0] * 2)


def test_resnet50_heatmap_and_deconv_count_sets_stride() -> None:
    model = TopDownPoseNet(5, backbone="resnet50", input_size=(64, 64), deconv_channels=[32, 32])
    assert model.stride == 8
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 64, 64)).heatmaps.shape == (2, 5, 8, 8)


def test_simcc_split_ratio_rounds_and_wrong_input_size_is_explained() -> None:
    model = TopDownPoseNet(3, backbone="mobilenet_v2", head="simcc", input_size=(64, 32),
                           simcc_split_ratio=1.5, width_mult=0.35)  # fmt: skip
    with torch.no_grad():
        outputs = model(torch.zeros(1, 3, 64, 32))
        assert outputs.simcc_x.shape[-1] == 48 and outputs.simcc_y.shape[-1] == 96
        with pytest.raises(ValueError, match="input_size"):
            model(torch.zeros(1, 3, 64, 64))


def test_state_dict_has_backbone_and_head_prefixes() -> None:
    model = TopDownPoseNet(17, backbone="resnet18", deconv_channels=(32,))
    keys = list(model.state_dict())
    assert all(key.startswith(("backbone.", "head.")) for key in keys)
    assert "backbone.layer4.1.bn2.weight" in keys
    assert "head.deconv_layers.0.weight" in keys and "head.final_layer.bias" in keys
    simcc = TopDownPoseNet(17, backbone="mobilenet_v2", head="simcc", width_mult=0.35)
    simcc_keys = list(simcc.state_dict())
    assert "backbone.features.0.0.weight" in simcc_keys and "head.cls_x.weight" in simcc_keys


def test_heatmap_head_init() -> None:
    torch.manual_seed(0)
    head = HeatmapHead(64, 17, (128, 128))
    assert abs(head.deconv_layers[0].weight.std().item() - 0.001) < 1e-4
    assert abs(head.final_layer.weight.std().item() - 0.001) < 2e-4
    assert torch.all(head.final_layer.bias == 0)
    assert head.deconv_layers[0].bias is None


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"model.params.head 'gau' is unknown.*'heatmap'"):
        TopDownPoseNet(17, head="gau")
    with pytest.raises(ConfigError, match="model.params.backbone 'vgg' is unknown"):
        TopDownPoseNet(17, backbone="vgg")
    with pytest.raises(ConfigError, match="width_mult"):
        TopDownPoseNet(17, backbone="resnet18", width_mult=0.5)


@pytest.mark.parametrize("head", ["heatmap", "simcc"])
def test_gradients_reach_every_parameter(head: str) -> None:
    torch.manual_seed(0)
    model = TopDownPoseNet(4, backbone="mobilenet_v2", head=head, input_size=(64, 64),
                           deconv_channels=(16, 16), width_mult=0.35, simcc_hidden=16)  # fmt: skip
    outputs = model(torch.randn(2, 3, 64, 64))
    tensors = [t for t in (outputs.heatmaps, outputs.simcc_x, outputs.simcc_y) if t is not None]
    sum(t.square().sum() for t in tensors).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def randomize_batchnorm(model: nn.Module) -> None:
    """Exact batch statistics of one random batch (cumulative average), random affine terms
    and output layers of scale 1, so that a wrong fold shows well above 1e-4."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None
            module.reset_running_stats()
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.2, 0.2)
        if isinstance(module, nn.ConvTranspose2d):
            nn.init.normal_(module.weight, std=0.05)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 64, 64))


@pytest.mark.parametrize(
    ("backbone", "head"), [("resnet18", "heatmap"), ("mobilenet_v2", "simcc"),
                           ("mobilenet_v2", "heatmap")],
)  # fmt: skip
def test_fold_batchnorm_keeps_outputs(backbone: str, head: str) -> None:
    torch.manual_seed(0)
    width = {"width_mult": 0.5} if backbone == "mobilenet_v2" else {}
    model = TopDownPoseNet(4, backbone=backbone, head=head, input_size=(64, 64),
                           deconv_channels=(32, 32), simcc_hidden=32, **width)  # fmt: skip
    if head == "heatmap":
        nn.init.normal_(model.head.final_layer.weight, std=0.2)
    randomize_batchnorm(model)
    model.eval()
    folded = fold_batchnorm(model)
    batchnorms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) < batchnorms
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, found = model(images), folded(images)
    for name in ("heatmaps", "simcc_x", "simcc_y"):
        a, b = getattr(expected, name), getattr(found, name)
        if a is None:
            continue
        scale = float(a.abs().max())
        assert scale > 0.1  # large enough for 1e-4 of it to tell a wrong fold
        # float32 rounding of the folded products: 1e-4 of the largest output
        assert torch.allclose(a, b, atol=1e-4 * scale, rtol=0), (name, (a - b).abs().max())


def test_input_size_must_be_a_multiple_of_the_backbone_stride() -> None:
    with pytest.raises(ConfigError, match=r"multiples of 32.*\[64, 48\]"):
        TopDownPoseNet(17, backbone="mobilenet_v2", input_size=[64, 48])
