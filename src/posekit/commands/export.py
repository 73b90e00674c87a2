"""``posekit export``: inference weights for deployment.

``safetensors``: the model weights (the EMA average when the checkpoint has one) in a
``.safetensors`` file plus a ``.json`` sidecar holding the resolved config and the keypoint
schema, so posekit (``val``, ``predict``) loads it back without the training checkpoint.
``onnx``: the network (last stage's heatmaps and PAFs) with dynamic batch, height and width,
and posekit's metadata (family, config, schema, input rules; :mod:`posekit.commands.onnx_model`), so
``val`` and ``predict`` run it through onnxruntime.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from posekit.atomic import atomic_write_bytes, atomic_write_text
from posekit.engine.state import load_checkpoint
from posekit.errors import CheckpointError, UserError
from posekit.schema import COCO17

FORMATS = ("safetensors", "onnx", "lwop")
SIDECAR_FORMAT = "posekit-weights-v1"


def sidecar_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


def export_safetensors(checkpoint: str | Path, out: Path) -> Path:
    from safetensors.torch import save

    from posekit.commands.loaded_model import read_weights

    data = load_checkpoint(checkpoint)
    state, config = read_weights(checkpoint)  # an original-repository file: converted
    if config is None:
        raise CheckpointError(f"{checkpoint}: holds no posekit config; export a posekit checkpoint")
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    atomic_write_bytes(out, save(tensors, metadata={"format": SIDECAR_FORMAT}))
    sidecar = {
        "format": SIDECAR_FORMAT,
        "family": data.get("family", "bottomup"),
        "weights": "ema" if data.get("ema") else "model",
        "schema": data.get("schema", COCO17.to_dict()),
        "config": config,
    }
    atomic_write_text(sidecar_path(out), json.dumps(sidecar, indent=2))
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


def export_onnx(checkpoint: str | Path, out: Path, opset: int = 17) -> Path:
    """The network of a checkpoint or weights file as ONNX (see :func:`write_onnx`)."""
    from posekit.commands.loaded_model import load_model
    from posekit.commands.onnx_model import onnx_metadata

    if Path(checkpoint).suffix.lower() == ".onnx":
        raise UserError(f"{checkpoint} is ONNX already; export the .pth checkpoint it came from")
    loaded = load_model(checkpoint)
    detector = loaded.task.family == "detector"
    size = loaded.cfg.data.input_size if detector else loaded.cfg.inference.input_height
    return write_onnx(loaded.model, out, size, opset, onnx_metadata(loaded))


def write_onnx(
    network: torch.nn.Module,
    out: Path,
    input_height: int,
    opset: int = 17,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Bottom-up: outputs ``heatmaps`` and ``pafs`` (last stage), dynamic height and width.
    Top-down: ``heatmaps`` (or ``simcc_x``, ``simcc_y``) for crops of the model's
    ``input_size``, dynamic batch. Detector: ``logits`` (B, Q, C) and ``boxes`` (B, Q, 4,
    normalised cxcywh) of the last decoder layer for square ``input_height`` images, dynamic
    batch. ``metadata`` (posekit's, see :mod:`posekit.commands.onnx_model`) goes into the file's
    ``metadata_props``. Written to a temporary file, then renamed."""
    network = copy.deepcopy(network).cpu().to(memory_format=torch.contiguous_format).eval()
    model, example, outputs, axes = _onnx_graph(network, input_height)
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise UserError("--format onnx needs the onnx package: pip install onnx") from None
    tmp = out.with_name(f".{out.name}.tmp")
    with warnings.catch_warnings():
        # the TorchScript exporter on purpose (the dynamo one needs onnxscript): its
        # deprecation notices are expected
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shapes fixed on purpose
        torch.onnx.export(
            model, (example,), str(tmp), input_names=["image"], output_names=outputs,
            dynamic_axes=axes, opset_version=opset, dynamo=False,
        )  # fmt: skip
    if metadata:
        from posekit.commands.onnx_model import add_metadata

        add_metadata(tmp, metadata)
    tmp.replace(out)
    return out


def _onnx_graph(
    network: torch.nn.Module, input_height: int
) -> tuple[torch.nn.Module, torch.Tensor, list[str], dict[str, dict[int, str]]]:
    """(module to trace, example input, output names, dynamic axes) of each family."""
    if getattr(network, "family", None) == "detector":
        example = torch.zeros(1, 3, input_height, input_height)
        names = ["logits", "boxes"]
        return _LastLayer(network), example, names, {n: {0: "batch"} for n in ["image", *names]}
    head_kind = getattr(network, "head_kind", None)
    if head_kind is None:
        spatial = {0: "batch", 2: "map_height", 3: "map_width"}
        axes = {"image": {0: "batch", 2: "height", 3: "width"}, "heatmaps": spatial,
                "pafs": spatial}  # fmt: skip
        example = torch.zeros(1, 3, input_height, input_height)
        return _LastStage(network), example, ["heatmaps", "pafs"], axes
    names = ["heatmaps"] if head_kind == "heatmap" else ["simcc_x", "simcc_y"]
    example = torch.zeros(1, 3, *network.input_size)
    axes = {name: {0: "batch"} for name in ["image", *names]}
    return _TopDownOutputs(network), example, names, axes


class _LastStage(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.model(image)
        return outputs.heatmaps[-1], outputs.pafs[-1]


class _LastLayer(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.model(image)
        return outputs.logits, outputs.boxes


class _TopDownOutputs(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(image)
        if outputs.heatmaps is not None:
            return (outputs.heatmaps,)
        return outputs.simcc_x, outputs.simcc_y


def run_export(weights: str, fmt: str, out: str | None = None) -> Path:
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: choose one of {list(FORMATS)}")
    source = Path(weights)
    suffix = "_lwop.pth" if fmt == "lwop" else f".{fmt}"  # lwop: the original's checkpoint
    target = Path(out) if out else source.with_name(source.stem + suffix)
    if target.resolve() == source.resolve():
        raise UserError(f"--out {target} would overwrite the checkpoint; choose another name")
    if fmt == "lwop":
        from posekit.bottomup.original_checkpoints import export_original

        result = export_original(source, target)
    elif fmt == "safetensors":
        result = export_safetensors(source, target)
    else:
        result = export_onnx(source, target)
    print(f"wrote {result}" + (f" and {sidecar_path(result)}" if fmt == "safetensors" else ""))
    return result
