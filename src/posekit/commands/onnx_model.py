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
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from posekit.bottomup.lw_openpose import StageOutputs
from posekit.commands.loaded_model import LoadedModel, inference_task
from posekit.config import PosekitConfig, config_from_mapping
from posekit.detector.model import DetectorOutputs
from posekit.errors import CheckpointError, ConfigError
from posekit.topdown.model import TopDownOutputs

ONNX_FORMAT = "posekit-onnx-v1"
FAMILIES = ("bottomup", "topdown", "detector")
COLOUR_ORDER = "BGR"  # data/images.py decodes to BGR; normalize_image keeps the order
MEAN = (128.0, 128.0, 128.0)  # transforms.functional.normalize_image: (pixel - 128) / 256
STD = (256.0, 256.0, 256.0)
PAD_VALUE = 128  # the grey every resize / crop pads with (0 after normalisation)
REEXPORT = "export the posekit checkpoint with `posekit export --weights CKPT.pth --format onnx`"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def onnx_metadata(loaded: LoadedModel) -> dict[str, str]:
    """The ``metadata_props`` of an exported model (see the module docstring)."""
    from posekit import __version__

    task, cfg = loaded.task, loaded.cfg
    family = task.family
    meta = {
        "posekit_format": ONNX_FORMAT,
        "posekit_version": __version__,
        "family": family,
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
    }
    tensor = {"name": "image", "layout": "NCHW", "dtype": "float32", "pad_value": PAD_VALUE}
    if family == "bottomup":
        meta["schema"] = _dumps(task.schema.to_dict())
        meta["network_schema"] = _dumps(task.layout.network_schema.to_dict())
        meta["input"] = _dumps({**tensor, **_bottomup_input(cfg, task.stride)})
        meta["outputs"] = _dumps(_bottomup_outputs(task.stride))
    elif family == "topdown":
        meta["schema"] = _dumps(task.schema.to_dict())
        meta["input"] = _dumps({**tensor, **_topdown_input(cfg, task.spec)})
        meta["outputs"] = _dumps(_topdown_outputs(task.spec))
    else:
        meta["classes"] = _dumps(
            [
                {"id": int(i), "name": name}
                for i, name in zip(task.category_ids, task.category_names, strict=True)
            ]
        )
        size = int(task.input_size)
        meta["input"] = _dumps(
            {
                **tensor,
                "height": size,
                "width": size,
                "resize": "stretch the whole image to width x height (aspect ratio not kept, "
                "no padding): cv2.resize with INTER_AREA when neither side grows, else "
                "INTER_LINEAR",
            }
        )
        meta["outputs"] = _dumps(_detector_outputs())
    return meta


def _bottomup_input(cfg: PosekitConfig, stride: int) -> dict[str, Any]:
    settings = cfg.inference
    height = max(stride, round(settings.input_height / stride) * stride)
    letterbox = None
    if settings.letterbox:
        letterbox = max(stride, round(settings.letterbox / stride) * stride)
    rule = (
        f"the whole image fitted into a letterbox x letterbox square ({letterbox})"
        if letterbox
        else "height = input_height; width = max(stride, ceil(image_width * input_height / "
        "image_height / stride) * stride)"
    )
    return {
        "height": "dynamic",
        "width": "dynamic",
        "stride": stride,
        "input_height": height,
        "letterbox": letterbox,
        "resize": f"{rule}; the image is scaled by k = min(height / image_height, width / "
        "image_width) to (min(width, max(1, round(image_width * k))), min(height, max(1, "
        "round(image_height * k)))) with cv2.resize (INTER_AREA if k < 1 else INTER_LINEAR), "
        "then padded right and bottom with pad_value; image point p -> input (p + 0.5) * "
        "scale - 0.5 per axis (scale = resized / original size)",
        "scales": list(settings.scales),
        "flip": settings.flip,
    }


def _bottomup_outputs(stride: int) -> dict[str, str]:
    return {
        "heatmaps": "(N, K + 1, H / stride, W / stride): one heatmap per network_schema "
        "keypoint, the last channel background (1 - max); map cell i is input pixel "
        f"i * {stride} + {(stride - 1) / 2}",
        "pafs": "(N, 2L, H / stride, W / stride): part affinity fields, channel 2l = x and "
        "2l + 1 = y of limb l of network_schema's skeleton",
    }


def _topdown_input(cfg: PosekitConfig, spec: Any) -> dict[str, Any]:
    height, width = spec.input_hw
    return {
        "height": height,
        "width": width,
        "bbox_padding": spec.bbox_padding,
        "resize": "per person box (x, y, w, h): centre c = (x + w / 2 - 0.5, y + h / 2 - "
        "0.5), region width s = max(w, h * (width / height)) * bbox_padding; the crop is "
        "cv2.warpAffine(image, [[k, 0, (width - 1) / 2 - k * cx], [0, k, (height - 1) / 2 - "
        "k * cy]], (width, height), INTER_LINEAR, border pad_value) with k = width / s "
        "(posekit predict without a detector uses the whole image as the box)",
        "flip_test": cfg.topdown.flip_test,
    }


