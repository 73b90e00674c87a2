"""ImageNet weights in torchvision's and timm's key layouts load into posekit's backbones.

``data/imagenet_backbone_keys.json`` holds the state-dict key names and shapes of
torchvision's and timm's models, as observed by building them with random weights (no
torchvision or timm here). The files the tests load are made from posekit backbones' random
tensors renamed with the inverse of the key maps, in the order and with the classifier
tensors of those observed lists.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from posekit.config import config_from_mapping
from posekit.detector.model import RTDetr
from posekit.errors import CheckpointError, ConfigError
from posekit.layers.backbone_weights import (
    BackboneWeightsReport,
    backbone_weights_summary,
    key_map,
    load_backbone_weights,
    without_backbone_weights,
)
from posekit.layers.backbones import build_backbone
from posekit.schema import COCO17
from posekit.topdown.model import TopDownPoseNet
from posekit.topdown.task import build_topdown_model

OBSERVED: dict[str, dict[str, list[int]]] = {
    name: keys
    for name, keys in json.loads(
        (Path(__file__).parent / "data" / "imagenet_backbone_keys.json").read_text()
    ).items()
    if not name.startswith("_")
}
ARCHITECTURES = ("resnet18", "resnet34", "resnet50", "mobilenet_v2")
LIBRARIES = ("torchvision", "timm")
CLASSIFIERS = {
    "torchvision/resnet18": ["fc.weight", "fc.bias"],
    "torchvision/resnet34": ["fc.weight", "fc.bias"],
    "torchvision/resnet50": ["fc.weight", "fc.bias"],
    "torchvision/mobilenet_v2": ["classifier.1.weight", "classifier.1.bias"],
    "timm/resnet18": ["fc.weight", "fc.bias"],
    "timm/resnet34": ["fc.weight", "fc.bias"],
    "timm/resnet50": ["fc.weight", "fc.bias"],
    "timm/mobilenet_v2": ["classifier.weight", "classifier.bias"],
}


def layout_of(arch: str, library: str) -> str:
    return "torchvision/timm" if arch.startswith("resnet") else library


@functools.cache
def random_tensors(arch: str, seed: int) -> dict[str, torch.Tensor]:
    """A posekit backbone's state dict with every tensor random (statistics included)."""
    generator = torch.Generator().manual_seed(seed)
    state = build_backbone(arch).state_dict()
    out = {}
    for key, value in state.items():
        if value.dtype == torch.long:
            out[key] = torch.randint(0, 1000, value.shape, generator=generator)
        else:
            out[key] = torch.rand(value.shape, generator=generator) + 0.5
    return out


@functools.cache
def _imagenet_file(arch: str, library: str, seed: int) -> dict[str, torch.Tensor]:
    """A state dict in ``library``'s layout, in its key order, with its classifier: each
    backbone tensor is posekit's random one renamed by the inverse key map."""
    source = random_tensors(arch, seed)
    inverse = {
        file_key: key for key, file_key in key_map(arch, layout_of(arch, library), source).items()
    }
    assert len(inverse) == len(source)  # the map is one-to-one
    generator = torch.Generator().manual_seed(seed + 100)
    out = {}
    for file_key, shape in OBSERVED[f"{library}/{arch}"].items():
        if file_key in inverse:
            out[file_key] = source[inverse[file_key]]
            assert list(out[file_key].shape) == shape, file_key
        else:
            assert file_key in CLASSIFIERS[f"{library}/{arch}"], file_key
            out[file_key] = torch.rand(shape, generator=generator)
    return out


def imagenet_file(arch: str, library: str, seed: int = 1) -> dict[str, torch.Tensor]:
    return dict(_imagenet_file(arch, library, seed))


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_key_maps_cover_every_observed_key_with_its_shape(arch: str, library: str) -> None:
    state = build_backbone(arch).state_dict()
    mapping = key_map(arch, layout_of(arch, library), state)
    observed = OBSERVED[f"{library}/{arch}"]
    classifier = CLASSIFIERS[f"{library}/{arch}"]
    assert len(set(mapping.values())) == len(mapping)
    assert set(mapping.values()) == set(observed) - set(classifier)
    assert all(observed[mapping[key]] == list(value.shape) for key, value in state.items())


