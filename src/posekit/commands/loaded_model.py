"""A trained model loaded for inference from a posekit checkpoint (its config and schema
travel inside), from exported safetensors weights with their JSON sidecar, or from another
tool's file a family recognises (the original Lightweight OpenPose checkpoints)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from posekit.config import PosekitConfig, SplitData, config_from_mapping
from posekit.engine.loop import pick_device
from posekit.engine.state import load_checkpoint, weights_mismatch
from posekit.engine.weights import read_posekit_weights, read_safetensors
from posekit.errors import CheckpointError
from posekit.layers.backbone_weights import without_backbone_weights
from posekit.layers.fusion import fold_batchnorm
from posekit.tasks import FamilyTask, build_task, read_foreign_weights


@dataclass
class LoadedModel:
    cfg: PosekitConfig
    task: FamilyTask
    model: nn.Module
    device: torch.device


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """(model state, config dict or None) of a checkpoint or an exported weights file."""
    file_path = Path(path)
    if file_path.suffix == ".safetensors":
        return read_safetensors(file_path)
    data = load_checkpoint(file_path)
    foreign = read_foreign_weights(data, file_path)
    if foreign is not None:  # another tool's file: its architecture is implied
        state, config, recognised = foreign
        print(recognised, file=sys.stderr)
        return state, config
    return read_posekit_weights(data)


def inference_task(cfg: PosekitConfig, device: torch.device) -> FamilyTask:
    """The task of ``cfg`` built for inference: no data set is loaded (``val`` loads its own
    split), and the trained weights replace any ImageNet backbone file, which is neither read
    nor needed."""
    no_data = cfg.data.model_copy(
        update={"train": SplitData(), "train_sets": [], "val": SplitData()}
    )
    model_cfg = cfg.model.model_copy(update={"params": without_backbone_weights(cfg.model.params)})
    inference_cfg = cfg.model_copy(update={"data": no_data, "model": model_cfg})
    return build_task(inference_cfg, device, check_sections=False)


def stored_config(
    weights: str | Path,
    stored: dict[str, Any] | None,
    settings: dict[str, Any] | None,
    overrides: list[str] | None,
    base_config: PosekitConfig | None,
) -> PosekitConfig:
    """The config a weights file is used with: ``base_config`` (``--config``) or the one
    stored with the weights, then ``settings`` and ``overrides``."""
    if base_config is not None:
        stored = base_config.to_dict()
    if stored is None:
        raise CheckpointError(
            f"{weights}: holds no posekit config; pass --config with the model's config"
        )
    source = f"{weights} (stored config)"
    announce = base_config is not None  # a stored config's old key names are not the user's
    return config_from_mapping(dict(stored), settings, overrides, source, announce=announce)


def load_torch_model(
    weights: str | Path,
    settings: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    base_config: PosekitConfig | None = None,
) -> LoadedModel:
    """Rebuild the model a ``.pth`` / ``.safetensors`` file was trained as, load it, put it
    in eval mode (BatchNorm folded; channels-last on the CPU)."""
    state, stored = read_weights(weights)
    cfg = stored_config(weights, stored, settings, overrides, base_config)
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
