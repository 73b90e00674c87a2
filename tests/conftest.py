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


MISSING = "real sample missing"  # the start of every skip reason for a missing sample


def samples_required() -> bool:
    """CI must run every test on the real samples: there a missing sample fails the test."""
    return os.environ.get("POSEKIT_REQUIRE_SAMPLES", "") not in ("", "0")


def missing_sample(what: str) -> None:
    """Skip the test (a developer's machine), or fail it where the samples are required."""
    message = f"{MISSING}: {what} not found under {real_samples_dir()} (set POSEKIT_SAMPLE_DIR)"
    if samples_required():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def real_sample(relative: str) -> Path:
    """``relative`` under the real samples folder; the test is skipped where it is missing."""
    path = real_samples_dir() / relative
    if not path.exists():
        missing_sample(relative)
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line at the end when tests were skipped for want of the real samples."""
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if MISSING in str(getattr(report, "longrepr", ""))
    ]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} tests skipped: the real samples are missing under "
            f"{real_samples_dir()}; CI requires them (POSEKIT_REQUIRE_SAMPLES=1)",
            yellow=True,
        )


@pytest.fixture(scope="session")
def real_coco_dir() -> Path:
    path = real_samples_dir() / "coco"
    if not (path / "test_coco.json").is_file():
        missing_sample("coco/test_coco.json")
    return path


@pytest.fixture(scope="session")
def real_humanart_dir() -> Path:
    path = real_samples_dir() / "humanart"
    if not (path / "annotations" / "test_humanart.json").is_file():
        missing_sample("humanart/annotations/test_humanart.json")
    return path
