"""``posekit export``: inference weights for deployment.

``safetensors``: the model weights (the EMA average when the checkpoint has one) in a
``.safetensors`` file plus a ``.json`` sidecar holding the resolved config and the keypoint
schema (:mod:`posekit.engine.weights`), so posekit (``val``, ``predict``) loads it back without
the training checkpoint. ``onnx``: the family's graph (:meth:`FamilyTask.onnx_graph`) with
posekit's metadata (family, config, schema, input rules; :mod:`posekit.commands.onnx_model`),
so ``val`` and ``predict`` run it through onnxruntime. A family may add formats of its own
(bottom-up: ``lwop``, the original repository's checkpoint).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch

from posekit.commands.load import load_model
from posekit.commands.loaded_model import read_weights
from posekit.commands.onnx_model import add_metadata, onnx_metadata
from posekit.engine.onnx_graph import OnnxGraph
from posekit.engine.state import load_checkpoint
from posekit.engine.weights import sidecar_path, write_safetensors
from posekit.errors import CheckpointError, UserError
from posekit.schema import COCO17
from posekit.tasks import export_formats, family_of

POSEKIT_FORMATS = ("safetensors", "onnx")


def formats() -> tuple[str, ...]:
    return (*POSEKIT_FORMATS, *export_formats())


def export_safetensors(checkpoint: str | Path, out: Path) -> Path:
    data = load_checkpoint(checkpoint)
    state, config = read_weights(checkpoint)  # another tool's file: converted
    if config is None:
        raise CheckpointError(f"{checkpoint}: holds no posekit config; export a posekit checkpoint")
    model_name = config.get("model", {}).get("name", "lw_openpose")
    sidecar = {
        "family": family_of(model_name),
        "weights": "ema" if data.get("ema") else "model",
        "schema": data.get("schema", COCO17.to_dict()),
        "config": config,
    }
    return write_safetensors(state, sidecar, out)


def export_onnx(checkpoint: str | Path, out: Path, opset: int = 17) -> Path:
    """The network of a checkpoint or weights file as ONNX (see :func:`write_onnx`)."""
    if Path(checkpoint).suffix.lower() == ".onnx":
        raise UserError(f"{checkpoint} is ONNX already; export the .pth checkpoint it came from")
    loaded = load_model(checkpoint)
    network = copy.deepcopy(loaded.model).cpu().to(memory_format=torch.contiguous_format).eval()
    return write_onnx(loaded.task.onnx_graph(network), out, opset, onnx_metadata(loaded))


def write_onnx(
    graph: OnnxGraph, out: Path, opset: int = 17, metadata: dict[str, str] | None = None
) -> Path:
    """``graph`` traced to ONNX at ``out`` with ``metadata`` (posekit's, see
    :mod:`posekit.commands.onnx_model`) in the file's ``metadata_props``. Written to a
    temporary file, then renamed."""
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
            graph.module.eval(), (graph.example,), str(tmp), input_names=["image"],
            output_names=graph.output_names, dynamic_axes=graph.dynamic_axes,
            opset_version=opset, dynamo=False,
        )  # fmt: skip
    if metadata:
        add_metadata(tmp, metadata)
    tmp.replace(out)
    return out


def run_export(weights: str, fmt: str, out: str | None = None) -> Path:
    family_formats = export_formats()
    if fmt not in formats():
        raise UserError(f"--format {fmt!r}: choose one of {list(formats())}")
    source = Path(weights)
    # a family's format: <stem>_<format>.pth (e.g. the original repository's checkpoint)
    suffix = f"_{fmt}.pth" if fmt in family_formats else f".{fmt}"
    target = Path(out) if out else source.with_name(source.stem + suffix)
    if target.resolve() == source.resolve():
        raise UserError(f"--out {target} would overwrite the checkpoint; choose another name")
    if fmt in family_formats:
        state, stored = read_weights(source)
        result = family_formats[fmt](state, stored, source, target)
    elif fmt == "safetensors":
        result = export_safetensors(source, target)
    else:
        result = export_onnx(source, target)
    print(f"wrote {result}" + (f" and {sidecar_path(result)}" if fmt == "safetensors" else ""))
    return result
