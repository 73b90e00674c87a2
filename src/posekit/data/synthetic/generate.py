"""The built-in synthetic COCO keypoint data set: procedural people with exact labels.

``generate_synthetic(out_dir, num_train, num_val)`` writes::

    out_dir/train/000000000001.jpg ...    out_dir/train.json   image ids 1..num_train
    out_dir/val/000001000001.jpg ...      out_dir/val.json     image ids 1_000_001.. (if num_val)

Each JSON is a COCO keypoint file (``info``, ``licenses``, ``images``, ``annotations``,
``categories`` = COCO's person category with the 17 keypoint names and the 1-based skeleton),
written atomically after all of its images. Every image is rendered from its own generator,
``np.random.default_rng([seed, split_code, index])``, so any chunking or worker count gives the
same bytes for the same seed.

Drawing, boxes and polygons use continuous coordinates with pixel centres at +0.5 (COCO's
mask convention); keypoints are written in pixel-index coordinates (centre of pixel c at c,
so drawing position - 0.5), the convention of posekit's targets and decoding. A box
[x, y, w, h] spans whole pixels. Visibility follows the
rendering: 2 visible, 1 covered by someone or something in front, 0 (with x = y = 0) outside
the frame or, for face points, hidden behind the person's own head (see
:mod:`posekit.data.synthetic.scene`). Segmentation polygons follow the visible silhouette's
outer pixel edges; ``area`` is its pixel count and ``bbox`` its tight pixel box. Crowd regions
(``iscrowd`` 1) carry an RLE mask and no keypoints. Scene content: :class:`SceneParams`.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import orjson

from posekit.atomic import atomic_write_bytes
from posekit.data.synthetic.scene import SceneParams, render_scene
from posekit.errors import UserError
from posekit.schema import COCO17_KEYPOINTS, COCO17_SKELETON

__all__ = [
    "SceneParams",
    "SyntheticPaths",
    "auto_workers",
    "generate_synthetic",
    "parse_size",
    "person_category",
    "render_image",
    "render_scene",
    "run_synth",
]

# split: (seed code, image id offset, annotation id offset)
SPLITS = {"train": (0, 0, 0), "val": (1, 1_000_000, 100_000_000)}
MAX_IMAGES_PER_SPLIT = 999_999
JPEG_QUALITY = 92
PARALLEL_MIN_IMAGES = 600  # below this a worker pool costs more than it saves
CHUNK_IMAGES = 64
STAMP_NAME = "synthetic.json"
PIXEL_CONVENTION = (
    "boxes and polygons: pixel (c, r) covers [c, c+1) x [r, r+1); "
    "keypoints: pixel index coordinates, the centre of pixel (c, r) is (c, r)"
)
_SIZE_PATTERN = re.compile(r"\s*(\d+)\s*[xX]\s*(\d+)\s*")
_SIZE_LIMITS = (32, 8192)


@dataclass(frozen=True)
class SyntheticPaths:
    train_labels: Path
    train_images: Path
    val_labels: Path | None = None
    val_images: Path | None = None


@dataclass(frozen=True)
class _SplitStats:
    images: int
    people: int
    crowds: int


def person_category() -> dict[str, Any]:
    """COCO's person category: 17 keypoint names and the 1-based skeleton."""
    return {
        "id": 1,
        "name": "person",
        "supercategory": "person",
        "keypoints": list(COCO17_KEYPOINTS),
        "skeleton": [[a + 1, b + 1] for a, b in COCO17_SKELETON],
    }


def render_image(
    seed: int, split: str, index: int, size: tuple[int, int], params: SceneParams
) -> tuple[bytes, list[dict[str, Any]]]:
    """JPEG bytes and annotations (without ids) of image ``index`` (0-based) of ``split``."""
    rng = np.random.default_rng([seed, SPLITS[split][0], index])
    image, people = render_scene(rng, size, params)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return encoded.tobytes(), people


