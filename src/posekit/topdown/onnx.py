"""What a top-down ONNX export holds: the graph (heatmaps, or SimCC's x and y bins, for crops
of the model's input size, dynamic batch), its metadata (schema, the crop rule, the outputs)
and the outputs of a run of it as the torch model's :class:`TopDownOutputs`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from posekit.engine.onnx_graph import OnnxGraph
from posekit.topdown.model import TopDownOutputs


class HeadOutputs(nn.Module):
    """The head's heatmaps, or its SimCC x and y bins."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(image)
        if outputs.heatmaps is not None:
            return (outputs.heatmaps,)
        return outputs.simcc_x, outputs.simcc_y


def output_names(head_kind: str) -> list[str]:
    return ["heatmaps"] if head_kind == "heatmap" else ["simcc_x", "simcc_y"]


def onnx_graph(network: nn.Module) -> OnnxGraph:
    """Dynamic batch; crops of the model's ``input_size``."""
    names = output_names(network.head_kind)
    example = torch.zeros(1, 3, *network.input_size)
    axes = {name: {0: "batch"} for name in ["image", *names]}
    return OnnxGraph(HeadOutputs(network), example, names, axes)


def onnx_metadata(task: Any) -> dict[str, Any]:
    """The schema, the crop rule and the outputs."""
    spec = task.spec
    height, width = spec.input_hw
    if spec.head == "heatmap":
        map_h, map_w = spec.heatmap_hw
        outputs = {
            "heatmaps": f"(N, K, {map_h}, {map_w}): one heatmap per schema keypoint, its "
            f"maximum the score; UDP: crop x = cell_x * {width - 1} / {map_w - 1}, crop y = "
            f"cell_y * {height - 1} / {map_h - 1}; back to the image with the inverse crop "
            "matrix"
        }
    else:
        ratio = spec.simcc_split_ratio
        outputs = {
            "simcc_x": f"(N, K, {round(width * ratio)}): x bins per schema keypoint, bin i is "
            f"crop x = i / {ratio}",
            "simcc_y": f"(N, K, {round(height * ratio)}): y bins per schema keypoint, bin i is "
            f"crop y = i / {ratio}",
        }
    return {
        "schema": task.schema.to_dict(),
        "input": {
            "height": height,
            "width": width,
            "bbox_padding": spec.bbox_padding,
            "resize": "per person box (x, y, w, h): centre c = (x + w / 2 - 0.5, y + h / 2 - "
            "0.5), region width s = max(w, h * (width / height)) * bbox_padding; the crop is "
            "cv2.warpAffine(image, [[k, 0, (width - 1) / 2 - k * cx], [0, k, (height - 1) / 2 "
            "- k * cy]], (width, height), INTER_LINEAR, border pad_value) with k = width / s "
            "(posekit predict without a detector uses the whole image as the box)",
            "flip_test": task.cfg.topdown.flip_test,
        },
        "outputs": outputs,
    }


def outputs_from_onnx(named: dict[str, torch.Tensor]) -> TopDownOutputs:
    return TopDownOutputs(
        heatmaps=named.get("heatmaps"), simcc_x=named.get("simcc_x"), simcc_y=named.get("simcc_y")
    )
