"""The same switches on CUDA: fp16 autocast with a GradScaler. Skipped without a GPU."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from posekit.bottomup.task import BottomUpTask
from posekit.config import PosekitConfig
from posekit.engine.loop import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


def test_amp_training_on_cuda_uses_fp16_and_the_scaler(
    make_config: Callable[..., PosekitConfig],
) -> None:
    cfg = make_config("device=cuda", "training.amp=true", "training.max_iter=3")
    device = torch.device("cuda")
    trainer = Trainer(cfg, BottomUpTask(cfg, device), cfg.resolved_work_dir(), device)
    assert trainer.scaler.is_enabled()
    assert trainer.autocast().fast_dtype == torch.float16
    state = trainer.fit()
    assert state.iteration == 3 and state.nonfinite_steps == 0
    assert next(trainer.model.parameters()).is_cuda
