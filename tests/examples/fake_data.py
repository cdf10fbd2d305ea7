"""Tiny ReID file trees of real JPEG files, for tests of the data, training and evaluation code.

Each identity gets its own colour (plus noise), so a model can tell identities apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, pid: int, size: tuple[int, int], rng: np.random.Generator) -> None:
    """Write a ``size = (height, width)`` image of identity ``pid`` (format from the suffix)."""
    colour = np.random.default_rng(abs(pid) + 1).integers(0, 256, 3)
    noise = rng.integers(-20, 21, (*size, 3))
    pixels = np.clip(colour + noise, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _ids(ids: int | Iterable[int], first: int = 1) -> list[int]:
    return list(range(first, first + ids)) if isinstance(ids, int) else list(ids)


def make_market_tree(
    root: Path,
    ids: int | Sequence[int],
    cams: int,
    per_cam: int,
    size: tuple[int, int] = (32, 16),
    *,
    test_ids: int | Sequence[int] | None = None,
    junk: int = 0,
    distractors: int = 0,
    duke_names: bool = False,
    seed: int = 0,
) -> Path:
    """Write a Market-1501 (or, with ``duke_names``, DukeMTMC) tree under ``root`` and return it.

    * ``bounding_box_train/``: ``per_cam`` images of each training id in each of ``cams``
      cameras (ids ``1..ids`` for an int);
    * ``query/``: one image per test id and camera;
    * ``bounding_box_test/``: ``per_cam`` more images per test id and camera, plus ``junk``
      images of id ``-1`` and ``distractors`` of id ``0000`` (Market names only).

    ``test_ids`` defaults to as many ids as ``ids``, numbered after them.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    train_ids = _ids(ids)
    if test_ids is None:
        test_ids = _ids(len(train_ids), first=max(train_ids) + 1)
    test_ids = _ids(test_ids)
    frame = iter(range(1, 10**6))

    def name(pid: int, cam: int) -> str:
        if duke_names:
            return f"{pid:04d}_c{cam}_f{next(frame):07d}.jpg"
        pid_text = "-1" if pid == -1 else f"{pid:04d}"
        return f"{pid_text}_c{cam}s1_{next(frame):06d}_01.jpg"

    def write(folder: str, pids: Iterable[int], count: int) -> None:
        for pid in pids:
            for cam in range(1, cams + 1):
                for _ in range(count):
                    write_image(root / folder / name(pid, cam), pid, size, rng)

    write("bounding_box_train", train_ids, per_cam)
    write("query", test_ids, 1)
    write("bounding_box_test", test_ids, per_cam)
    for _ in range(junk):
        write_image(root / "bounding_box_test" / name(-1, 1), -1, size, rng)
    for _ in range(distractors):
        write_image(root / "bounding_box_test" / name(0, 2), 0, size, rng)
    return root


def make_test_only_tree(
    root: Path,
    query_folder: str,
    gallery_folder: str,
    ids: int | Sequence[int],
    per_id: int,
    size: tuple[int, int] = (32, 16),
    *,
    numbered: bool = True,
    per_id_folders: bool = False,
    suffix: str = ".jpg",
    seed: int = 0,
) -> Path:
    """Write a query/gallery tree without cameras (Partial-REID, Partial-iLIDS, Occluded-REID).

    Names ``PPP_NN<suffix>`` (``numbered``) or ``PPP<suffix>`` (then ``per_id`` must be 1),
    inside ``<folder>/PPP/`` when ``per_id_folders``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    for folder in (query_folder, gallery_folder):
        for pid in _ids(ids):
            for number in range(1, per_id + 1):
                stem = f"{pid:03d}_{number:02d}" if numbered else f"{pid:03d}"
                parent = root / folder / f"{pid:03d}" if per_id_folders else root / folder
                write_image(parent / f"{stem}{suffix}", pid, size, rng)
    return root