def test_resnet_names_are_the_same_in_posekit_torchvision_and_timm() -> None:
    for arch in ("resnet18", "resnet34", "resnet50"):
        assert list(OBSERVED[f"torchvision/{arch}"]) == list(OBSERVED[f"timm/{arch}"])
        posekit = list(build_backbone(arch).state_dict())
        assert posekit == [k for k in OBSERVED[f"torchvision/{arch}"] if not k.startswith("fc.")]
    mobilenet = list(build_backbone("mobilenet_v2").state_dict())
    assert mobilenet == list(OBSERVED["torchvision/mobilenet_v2"])[:-2]


def test_timm_mobilenet_v2_map_examples() -> None:
    keys = [
        "features.0.0.weight",
        "features.0.1.running_var",
        "features.1.conv.0.0.weight",
        "features.1.conv.1.weight",
        "features.2.conv.0.0.weight",
        "features.2.conv.1.1.bias",
        "features.17.conv.3.num_batches_tracked",
        "features.18.0.weight",
        "features.18.1.bias",
    ]
    assert list(key_map("mobilenet_v2", "timm", keys).values()) == [
        "conv_stem.weight",
        "bn1.running_var",
        "blocks.0.0.conv_dw.weight",
        "blocks.0.0.conv_pw.weight",
        "blocks.1.0.conv_pw.weight",
        "blocks.1.0.bn2.bias",
        "blocks.6.0.bn3.num_batches_tracked",
        "conv_head.weight",
        "bn2.bias",
    ]


def _save(state: dict[str, torch.Tensor], path: Path, wrap: str | None = None) -> Path:
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state if wrap is None else {wrap: state, "epoch": 90}, path)
    return path


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_imagenet_file_loads_every_backbone_tensor(arch: str, library: str, tmp_path: Path) -> None:
    state = imagenet_file(arch, library)
    suffix = ".pth" if library == "torchvision" else ".safetensors"
    path = _save(state, tmp_path / f"{arch}{suffix}")
    model = TopDownPoseNet(17, backbone=arch, input_size=(64, 64), deconv_channels=(16,),
                           backbone_weights=str(path))  # fmt: skip
    mapping = key_map(arch, layout_of(arch, library), model.backbone.state_dict())
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, state[mapping[key]]), key
    report = model.backbone_weights_report
    assert report.layout == layout_of(arch, library)
    assert report.loaded == len(mapping) == len(state) - 2
    assert (report.mismatched, report.missing, report.unexpected) == ([], [], [])
    assert sorted(report.classifier) == sorted(CLASSIFIERS[f"{library}/{arch}"])
    lines = backbone_weights_summary(model)
    assert lines == [
        f"backbone {arch}: ImageNet weights from {path} ({report.layout} layout): "
        f"{len(mapping)} tensors loaded, 0 shape-mismatched, 0 missing, 0 unexpected, "
        f"2 classifier tensors unused ({', '.join(report.classifier)})"
    ]
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).heatmaps.shape == (1, 17, 4, 4)


@pytest.mark.parametrize("wrap", ["state_dict", "model"])
def test_wrapped_and_ddp_prefixed_files_load(wrap: str, tmp_path: Path) -> None:
    state = {f"module.{k}": v for k, v in imagenet_file("resnet18", "timm").items()}
    path = _save(state, tmp_path / "resnet18.pt", wrap=wrap)
    backbone = build_backbone("resnet18")
    report = load_backbone_weights(backbone, "resnet18", path)
    assert report.loaded == 120 and report.classifier == ["fc.weight", "fc.bias"]
    assert torch.equal(backbone.conv1.weight, state["module.conv1.weight"])


def test_model_params_backbone_weights_goes_through_the_config(tmp_path: Path) -> None:
    path = _save(imagenet_file("mobilenet_v2", "timm"), tmp_path / "mnv2.pth")
    params = {"backbone": "mobilenet_v2", "input_size": [64, 64], "deconv_channels": [16],
              "backbone_weights": str(path)}  # fmt: skip
    cfg = config_from_mapping({"model": {"name": "topdown", "params": params}})
    model = build_topdown_model(cfg, COCO17)
    assert model.backbone_weights_report.layout == "timm"
    assert backbone_weights_summary(model)[0].startswith("backbone mobilenet_v2: ImageNet")
    assert backbone_weights_summary(model, other_weights=True) == backbone_weights_summary(model)
    # rebuilt for inference without the file: the same tensors, nothing read
    path.unlink()
    rebuilt = TopDownPoseNet(17, **without_backbone_weights(params))
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    with pytest.raises(ConfigError, match="no such file"):
        build_topdown_model(cfg, COCO17)


