"""Without the real samples a developer's run skips their tests and says so in one line at
the end; CI (``POSEKIT_REQUIRE_SAMPLES=1``, set by ``.ci/run``) fails instead."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ONE_TEST = "tests/test_schema.py::test_real_mpii_file_has_sixteen_joints"


def run_without_samples(tmp_path: Path, required: bool) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "POSEKIT_SAMPLE_DIR": str(tmp_path / "nothing here")}
    env["POSEKIT_REQUIRE_SAMPLES"] = "1" if required else ""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", ONE_TEST],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_missing_samples_skip_with_one_line_at_the_end(tmp_path: Path) -> None:
    done = run_without_samples(tmp_path, required=False)
    assert done.returncode == 0, done.stdout[-2000:]
    summary = [line for line in done.stdout.splitlines() if "real samples are missing" in line]
    assert len(summary) == 1 and summary[0].startswith("1 tests skipped")


def test_missing_samples_fail_where_they_are_required(tmp_path: Path) -> None:
    done = run_without_samples(tmp_path, required=True)
    assert done.returncode == 1
    assert "real sample missing: mpii/test_mpii.json not found" in done.stdout


def test_ci_requires_the_samples() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert "export POSEKIT_REQUIRE_SAMPLES=1" in script.rsplit("make test", 1)[0]


@pytest.mark.parametrize("name", ["coco/test_coco.json", "mpii/test_mpii.json"])
def test_the_samples_are_here(name: str) -> None:
    from .conftest import real_sample

    assert real_sample(name).is_file()
