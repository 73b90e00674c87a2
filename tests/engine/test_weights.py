"""Starting from weights vs continuing a run, and exported weights."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from posekit.bottomup.layouts import default_layout
from posekit.bottomup.task import build_bottomup_model
from posekit.commands.export import export_safetensors
from posekit.commands.load import load_model
from posekit.commands.train import initial_weights, load_initial_weights, resume_path, train
from posekit.config import PosekitConfig
from posekit.engine.weights import read_safetensors
from posekit.errors import ConfigError
from posekit.schema import load_schema

from .conftest import make_trainer

Build = Callable[..., PosekitConfig]


@pytest.fixture
def trained(make_config: Build) -> Path:
    cfg = make_config("training.max_epochs=1", "training.ema.enabled=true", work="source")
    make_trainer(cfg).fit()
    return cfg.resolved_work_dir() / "checkpoints" / "last.pth"


def test_resume_and_weights_only_are_never_confused(make_config: Build, trained: Path) -> None:
    continuing = make_config(f"training.checkpoint_path={trained}")
    assert resume_path(continuing) == trained and initial_weights(continuing) is None
    starting = make_config(f"training.checkpoint_path={trained}", "training.weights_only=true")
    assert resume_path(starting) is None and initial_weights(starting) == str(trained)
    both = make_config(f"training.resume={trained}", f"training.load_from={trained}")
    with pytest.raises(ConfigError, match="--resume continues a run"):
        train(both, say=lambda _: None)


def test_load_from_reinitialises_heads_of_another_keypoint_count(
    make_config: Build, trained: Path, tmp_path: Path
) -> None:
    schema = tmp_path / "five.yaml"
    schema.write_text(
        "keypoints: [a, b, c, d, e]\nskeleton: [[0, 1], [1, 2], [2, 3], [3, 4]]\n"
        "flip_pairs: [[1, 2]]\nsigmas: [0.05, 0.05, 0.05, 0.05, 0.05]\n"
    )
    cfg = make_config(f"data.schema={schema}")
    model = build_bottomup_model(cfg, default_layout(load_schema(schema)))
    said: list[str] = []
    before = model.state_dict()["initial_stage.heatmaps.1.0.weight"].clone()
    load_initial_weights(model, str(trained), False, said.append)
    after = model.state_dict()
    assert torch.equal(after["initial_stage.heatmaps.1.0.weight"], before)  # 6 != 19 channels
    assert any("re-initialised initial_stage.heatmaps.1.0.weight" in line for line in said)
    source = torch.load(trained, weights_only=True)["ema"]["model"]
    assert torch.equal(after["model.0.0.weight"], source["model.0.0.weight"])


def test_safetensors_export_round_trip(trained: Path, tmp_path: Path) -> None:
    out = export_safetensors(trained, tmp_path / "pose.safetensors")
    weights, config = read_safetensors(out)
    ema = torch.load(trained, weights_only=True)["ema"]["model"]
    assert weights.keys() == ema.keys()
    assert all(torch.equal(weights[k], ema[k]) for k in ema)
    from_export = load_model(out)
    from_checkpoint = load_model(trained)
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a = from_export.model(image).heatmaps[-1]
        b = from_checkpoint.model(image).heatmaps[-1]
    assert torch.equal(a, b)
    assert config["data"]["schema"] == "coco17"


def test_from_mobilenet_loads_the_imagenet_layout(tmp_path: Path) -> None:
    """A file laid out as the public mobilenet_sgd_68.848.pth.tar: an ImageNet MobileNetV1
    under DataParallel (``module.model.N...``, 14 blocks and a classifier)."""
    from posekit.bottomup.lw_openpose import LightweightOpenPose, mobilenet_trunk

    generator = torch.Generator().manual_seed(1)
    trunk = mobilenet_trunk(1.0)
    state = {
        f"module.model.{key}": torch.randn(value.shape, generator=generator)
        if value.dtype.is_floating_point
        else value
        for key, value in trunk.state_dict().items()
    }
    state["module.model.12.0.weight"] = torch.randn(512, 1, 3, 3)  # conv6 (not in the trunk)
    state["module.model.13.3.weight"] = torch.randn(1024, 1024, 1, 1)
    state["module.fc.weight"] = torch.randn(1000, 1024)
    path = tmp_path / "mobilenet_sgd_68.848.pth.tar"
    torch.save({"epoch": 150, "arch": "mobilenet", "state_dict": state, "best_prec1": 68.848}, path)
    model = LightweightOpenPose(19, 38)
    cpm_before = model.state_dict()["cpm.align.0.weight"].clone()
    said: list[str] = []
    load_initial_weights(model, str(path), True, said.append)
    loaded = model.state_dict()
    for key in trunk.state_dict():
        assert torch.equal(loaded[f"model.{key}"], state[f"module.model.{key}"]), key
    assert torch.equal(loaded["cpm.align.0.weight"], cpm_before)
    assert said[0].startswith(f"loaded {len(trunk.state_dict())} tensors")


def test_onnx_export_matches_pytorch_at_any_size(trained: Path, tmp_path: Path) -> None:
    import numpy as np
    import onnxruntime

    from posekit.commands.export import export_onnx

    path = export_onnx(trained, tmp_path / "pose.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    loaded = load_model(trained)
    for height, width in ((64, 64), (48, 96)):  # dynamic height and width
        image = np.random.default_rng(height).standard_normal((1, 3, height, width))
        image = image.astype(np.float32)
        heatmaps, pafs = session.run(None, {"image": image})
        with torch.no_grad():
            expected = loaded.model(torch.from_numpy(image))
        assert heatmaps.shape == (1, 19, height // 8, width // 8)
        assert np.abs(heatmaps - expected.heatmaps[-1].numpy()).max() < 1e-4
        assert np.abs(pafs - expected.pafs[-1].numpy()).max() < 1e-4
