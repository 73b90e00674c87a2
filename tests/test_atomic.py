"""Atomic writes: all or nothing, and the mode a plain open() gives under the umask."""

from __future__ import annotations

import os
import stat

import pytest

from posekit.atomic import atomic_open, atomic_write_bytes, atomic_write_text, current_umask


@pytest.fixture
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)

    previous = os.umask(0o022)
    os.umask(previous)
    yield set_mask
    os.umask(previous)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077, 0o000])
def test_written_file_has_the_mode_open_would_give(tmp_path, umask, mask):
    umask(mask)
    assert current_umask() == mask
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    with open(tmp_path / "plain.bin", "wb") as handle:
        handle.write(b"x")
    mode = stat.S_IMODE((tmp_path / "a.bin").stat().st_mode)
    assert mode == 0o666 & ~mask
    assert mode == stat.S_IMODE((tmp_path / "plain.bin").stat().st_mode)


def test_group_can_read_under_a_group_umask(tmp_path, umask):
    umask(0o002)
    atomic_write_text(tmp_path / "results.csv", "a,b\n")
    assert (tmp_path / "results.csv").stat().st_mode & stat.S_IRGRP


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as handle:
        handle.write("new")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
