"""Hostile files: pickles in checkpoints and prepared labels, Python tags in YAML, odd export
sidecars, and labels whose names or ids try to steer where outputs are written.

Every payload below writes a marker file when it runs (a control shows that it does); each test
asserts the marker is absent afterwards, that the CLI answers with exit status 2 and one
``error:`` line (no traceback), and, for output paths, that nothing appears outside the run or
output folder. ``xfail(strict=True)`` marks the holes whose fix lies outside the files this
suite may touch: each reason names the place to fix.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
import yaml

from posekit.bottomup.task import BottomUpTask
from posekit.cli import main
from posekit.commands.val import run_val
from posekit.config import load_config
from posekit.data.check import check_dataset
from posekit.data.coco import load_coco_keypoints
from posekit.data.synthetic.generate import generate_synthetic
from posekit.data.training_labels import load_training_labels
from posekit.engine.state import load_checkpoint, save_checkpoint
from posekit.errors import CheckpointError, DataError
from posekit.schema import COCO17
from posekit.topdown.task import TopDownTask

TINY_MODEL = {"num_refinement_stages": 1, "num_channels": 8, "width_mult": 0.25, "head_width": 8}
TINY_TOPDOWN = {"backbone": "mobilenet_v2", "width_mult": 0.25, "input_size": [96, 64],
                "deconv_channels": [32, 32, 32]}  # fmt: skip
MODEL_WORDS = [f"model.params.{key}={value}" for key, value in TINY_MODEL.items()]


class WritesMarker:
    """Unpickling calls ``Path.write_text(marker, ...)``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "payload ran"))


class RunsShell:
    """Unpickling runs ``touch marker`` in a shell."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch '{self.marker}'",))


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _assert_refused(code: int, err: str, *needles: str) -> str:
    """Exit status 2, one ``error:`` line holding each needle, no traceback; returns the line."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err  # (a run that started also has its progress bar there)
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _files(root: Path, skip: Path | None = None) -> set[str]:
    """Every path under ``root`` (relative), except those under ``skip``."""
    found = set()
    for path in root.rglob("*"):
        if skip is not None and (path == skip or skip in path.parents):
            continue
        found.add(str(path.relative_to(root)))
    return found


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small synthetic data set and the checkpoint of an untrained tiny bottom-up model."""
    root = tmp_path_factory.mktemp("hostile")
    data = root / "data"
    generate_synthetic(data, num_train=2, num_val=2, size=(64, 64), seed=1)
    words = [
        f"data.train.labels={data / 'train.json'}", f"data.train.images={data / 'train'}",
        f"data.val.labels={data / 'val.json'}", f"data.val.images={data / 'val'}",
        "data.num_workers=0", "data.input_size=64", "bottomup.inference.input_height=64",
        "device=cpu",
        "training.batch_size=2", "training.eval_interval=1", "training.checkpoint_after=0",
        "training.val_after=0", *MODEL_WORDS,
    ]  # fmt: skip
    cfg = load_config(None, words)
    task = BottomUpTask(cfg, torch.device("cpu"))
    weights = root / "tiny.pth"
    save_checkpoint(weights, {"model": task.model.state_dict(), "config": cfg.to_dict()})
    return {"root": root, "data": data, "weights": weights}


def _prepared_record(file_name: str) -> dict[str, Any]:
    """One record in the layout of Lightweight OpenPose's prepare_train_labels.py."""
    keypoints = [[32.0, 10.0 + 2 * i, 1] for i in range(17)]
    return {
        "img_paths": file_name, "img_width": 64, "img_height": 64, "objpos": [32.0, 30.0],
        "image_id": 1, "bbox": [20.0, 8.0, 24.0, 40.0], "segment_area": 600.0,
        "scale_provided": 40 / 368, "num_keypoints": 17, "segmentations": [],
        "keypoints": keypoints, "processed_other_annotations": [],
    }  # fmt: skip


def _data_words(tiny: dict[str, Path], work: Path) -> list[str]:
    data = tiny["data"]
    return [
        f"data.train.labels={data / 'train.json'}", f"data.train.images={data / 'train'}",
        "data.num_workers=0", "data.input_size=64", "device=cpu", f"work_dir={work}",
        "training.max_epochs=1", "training.batch_size=2", "training.eval_interval=0",
        *MODEL_WORDS,
    ]  # fmt: skip


