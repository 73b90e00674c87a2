"""Detector weights exported: safetensors reload equal, ONNX matches PyTorch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from posekit.commands.export import run_export
from posekit.commands.load import load_model
from posekit.commands.train import train
from posekit.config import PosekitConfig


def test_exports_reproduce_the_network(
    detector_config: Callable[..., PosekitConfig], tmp_path: Path
) -> None:
    cfg = detector_config("training.max_iter=2", "training.max_epochs=1")
    train(cfg, say=lambda _: None)
    checkpoint = cfg.resolved_work_dir() / "checkpoints" / "last.pth"
    loaded = load_model(checkpoint)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = loaded.model(images)

    weights = run_export(str(checkpoint), "safetensors", str(tmp_path / "w.safetensors"))
    with torch.no_grad():
        again = load_model(weights).model(images)
    torch.testing.assert_close(again.boxes, expected.boxes)
    torch.testing.assert_close(again.logits, expected.logits)

    import onnxruntime

    onnx_path = run_export(str(checkpoint), "onnx", str(tmp_path / "w.onnx"))
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits, boxes = session.run(["logits", "boxes"], {"image": images.numpy()})
    assert np.abs(logits - expected.logits.numpy()).max() < 1e-4
    assert np.abs(boxes - expected.boxes.numpy()).max() < 1e-4
