"""Which family a model belongs to: the table from ``model.name`` to its training task."""

from __future__ import annotations

import torch

from posekit.bottomup.task import BOTTOMUP_MODELS, BottomUpTask
from posekit.config import PosekitConfig
from posekit.detector.task import DETECTOR_MODELS, DetectorTask
from posekit.errors import ConfigError, did_you_mean
from posekit.topdown.task import TOPDOWN_MODELS, TopDownTask

Task = BottomUpTask | TopDownTask | DetectorTask

FAMILIES: dict[str, type[BottomUpTask] | type[TopDownTask] | type[DetectorTask]] = {
    **dict.fromkeys(BOTTOMUP_MODELS, BottomUpTask),
    **dict.fromkeys(TOPDOWN_MODELS, TopDownTask),
    **dict.fromkeys(DETECTOR_MODELS, DetectorTask),
}


def build_task(cfg: PosekitConfig, device: torch.device) -> Task:
    """The training task of ``cfg.model.name``'s family (model, data, loss, evaluation)."""
    family = FAMILIES.get(cfg.model.name)
    if family is None:
        raise ConfigError(
            f"model.name {cfg.model.name!r} is unknown{did_you_mean(cfg.model.name, FAMILIES)}; "
            f"known: {sorted(FAMILIES)}"
        )
    return family(cfg, device)
