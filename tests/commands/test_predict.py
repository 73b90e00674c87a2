"""``posekit predict`` as a user runs it: unreadable files skipped and named, the whole-image
note, a timing line, ``--json`` on stdout, a closed pipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from posekit.cli import main

OLD = Path(__file__).resolve().parents[1] / "data" / "before_family_sections"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from posekit.data.synthetic.generate import generate_synthetic

    root = tmp_path_factory.mktemp("predict_images")
    generate_synthetic(root, num_train=1, num_val=3, size=(96, 96), seed=2)
    (root / "val" / "broken.jpg").write_bytes(b"not an image")
    return root / "val"


def test_a_folder_with_an_unreadable_file_is_predicted_and_the_file_named(
    images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "drawn"
    assert main(["predict", str(images), "--weights", str(OLD / "bottomup.pth"),
                 "--out", str(out)]) == 0  # fmt: skip
    lines = capsys.readouterr().out.strip().splitlines()
    listed = json.loads((out / "people.json").read_text())
    assert len(listed) == 3 and "broken.jpg" not in listed
    assert len(list(out.glob("*.jpg"))) == 3
    assert "skipped 1 unreadable file(s): broken.jpg (not a decodable image" in "\n".join(lines)
    assert lines[-1].startswith("3 image(s) in ") and "ms each" in lines[-1]
    assert not any("whole image" in line for line in lines)  # bottom-up finds people itself


def test_top_down_alone_says_once_that_each_image_is_one_person(
    images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", str(images), "--weights", str(OLD / "topdown.pth"),
                 "--out", str(tmp_path / "drawn")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert out.count("each whole image is taken as one person") == 1


def test_json_goes_to_stdout_alone(
    images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", str(images), "--weights", str(OLD / "bottomup.pth"),
                 "--out", str(tmp_path / "drawn"), "--json"]) == 0  # fmt: skip
    captured = capsys.readouterr()
    found = json.loads(captured.out)
    assert found == json.loads((tmp_path / "drawn" / "people.json").read_text())
    assert "image(s) in" in captured.err


def test_a_closed_pipe_ends_quietly(images: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "posekit", "predict", str(images), "--weights",
               str(OLD / "bottomup.pth"), "--out", str(tmp_path / "drawn")]  # fmt: skip
    reader = subprocess.Popen(
        [*command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # each line written as printed
    )
    assert reader.stdout is not None
    reader.stdout.readline()
    reader.stdout.close()  # like `| head -1`
    _, err = reader.communicate(timeout=120)
    assert b"Traceback" not in err and b"BrokenPipeError" not in err
    assert reader.returncode in (0, 141)
