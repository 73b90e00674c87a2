"""posekit's ONNX exports: the metadata they carry, and running them through onnxruntime.

``posekit export --format onnx`` writes, besides the graph, string metadata
(``metadata_props``; onnxruntime: ``session.get_modelmeta().custom_metadata_map``):

``posekit_format``  ``posekit-onnx-v1`` (files without it are not posekit's)
``posekit_version`` the posekit version that wrote the file
``family``          ``bottomup``, ``topdown`` or ``detector``
``config``          the resolved posekit config (JSON): posekit rebuilds the task from it
``schema``          the keypoint schema (JSON; pose families): names, skeleton, flip pairs,
                    sigmas; bottom-up also ``network_schema``, the order of its map channels
``classes``         the detector's classes (JSON list of ``{"id", "name"}``, logit order)
``input``           the input tensor and how an image becomes it (JSON)
``colour_order``    ``BGR``: channel order of the pixels the network was trained on
``normalisation``   ``{"mean": [128, 128, 128], "std": [256, 256, 256]}``: the input is
                    ``(pixel - mean) / std`` (uint8 pixels, float32 result), NCHW
``outputs``         each output's name, shape and meaning (JSON)

:class:`OnnxNetwork` runs such a file and returns the named outputs of the torch model
(``StageOutputs`` with the last stage, ``TopDownOutputs``, ``DetectorOutputs`` with the last
decoder layer), so the families' own inference and evaluation run on it unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from posekit.commands.loaded_model import LoadedModel, inference_task, stored_config
from posekit.config import PosekitConfig
from posekit.errors import CheckpointError, ConfigError
from posekit.tasks import FAMILY_NAMES, FamilyTask

ONNX_FORMAT = "posekit-onnx-v1"
COLOUR_ORDER = "BGR"  # data/images.py decodes to BGR; normalize_image keeps the order
MEAN = (128.0, 128.0, 128.0)  # data.transforms.normalize_image: (pixel - 128) / 256
STD = (256.0, 256.0, 256.0)
PAD_VALUE = 128  # the grey every resize / crop pads with (0 after normalisation)
REEXPORT = "export the posekit checkpoint with `posekit export --weights CKPT.pth --format onnx`"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def onnx_metadata(loaded: LoadedModel) -> dict[str, str]:
    """The ``metadata_props`` of an exported model (see the module docstring): the common
    entries, and the family's own (:meth:`FamilyTask.onnx_metadata`: schema or classes, the
    input rule, the outputs)."""
    from posekit import __version__

    task, cfg = loaded.task, loaded.cfg
    own = task.onnx_metadata()
    tensor = {"name": "image", "layout": "NCHW", "dtype": "float32", "pad_value": PAD_VALUE}
    meta = {
        "posekit_format": ONNX_FORMAT,
        "posekit_version": __version__,
        "family": task.family,
        "config": _dumps(cfg.to_dict()),
        "colour_order": COLOUR_ORDER,
        "normalisation": _dumps(
            {
                "mean": list(MEAN),
                "std": list(STD),
                "formula": "(pixel - mean) / std per channel on uint8 pixels in colour_order, "
                "float32, channels first (N, 3, H, W)",
            }
        ),
        "input": _dumps({**tensor, **own.pop("input")}),
    }
    return {**meta, **{key: _dumps(value) for key, value in own.items()}}


def add_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Write ``metadata`` into the ONNX file at ``path`` (its ``metadata_props``)."""
    import onnx

    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, metadata)
    model.doc_string = "posekit export; see the metadata: family, config, input, outputs"
    onnx.save(model, str(path))


