"""Loading a trained model for inference: from a posekit checkpoint (its config and schema
travel inside) or from exported safetensors weights with their JSON sidecar."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from posekit.bottomup.original_checkpoints import (
    describe,
    from_original,
    original_config,
    original_state,
)
from posekit.config import PosekitConfig, SplitData, config_from_mapping
from posekit.engine.loop import pick_device
from posekit.engine.state import load_checkpoint, model_state_from, weights_mismatch
from posekit.errors import CheckpointError
from posekit.layers.backbone_weights import without_backbone_weights
from posekit.layers.fusion import fold_batchnorm
from posekit.tasks import Task, build_task


@dataclass
class LoadedModel:
    cfg: PosekitConfig
    task: Task
    model: nn.Module
    device: torch.device


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """(model state, config dict or None) of a checkpoint or an exported weights file."""
    file_path = Path(path)
    if file_path.suffix == ".safetensors":
        from posekit.commands.export import read_safetensors

        return read_safetensors(file_path)
    data = load_checkpoint(file_path)
    original = original_state(data)
    if original is not None:  # the original repository's: its architecture is implied
        print(describe(file_path, data, original), file=sys.stderr)
        return from_original(original), original_config(original)
    return model_state_from(data, prefer_ema=True), data.get("config")


def inference_task(cfg: PosekitConfig, device: torch.device) -> Task:
    """The task of ``cfg`` built for inference: no data set is loaded (``val`` loads its own
    split), and the trained weights replace any ImageNet backbone file, which is neither read
    nor needed."""
    no_data = cfg.data.model_copy(
        update={"train": SplitData(), "train_sets": [], "val": SplitData()}
    )
    model_cfg = cfg.model.model_copy(update={"params": without_backbone_weights(cfg.model.params)})
    return build_task(cfg.model_copy(update={"data": no_data, "model": model_cfg}), device)


def load_model(
    weights: str | Path,
    settings: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    base_config: PosekitConfig | None = None,
) -> LoadedModel:
    """Rebuild the model a weights file was trained as, load it, put it in eval mode.

    ``base_config`` (``--config``) replaces the config stored with the weights, else that one
    is used; ``settings`` (dotted keys) and ``overrides`` then change it (e.g. other
    validation data or inference options). A posekit ``.onnx`` export runs through
    onnxruntime (:func:`posekit.commands.onnx_model.load_onnx_model`).
    """
    if Path(weights).suffix.lower() == ".onnx":
        from posekit.commands.onnx_model import load_onnx_model

        return load_onnx_model(weights, settings, overrides, base_config)
    state, stored = read_weights(weights)
    if base_config is not None:
        stored = base_config.to_dict()
    if stored is None:
        if base_config is None:
            raise CheckpointError(
                f"{weights}: holds no posekit config; pass --config with the model's config"
            )
        stored = base_config.to_dict()
    cfg = config_from_mapping(dict(stored), settings, overrides, f"{weights} (stored config)")
    device = pick_device(cfg.device)
    task = inference_task(cfg, device)
    mismatch = weights_mismatch(task.model.state_dict(), state)
    if mismatch is not None:
        raise CheckpointError(f"{weights}: the weights do not fit the model: {mismatch}")
    task.model.load_state_dict(state)
    model = fold_batchnorm(task.model).to(device).eval()  # exact in eval mode, faster
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    return LoadedModel(cfg, task, model, device)
