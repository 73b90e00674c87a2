from __future__ import annotations

import pytest

from posekit.config import ScheduleConfig
from posekit.engine.optim import lr_factor


def test_warmup_is_linear_then_schedule() -> None:
    cfg = ScheduleConfig(name="constant", warmup_iters=10, warmup_start=0.0)
    assert [lr_factor(s, 100, 10, cfg) for s in (0, 5, 10, 50)] == [0.0, 0.5, 1.0, 1.0]


def test_step_schedule_counts_epochs() -> None:
    cfg = ScheduleConfig(name="step", milestones=[2, 4], gamma=0.1)
    factors = [lr_factor(s, 60, 10, cfg) for s in (0, 19, 20, 39, 40)]
    assert factors == pytest.approx([1, 1, 0.1, 0.1, 0.01])


def test_cosine_and_flat_cosine() -> None:
    cosine = ScheduleConfig(name="cosine", min_factor=0.0)
    assert lr_factor(0, 100, 10, cosine) == pytest.approx(1.0)
    assert lr_factor(50, 100, 10, cosine) == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, cosine) == pytest.approx(0.0)
    flat = ScheduleConfig(name="flat_cosine", flat_fraction=0.5, min_factor=0.0)
    assert lr_factor(49, 100, 10, flat) == 1.0
    assert lr_factor(75, 100, 10, flat) == pytest.approx(0.5)