def generate_synthetic(
    out_dir: Path,
    num_train: int,
    num_val: int = 0,
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    params: SceneParams | None = None,
    workers: int = 1,
) -> SyntheticPaths:
    """Write the synthetic data set; ``size`` is (width, height).

    ``workers`` > 1 renders in a pool of spawned processes (same bytes as serial). Spawned
    workers re-import the caller's ``__main__``, so only ask for them from a script with an
    ``if __name__ == "__main__":`` guard (``posekit synth`` does this on its own).
    """
    paths, _ = _generate(Path(out_dir), num_train, num_val, size, seed, params, workers)
    return paths


def _generate(
    out_dir: Path,
    num_train: int,
    num_val: int,
    size: tuple[int, int],
    seed: int,
    params: SceneParams | None,
    workers: int,
) -> tuple[SyntheticPaths, dict[str, _SplitStats]]:
    _check_request(num_train, num_val, size, seed)
    params = params if params is not None else SceneParams()
    size = (int(size[0]), int(size[1]))
    with _chunk_mapper(workers) as mapper:
        stats = {"train": _write_split(out_dir, "train", num_train, size, seed, params, mapper)}
        if num_val > 0:
            stats["val"] = _write_split(out_dir, "val", num_val, size, seed, params, mapper)
    stamp = synthetic_stamp(num_train, num_val, size, seed, params)
    atomic_write_bytes(out_dir / STAMP_NAME, orjson.dumps(stamp, option=orjson.OPT_INDENT_2))
    has_val = num_val > 0
    paths = SyntheticPaths(
        train_labels=out_dir / "train.json",
        train_images=out_dir / "train",
        val_labels=out_dir / "val.json" if has_val else None,
        val_images=out_dir / "val" if has_val else None,
    )
    return paths, stats


def synthetic_stamp(
    num_train: int, num_val: int, size: tuple[int, int], seed: int, params: SceneParams | None
) -> dict[str, Any]:
    """What a generated folder was made with (written last, as ``synthetic.json``)."""
    scene = asdict(params if params is not None else SceneParams())
    return {
        "train_images": int(num_train),
        "val_images": int(num_val),
        "size": [int(size[0]), int(size[1])],
        "seed": int(seed),
        "scene": orjson.loads(orjson.dumps(scene)),
    }


