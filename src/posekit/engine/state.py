"""Checkpoints: one dict of tensors and plain values, written atomically, read weights-only.

RNG states are stored as tensors and plain values so that ``torch.load(weights_only=True)``
reads them; nothing in a checkpoint can run code when loaded.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from posekit.atomic import atomic_write_with
from posekit.errors import CheckpointError

CHECKPOINT_FORMAT = "posekit-checkpoint-v1"


def capture_rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    name, keys, position, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["position"],
            np_state["has_gauss"],
            np_state["cached"],
        )
    )
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to a temporary file, fsync, then rename over ``path``. A failed write
    (disk full, file size limit, permissions) raises a one-line CheckpointError and leaves
    the previous file at ``path`` as it was."""
    payload = {"format": CHECKPOINT_FORMAT, **payload}
    try:
        atomic_write_with(path, lambda handle: torch.save(payload, handle))
    except (OSError, RuntimeError) as exc:  # torch.save reports failed writes as RuntimeError
        reason = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else None
        reason = reason or (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        previous = "the previous one is intact" if Path(path).is_file() else "none was there"
        raise CheckpointError(
            f"{path}: could not write the checkpoint ({reason}); {previous}; free disk space "
            "or give another --work-dir, then continue with --resume"
        ) from None


CONFIG_SUFFIXES = (".yaml", ".yml", ".json", ".toml")


def _looks_like_torch_file(path: Path) -> bool:
    """A zip archive (``torch.save``'s format) or a pickle stream (the legacy one)."""
    with path.open("rb") as handle:
        head = handle.read(4)
    return head.startswith(b"PK") or head[:1] == b"\x80" or head == b""


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; bad files raise a one-line CheckpointError."""
    file_path = Path(path)
    if not file_path.is_file():
        raise CheckpointError(f"checkpoint {file_path} not found; check the path")
    if file_path.suffix.lower() in CONFIG_SUFFIXES:
        raise CheckpointError(
            f"{file_path} is a config file, not weights; give a checkpoint (.pth), an export "
            "(.safetensors, .onnx) or the original's file (their config travels inside)"
        )
    if file_path.suffix.lower() in (".safetensors", ".onnx"):
        raise CheckpointError(
            f"{file_path} is an export (weights for inference, no training state); resume from "
            "a run's checkpoint (checkpoints/last.pth), or start a new run from a .pth's "
            "weights with --weights-only / training.load_from"
        )
    if not _looks_like_torch_file(file_path):
        raise CheckpointError(
            f"{file_path}: not a PyTorch checkpoint (neither a zip nor a pickle file); give a "
            ".pth checkpoint, or a .safetensors / .onnx export"
        )
    try:
        data = torch.load(file_path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f"it would import {found.group(1)}" if found else "it holds objects beyond tensors"
        raise CheckpointError(
            f"{file_path}: refused, {what}, which a weights-only load does not allow; it is "
            "not a posekit checkpoint or it was tampered with"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{file_path}: truncated or corrupt checkpoint ({type(exc).__name__}); "
            "use an earlier checkpoint (e.g. checkpoints/last.pth or checkpoint_epoch_N.pth)"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{file_path}: not a checkpoint (expected a dict of tensors)")
    return data


def model_state_from(data: dict[str, Any], prefer_ema: bool = False) -> dict[str, torch.Tensor]:
    """The model weights of a posekit checkpoint, of an original-repo checkpoint, or raw."""
    if prefer_ema and isinstance(data.get("ema"), dict) and "model" in data["ema"]:
        return data["ema"]["model"]
    for key in ("model", "state_dict"):
        if isinstance(data.get(key), dict):
            return data[key]
    if all(isinstance(v, torch.Tensor) for v in data.values()):
        return data  # a bare state dict
    raise CheckpointError("checkpoint holds no model weights (no 'model' or 'state_dict' key)")


_STAGE_KEY = re.compile(r"^refinement_stages\.(\d+)\.")


def _stage_count(keys: Any) -> int:
    found = {int(m.group(1)) for key in keys if (m := _STAGE_KEY.match(key))}
    return max(found) + 1 if found else 0


def weights_mismatch(
    model_state: dict[str, torch.Tensor], file_state: dict[str, torch.Tensor]
) -> str | None:
    """What differs between a model's tensors and a file's, in words a user can act on
    (None when they fit): refinement stages, else the first missing, extra or reshaped one."""
    in_file, in_model = _stage_count(file_state), _stage_count(model_state)
    if in_file != in_model:
        return (
            f"the file has {in_file} refinement stages, the config {in_model}: pass "
            f"model.params.num_refinement_stages={in_file}"
        )
    for key, value in model_state.items():
        if key not in file_state:
            return f"the model's {key} is not in the file (another architecture or model.params)"
        if tuple(file_state[key].shape) != tuple(value.shape):
            return (
                f"{key} is {tuple(file_state[key].shape)} in the file, {tuple(value.shape)} in "
                "the model: set model.params (or data.schema) as the file was trained"
            )
    extra = next((key for key in file_state if key not in model_state), None)
    if extra is not None:
        return f"the file's {extra} is not in the model (another architecture or model.params)"
    return None
