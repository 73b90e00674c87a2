"""Top-down weights exported: safetensors reload equal, ONNX matches PyTorch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from posekit.commands.export import run_export
from posekit.commands.load import load_model
from posekit.commands.train import train
from posekit.config import PosekitConfig


@pytest.mark.parametrize("head", ["heatmap", "simcc"])
def test_exports_reproduce_the_network(
    topdown_config: Callable[..., PosekitConfig], head: str, tmp_path: Path
) -> None:
    cfg = topdown_config("training.max_iter=1", "training.max_epochs=1", head=head)
    train(cfg, say=lambda _: None)
    checkpoint = cfg.resolved_work_dir() / "checkpoints" / "last.pth"
    loaded = load_model(checkpoint)
    crops = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        expected = loaded.model(crops)
    names = ["heatmaps"] if head == "heatmap" else ["simcc_x", "simcc_y"]

    weights = run_export(str(checkpoint), "safetensors", str(tmp_path / "w.safetensors"))
    with torch.no_grad():
        again = load_model(weights).model(crops)
    for name in names:
        torch.testing.assert_close(getattr(again, name), getattr(expected, name))

    import onnxruntime

    onnx_path = run_export(str(checkpoint), "onnx", str(tmp_path / "w.onnx"))
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    outputs = session.run(names, {"image": crops.numpy()})
    for name, value in zip(names, outputs, strict=True):
        difference = np.abs(value - getattr(expected, name).numpy()).max()
        assert difference < 1e-4, (name, difference)
