"""``--weights FILE`` for ``val``, ``predict`` and ``export``: a posekit ``.onnx`` export runs
through onnxruntime, anything else is rebuilt in PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from posekit.commands.loaded_model import LoadedModel, load_torch_model
from posekit.commands.onnx_model import load_onnx_model
from posekit.config import PosekitConfig


def load_model(
    weights: str | Path,
    settings: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    base_config: PosekitConfig | None = None,
) -> LoadedModel:
    """Rebuild the model a weights file was trained as, load it, put it in eval mode.

    ``base_config`` (``--config``) replaces the config stored with the weights, else that one
    is used; ``settings`` (dotted keys) and ``overrides`` then change it (e.g. other
    validation data or inference options).
    """
    if Path(weights).suffix.lower() == ".onnx":
        return load_onnx_model(weights, settings, overrides, base_config)
    return load_torch_model(weights, settings, overrides, base_config)