def synthetic_is_current(
    out_dir: Path, num_train: int, num_val: int, size: tuple[int, int], seed: int
) -> bool:
    """True when ``out_dir`` holds a complete data set made with these settings."""
    stamp_path = Path(out_dir) / STAMP_NAME
    try:
        found = orjson.loads(stamp_path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return False
    return found == synthetic_stamp(num_train, num_val, size, seed, None)


def _check_request(num_train: int, num_val: int, size: tuple[int, int], seed: int) -> None:
    if not 1 <= num_train <= MAX_IMAGES_PER_SPLIT:
        raise UserError(
            f"synthetic data: number of images {num_train} must be 1..{MAX_IMAGES_PER_SPLIT}"
        )
    if not 0 <= num_val <= MAX_IMAGES_PER_SPLIT:
        raise UserError(
            f"synthetic data: number of val images {num_val} must be 0..{MAX_IMAGES_PER_SPLIT}"
        )
    low, high = _SIZE_LIMITS
    if len(size) != 2 or not all(low <= int(v) <= high for v in size):
        raise UserError(
            f"synthetic data: image size {size!r} must be (width, height), each {low}..{high}"
        )
    if seed < 0:
        raise UserError(f"synthetic data: seed {seed} must be >= 0")


def _write_split(
    out_dir: Path,
    split: str,
    count: int,
    size: tuple[int, int],
    seed: int,
    params: SceneParams,
    mapper: Callable,
) -> _SplitStats:
    image_dir = out_dir / split
    image_dir.mkdir(parents=True, exist_ok=True)
    chunks = [
        (str(image_dir), split, seed, size, params, start, min(start + CHUNK_IMAGES, count))
        for start in range(0, count, CHUNK_IMAGES)
    ]
    results = [item for chunk in mapper(_render_chunk, chunks) for item in chunk]
    dataset = _coco_dataset(split, seed, size, params, results)
    atomic_write_bytes(out_dir / f"{split}.json", orjson.dumps(dataset))
    annotations = dataset["annotations"]
    crowds = sum(1 for a in annotations if a["iscrowd"])
    return _SplitStats(count, len(annotations) - crowds, crowds)


@contextlib.contextmanager
def _chunk_mapper(workers: int) -> Iterator[Callable]:
    """``map``, or a pool's ordered ``map`` over spawned processes (safe beside torch/OpenCV)."""
    if workers <= 1:
        yield map
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool.map


def auto_workers(count: int) -> int:
    """2 processes for big data sets on machines with 2+ cores, else 1."""
    return 2 if count >= PARALLEL_MIN_IMAGES and (os.cpu_count() or 1) >= 2 else 1


def _render_chunk(task: tuple) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Render and write images ``start..stop-1``; return (image record, annotations) pairs."""
    image_dir, split, seed, size, params, start, stop = task
    results = []
    for index in range(start, stop):
        image_id = SPLITS[split][1] + index + 1
        file_name = f"{image_id:012d}.jpg"
        data, people = render_image(seed, split, index, size, params)
        _write_image(Path(image_dir) / file_name, data)
        record = {"id": image_id, "file_name": file_name, "width": size[0], "height": size[1]}
        results.append((record, people))
    return results


def _write_image(path: Path, data: bytes) -> None:
    """Write then rename, so an interrupted run never leaves a truncated JPEG behind.

    No fsync per image (too slow for thousands of files); the JSON, written last with
    :mod:`posekit.atomic`, is the commit point of a split.
    """
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _coco_dataset(
    split: str,
    seed: int,
    size: tuple[int, int],
    params: SceneParams,
    results: list[tuple[dict[str, Any], list[dict[str, Any]]]],
) -> dict[str, Any]:
    annotations = []
    next_id = SPLITS[split][2] + 1
    for record, people in results:
        for person in people:
            annotations.append(
                {"id": next_id, "image_id": record["id"], "category_id": 1, **person}
            )
            next_id += 1
    info = {
        "description": "posekit synthetic people",
        "version": "1",
        "split": split,
        "seed": seed,
        "size": list(size),
        "pixel_convention": PIXEL_CONVENTION,
        "scene_params": asdict(params),
    }
    images = [record for record, _ in results]
    return {
        "info": info,
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [person_category()],
    }


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` -> (width, height); a one-line :class:`UserError` otherwise."""
    match = _SIZE_PATTERN.fullmatch(str(text))
    low, high = _SIZE_LIMITS
    if match is None or not all(low <= int(v) <= high for v in match.groups()):
        raise UserError(
            f"--size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 256x256, each {low}..{high}"
        )
    return int(match.group(1)), int(match.group(2))


def run_synth(out: str, images: int, size: str = "256x256", seed: int = 0, val: int = 0) -> int:
    """``posekit synth``: write the data set and print a short summary; returns exit status 0."""
    width, height = parse_size(size)
    if images < 1:
        raise UserError(f"--images {images}: give at least 1 training image")
    if val < 0:
        raise UserError(f"--val {val}: give 0 or more validation images")
    if seed < 0:
        raise UserError(f"--seed {seed}: give a seed >= 0")
    start = time.perf_counter()
    workers = auto_workers(images + val)
    paths, stats = _generate(Path(out), images, val, (width, height), seed, None, workers)
    elapsed = time.perf_counter() - start
    total = sum(s.images for s in stats.values())
    people = sum(s.people for s in stats.values())
    crowds = sum(s.crowds for s in stats.values())
    print(
        f"synth: {images} train + {val} val images ({width}x{height}, seed {seed}), "
        f"{people} people, {crowds} crowd regions in {elapsed:.1f} s "
        f"({total / max(elapsed, 1e-9):.0f} images/s)"
    )
    print(f"  train: {paths.train_labels}  {paths.train_images}{os.sep}")
    if paths.val_labels is not None:
        print(f"  val:   {paths.val_labels}  {paths.val_images}{os.sep}")
    return 0
