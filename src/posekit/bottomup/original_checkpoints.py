"""Checkpoints of the original Lightweight OpenPose repository, in and out.

The original network and posekit's have the same tensors under the same names, and the same
18 keypoints; they differ in the order of the PAF channels. The original emits the PAF pair
``i`` for limb ``i`` of its *training* limb list, and its decoder reads each limb's pair from
a table; posekit's PAF pair ``l`` is limb ``l`` of :data:`posekit.bottomup.layouts.OPENPOSE18_LIMBS`
(the original decoder's limb order). :func:`paf_channel_order` derives the permutation from
the two limb lists (no limb is reversed, so no channel changes sign), and it is applied where
PAFs leave a stage (the rows of each stage's last PAF convolution) and where they enter the
next one (the PAF input columns of each refinement stage's first convolution).

Recognised layouts: a train.py snapshot (``state_dict``, ``optimizer``, ``scheduler``,
``iter``, ``current_epoch``), ``{'state_dict': ...}`` alone, a bare state dict (``module.``
prefixes of DataParallel removed), zip or legacy files — any of them without a posekit config.
Any number of refinement stages is read from the file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from posekit.atomic import atomic_write_with
from posekit.bottomup.layouts import OPENPOSE18_LIMBS
from posekit.bottomup.lw_openpose import LightweightOpenPose
from posekit.config import CONFIGS_DIR, config_from_mapping, load_merged_mapping
from posekit.engine.loop import Trainer, TrainState
from posekit.engine.state import weights_mismatch
from posekit.errors import CheckpointError

# posekit's config of the original network and training recipe
ORIGINAL_CONFIG = CONFIGS_DIR / "lw_openpose" / "original.yaml"

# The original repository's training limb list (the order its data set writes PAF channels),
# as pairs of its 18 keypoints (OpenPose order, the same as posekit's network layout).
ORIGINAL_TRAINING_LIMBS = (
    (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13), (1, 2), (2, 3), (3, 4), (2, 16),
    (1, 5), (5, 6), (6, 7), (5, 17), (1, 0), (0, 14), (0, 15), (14, 16), (15, 17),
)  # fmt: skip
NUM_HEATMAPS = 19  # 18 keypoints + background, in the same order in both
_MARKERS = ("cpm.align.0.weight", "initial_stage.pafs.1.0.weight", "model.0.0.weight")
_STAGE = re.compile(r"^refinement_stages\.(\d+)\.")


def paf_channel_order(
    posekit_limbs: tuple[tuple[int, int], ...] = OPENPOSE18_LIMBS,
    original_limbs: tuple[tuple[int, int], ...] = ORIGINAL_TRAINING_LIMBS,
) -> list[int]:
    """``order[c]``: the original PAF channel that posekit's channel ``c`` is."""
    where = {tuple(limb): i for i, limb in enumerate(original_limbs)}
    order = []
    for limb in posekit_limbs:
        i = where[tuple(limb)]  # KeyError: a limb the original does not have
        order += [2 * i, 2 * i + 1]
    return order


def is_original_state(state: Mapping[str, Any]) -> bool:
    """A Lightweight OpenPose state dict (after :func:`strip_module_prefix`)."""
    return all(key in state for key in _MARKERS)


def strip_module_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DataParallel's ``module.`` prefixes removed (a snapshot saved without ``.module``)."""
    if state and all(key.startswith("module.") for key in state):
        return {key.removeprefix("module."): value for key, value in state.items()}
    return dict(state)


def original_state(data: Mapping[str, Any]) -> dict[str, torch.Tensor] | None:
    """The network weights of an original-layout checkpoint, else None (a posekit checkpoint,
    which carries its config, or anything else)."""
    if "config" in data or "family" in data:
        return None
    candidate = data.get("state_dict", data)
    if not isinstance(candidate, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in candidate.values()
    ):
        return None
    state = strip_module_prefix(candidate)
    return state if is_original_state(state) else None


def refinement_stage_count(state: Mapping[str, Any]) -> int:
    found = {int(m.group(1)) for key in state if (m := _STAGE.match(key))}
    return max(found) + 1 if found else 0


def _reorder(state: Mapping[str, torch.Tensor], order: list[int]) -> dict[str, torch.Tensor]:
    """PAF outputs of every stage take ``order``; PAF inputs of refinement stages likewise."""
    index = torch.as_tensor(order)
    result = dict(state)
    for key, value in state.items():
        if key.endswith(("pafs.1.0.weight", "pafs.1.0.bias")):
            result[key] = value.index_select(0, index)
        elif _STAGE.match(key) and key.endswith("trunk.0.initial.0.weight"):
            pafs = value[:, -len(order) :]
            result[key] = torch.cat([value[:, : -len(order)], pafs.index_select(1, index)], 1)
    return result


