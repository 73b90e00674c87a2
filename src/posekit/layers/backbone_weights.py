"""ImageNet weights for the top-down backbones (``model.params.backbone_weights: FILE``).

A file is a torch state dict (``.pth`` / ``.pt``; bare, or under ``'state_dict'`` or
``'model'``, read with ``weights_only=True``) or a ``.safetensors`` file, in torchvision's or
timm's key layout; the layout is told from the keys. Key maps, posekit name -> file name:

* ResNet-18/34/50: the identity for both torchvision and timm (``conv1``, ``bn1``,
  ``layerN.B.{conv,bn}K``, ``layerN.0.downsample.{0,1}``: the two libraries use the same names).
* MobileNetV2, torchvision: the identity (``features.N...``).
* MobileNetV2, timm (``mobilenetv2_*``): ``features.0.{0,1}`` -> ``conv_stem`` / ``bn1``;
  ``features.{i}.conv.*`` (i = 1..17, stage s block b of :data:`MOBILENET_V2_STAGES`) ->
  ``blocks.{s}.{b}.*`` with ``conv.0.0/conv.0.1/conv.1/conv.2`` -> ``conv_dw/bn1/conv_pw/bn2``
  in the first (expansion 1) block and ``conv.0.0/conv.0.1/conv.1.0/conv.1.1/conv.2/conv.3``
  -> ``conv_pw/bn1/conv_dw/bn2/conv_pwl/bn3`` in the others; ``features.18.{0,1}`` ->
  ``conv_head`` / ``bn2``.

Every tensor is accounted for: loaded, shape-mismatched (refused: the file is another
architecture), missing (kept random), unexpected (ignored); the classifier (``fc.*``,
``classifier.*``) is expected and unused. :func:`backbone_weights_summary` gives the lines
to print once at the start of training.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from posekit.errors import CheckpointError, ConfigError
from posekit.layers.backbones import MOBILENET_V2_STAGES

BACKBONE_WEIGHTS_PARAM = "backbone_weights"  # the key in model.params
CLASSIFIER_PREFIXES = ("fc.", "classifier.")
COUNTER_SUFFIX = "num_batches_tracked"  # BatchNorm step counters; old torchvision files lack them
LISTED = 8  # keys named per line of the summary


def _identity(key: str) -> str:
    return key


def _mobilenet_v2_blocks() -> list[tuple[int, int, int]]:
    """(stage, block in stage, expansion) of ``features.1`` .. ``features.17``."""
    return [
        (stage, block, expansion)
        for stage, (expansion, _, repeats, _) in enumerate(MOBILENET_V2_STAGES)
        for block in range(repeats)
    ]


_MOBILENET_V2_BLOCKS = _mobilenet_v2_blocks()
_MOBILENET_V2_HEAD = len(_MOBILENET_V2_BLOCKS) + 1  # features.18: the last 1x1 conv
# module path inside ``features.i.conv`` -> timm's module name in ``blocks.s.b``
_TIMM_DEPTHWISE_SEPARABLE = {"0.0": "conv_dw", "0.1": "bn1", "1": "conv_pw", "2": "bn2"}
_TIMM_INVERTED_RESIDUAL = {
    "0.0": "conv_pw", "0.1": "bn1", "1.0": "conv_dw", "1.1": "bn2", "2": "conv_pwl", "3": "bn3",
}  # fmt: skip
_FEATURE_KEY = re.compile(r"^features\.(\d+)\.(.+)\.([A-Za-z_]+)$")


def timm_mobilenet_v2_key(key: str) -> str:
    """timm's name of posekit's (torchvision's) MobileNetV2 key ``key``."""
    found = _FEATURE_KEY.match(key)
    if found is None:
        raise KeyError(key)
    index, module, tensor = int(found.group(1)), found.group(2), found.group(3)
    if index in (0, _MOBILENET_V2_HEAD):
        names = {"0": "conv_stem", "1": "bn1"} if index == 0 else {"0": "conv_head", "1": "bn2"}
        return f"{names[module]}.{tensor}"
    stage, block, expansion = _MOBILENET_V2_BLOCKS[index - 1]
    if not module.startswith("conv."):
        raise KeyError(key)
    names = _TIMM_DEPTHWISE_SEPARABLE if expansion == 1 else _TIMM_INVERTED_RESIDUAL
    return f"blocks.{stage}.{block}.{names[module[len('conv.') :]]}.{tensor}"


# backbone name -> {layout name: posekit key -> file key}
LAYOUTS: dict[str, dict[str, Callable[[str], str]]] = {
    **{
        name: {"torchvision/timm": _identity}  # the same names in both libraries
        for name in ("resnet18", "resnet34", "resnet50")
    },
    "mobilenet_v2": {"torchvision": _identity, "timm": timm_mobilenet_v2_key},
}


def key_map(backbone_name: str, layout: str, keys: Iterable[str]) -> dict[str, str]:
    """posekit key -> the file's key in ``layout`` for every key in ``keys``."""
    rename = LAYOUTS[backbone_name][layout]
    return {key: rename(key) for key in keys}


@dataclass
class BackboneWeightsReport:
    """What loading ``path`` into backbone ``name`` did (``path`` None: random weights)."""

    name: str
    path: str | None = None
    layout: str = ""
    loaded: int = 0
    mismatched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # posekit keys kept as initialised
    unexpected: list[str] = field(default_factory=list)  # file keys used by nothing
    classifier: list[str] = field(default_factory=list)  # file keys, expected and unused
    counters_absent: int = 0  # BatchNorm num_batches_tracked not in the file (kept)
    note: str = ""  # for a backbone no public weights fit

    def lines(self) -> list[str]:
        """The summary: one line, plus one per non-empty list of missing / unexpected keys."""
        if self.path is None:
            if self.note:
                return [f"backbone {self.name} starts from random weights; {self.note}"]
            return [
                f"backbone {self.name} starts from random weights; "
                "set model.params.backbone_weights=FILE for ImageNet weights"
            ]
        counters = (
            f" ({self.counters_absent} BatchNorm num_batches_tracked not in the file, kept)"
            if self.counters_absent
            else ""
        )
        classifier = f" ({_names(self.classifier)})" if self.classifier else ""
        lines = [
            f"backbone {self.name}: ImageNet weights from {self.path} ({self.layout} layout): "
            f"{self.loaded} tensors loaded{counters}, {len(self.mismatched)} shape-mismatched, "
            f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, "
            f"{len(self.classifier)} classifier tensors unused{classifier}"
        ]
        if self.missing:
            lines.append(f"  missing from the file, kept random: {_names(self.missing)}")
        if self.unexpected:
            lines.append(f"  unexpected in the file, ignored: {_names(self.unexpected)}")
        if self.missing or self.unexpected:
            lines.append(
                f"  the file may be another architecture than {self.name}: "
                "check model.params.backbone and the file"
            )
        return lines


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:LISTED])
    return shown + (f" and {len(keys) - LISTED} more" if len(keys) > LISTED else "")