# -- 8a: checkpoints carrying a pickle payload ------------------------------------------------


def _save_zip(payload: Any, path: Path) -> None:
    torch.save({"model": {"w": torch.zeros(1)}, "config": {}, "extra": payload}, path)


def _save_legacy(payload: Any, path: Path) -> None:
    torch.save({"extra": payload}, path, _use_new_zipfile_serialization=False)


def _save_raw_pickle(payload: Any, path: Path) -> None:
    path.write_bytes(pickle.dumps({"model": payload}))


WRITERS: dict[str, Callable[[Any, Path], None]] = {
    "zip": _save_zip, "legacy": _save_legacy, "raw_pickle": _save_raw_pickle,
}  # fmt: skip


def test_checkpoint_payload_is_real(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    _save_zip(WritesMarker(marker), tmp_path / "evil.pth")
    torch.load(tmp_path / "evil.pth", weights_only=False)  # what a careless loader would do
    assert marker.read_text() == "payload ran"


@pytest.mark.parametrize("payload", [WritesMarker, RunsShell])
@pytest.mark.parametrize("writer", list(WRITERS))
def test_load_checkpoint_refuses_pickle_payloads(
    tmp_path: Path, writer: str, payload: type
) -> None:
    marker, path = tmp_path / "marker", tmp_path / "evil.pth"
    WRITERS[writer](payload(marker), path)
    with pytest.raises(CheckpointError, match="refused") as exc:
        load_checkpoint(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)
    assert not marker.exists()


CHECKPOINT_COMMANDS: dict[str, Callable[[Path, list[str]], list[str]]] = {
    "val --weights": lambda evil, _: ["val", "--weights", str(evil)],
    "predict --weights": lambda evil, _: ["predict", str(evil.parent), "--weights", str(evil)],
    "export --weights": lambda evil, _: ["export", "--weights", str(evil)],
    "train --resume": lambda evil, words: ["train", "--resume", str(evil), *words],
    "train training.load_from": lambda evil, words: [
        "train", *words, f"training.load_from={evil}"],
    "train --checkpoint-path --weights-only": lambda evil, words: [
        "train", "--checkpoint-path", str(evil), "--weights-only", *words],
}  # fmt: skip


@pytest.mark.parametrize("command", list(CHECKPOINT_COMMANDS))
def test_cli_refuses_checkpoint_payload(
    tiny: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    marker, evil, run = tmp_path / "marker", tmp_path / "evil.pth", tmp_path / "run"
    _save_zip(WritesMarker(marker), evil)
    before = _files(tmp_path)
    argv = CHECKPOINT_COMMANDS[command](evil, _data_words(tiny, run))
    code, _, err = _cli(capsys, *argv)
    _assert_refused(code, err, str(evil), "refused")
    assert not marker.exists()
    assert _files(tmp_path) == before  # no run folder, no predictions, no export


def test_checkpoint_payload_process_exit_status(tmp_path: Path) -> None:
    marker, evil = tmp_path / "marker", tmp_path / "evil.pth"
    _save_zip(RunsShell(marker), evil)
    result = subprocess.run(
        [sys.executable, "-m", "posekit", "val", "--weights", str(evil)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: ")
    assert not marker.exists()


def test_checkpoint_refusal_names_the_refused_global(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    _save_zip(WritesMarker(tmp_path / "marker"), path)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    message = str(exc.value)
    assert "\x1b" not in message and "\n" not in message
    assert "it would import getattr" in message  # the payload's first refused global


def test_resume_from_a_weights_only_checkpoint_is_one_line(
    tiny: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--resume", str(tiny["weights"]), f"work_dir={tmp_path / 'run'}"]
    code, _, err = _cli(capsys, *argv)
    _assert_refused(code, err, str(tiny["weights"]))


# -- 8b: prepared labels pickles, through posekit train ----------------------------------------


@pytest.mark.parametrize("suffix", [".pkl", ".pickle"])
def test_train_refuses_prepared_labels_payload(
    tiny: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    suffix: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    marker, evil = tmp_path / "marker", tmp_path / f"prepared{suffix}"
    record = _prepared_record("000000000001.jpg")
    record["segmentations"] = [WritesMarker(marker)]
    evil.write_bytes(pickle.dumps([record]))
    argv = [
        "train", "--prepared-train-labels", str(evil),
        "--train-images-folder", str(tiny["data"] / "train"), "--work-dir", str(tmp_path / "run"),
        "--num-workers", "0", "--batch-size", "2", "--max-epochs", "1", "device=cpu",
        *MODEL_WORDS,
    ]  # fmt: skip
    code, _, err = _cli(capsys, *argv)
    _assert_refused(code, err, str(evil), "unsafe or corrupt pickle refused")
    assert not marker.exists() and not (tmp_path / "run").exists()
    pickle.loads(evil.read_bytes())  # control: the payload is real
    assert marker.exists()


# -- 8c: YAML with Python tags -----------------------------------------------------------------

YAML_PAYLOADS: dict[str, str] = {
    "apply_mknod": "experiment_name: !!python/object/apply:os.mknod ['{marker}']\n",
    "apply_system": "experiment_name: !!python/object/apply:os.system ['touch {marker}']\n",
    "top_level": "!!python/object/apply:os.mknod ['{marker}']\n",
    "name": "experiment_name: !!python/name:os.system\n",
    "new": "experiment_name: !!python/object/new:pathlib.Path ['{marker}']\n",
    "module": "experiment_name: !!python/module:os\n",
}


def test_yaml_payload_is_real(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    yaml.unsafe_load(YAML_PAYLOADS["apply_mknod"].format(marker=marker))
    assert marker.exists()


YAML_USES: dict[str, Callable[[Path, dict[str, Path], Path], list[str]]] = {
    "config show": lambda evil, tiny, run: ["config", "show", str(evil)],
    "train --config": lambda evil, tiny, run: ["train", "--config", str(evil), f"work_dir={run}"],
    "train positional config": lambda evil, tiny, run: ["train", str(evil), f"work_dir={run}"],
    "val --config": lambda evil, tiny, run: [
        "val", "--config", str(evil), "--weights", str(tiny["weights"])],
    "config base:": lambda evil, tiny, run: ["config", "show", str(_with_base(evil))],
    "check-data --schema": lambda evil, tiny, run: [
        "check-data", "--labels", str(tiny["data"] / "val.json"),
        "--images", str(tiny["data"] / "val"), "--schema", str(evil)],
    "train data.schema": lambda evil, tiny, run: [
        "train", *_data_words(tiny, run), f"data.schema={evil}"],
}  # fmt: skip


def _with_base(evil: Path) -> Path:
    clean = evil.with_name("clean.yaml")
    clean.write_text(f"base: {evil.name}\nseed: 3\n")
    return clean


@pytest.mark.parametrize("use", list(YAML_USES))
@pytest.mark.parametrize("payload", list(YAML_PAYLOADS))
def test_yaml_python_tags_are_refused(
    tiny: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    payload: str,
    use: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    marker, evil, run = tmp_path / "marker", tmp_path / "evil.yaml", tmp_path / "run"
    evil.write_text(YAML_PAYLOADS[payload].format(marker=marker))
    code, _, err = _cli(capsys, *YAML_USES[use](evil, tiny, run))
    _assert_refused(code, err, str(evil), "could not determine a constructor")
    assert not marker.exists() and not run.exists()


def test_yaml_payload_process_exit_status(tmp_path: Path) -> None:
    marker, evil = tmp_path / "marker", tmp_path / "evil.yaml"
    evil.write_text(YAML_PAYLOADS["apply_system"].format(marker=marker))
    result = subprocess.run(
        [sys.executable, "-m", "posekit", "config", "show", str(evil)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and "python/object/apply" in result.stderr
    assert not marker.exists()


def test_yaml_alias_bomb_is_refused_briefly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    lines = ["anchors:", "  a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for level in range(1, 6):  # 10**6 values from a 360-byte file; each level is 10x more
        lines.append(f"  a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 10) + "]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join([*lines, "experiment_name: *a5", ""]))
    code, _, err = _cli(capsys, "config", "show", str(bomb))
    line = _assert_refused(code, err, str(bomb))
    assert len(line) < 1000  # not the million values quoted back


# -- 8d: exported weights with an odd sidecar --------------------------------------------------

SIDECARS: dict[str, bytes | None] = {
    "list": b"[1, 2]",
    "string": b'"posekit"',
    "config_string": b'{"format": "posekit-weights-v1", "config": "abc"}',
    "config_number": b'{"format": "posekit-weights-v1", "config": 5}',
    "other_format": b'{"format": "something-else", "config": {}}',
    "not_utf8": b"\xff\xfe\x00\x01",
    "not_json": b"{'format': 1",
    "empty": b"",
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "missing": None,
}


@pytest.fixture(scope="module")
def export(tiny: dict[str, Path]) -> Path:
    out = tiny["root"] / "export" / "tiny.safetensors"
    out.parent.mkdir()
    assert main(["export", "--weights", str(tiny["weights"]), "--out", str(out)]) == 0
    return out


def test_intact_export_loads(tiny: dict[str, Path], export: Path) -> None:
    # run_val itself: its ``out`` default is the sys.stdout of import time (see the report)
    data = tiny["data"]
    settings = {"data.val.labels": str(data / "val.json"), "data.val.images": str(data / "val")}
    out = io.StringIO()
    metrics = run_val(str(export), settings, [], out=out)
    assert "AP" in metrics and "2 images" in out.getvalue()


@pytest.mark.parametrize("sidecar", list(SIDECARS))
def test_odd_sidecar_is_one_line(
    tiny: dict[str, Path],
    export: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    sidecar: str,
) -> None:
    weights = tmp_path / "weights.safetensors"
    shutil.copy(export, weights)
    content = SIDECARS[sidecar]
    if content is not None:
        weights.with_suffix(".json").write_bytes(content)
    argv = ["val", "--weights", str(weights), "--val-labels", str(tiny["data"] / "val.json"),
            "--val-images-folder", str(tiny["data"] / "val")]  # fmt: skip
    code, _, err = _cli(capsys, *argv)
    _assert_refused(code, err, "weights.")


# -- 9: names from the data never steer outputs out of their folder ----------------------------


@pytest.fixture
def outside_image(tmp_path: Path) -> Path:
    """A readable image beside (outside) the images folder: a name reaching it must be refused,
    not read."""
    path = tmp_path / "outside.jpg"
    ok, encoded = cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))
    assert ok
    path.write_bytes(encoded.tobytes())
    return path


def _labels_with_names(source: Path, target: Path, names: dict[int, str]) -> Path:
    """A copy of ``source`` with image ``position``'s file_name replaced."""
    data = json.loads(source.read_text())
    for position, name in names.items():
        data["images"][position]["file_name"] = name
    target.write_text(json.dumps(data))
    return target


def _escaping_names(outside: Path) -> list[str]:
    return [str(outside), f"../{outside.name}", f"sub/../../{outside.name}", f"./../{outside.name}"]


def test_check_data_refuses_escaping_names(
    tiny: dict[str, Path], outside_image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = tmp_path / "images"
    shutil.copytree(tiny["data"] / "train", images)
    source = json.loads((tiny["data"] / "train.json").read_text())
    template = source["images"][0]
    extra = [
        {**template, "id": 900 + i, "file_name": name, "width": 64, "height": 64}
        for i, name in enumerate([*_escaping_names(outside_image), "evil\x1b[2J\nname.jpg"])
    ]
    source["images"] += extra
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(source))
    code, out, err = _cli(capsys, "check-data", "--labels", str(labels), "--images", str(images))
    assert code == 1 and err == ""
    lines = out.splitlines()[1:]
    assert len(lines) == len(extra)  # one line each, even for a name holding a line break
    for line, entry in zip(lines[:-1], extra, strict=False):
        assert line.startswith(f"unsafe_file_name image_id={entry['id']}: "), line
        assert repr(entry["file_name"]) in line
    assert lines[-1].startswith("missing_image image_id=904: ")
    assert "\\x1b[2J\\nname.jpg" in lines[-1] and "\x1b" not in lines[-1]


@pytest.mark.parametrize("position", [0, 1, 2, 3])
def test_val_refuses_escaping_names_and_writes_nothing_outside(
    tiny: dict[str, Path],
    outside_image: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    position: int,
) -> None:
    monkeypatch.chdir(tmp_path)
    name = _escaping_names(outside_image)[position]
    labels = _labels_with_names(tiny["data"] / "val.json", tmp_path / "val.json", {1: name})
    before = _files(tmp_path)
    argv = ["val", "--weights", str(tiny["weights"]), "--val-labels", str(labels),
            "--val-images-folder", str(tiny["data"] / "val"),
            "--val-output-name", str(tmp_path / "results.json")]  # fmt: skip
    code, _, err = _cli(capsys, *argv)
    _assert_refused(code, err, repr(name))
    assert _files(tmp_path) == before


def test_train_refuses_escaping_names_and_writes_nothing_outside_the_run(
    tiny: dict[str, Path],
    outside_image: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    labels = _labels_with_names(
        tiny["data"] / "train.json", tmp_path / "train.json", {0: str(outside_image)}
    )
    run = tmp_path / "run"
    before = _files(tmp_path)
    words = [*_data_words(tiny, run), f"data.train.labels={labels}"]
    code, _, err = _cli(capsys, "train", *words)
    _assert_refused(code, err, repr(str(outside_image)), "relative path")
    assert _files(tmp_path, skip=run) == before


def test_prepared_labels_with_escaping_paths_are_refused_at_use(
    tiny: dict[str, Path], outside_image: Path, tmp_path: Path
) -> None:
    path = tmp_path / "prepared.pkl"
    path.write_bytes(pickle.dumps([_prepared_record(f"../{outside_image.name}")]))
    data = load_training_labels(path, tmp_path / "images", COCO17)
    with pytest.raises(DataError, match="escapes the images folder"):
        data.image_path(data.images[0])


def _val_labels(tiny: dict[str, Path], target: Path, ids: list[int], names: list[str]) -> Path:
    data = json.loads((tiny["data"] / "val.json").read_text())
    old_ids = [image["id"] for image in data["images"]]
    for image, new_id, name in zip(data["images"], ids, names, strict=True):
        image["id"], image["file_name"] = new_id, name
    for ann in data["annotations"]:
        ann["image_id"] = ids[old_ids.index(ann["image_id"])]
    target.write_text(json.dumps(data))
    return target


def _task(family: str, tiny: dict[str, Path], labels: Path) -> BottomUpTask | TopDownTask:
    data = tiny["data"]
    words = [
        f"data.train.labels={data / 'train.json'}", f"data.train.images={data / 'train'}",
        f"data.val.labels={labels}", f"data.val.images={data / 'val'}", "data.num_workers=0",
        "bottomup.inference.input_height=64", "device=cpu",
    ]  # fmt: skip
    if family == "bottomup":
        return BottomUpTask(load_config(None, [*words, *MODEL_WORDS]), torch.device("cpu"))
    cfg = load_config(None, [*words, "model.name=topdown"])
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"params": TINY_TOPDOWN})})
    return TopDownTask(cfg, torch.device("cpu"))


@pytest.mark.parametrize("family", ["bottomup", "topdown"])
def test_draw_validation_names_stay_in_the_plots_folder(
    tiny: dict[str, Path], outside_image: Path, tmp_path: Path, family: str
) -> None:
    names = [image["file_name"] for image in json.loads((tiny["data"] / "val.json").read_text())[
        "images"]]  # fmt: skip
    labels = _val_labels(tiny, tmp_path / "odd_ids.json", [-5, 0], names)
    escaping = [names[0], f"../../{names[1]}"]
    escaping_labels = _val_labels(tiny, tmp_path / "escaping.json", [1, 2], escaping)
    task = _task(family, tiny, labels)
    plots = tmp_path / "run" / "plots"
    plots.mkdir(parents=True)
    before = _files(tmp_path, skip=plots)
    task.draw_validation(task.model, plots, count=4)
    assert sorted(p.name for p in plots.iterdir()) == ["val_-5.jpg", "val_0.jpg"]
    assert _files(tmp_path, skip=plots) == before

    task.val_data = load_coco_keypoints(escaping_labels, tiny["data"] / "val", task.schema)
    shutil.rmtree(plots)
    plots.mkdir()
    with pytest.raises(DataError, match="escapes the images folder"):
        task.draw_validation(task.model, plots, count=4)
    assert sorted(p.name for p in plots.iterdir()) == ["val_1.jpg"]  # the first, safe image
    assert _files(tmp_path, skip=plots) == before


@pytest.mark.parametrize("bad_id", ["../../evil", "7/../../x", "-5", True, 1.5, [3], None])
def test_image_ids_that_are_not_integers_never_reach_a_file_name(
    tiny: dict[str, Path], tmp_path: Path, bad_id: object
) -> None:
    data = json.loads((tiny["data"] / "val.json").read_text())
    data["images"][0]["id"] = bad_id
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != 1_000_001]
    labels = tmp_path / "ids.json"
    labels.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"images\[0\]\.id must be an integer"):
        load_coco_keypoints(labels, tiny["data"] / "val", COCO17)
    report = check_dataset(labels, tiny["data"] / "val", COCO17)
    assert [p.kind for p in report.problems] == ["bad_image_entry"]


def test_absurd_image_ids_are_refused_at_load(tiny: dict[str, Path], tmp_path: Path) -> None:
    data = json.loads((tiny["data"] / "val.json").read_text())
    data["images"][0]["id"] = 1e300
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != 1_000_001]
    labels = tmp_path / "ids.json"
    labels.write_text(json.dumps(data))
    with pytest.raises(DataError):
        load_coco_keypoints(labels, tiny["data"] / "val", COCO17)


def _predict(capsys: pytest.CaptureFixture[str], source: Path, weights: Path, out: Path) -> tuple:
    return _cli(capsys, "predict", str(source), "--weights", str(weights), "--out", str(out))


def test_predict_writes_only_into_its_output_folder(
    tiny: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "photos"
    shutil.copytree(tiny["data"] / "val", source)
    out = tmp_path / "out"
    before = _files(tmp_path)
    code, _, err = _predict(capsys, source, tiny["weights"], out)
    assert code == 0, err
    assert _files(tmp_path, skip=out) == before
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*(f"{p.stem}.jpg" for p in source.iterdir()), "people.json"]
    )


def test_predict_never_replaces_its_source_images(
    tiny: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "photos"
    shutil.copytree(tiny["data"] / "val", source)
    originals = {p.name: p.read_bytes() for p in source.iterdir()}
    first = sorted(source.iterdir())[0]
    for target, image in ((source, source), (source, first)):  # a folder, or one of its files
        code, _, err = _predict(capsys, image, tiny["weights"], target)
        _assert_refused(code, err, "would replace a source image")
    assert {p.name: p.read_bytes() for p in source.iterdir()} == originals

    shutil.copy(first, source / f"{first.stem}.png")  # a.jpg and a.png: one drawing name
    code, _, err = _predict(capsys, source, tiny["weights"], tmp_path / "out")
    _assert_refused(code, err, "both would be drawn to")
    assert not (tmp_path / "out" / "people.json").exists()


def test_resumed_checkpoint_cannot_write_results_outside_the_run(
    tiny: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    assert _cli(capsys, "train", *_data_words(tiny, run))[0] == 0
    checkpoint = load_checkpoint(run / "checkpoints" / "last.pth")
    config = checkpoint["config"]
    config["training"].update(val_output_name="../escape.json", max_epochs=2, eval_interval=1)
    val = tiny["data"] / "val"
    config["data"]["val"].update(labels=str(tiny["data"] / "val.json"), images=str(val))
    config["inference"]["input_height"] = 64
    tampered = tmp_path / "shared.pth"
    torch.save(checkpoint, tampered)
    before = _files(tmp_path, skip=run)
    code, _, err = _cli(capsys, "train", "--resume", str(tampered))
    assert not (tmp_path / "escape.json").exists()
    assert code == 2 or _files(tmp_path, skip=run) == before, err
