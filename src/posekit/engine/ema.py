"""Exponential moving average of model weights and buffers, with warm-up.

The effective decay ramps up as ``decay * (1 - exp(-updates / warmup))`` (the YOLO / DEIM
form), so early averages follow the fast-changing weights. ``restart`` begins a new average
from the current weights with another decay (DEIMv2's stage-2 ``ema_restart_decay``).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn


class ModelEMA:
    def __init__(
        self,
        model: nn.Module,
        decay: float = 0.9999,
        warmup: int = 2000,
        frozen: set[str] | None = None,
    ) -> None:
        """``frozen``: state-dict names that never change (copied, not averaged, so they stay
        bit-identical)."""
        self.frozen = frozen or set()
        self.module = copy.deepcopy(model).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self.decay = decay
        self.warmup = warmup
        self.updates = 0

    def current_decay(self) -> float:
        if self.warmup <= 0:
            return self.decay
        return self.decay * (1 - math.exp(-self.updates / self.warmup))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = self.current_decay()
        source = model.state_dict()
        for name, average in self.module.state_dict().items():
            value = source[name].detach()
            if average.dtype.is_floating_point and name not in self.frozen:
                average.mul_(decay).add_(value.to(average.dtype), alpha=1 - decay)
            else:
                average.copy_(value)

    @torch.no_grad()
    def restart(self, model: nn.Module, decay: float) -> None:
        """A new average from ``model``'s weights, with ``decay`` and the warm-up again."""
        self.module.load_state_dict(model.state_dict())
        self.decay = decay
        self.updates = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.module.state_dict(),
            "updates": self.updates,
            "decay": self.decay,
            "warmup": self.warmup,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["model"])
        self.updates = int(state["updates"])
        self.decay = float(state["decay"])
        self.warmup = int(state["warmup"])
