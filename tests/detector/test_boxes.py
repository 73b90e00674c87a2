"""Box conversions, IoU and GIoU against hand-computed values and properties."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from posekit.detector.boxes import (
    box_area,
    box_iou,
    cxcywh_to_xyxy,
    generalized_box_iou,
    xywh_to_xyxy,
    xyxy_to_cxcywh,
)


def test_conversions_round_trip_and_match_coco() -> None:
    xyxy = torch.tensor([[10.0, 20.0, 50.0, 80.0]])
    assert xyxy_to_cxcywh(xyxy).tolist() == [[30.0, 50.0, 40.0, 60.0]]
    assert cxcywh_to_xyxy(xyxy_to_cxcywh(xyxy)).tolist() == xyxy.tolist()
    assert xywh_to_xyxy(torch.tensor([[10.0, 20.0, 40.0, 60.0]])).tolist() == xyxy.tolist()
    assert box_area(xyxy).tolist() == [2400.0]


def test_iou_and_giou_of_known_pairs() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [4.0, 0.0, 6.0, 2.0], [0.0, 0.0, 2.0, 2.0]])
    iou, union = box_iou(a, b)
    torch.testing.assert_close(iou, torch.tensor([[1 / 7, 0.0, 1.0]]))
    torch.testing.assert_close(union, torch.tensor([[7.0, 8.0, 4.0]]))
    # enclosing boxes: 3x3 = 9 (GIoU 1/7 - 2/9); 6x2 = 12 (0 - 4/12); the box itself (1)
    expected = torch.tensor([[1 / 7 - 2 / 9, -1 / 3, 1.0]])
    torch.testing.assert_close(generalized_box_iou(a, b), expected)


coordinate = st.floats(0, 100, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(coordinate, coordinate, st.floats(0.5, 50), st.floats(0.5, 50)),
                min_size=1, max_size=6))  # fmt: skip
def test_giou_is_symmetric_bounded_and_below_iou(rows: list[tuple[float, ...]]) -> None:
    boxes = xywh_to_xyxy(torch.tensor(rows, dtype=torch.float64))
    giou = generalized_box_iou(boxes, boxes)
    iou, _ = box_iou(boxes, boxes)
    torch.testing.assert_close(giou, giou.T)
    assert (giou <= iou + 1e-12).all() and (giou >= -1 - 1e-12).all()
    torch.testing.assert_close(torch.diagonal(giou), torch.ones(len(rows), dtype=torch.float64))
