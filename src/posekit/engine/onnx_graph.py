"""What each family gives the ONNX exporter: the module to trace, an example input, the
output names and the dynamic axes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class OnnxGraph:
    module: nn.Module  # returns a tuple of tensors, in ``output_names`` order
    example: torch.Tensor  # (1, 3, H, W)
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