def read_metadata(path: Path) -> dict[str, str]:
    """The posekit metadata of an ONNX file; CheckpointError when it has none."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found; check the --weights path") from None
    except (OSError, DecodeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path}: not a readable ONNX file ({type(exc).__name__}); {REEXPORT}"
        ) from None
    meta = {prop.key: prop.value for prop in model.metadata_props}
    if meta.get("posekit_format") != ONNX_FORMAT:
        raise CheckpointError(
            f"{path}: an ONNX file without posekit metadata (family, config); {REEXPORT}, "
            "or run this file with onnxruntime yourself"
        )
    if meta.get("family") not in FAMILY_NAMES:
        raise CheckpointError(f"{path}: unknown family {meta.get('family')!r}; {REEXPORT}")
    try:
        config = json.loads(meta.get("config", ""))
    except ValueError:
        config = None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: its posekit config metadata is not a mapping; {REEXPORT}")
    return meta


def _session(path: Path, device: str) -> Any:
    import onnxruntime

    providers = ["CPUExecutionProvider"]
    available = onnxruntime.get_available_providers()
    if device != "cpu" and "CUDAExecutionProvider" in available:
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return onnxruntime.InferenceSession(str(path), providers=providers)
    except Exception as exc:  # onnxruntime's own error types (invalid graph, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: onnxruntime cannot load it ({first[:160]}); {REEXPORT}"
        ) from None


class OnnxNetwork(nn.Module):
    """An onnxruntime session standing in for the torch network of its family: it takes the
    (N, 3, H, W) float tensor the torch model takes and returns the outputs the family's
    inference reads. No parameters; ``eval()`` / ``train()`` only set the flag."""

    def __init__(
        self, path: Path, session: Any, to_outputs: Callable[[dict[str, torch.Tensor]], Any]
    ) -> None:
        super().__init__()
        self.path = path
        self.session = session
        self.to_outputs = to_outputs  # the family's named outputs from the session's
        first = session.get_inputs()[0]
        self.input_name = first.name
        self.fixed_hw = tuple(d if isinstance(d, int) else None for d in first.shape[2:4])
        self.output_names = [output.name for output in session.get_outputs()]

    def forward(self, image: torch.Tensor) -> Any:
        array = np.ascontiguousarray(image.detach().float().cpu().numpy())
        for size, fixed, what in zip(
            array.shape[2:4], self.fixed_hw, ("height", "width"), strict=True
        ):
            if fixed is not None and size != fixed:
                raise ConfigError(
                    f"{self.path}: takes inputs of {what} {fixed}, got {size}; export the "
                    "checkpoint again for another input size"
                )
        values = self.session.run(self.output_names, {self.input_name: array})
        out = {
            name: torch.from_numpy(value)
            for name, value in zip(self.output_names, values, strict=True)
        }
        return self.to_outputs(out)


def load_onnx_model(
    weights: str | Path,
    settings: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    base_config: PosekitConfig | None = None,
) -> LoadedModel:
    """:func:`posekit.commands.load.load_model` for a posekit ONNX export: the task rebuilt
    from the config in its metadata (or ``base_config``), the network an :class:`OnnxNetwork`
    (no BatchNorm folding or channels-last: the graph is what it is)."""
    path = Path(weights)
    meta = read_metadata(path)
    cfg = stored_config(weights, json.loads(meta["config"]), settings, overrides, base_config)
    device = torch.device("cpu")  # inputs and outputs cross as numpy arrays
    task = inference_task(cfg, device)
    if task.family != meta["family"]:
        raise ConfigError(
            f"{path}: a {meta['family']} model, but the config builds a {task.family} one "
            f"(model.name={cfg.model.name}); drop the model overrides or --config"
        )
    network = OnnxNetwork(path, _session(path, cfg.device), task.onnx_outputs).eval()
    missing = sorted(set(task.onnx_output_names()) - set(network.output_names))
    if missing:
        raise ConfigError(
            f"{path}: has outputs {network.output_names}, the config's model needs {missing}; "
            "drop the model overrides or --config"
        )
    _check_input_size(path, task, network)
    return LoadedModel(cfg, task, network, device)


def _check_input_size(path: Path, task: FamilyTask, network: OnnxNetwork) -> None:
    wanted = task.onnx_input_hw()
    if wanted is None:  # dynamic height and width
        return
    if tuple(network.fixed_hw) != tuple(wanted):
        raise ConfigError(
            f"{path}: takes {network.fixed_hw[0]}x{network.fixed_hw[1]} inputs, the config asks "
            f"for {wanted[0]}x{wanted[1]}; drop the size override or export again"
        )
