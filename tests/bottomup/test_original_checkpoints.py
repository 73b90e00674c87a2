"""The original Lightweight OpenPose repository's checkpoints: recognised in every layout, PAF
channels reordered on load and back on export, continued runs, and the mismatch messages.

Original-layout files are written here from posekit's own network: its tensors carry the
original's names and shapes (checked against the original repository; see the closing note
of issue 15), so ``to_original`` of random posekit weights is a file the original would
have trained."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from posekit.bottomup.layouts import OPENPOSE18_LIMBS
from posekit.bottomup.lw_openpose import LightweightOpenPose
from posekit.bottomup.original_checkpoints import (
    ORIGINAL_TRAINING_LIMBS,
    from_original,
    original_adam_state,
    original_parameter_names,
    original_state,
    paf_channel_order,
    refinement_stage_count,
    to_original,
)
from posekit.engine.state import weights_mismatch

# The original decoder's table (modules/keypoints.py BODY_PARTS_PAF_IDS): for each limb of its
# decoder list, which is posekit's limb list, the (x, y) channels of the network's output.
ORIGINAL_DECODER_PAF_IDS = (
    (12, 13), (20, 21), (14, 15), (16, 17), (22, 23), (24, 25), (0, 1), (2, 3), (4, 5),
    (6, 7), (8, 9), (10, 11), (28, 29), (30, 31), (34, 35), (32, 33), (36, 37), (18, 19),
    (26, 27),
)  # fmt: skip


def network(stages: int, seed: int = 0) -> LightweightOpenPose:
    torch.manual_seed(seed)
    return LightweightOpenPose(num_heatmaps=19, num_pafs=38, num_refinement_stages=stages).eval()


def write_original(path: Path, stages: int, layout: str = "train") -> LightweightOpenPose:
    """An original-layout file of a random network (returned in posekit's order)."""
    model = network(stages)
    state = to_original(model.state_dict())
    if layout == "train":
        payload = {"state_dict": state, "optimizer": original_adam(model), "iter": 7,
                   "current_epoch": 2, "scheduler": {"last_epoch": 2}}  # fmt: skip
    elif layout == "state_dict":
        payload = {"state_dict": state}
    elif layout == "module":
        payload = {"state_dict": {f"module.{k}": v for k, v in state.items()}}
    else:
        payload = state
    torch.save(payload, path, _use_new_zipfile_serialization=layout != "legacy")
    return model


def original_adam(model: LightweightOpenPose) -> dict:
    """The state dict of an Adam over the original's parameter order, after one step, with
    moments in the original's PAF order."""
    names = original_parameter_names(model)
    parameters = dict(model.named_parameters())
    original = to_original({n: p.detach().clone() for n, p in parameters.items()})
    tensors = [torch.nn.Parameter(original[name]) for name in names]
    optimizer = torch.optim.Adam([{"params": tensors}], lr=1e-3)
    sum((t * torch.randn_like(t)).sum() for t in tensors).backward()
    optimizer.step()
    return optimizer.state_dict()


def test_channel_order_follows_the_two_limb_lists() -> None:
    order = paf_channel_order()
    for limb, (x, y) in zip(OPENPOSE18_LIMBS, ORIGINAL_DECODER_PAF_IDS, strict=True):
        index = OPENPOSE18_LIMBS.index(limb)
        assert ORIGINAL_TRAINING_LIMBS[x // 2] == limb  # same pair, same direction
        assert (order[2 * index], order[2 * index + 1]) == (x, y)
    assert sorted(order) == list(range(38))


@pytest.mark.parametrize("stages", [1, 3])
def test_original_weights_give_posekits_maps_after_conversion(stages: int) -> None:
    """A network in the original's layout emits PAFs in its channel order, through every
    refinement stage; converted, posekit's network emits the same maps in posekit's order."""
    model = network(stages)
    original = network(stages, seed=1)
    original.load_state_dict(to_original(model.state_dict()))
    converted = network(stages, seed=2)
    converted.load_state_dict(from_original(original.state_dict()))
    image = torch.randn(1, 3, 96, 128)
    order = paf_channel_order()
    with torch.no_grad():
        ours, theirs, back = model(image), original(image), converted(image)
    for stage in range(stages + 1):
        torch.testing.assert_close(theirs.pafs[stage][:, order], ours.pafs[stage])
        torch.testing.assert_close(theirs.heatmaps[stage], ours.heatmaps[stage])
        torch.testing.assert_close(back.pafs[stage], ours.pafs[stage], rtol=0, atol=0)
    assert not torch.equal(theirs.pafs[-1], ours.pafs[-1])  # the orders do differ


def test_round_trip_is_exact() -> None:
    state = network(2).state_dict()
    back = from_original(to_original(state))
    assert all(torch.equal(back[k], v) for k, v in state.items())


@pytest.mark.parametrize("layout", ["train", "state_dict", "module", "bare", "legacy"])
def test_every_layout_is_recognised(tmp_path: Path, layout: str) -> None:
    from posekit.engine.state import load_checkpoint

    path = tmp_path / "checkpoint_iter_370000.pth"
    model = write_original(path, 3, layout)
    state = original_state(load_checkpoint(path))
    assert state is not None and refinement_stage_count(state) == 3
    converted = from_original(state)
    assert all(torch.equal(converted[k], v) for k, v in model.state_dict().items())


def test_posekit_checkpoints_are_not_taken_for_original_ones() -> None:
    state = network(1).state_dict()
    assert original_state({"model": state, "config": {}}) is None
    assert original_state({"state_dict": {"x": torch.zeros(1)}}) is None


def test_adam_moments_follow_the_weights() -> None:
    model = network(1)
    optimizer = original_adam(model)
    moments = original_adam_state(model, optimizer)
    assert moments is not None and set(moments) == set(dict(model.named_parameters()))
    # the moments of the PAF output rows were permuted like the weights
    names = original_parameter_names(model)
    raw = optimizer["state"][names.index("initial_stage.pafs.1.0.weight")]["exp_avg"]
    order = paf_channel_order()
    torch.testing.assert_close(moments["initial_stage.pafs.1.0.weight"]["exp_avg"], raw[order])
    assert original_adam_state(network(3), optimizer) is None  # another model's parameters


def test_mismatch_names_the_refinement_stages() -> None:
    message = weights_mismatch(network(1).state_dict(), network(3).state_dict())
    assert message == (
        "the file has 3 refinement stages, the config 1: pass model.params.num_refinement_stages=3"
    )
    small = LightweightOpenPose(num_heatmaps=19, num_pafs=38, num_channels=64)
    message = weights_mismatch(small.state_dict(), network(1).state_dict())
    assert message is not None and "in the file" in message and "model.params" in message


# ---- the commands --------------------------------------------------------------------------


def posekit(*args: str, cwd: Path, code: int = 0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "posekit", *args], capture_output=True, text=True, cwd=cwd,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == code, result.stdout[-2000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def original_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("original") / "checkpoint_iter_7.pth"
    write_original(path, 1, "train")
    return path


def test_val_predict_and_export_take_an_original_file_without_a_config(
    original_file: Path, real_coco_dir: Path, tmp_path: Path
) -> None:
    labels = real_coco_dir / "test_coco.json"
    result = posekit(
        "val", "--weights", str(original_file), "--val-labels", str(labels),
        "--val-images-folder", str(real_coco_dir), "--json", "bottomup.inference.input_height=128",
        cwd=tmp_path,
    )  # fmt: skip
    assert "an original Lightweight OpenPose checkpoint (1 refinement stage(s), iteration 7)" in (
        result.stderr
    )
    assert "AP" in json.loads(result.stdout.strip().splitlines()[-1])
    posekit("predict", str(real_coco_dir / "000000000785.jpg"), "--weights", str(original_file),
            "--out", str(tmp_path / "drawn"), "bottomup.inference.input_height=128",
            cwd=tmp_path)  # fmt: skip
    assert (tmp_path / "drawn" / "people.json").is_file()
    out = tmp_path / "model.safetensors"
    posekit("export", "--weights", str(original_file), "--out", str(out), cwd=tmp_path)
    from posekit.commands.loaded_model import read_weights

    exported, config = read_weights(out)
    assert config is not None and config["model"]["params"]["num_refinement_stages"] == 1
    expected = from_original(original_state(torch.load(original_file)) or {})
    assert all(torch.equal(exported[k], v) for k, v in expected.items())


def test_export_lwop_writes_the_original_layout(original_file: Path, tmp_path: Path) -> None:
    safetensors = tmp_path / "m.safetensors"
    posekit("export", "--weights", str(original_file), "--out", str(safetensors), cwd=tmp_path)
    out = tmp_path / "back.pth"
    posekit("export", "--weights", str(safetensors), "--format", "lwop", "--out", str(out),
            cwd=tmp_path)  # fmt: skip
    written = torch.load(out, weights_only=True)
    assert set(written) == {"state_dict"}
    source = torch.load(original_file, weights_only=True)["state_dict"]
    assert written["state_dict"].keys() == source.keys()
    assert all(torch.equal(written["state_dict"][k], v) for k, v in source.items())


def test_export_lwop_refuses_another_network(tmp_path: Path) -> None:
    from posekit.commands.export import run_export
    from posekit.errors import CheckpointError

    config = {"model": {"name": "lw_openpose", "params": {"num_channels": 32}}}
    model = LightweightOpenPose(num_heatmaps=19, num_pafs=38, num_channels=32)
    path = tmp_path / "small.pth"
    torch.save({"model": model.state_dict(), "config": config, "family": "bottomup"}, path)
    with pytest.raises(CheckpointError, match="not the original architecture"):
        run_export(str(path), "lwop", str(tmp_path / "x.pth"))


def test_train_from_original_weights_and_continue_an_original_run(
    original_file: Path, real_coco_dir: Path, tmp_path: Path
) -> None:
    from posekit.data.prepared_labels import prepare_train_labels, save_prepared_labels
    from posekit.engine.state import load_checkpoint

    prepared = tmp_path / "prepared.json"
    save_prepared_labels(prepare_train_labels(real_coco_dir / "test_coco.json"), prepared)
    common = ["--prepared-train-labels", str(prepared), "--train-images-folder",
              str(real_coco_dir), "--batch-size", "2", "--num-workers", "0",
              "data.input_size=128"]  # fmt: skip
    started = posekit("train", *common, "--checkpoint-path", str(original_file),
                      "--weights-only", "--max-iter", "1", "--experiment-name", "fresh",
                      cwd=tmp_path)  # fmt: skip
    assert "loaded 250 tensors" in started.stdout and "0 re-initialised" in started.stdout
    continued = posekit("train", *common, "--checkpoint-path", str(original_file),
                        "--max-iter", "8", "--experiment-name", "continued",
                        cwd=tmp_path)  # fmt: skip
    assert "continuing the original run at epoch 3, iteration 7" in continued.stdout
    last = load_checkpoint(tmp_path / "runs" / "continued" / "checkpoints" / "last.pth")
    assert last["train_state"]["iteration"] == 8
    bare = tmp_path / "bare.pth"
    write_original(bare, 1, "bare")
    refused = posekit("train", *common, "--checkpoint-path", str(bare), "--max-iter", "8",
                      "--experiment-name", "bare", cwd=tmp_path, code=2)  # fmt: skip
    assert "--weights-only" in refused.stderr and refused.stderr.count("\n") == 1


def test_val_with_a_config_of_other_stages_names_the_fix(
    real_coco_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "three.pth"
    write_original(path, 3, "state_dict")
    config = tmp_path / "one.yaml"
    config.write_text("model: {name: lw_openpose, params: {num_refinement_stages: 1}}\n")
    result = posekit("val", "--weights", str(path), "--config", str(config), "--val-labels",
                     str(real_coco_dir / "test_coco.json"), "--val-images-folder",
                     str(real_coco_dir), cwd=tmp_path, code=2)  # fmt: skip
    *said, error = result.stderr.splitlines()  # what was recognised, then the one error line
    assert "Traceback" not in result.stderr and error.startswith("error: ")
    assert said == [f"{path}: an original Lightweight OpenPose checkpoint (3 refinement stage(s)); "
                    "its PAF channels are reordered to posekit's limbs"]  # fmt: skip
    assert error.endswith("the config 1: pass model.params.num_refinement_stages=3")