def _topdown_outputs(spec: Any) -> dict[str, str]:
    height, width = spec.input_hw
    if spec.head == "heatmap":
        map_h, map_w = spec.heatmap_hw
        return {
            "heatmaps": f"(N, K, {map_h}, {map_w}): one heatmap per schema keypoint, its "
            f"maximum the score; UDP: crop x = cell_x * {width - 1} / {map_w - 1}, crop y = "
            f"cell_y * {height - 1} / {map_h - 1}; back to the image with the inverse crop "
            "matrix"
        }
    ratio = spec.simcc_split_ratio
    return {
        "simcc_x": f"(N, K, {round(width * ratio)}): x bins per schema keypoint, bin i is "
        f"crop x = i / {ratio}",
        "simcc_y": f"(N, K, {round(height * ratio)}): y bins per schema keypoint, bin i is "
        f"crop y = i / {ratio}",
    }


def _detector_outputs() -> dict[str, str]:
    return {
        "logits": "(N, Q, C): class logits per query (score = sigmoid), C in classes order; "
        "posekit keeps the best (query, class) pairs, no NMS",
        "boxes": "(N, Q, 4): cx, cy, w, h of each query's box as fractions of the image",
    }


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
    if meta.get("family") not in FAMILIES:
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

    def __init__(self, path: Path, session: Any, family: str) -> None:
        super().__init__()
        self.path = path
        self.session = session
        self.family = family
        first = session.get_inputs()[0]
        self.input_name = first.name
        self.fixed_hw = tuple(d if isinstance(d, int) else None for d in first.shape[2:4])
        self.output_names = [output.name for output in session.get_outputs()]

    def forward(self, image: torch.Tensor) -> StageOutputs | TopDownOutputs | DetectorOutputs:
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
        if self.family == "bottomup":
            return StageOutputs(heatmaps=[out["heatmaps"]], pafs=[out["pafs"]])
        if self.family == "topdown":
            return TopDownOutputs(
                heatmaps=out.get("heatmaps"), simcc_x=out.get("simcc_x"), simcc_y=out.get("simcc_y")
            )
        logits, boxes = out["logits"], out["boxes"]
        return DetectorOutputs(layers=[(logits, boxes)], encoder=(logits[:, :0], boxes[:, :0]))


def _expected_outputs(task: Any) -> list[str]:
    if task.family == "bottomup":
        return ["heatmaps", "pafs"]
    if task.family == "topdown":
        return ["heatmaps"] if task.spec.head == "heatmap" else ["simcc_x", "simcc_y"]
    return ["logits", "boxes"]


def load_onnx_model(
    weights: str | Path,
    settings: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    base_config: PosekitConfig | None = None,
) -> LoadedModel:
    """:func:`posekit.commands.loaded_model.load_model` for a posekit ONNX export: the task rebuilt
    from the config in its metadata (or ``base_config``), the network an :class:`OnnxNetwork`
    (no BatchNorm folding or channels-last: the graph is what it is)."""
    path = Path(weights)
    meta = read_metadata(path)
    stored = base_config.to_dict() if base_config is not None else json.loads(meta["config"])
    cfg = config_from_mapping(dict(stored), settings, overrides, f"{weights} (stored config)")
    device = torch.device("cpu")  # inputs and outputs cross as numpy arrays
    task = inference_task(cfg, device)
    if task.family != meta["family"]:
        raise ConfigError(
            f"{path}: a {meta['family']} model, but the config builds a {task.family} one "
            f"(model.name={cfg.model.name}); drop the model overrides or --config"
        )
    network = OnnxNetwork(path, _session(path, cfg.device), meta["family"]).eval()
    missing = sorted(set(_expected_outputs(task)) - set(network.output_names))
    if missing:
        raise ConfigError(
            f"{path}: has outputs {network.output_names}, the config's model needs {missing}; "
            "drop the model overrides or --config"
        )
    _check_input_size(path, task, network)
    return LoadedModel(cfg, task, network, device)


def _check_input_size(path: Path, task: Any, network: OnnxNetwork) -> None:
    if task.family == "topdown":
        wanted = tuple(task.spec.input_hw)
    elif task.family == "detector":
        wanted = (task.input_size, task.input_size)
    else:
        return
    if tuple(network.fixed_hw) != wanted:
        raise ConfigError(
            f"{path}: takes {network.fixed_hw[0]}x{network.fixed_hw[1]} inputs, the config asks "
            f"for {wanted[0]}x{wanted[1]}; drop the size override or export again"
        )