def test_random_start_is_said_once_and_other_models_say_nothing() -> None:
    model = TopDownPoseNet(17, backbone="resnet18", deconv_channels=(16,))
    assert backbone_weights_summary(model) == [
        "backbone resnet18 starts from random weights; "
        "set model.params.backbone_weights=FILE for ImageNet weights"
    ]
    assert backbone_weights_summary(model, other_weights=True) == []
    assert backbone_weights_summary(torch.nn.Linear(2, 2)) == []


def test_detector_own_backbone_has_no_public_weights() -> None:
    with pytest.raises(ConfigError, match="backbone_weights") as error:
        RTDetr(num_classes=1, backbone_weights="resnet18.pth")
    assert "\n" not in str(error.value) and "no public ImageNet weights" in str(error.value)
    assert "model.params.backbone" in str(error.value)
    lines = backbone_weights_summary(RTDetr(num_classes=1, backbone_weights=None))
    assert len(lines) == 1 and "rtdetr (tiny) starts from random weights" in lines[0]
    with pytest.raises(ConfigError, match="'resnet19' is unknown for the detector"):
        RTDetr(num_classes=1, backbone="resnet19")


@pytest.mark.parametrize(
    ("arch", "library"), [("resnet18", "torchvision"), ("mobilenet_v2", "timm")]
)
def test_detector_loads_imagenet_weights_into_a_shared_backbone(
    arch: str, library: str, tmp_path: Path
) -> None:
    state = imagenet_file(arch, library)
    path = _save(state, tmp_path / f"{arch}.pth")
    detector = RTDetr(num_classes=1, backbone=arch, backbone_weights=str(path))
    net = detector.backbone.net
    mapping = key_map(arch, layout_of(arch, library), net.state_dict())
    # every tensor is the file's: reset_parameters ran before the load
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[mapping[key]]), key
    lines = backbone_weights_summary(detector)
    assert lines[0].startswith(f"backbone {arch}: ImageNet weights from {path}")
    assert f"{len(mapping)} tensors loaded, 0 shape-mismatched, 0 missing" in lines[0]
    random_start = RTDetr(num_classes=1, backbone=arch)
    assert backbone_weights_summary(random_start)[0].startswith(f"backbone {arch} starts from")
    assert random_start.state_dict().keys() == detector.state_dict().keys()
    levels = detector.backbone(torch.zeros(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in levels] == [
        (c, 64 // s, 64 // s)
        for c, s in zip(detector.backbone.out_channels, (8, 16, 32), strict=True)
    ]
    detector.eval()
    with torch.no_grad():
        outputs = detector(torch.zeros(1, 3, 64, 64))
    assert outputs.boxes.shape[-1] == 4


def test_feature_levels_end_where_the_stride_doubles() -> None:
    mobilenet = build_backbone("mobilenet_v2")
    assert mobilenet.level_ends == (6, 13, 18)  # torchvision's features.6 / .13 / .18
    assert mobilenet.level_channels == (32, 96, 1280)
    assert build_backbone("resnet50").level_channels == (512, 1024, 2048)
    images = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        for backbone in (mobilenet, build_backbone("resnet18").eval()):
            backbone.eval()
            levels = backbone.feature_levels(images)
            assert torch.equal(levels[-1], backbone(images))
            assert [f.shape[-2:] for f in levels] == [(8, 12), (4, 6), (2, 3)]


def test_wrong_depth_is_one_line_naming_the_first_mismatch(tmp_path: Path) -> None:
    path = _save(imagenet_file("resnet50", "torchvision"), tmp_path / "resnet50.pth")
    with pytest.raises(CheckpointError) as error:
        TopDownPoseNet(17, backbone="resnet18", backbone_weights=str(path))
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    assert "'layer1.0.conv1.weight' has shape (64, 64, 1, 1) in the file" in message
    assert "(64, 64, 3, 3) in resnet18" in message and "model.params.backbone" in message


def test_other_width_is_a_shape_mismatch(tmp_path: Path) -> None:
    state = {k: v for k, v in build_backbone("mobilenet_v2", width_mult=0.5).state_dict().items()}
    path = _save(state, tmp_path / "mnv2_050.pth")
    with pytest.raises(CheckpointError, match=r"'features.0.0.weight' has shape \(16, 3, 3, 3\)"):
        load_backbone_weights(build_backbone("mobilenet_v2"), "mobilenet_v2", path)


def test_file_without_any_backbone_key_is_refused(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    state = {f"encoder.block{i}.weight": torch.rand(4, 4, generator=generator) for i in range(5)}
    path = _save(state, tmp_path / "random.pth")
    with pytest.raises(CheckpointError, match="none of its 5 tensors") as error:
        load_backbone_weights(build_backbone("resnet18"), "resnet18", path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)
    posekit = {f"backbone.{k}": v for k, v in build_backbone("resnet18").state_dict().items()}
    path = _save(posekit, tmp_path / "posekit.pth")
    with pytest.raises(CheckpointError, match="training.load_from"):
        load_backbone_weights(build_backbone("resnet18"), "resnet18", path)


def test_missing_and_unexpected_tensors_are_accounted_for(tmp_path: Path) -> None:
    # an old torchvision file: no num_batches_tracked; a resnet18 file into a resnet34
    state = {
        k: v
        for k, v in imagenet_file("resnet18", "torchvision").items()
        if not k.endswith("num_batches_tracked")
    }
    path = _save(state, tmp_path / "resnet18-old.pth")
    backbone = build_backbone("resnet34")
    deeper = list(backbone.state_dict())
    report = load_backbone_weights(backbone, "resnet34", path)
    weights = [k for k in deeper if not k.endswith("num_batches_tracked")]
    assert report.loaded == len(state) - 2 == 100
    assert report.missing == [k for k in weights if k not in state]
    assert report.counters_absent == sum(k.endswith("num_batches_tracked") for k in deeper)
    assert report.unexpected == []
    lines = report.lines()
    assert "100 tensors loaded (36 BatchNorm num_batches_tracked not in the file, kept)" in lines[0]
    assert f"{len(report.missing)} missing" in lines[0]
    assert lines[1].startswith("  missing from the file, kept random: layer1.2.conv1.weight")
    assert lines[-1].startswith("  the file may be another architecture than resnet34")

    path = _save(imagenet_file("resnet34", "timm"), tmp_path / "resnet34.pth")
    report = load_backbone_weights(build_backbone("resnet18"), "resnet18", path)
    assert report.loaded == 120 and report.missing == []
    assert len(report.unexpected) == 218 - 2 - 120 and report.classifier == ["fc.weight", "fc.bias"]
    assert "96 unexpected" in report.lines()[0]


def test_unreadable_files_are_one_line_errors(tmp_path: Path) -> None:
    backbone = build_backbone("resnet18")
    with pytest.raises(ConfigError, match="no such file"):
        load_backbone_weights(backbone, "resnet18", tmp_path / "absent.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="not a readable torch file"):
        load_backbone_weights(backbone, "resnet18", garbage)
    garbage_st = tmp_path / "garbage.safetensors"
    garbage_st.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_backbone_weights(backbone, "resnet18", garbage_st)
    pickled = tmp_path / "args.pth"
    torch.save({"state_dict": backbone.state_dict(), "args": argparse.Namespace(lr=1)}, pickled)
    with pytest.raises(CheckpointError, match="would import argparse.Namespace"):
        load_backbone_weights(backbone, "resnet18", pickled)
    no_tensors = tmp_path / "empty.pth"
    torch.save({"epoch": 3}, no_tensors)
    with pytest.raises(CheckpointError, match="holds no state dict"):
        load_backbone_weights(backbone, "resnet18", no_tensors)


def test_report_without_file_lists_the_note() -> None:
    report = BackboneWeightsReport("x", note="nothing fits")
    assert report.lines() == ["backbone x starts from random weights; nothing fits"]
