"""A tiny detector setup on a small synthetic data set (a fraction of a second per step)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from posekit.config import PosekitConfig, load_config
from posekit.data.synthetic.generate import generate_synthetic

TINY_DETECTOR = (
    "model.name=rtdetr",
    "model.params={size: tiny, widths: [8, 8, 16, 16, 32], hidden_dim: 32, num_heads: 2, "
    "num_queries: 10, num_decoder_layers: 2, decoder_ffn_dim: 64, encoder_ffn_dim: 64}",
)


@pytest.fixture(scope="session")
def boxes_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("detector_synthetic")
    generate_synthetic(root, num_train=8, num_val=3, size=(96, 96), seed=7)
    return root


@pytest.fixture
def detector_config(boxes_data: Path, tmp_path: Path) -> Callable[..., PosekitConfig]:
    def build(*overrides: str, work: str = "run") -> PosekitConfig:
        return load_config(
            None,
            [
                *TINY_DETECTOR,
                f"data.train.labels={boxes_data / 'train.json'}",
                f"data.train.images={boxes_data / 'train'}",
                f"data.val.labels={boxes_data / 'val.json'}",
                f"data.val.images={boxes_data / 'val'}",
                "data.input_size=64",
                "data.num_workers=0",
                "training.batch_size=4",
                "training.max_epochs=2",
                "training.optimizer.name=adamw",
                "training.optimizer.lr=1e-3",
                "training.optimizer.original_lr_mults=false",
                "training.checkpoint_after=0",
                "training.val_after=0",
                f"work_dir={tmp_path / work}",
                *overrides,
            ],
        )

    return build
