"""Shared fixtures: where the real samples live, and a small synthetic data set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def real_samples_dir() -> Path:
    """``$POSEKIT_SAMPLE_DIR`` (a folder holding coco/ and humanart/) or ../shared/data/real."""
    override = os.environ.get("POSEKIT_SAMPLE_DIR")
    if override:
        return Path(override)
    return REPO_ROOT.parent / "shared" / "data" / "real"


def real_sample(relative: str) -> Path:
    """``relative`` under the real samples folder; the test is skipped where it is missing."""
    path = real_samples_dir() / relative
    if not path.exists():
        pytest.skip(f"real sample {relative} not found under {real_samples_dir()}")
    return path


@pytest.fixture(scope="session")
def real_coco_dir() -> Path:
    path = real_samples_dir() / "coco"
    if not (path / "test_coco.json").is_file():
        pytest.skip(f"real COCO sample not found at {path} (set POSEKIT_SAMPLE_DIR)")
    return path


@pytest.fixture(scope="session")
def real_humanart_dir() -> Path:
    path = real_samples_dir() / "humanart"
    if not (path / "annotations" / "test_humanart.json").is_file():
        pytest.skip(f"real Human-Art sample not found at {path} (set POSEKIT_SAMPLE_DIR)")
    return path
