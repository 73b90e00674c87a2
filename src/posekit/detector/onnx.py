"""What a detector ONNX export holds: the graph (the last decoder layer's class logits and
boxes for square images of ``data.input_size``, dynamic batch), its metadata (classes, the
resize rule, the outputs) and the outputs of a run of it as :class:`DetectorOutputs`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from posekit.detector.model import DetectorOutputs
from posekit.engine.onnx_graph import OnnxGraph

OUTPUT_NAMES = ["logits", "boxes"]


class LastLayer(nn.Module):
    """The last decoder layer's class logits and boxes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.model(image)
        return outputs.logits, outputs.boxes


def onnx_graph(network: nn.Module, input_size: int) -> OnnxGraph:
    example = torch.zeros(1, 3, input_size, input_size)
    axes = {name: {0: "batch"} for name in ["image", *OUTPUT_NAMES]}
    return OnnxGraph(LastLayer(network), example, list(OUTPUT_NAMES), axes)


def onnx_metadata(task: Any) -> dict[str, Any]:
    """The classes (logit order), the resize rule and the outputs."""
    size = int(task.input_size)
    return {
        "classes": [
            {"id": int(i), "name": name}
            for i, name in zip(task.category_ids, task.category_names, strict=True)
        ],
        "input": {
            "height": size,
            "width": size,
            "resize": "stretch the whole image to width x height (aspect ratio not kept, no "
            "padding): cv2.resize with INTER_AREA when neither side grows, else INTER_LINEAR",
        },
        "outputs": {
            "logits": "(N, Q, C): class logits per query (score = sigmoid), C in classes "
            "order; posekit keeps the best (query, class) pairs, no NMS",
            "boxes": "(N, Q, 4): cx, cy, w, h of each query's box as fractions of the image",
        },
    }


def outputs_from_onnx(named: dict[str, torch.Tensor]) -> DetectorOutputs:
    logits, boxes = named["logits"], named["boxes"]
    return DetectorOutputs(layers=[(logits, boxes)], encoder=(logits[:, :0], boxes[:, :0]))