def backbone_weights_summary(model: nn.Module, other_weights: bool = False) -> list[str]:
    """The lines to print once at the start of a new run about where the backbone's weights
    came from (the ImageNet file and its tensor counts, or random); ``[]`` for models without
    such a backbone. ``other_weights``: the run then loads a checkpoint over the model
    (``load_from`` / ``--weights-only``), so the random-start line is left out. Wrappers with
    ``.module`` (DDP) are looked through."""
    inner = getattr(model, "module", model)
    report = getattr(inner, "backbone_weights_report", None)
    if not isinstance(report, BackboneWeightsReport) or (other_weights and report.path is None):
        return []
    return report.lines()


def without_backbone_weights(params: Mapping[str, Any]) -> dict[str, Any]:
    """``model.params`` less ``backbone_weights``: to rebuild a trained model whose own weights
    replace the ImageNet ones (inference, export), so that file is neither read nor needed."""
    return {key: value for key, value in params.items() if key != BACKBONE_WEIGHTS_PARAM}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a state-dict file: ``.safetensors``, or a torch file read with
    ``weights_only=True`` (a bare state dict, or one under ``'state_dict'`` / ``'model'``;
    a uniform DDP ``module.`` prefix is dropped). Problems are one-line user errors."""
    file_path = Path(path).expanduser()
    where = f"model.params.backbone_weights {file_path}"
    if not file_path.is_file():
        raise ConfigError(
            f"{where}: no such file; give a torchvision or timm ImageNet state dict "
            "(.pth, .pt or .safetensors), or leave it unset for random weights "
            "(where trained weights are loaded over it: model.params.backbone_weights=null)"
        )
    if file_path.suffix == ".safetensors":
        data: Any = _read_safetensors(file_path, where)
    else:
        data = _read_torch(file_path, where)
    state = _unwrap(data)
    if state is None:
        raise CheckpointError(
            f"{where}: holds no state dict (a dict of tensors, bare or under 'state_dict' or "
            "'model'); give the backbone's ImageNet weights file"
        )
    keys = list(state)
    if keys and all(key.startswith("module.") for key in keys):
        state = {key[len("module.") :]: value for key, value in state.items()}
    return state


def _read_torch(file_path: Path, where: str) -> Any:
    try:
        return torch.load(file_path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found is None:  # not a pickle at all (e.g. "Unsupported operand")
            raise _unreadable(where, exc) from None
        raise CheckpointError(
            f"{where}: refused, it would import {found.group(1)}, which a weights-only load "
            "does not allow; save only the state dict (torch.save(model.state_dict(), FILE)) "
            "or use .safetensors"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise _unreadable(where, exc) from None


def _unreadable(where: str, exc: Exception) -> CheckpointError:
    return CheckpointError(
        f"{where}: not a readable torch file ({type(exc).__name__}); give a .pth/.pt state "
        "dict or a .safetensors file (download it again if it is truncated)"
    )


def _read_safetensors(file_path: Path, where: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(file_path))
    except (OSError, ValueError, RecursionError, SafetensorError) as exc:
        raise CheckpointError(
            f"{where}: not a readable safetensors file ({type(exc).__name__}); "
            "download it again or give a .pth state dict"
        ) from None


def _is_state(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and bool(data)
        and all(
            isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in data.items()
        )
    )


def _unwrap(data: Any) -> dict[str, torch.Tensor] | None:
    if _is_state(data):
        return dict(data)
    if isinstance(data, dict):
        for key in ("state_dict", "model"):
            if _is_state(data.get(key)):
                return dict(data[key])
    return None


def load_backbone_weights(
    backbone: nn.Module, name: str, path: str | Path
) -> BackboneWeightsReport:
    """Load the ImageNet weights in ``path`` into ``backbone`` (built as ``name``): the layout
    whose keys the file has most of, tensors by name; a shape mismatch or a file without
    any of the backbone's tensors is refused with one line."""
    if name not in LAYOUTS:
        raise ConfigError(
            f"model.params.backbone_weights: no ImageNet key layout is known for backbone "
            f"{name!r}; known: {sorted(LAYOUTS)}"
        )
    state = read_state_dict(path)
    where = f"model.params.backbone_weights {Path(path).expanduser()}"
    target = backbone.state_dict()
    maps = {layout: key_map(name, layout, target) for layout in LAYOUTS[name]}
    hits = {layout: sum(k in state for k in mapping.values()) for layout, mapping in maps.items()}
    layout = max(hits, key=lambda item: hits[item])
    if hits[layout] == 0:
        prefix = (
            " (keys under 'backbone.': a posekit checkpoint? use training.load_from)"
            if any(key.startswith("backbone.") for key in state)
            else ""
        )
        raise CheckpointError(
            f"{where}: none of its {len(state)} tensors (e.g. {next(iter(state))!r}) is a "
            f"{name} tensor in {' or '.join(LAYOUTS[name])} layout{prefix}; give {name} "
            "ImageNet weights from torchvision or timm, or set model.params.backbone to the "
            "file's architecture"
        )
    mapping = maps[layout]
    mismatched = [
        key
        for key, file_key in mapping.items()
        if file_key in state and tuple(state[file_key].shape) != tuple(target[key].shape)
    ]
    if mismatched:
        first = mismatched[0]
        file_key = mapping[first]
        raise CheckpointError(
            f"{where}: {file_key!r} has shape {tuple(state[file_key].shape)} in the file, "
            f"{tuple(target[first].shape)} in {name} ({len(mismatched)} tensor(s) differ): "
            f"the file is another architecture; give {name} ImageNet weights or set "
            "model.params.backbone to the file's architecture"
        )
    loaded = {key: state[file_key] for key, file_key in mapping.items() if file_key in state}
    absent = [key for key, file_key in mapping.items() if file_key not in state]
    used = set(mapping.values())
    unused = [key for key in state if key not in used]
    backbone.load_state_dict({**target, **loaded})
    return BackboneWeightsReport(
        name=name,
        path=str(Path(path).expanduser()),
        layout=layout,
        loaded=len(loaded),
        missing=[key for key in absent if not key.endswith(COUNTER_SUFFIX)],
        unexpected=[key for key in unused if not key.startswith(CLASSIFIER_PREFIXES)],
        classifier=[key for key in unused if key.startswith(CLASSIFIER_PREFIXES)],
        counters_absent=sum(key.endswith(COUNTER_SUFFIX) for key in absent),
    )