def from_original(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original-layout weights (or Adam moments under the same names) in posekit's order."""
    return _reorder(strip_module_prefix(state), paf_channel_order())


def to_original(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """posekit weights in the original's PAF order (the inverse of :func:`from_original`)."""
    order = paf_channel_order()
    inverse = [0] * len(order)
    for posekit_channel, original_channel in enumerate(order):
        inverse[original_channel] = posekit_channel
    return _reorder(state, inverse)


def original_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The posekit config of the original architecture with the file's refinement stages:
    ``configs/lw_openpose/original.yaml`` (what the weights imply)."""
    mapping = load_merged_mapping(ORIGINAL_CONFIG)
    mapping["model"]["params"]["num_refinement_stages"] = refinement_stage_count(state)
    return mapping


def describe(path: Any, data: Mapping[str, Any], state: Mapping[str, Any]) -> str:
    """One line saying what was recognised."""
    where = f", iteration {data['iter']}" if isinstance(data.get("iter"), int) else ""
    return (
        f"{path}: an original Lightweight OpenPose checkpoint ({refinement_stage_count(state)} "
        f"refinement stage(s){where}); its PAF channels are reordered to posekit's limbs"
    )


def read_original(
    data: Any, path: Any
) -> tuple[dict[str, torch.Tensor], dict[str, Any], str] | None:
    """(posekit-order weights, the implied config, the line saying what was recognised) of
    an original checkpoint's loaded ``data``; None for any other file."""
    original = original_state(data)
    if original is None:
        return None
    return from_original(original), original_config(original), describe(path, data, original)


def original_checkpoint(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """posekit weights as the original's ``{'state_dict': ...}`` (PAF order included), which
    its demo.py and val.py load."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in to_original(state).items()}
    return {"state_dict": tensors}


# The original train.py's Adam groups, in order: (sub-module, kind of layer, tensor). Its
# optimizer state numbers the parameters in this order.
_ORIGINAL_GROUPS = (
    ("model", "conv", "weight"), ("model", "depthwise", "weight"), ("model", "bn", "weight"),
    ("model", "bn", "bias"), ("cpm", "conv", "weight"), ("cpm", "conv", "bias"),
    ("cpm", "depthwise", "weight"), ("initial_stage", "conv", "weight"),
    ("initial_stage", "conv", "bias"), ("refinement_stages", "conv", "weight"),
    ("refinement_stages", "conv", "bias"), ("refinement_stages", "bn", "weight"),
    ("refinement_stages", "bn", "bias"),
)  # fmt: skip


def _kind(module: torch.nn.Module) -> str | None:
    if isinstance(module, torch.nn.BatchNorm2d):
        return "bn"
    if isinstance(module, torch.nn.Conv2d):
        if module.groups == 1:
            return "conv"
        if module.groups == module.in_channels == module.out_channels:
            return "depthwise"
    return None


def original_parameter_names(model: torch.nn.Module) -> list[str]:
    """The names of ``model``'s parameters in the order of the original optimizer's state."""
    names = []
    for prefix, kind, tensor in _ORIGINAL_GROUPS:
        part = getattr(model, prefix)
        for name, module in part.named_modules():
            if _kind(module) == kind and getattr(module, tensor, None) is not None:
                names.append(f"{prefix}.{name}.{tensor}" if name else f"{prefix}.{tensor}")
    return names


def original_adam_state(
    model: torch.nn.Module, optimizer_state: Mapping[str, Any]
) -> dict[str, dict[str, Any]] | None:
    """Adam's per-parameter state of an original snapshot by posekit parameter name, moments
    in posekit's PAF order; None when the snapshot's parameters are not this model's."""
    names = original_parameter_names(model)
    state = optimizer_state.get("state") if isinstance(optimizer_state, Mapping) else None
    groups = optimizer_state.get("param_groups") if isinstance(optimizer_state, Mapping) else None
    if not isinstance(state, Mapping) or not isinstance(groups, list):
        return None
    count = sum(len(group.get("params", ())) for group in groups)
    if count != len(names) or not all(isinstance(i, int) and 0 <= i < count for i in state):
        return None
    by_name = {names[index]: dict(entry) for index, entry in state.items()}
    for moment in ("exp_avg", "exp_avg_sq"):
        moments = {
            n: e[moment] for n, e in by_name.items() if isinstance(e.get(moment), torch.Tensor)
        }
        for name, value in from_original(moments).items():
            by_name[name][moment] = value
    parameters = dict(model.named_parameters())
    for name, entry in by_name.items():
        if entry.get("exp_avg") is not None and entry["exp_avg"].shape != parameters[name].shape:
            return None
    return by_name


def export_original(
    state: Mapping[str, torch.Tensor], stored: dict[str, Any] | None, weights: Any, out: Any
) -> Any:
    """``posekit export --format lwop``: a posekit Lightweight OpenPose (COCO-17, the original
    architecture; ``state`` and ``stored`` config read from the file ``weights``) as the
    original repository's checkpoint, PAF order included."""
    cfg = config_from_mapping(dict(stored or {}), None, None, f"{weights} (stored config)")
    if cfg.model.name != "lw_openpose" or cfg.data.keypoint_schema != "coco17":
        raise CheckpointError(
            f"{weights}: --format lwop is for Lightweight OpenPose on COCO-17 (the original's "
            f"network), not {cfg.model.name} on {cfg.data.keypoint_schema}; use onnx or "
            "safetensors"
        )
    reference = LightweightOpenPose(
        num_heatmaps=NUM_HEATMAPS, num_pafs=2 * len(ORIGINAL_TRAINING_LIMBS),
        num_refinement_stages=refinement_stage_count(state),
    )  # fmt: skip
    mismatch = weights_mismatch(reference.state_dict(), state)
    if mismatch is not None:
        raise CheckpointError(
            f"{weights}: not the original architecture ({mismatch}); the original's demo.py "
            "and val.py build only that one"
        )
    atomic_write_with(out, lambda handle: torch.save(original_checkpoint(state), handle))
    return out


def original_start_weights(
    data: Any, path: Any, model: torch.nn.Module, say: Callable[[str], None]
) -> dict[str, torch.Tensor] | None:
    """An original checkpoint's weights in posekit's order to start a run from (saying what
    was recognised, and when the model has another number of refinement stages); None for
    any other file."""
    original = original_state(data)
    if original is None:
        return None
    say(describe(path, data, original))
    source = from_original(original)
    in_file, in_model = refinement_stage_count(source), refinement_stage_count(model.state_dict())
    if in_file != in_model:
        say(
            f"  the file has {in_file} refinement stages, the model {in_model}: the others "
            f"start fresh (model.params.num_refinement_stages={in_file} keeps them all)"
        )
    return source


def continue_original_run(
    trainer: Trainer, path: Path, data: dict[str, Any], original: dict[str, torch.Tensor]
) -> None:
    """``--checkpoint-path`` of an original train.py snapshot without ``--weights-only``: its
    weights, Adam moments, iteration and epoch continue in posekit (the schedule placed at
    that iteration); where its state does not fit, one line naming ``--weights-only``."""
    trainer.say(describe(path, data, original))
    model = trainer.model
    weights = from_original(original)
    refuse = f"{path}: cannot continue this original run in posekit"
    mismatch = weights_mismatch(model.state_dict(), weights)
    iteration, epoch = data.get("iter"), data.get("current_epoch")
    if mismatch is not None:
        raise CheckpointError(f"{refuse} ({mismatch}); or start from its weights: --weights-only")
    if not (isinstance(iteration, int) and isinstance(epoch, int)) or "optimizer" not in data:
        raise CheckpointError(
            f"{refuse}: it holds weights only (no optimizer, iter, current_epoch); start from "
            "them with --weights-only"
        )
    moments = original_adam_state(model, data["optimizer"])
    if moments is None or not isinstance(trainer.optimizer, torch.optim.Adam):
        raise CheckpointError(
            f"{refuse}: its optimizer state is not an Adam over this model's parameters "
            "(training.optimizer.name must be adam); start from its weights with --weights-only"
        )
    model.load_state_dict(weights)
    names = {id(p): n for n, p in model.named_parameters()}
    for group in trainer.optimizer.param_groups:
        for parameter in group["params"]:
            entry = moments.get(names[id(parameter)])
            if entry is not None:
                trainer.optimizer.state[parameter] = {
                    k: (v.to(parameter.device) if k != "step" else v) for k, v in entry.items()
                }
    scheduler = trainer.scheduler
    scheduler.last_epoch = iteration
    for group, lr in zip(trainer.optimizer.param_groups, scheduler.get_lr(), strict=True):
        group["lr"] = lr
    scheduler._last_lr = [group["lr"] for group in trainer.optimizer.param_groups]
    if trainer.ema is not None:
        trainer.ema.load_state_dict({**trainer.ema.state_dict(), "model": model.state_dict()})
    trainer.state = TrainState(epoch=epoch, iteration=iteration)
    trainer.say(f"continuing the original run at epoch {epoch + 1}, iteration {iteration}")
