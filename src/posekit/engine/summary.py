"""The lines a run prints at its start (model, data, device, precision, run folder) and at
its end (the best weights, the time, the commands that use them). Pure apart from one
forward pass to count the model's FLOPs."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


def count_flops(model: nn.Module, example: torch.Tensor) -> int | None:
    """FLOPs (multiply and add counted apart) of one forward pass of ``example``, or None
    where PyTorch's counter cannot trace the model."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example)
        return int(counter.get_total_flops())
    except Exception:  # a model the counter cannot follow: no figure rather than no run
        return None
    finally:
        model.train(was_training)


def model_line(name: str, model: nn.Module, example: torch.Tensor | None) -> str:
    """``model    NAME: 1.23 M parameters (1.20 M trained), 0.85 GFLOPs at 1x3x256x256``."""
    total = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = f" ({trained / 1e6:.2f} M trained)" if trained != total else ""
    flops = None
    if example is not None:
        device = next(model.parameters(), torch.zeros(0)).device
        flops = count_flops(model, example.to(device))
    shape = "x".join(str(d) for d in example.shape) if example is not None else ""
    cost = f", {flops / 1e9:.2f} GFLOPs at {shape}" if flops is not None else ""
    return f"model    {name}: {total / 1e6:.2f} M parameters{frozen}{cost}"


def keypoint_data_line(split: str, datasets: Iterable[Any]) -> str:
    """Images, people, labelled keypoints (fewest and most labelled joints) and ignore
    regions of one split (several training sets summed)."""
    images = people = crowd = 0
    per_joint: np.ndarray | None = None
    names: list[str] = []
    for data in datasets:
        names = list(data.schema.keypoints)
        counts = np.zeros(len(names), np.int64)
        for record in data.images:
            images += 1
            people += record.num_persons
            crowd += len(record.ignore_boxes)
            if record.num_persons:
                counts += (record.keypoints[..., 2] > 0).sum(axis=0)
        per_joint = counts if per_joint is None else per_joint + counts
    if per_joint is None or not len(per_joint):
        return f"{split:<8} none"
    low, high = int(per_joint.argmin()), int(per_joint.argmax())
    return (
        f"{split:<8} {images:,} images, {people:,} people, {int(per_joint.sum()):,} labelled "
        f"keypoints (fewest {names[low]} {per_joint[low]:,}, most {names[high]} "
        f"{per_joint[high]:,}), {crowd:,} ignore regions"
    )


def box_data_line(split: str, data: Any) -> str:
    """Images and boxes per class of one detector split."""
    if data is None:
        return f"{split:<8} none"
    per_class = np.zeros(len(data.category_names), np.int64)
    for record in data.images:
        np.add.at(per_class, record.labels, 1)
    classes = ", ".join(
        f"{name} {count:,}" for name, count in zip(data.category_names, per_class, strict=True)
    )
    return f"{split:<8} {len(data.images):,} images, {int(per_class.sum()):,} boxes ({classes})"


def precision_line(device: torch.device, amp: bool, ema: bool, batch: int, accumulate: int) -> str:
    threads = f" ({torch.get_num_threads()} threads)" if device.type == "cpu" else ""
    precision = "fp32"
    if amp:
        precision = "fp16 autocast + GradScaler" if device.type == "cuda" else "bf16 autocast"
    effective = f", {batch * accumulate} per step" if accumulate > 1 else ""
    return (
        f"device   {device}{threads}, {precision}, EMA {'on' if ema else 'off'}, batch {batch}"
        f"{effective}"
    )


def duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def end_lines(
    best: str | None, last: Path, best_file: Path, seconds: float, evaluated: bool
) -> list[str]:
    """The end summary: what is best and where, how long it took, the commands to use it."""
    weights = best_file if best is not None else last
    lines = [f"done in {duration(seconds)}: " + (best or f"last weights {last}")]
    if best is not None:
        lines[0] += f" -> {best_file}"
    if not evaluated:
        lines.append("  nothing was evaluated (no validation data): best is by training loss")
    lines += [
        f"  evaluate: posekit val --weights {weights}",
        f"  predict:  posekit predict IMAGES --weights {weights}",
        f"  export:   posekit export --weights {weights} --format onnx",
    ]
    return lines
