"""Trained-weights files posekit writes and reads back: training checkpoints (``.pth``,
:mod:`posekit.engine.state`) and exported ``.safetensors`` weights with their JSON sidecar
(the resolved config, the keypoint schema, the family), which ``val`` and ``predict`` load
without the training checkpoint. Other tools' files are recognised by the families
(:func:`posekit.tasks.read_foreign_weights`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from posekit.atomic import atomic_write_bytes, atomic_write_text
from posekit.engine.state import load_checkpoint, model_state_from
from posekit.errors import CheckpointError

SIDECAR_FORMAT = "posekit-weights-v1"


def sidecar_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


def write_safetensors(state: dict[str, torch.Tensor], sidecar: dict[str, Any], out: Path) -> Path:
    """``state`` as ``out`` (``.safetensors``) and ``sidecar`` (family, weights, schema,
    config) beside it as JSON; both written atomically."""
    from safetensors.torch import save

    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    atomic_write_bytes(out, save(tensors, metadata={"format": SIDECAR_FORMAT}))
    atomic_write_text(
        sidecar_path(out), json.dumps({"format": SIDECAR_FORMAT, **sidecar}, indent=2)
    )
    return out


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(weights, config dict) of an exported file and its sidecar."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        raise CheckpointError(f"{path}: its sidecar {sidecar.name} is missing; export again")
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        weights = load_file(str(path))
    except (OSError, ValueError, RecursionError, SafetensorError) as exc:  # ValueError: JSON, UTF-8
        raise CheckpointError(
            f"{path}: unreadable export ({type(exc).__name__}); export again"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT or "config" not in meta:
        raise CheckpointError(f"{sidecar}: not a posekit weights sidecar; export again")
    if not isinstance(meta["config"], (dict, type(None))):
        raise CheckpointError(f"{sidecar}: 'config' is not a mapping; export again")
    return weights, meta["config"]


def read_posekit_weights(
    data: dict[str, Any],
) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """(model state, stored config or None) of a loaded posekit checkpoint (EMA weights
    preferred) or a bare state dict."""
    return model_state_from(data, prefer_ema=True), data.get("config")


__all__ = [
    "SIDECAR_FORMAT",
    "load_checkpoint",
    "read_posekit_weights",
    "read_safetensors",
    "sidecar_path",
    "write_safetensors",
]
