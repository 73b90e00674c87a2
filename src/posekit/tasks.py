"""The model families: the one interface every family's task implements, and the table from
``model.name`` to its family.

A family is a folder (``bottomup/``, ``topdown/``, ``detector/``) whose ``task.py`` holds a
task class with the :class:`FamilyTask` interface, and one line in :data:`FAMILIES`. The
commands (``commands/``) and the training loop (``engine/``) use only this interface, so
they hold no switch on the family.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import nn

from posekit.bottomup.task import BOTTOMUP_MODELS, BottomUpTask
from posekit.config import FAMILY_SECTIONS, PosekitConfig, check_family_sections
from posekit.detector.task import DETECTOR_MODELS, DetectorTask
from posekit.engine.loop import TrainingTask
from posekit.engine.onnx_graph import OnnxGraph
from posekit.errors import ConfigError, did_you_mean
from posekit.topdown.task import TOPDOWN_MODELS, TopDownTask

# weights, config and a line saying what was recognised; None when the file is not theirs
ForeignWeights = tuple[dict[str, torch.Tensor], dict[str, Any], str]


class FamilyTask(TrainingTask, Protocol):
    """What every family gives the loop (:class:`TrainingTask`: training data, loss,
    parameter groups, evaluation, drawing, checkpoint extras) and the commands."""

    family: ClassVar[str]  # the family's name (its folder, its config section)
    listing: ClassVar[tuple[str, str]]  # what ``posekit predict`` lists, and its file name
    gives_person_boxes: ClassVar[bool]  # a detector: ``person_boxes`` before a pose model
    takes_person_boxes: ClassVar[bool]  # top-down: ``predict_people`` in given boxes
    # readers of other tools' weights files (loaded data, path) -> ForeignWeights | None
    foreign_weight_readers: ClassVar[tuple[Callable[[Any, Path], ForeignWeights | None], ...]]
    # ``posekit export --format NAME``: (weights, stored config, source path, out) -> out
    export_formats: ClassVar[dict[str, Callable[..., Any]]]
    cfg: PosekitConfig
    model: nn.Module
    metric_name: str

    @staticmethod
    def input_size_settings(size: int) -> dict[str, Any]: ...

    @staticmethod
    def check_model_params(cfg: PosekitConfig) -> None: ...

    def validation_data(self, cfg: PosekitConfig) -> Any: ...

    def data_lines(self) -> list[str]: ...

    def evaluate_on(
        self, model: nn.Module, data: Any, results_path: Path | None, detections: str | None
    ) -> dict[str, float]: ...

    def predict_listed(
        self, model: nn.Module, image: np.ndarray, box_threshold: float
    ) -> tuple[np.ndarray, list[dict[str, Any]]]: ...

    def onnx_graph(self, network: nn.Module) -> OnnxGraph: ...

    def onnx_metadata(self) -> dict[str, Any]: ...

    def onnx_output_names(self) -> list[str]: ...

    def onnx_input_hw(self) -> tuple[int, int] | None: ...

    def onnx_outputs(self, named: dict[str, torch.Tensor]) -> Any: ...


Task = BottomUpTask | TopDownTask | DetectorTask

# the families: (task class, its models by ``model.name``); adding a family adds one line
FAMILIES: tuple[tuple[type[FamilyTask], dict[str, Any]], ...] = (
    (BottomUpTask, BOTTOMUP_MODELS),
    (TopDownTask, TOPDOWN_MODELS),
    (DetectorTask, DETECTOR_MODELS),
)
TASK_OF_MODEL: dict[str, type[FamilyTask]] = {
    name: task for task, models in FAMILIES for name in models
}
FAMILY_NAMES = tuple(task.family for task, _ in FAMILIES)
assert set(FAMILY_NAMES) == set(FAMILY_SECTIONS), "each family has its config section"


def task_class(model_name: str) -> type[FamilyTask]:
    """The task class of ``model.name``'s family; unknown names are a one-line error."""
    found = TASK_OF_MODEL.get(model_name)
    if found is None:
        raise ConfigError(
            f"model.name {model_name!r} is unknown{did_you_mean(model_name, TASK_OF_MODEL)}; "
            f"known: {sorted(TASK_OF_MODEL)}"
        )
    return found


def family_of(model_name: str) -> str:
    return task_class(model_name).family


def build_task(cfg: PosekitConfig, device: torch.device, check_sections: bool = True) -> Any:
    """The training task of ``cfg.model.name``'s family (model, data, loss, evaluation).
    Settings in another family's section are refused first, unless ``check_sections`` is
    false (a config stored with weights: written before the sections, it may hold them)."""
    family = task_class(cfg.model.name)
    if check_sections:
        check_family_sections(cfg, family.family)
    return family(cfg, device)


def read_foreign_weights(data: Any, path: Path) -> ForeignWeights | None:
    """Weights of another tool that a family recognises (the original Lightweight OpenPose
    repository's checkpoints), converted; None when no family knows the file."""
    for task, _ in FAMILIES:
        for reader in task.foreign_weight_readers:
            found = reader(data, path)
            if found is not None:
                return found
    return None


def export_formats() -> dict[str, Callable[..., Any]]:
    """The families' own export formats by name (``posekit export --format NAME``)."""
    return {name: write for task, _ in FAMILIES for name, write in task.export_formats.items()}
