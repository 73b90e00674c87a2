"""Files written by posekit before the family sections (issue 16) load and run as they did.

``tests/data/before_family_sections/`` was written by the commit before the move
(f068019's layout): a 1-epoch training checkpoint of each family (bottom-up with
``targets.sigma=5``, ``loss.foreground_weight=2``, ``data.augment.flip_prob=0.3``,
``inference.input_height=64`` at the top level; top-down and detector runs made from the
default config, so their stored configs hold bottom-up settings too), the bottom-up one
exported to safetensors, the outputs of each on one fixed input, and the old default config.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from posekit.cli import main
from posekit.commands.load import load_model
from posekit.config import load_config

OLD = Path(__file__).resolve().parents[1] / "data" / "before_family_sections"
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def fixed_input() -> torch.Tensor:
    return torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def named_outputs(family: str, outputs: object) -> dict[str, torch.Tensor]:
    if family == "bottomup":
        return {"heatmaps": outputs.heatmaps[-1], "pafs": outputs.pafs[-1]}
    if family == "topdown":
        return {"heatmaps": outputs.heatmaps}
    return {"logits": outputs.logits, "boxes": outputs.boxes}


@pytest.mark.parametrize(
    ("family", "file_name"),
    [("bottomup", "bottomup.pth"), ("bottomup", "bottomup.safetensors"),
     ("topdown", "topdown.pth"), ("detector", "detector.pth")],
)  # fmt: skip
def test_old_weights_give_the_outputs_they_gave(
    family: str, file_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = torch.load(OLD / "outputs.pt", weights_only=True)[family]
    loaded = load_model(OLD / file_name)
    assert loaded.task.family == family
    with torch.no_grad():
        found = named_outputs(
            family, loaded.model(fixed_input().contiguous(memory_format=torch.channels_last))
        )
    for name, value in expected.items():
        assert torch.allclose(found[name], value, atol=1e-5), name
    assert "is now" not in capsys.readouterr().err  # a stored config's old names: no notice


def test_old_bottomup_settings_land_in_the_new_section() -> None:
    loaded = load_model(OLD / "bottomup.pth")
    section = loaded.cfg.bottomup
    assert section.targets.sigma == 5.0 and section.loss.foreground_weight == 2.0
    assert section.augment.flip_prob == 0.3 and section.inference.input_height == 64


def test_old_checkpoint_validates_and_exports_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from posekit.data.synthetic.generate import generate_synthetic

    data = tmp_path / "data"
    generate_synthetic(data, num_train=1, num_val=2, size=(96, 96), seed=3)
    labels, images = str(data / "val.json"), str(data / "val")
    for family in ("bottomup", "topdown", "detector"):
        code = main(["val", "--weights", str(OLD / f"{family}.pth"), "--json",
                     "--val-labels", labels, "--val-images-folder", images])  # fmt: skip
        assert code == 0, capsys.readouterr().err
        metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert "AP" in metrics
    out = tmp_path / "old.onnx"
    assert main(["export", "--weights", str(OLD / "bottomup.pth"), "--format", "onnx",
                 "--out", str(out)]) == 0  # fmt: skip
    assert out.is_file()


def test_old_config_file_loads_as_the_new_one_with_one_notice(
    capsys: pytest.CaptureFixture[str],
) -> None:
    old = load_config(OLD / "lw_openpose_synthetic.yaml")
    notice = capsys.readouterr().err.strip().splitlines()
    assert len(notice) == 1
    assert "'data.augment' is now 'bottomup.augment'" in notice[0]
    assert "'loss' is now 'bottomup.loss'" in notice[0]
    assert "'inference.input_height' is now 'bottomup.inference.input_height'" in notice[0]
    assert old == load_config(CONFIGS / "lw_openpose" / "synthetic.yaml")
    assert capsys.readouterr().err == ""  # the shipped config uses the new names


def test_config_show_prints_the_new_form(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", str(OLD / "lw_openpose_synthetic.yaml")]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert "loss" not in shown and "targets" not in shown and "augment" not in shown["data"]
    assert shown["bottomup"]["loss"]["foreground_weight"] == 10.0
    assert shown["bottomup"]["inference"]["input_height"] == 256
    assert shown["inference"] == {"bf16": False}
