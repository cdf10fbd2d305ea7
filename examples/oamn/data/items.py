"""Image records of a ReID benchmark: a :class:`ReIDItem` per image, in a :class:`ReIDDataset`."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["JUNK_PID", "ReIDDataset", "ReIDItem", "relabel_ids", "split_digest"]

#: Identity of junk images (Market-1501 ``-1_...`` gallery files): never a match, never a negative.
JUNK_PID = -1


@dataclass(frozen=True)
class ReIDItem:
    """One image of a ReID split.

    Attributes:
        path: absolute image path.
        pid: identity. Test splits keep the original ids, with ``-1`` junk and ``0`` distractors
            (Market-1501) as in the files; training splits are relabelled ``0..n-1``.
        camid: camera id as parsed from the file name (Market ``c3`` -> ``3``), or ``0`` for the
            queries and ``1`` for the gallery of the sets without cameras. Only equality matters.
    """

    path: Path
    pid: int
    camid: int


@dataclass(frozen=True)
class ReIDDataset:
    """The train, query and gallery splits of one benchmark.

    Attributes:
        name: dataset name, a key of ``DATASETS`` for the built-in layouts.
        root: the folder the splits were read from.
        train: training images, identities relabelled ``0..num_train_ids-1`` in the order of the
            sorted original ids, junk removed; ``()`` for test-only sets.
        query: query images with their original ids (never junk).
        gallery: gallery images with their original ids; junk ``-1`` and distractors ``0`` are
            kept (``oamn.reid_eval``'s ``junk_pids=(-1,)`` drops the former, the latter are ordinary
            negatives).

    Example:
        >>> item = ReIDItem(Path("/data/0002_c1s1_000451_03.jpg"), pid=0, camid=1)
        >>> ReIDDataset("toy", Path("/data"), train=(item,), query=(), gallery=()).num_train_ids
        1
    """

    name: str
    root: Path
    train: tuple[ReIDItem, ...]
    query: tuple[ReIDItem, ...]
    gallery: tuple[ReIDItem, ...]

    @property
    def num_train_ids(self) -> int:
        """Number of training identities (the classifier's size)."""
        return len({item.pid for item in self.train})

    def summary(self) -> str:
        """A small table of images, identities and cameras per split, for logs."""
        lines = [f"{self.name} ({self.root})", "split    images    ids  cameras"]
        for split in ("train", "query", "gallery"):
            items = getattr(self, split)
            ids = len({item.pid for item in items})
            cams = len({item.camid for item in items})
            lines.append(f"{split:<8} {len(items):>6} {ids:>6} {cams:>8}")
        return "\n".join(lines)


def relabel_ids(items: Sequence[ReIDItem]) -> tuple[ReIDItem, ...]:
    """Map the identities of ``items`` to ``0..n-1`` in the order of the sorted original ids.

    Args:
        items: images of one split; junk should have been removed first.

    Returns:
        the same images in the same order with relabelled ``pid``.

    Example:
        >>> items = [ReIDItem(Path(f"/x/{p}.jpg"), p, 1) for p in (7, 3, 7)]
        >>> [item.pid for item in relabel_ids(items)]
        [1, 0, 1]
    """
    label_of = {pid: label for label, pid in enumerate(sorted({item.pid for item in items}))}
    return tuple(ReIDItem(item.path, label_of[item.pid], item.camid) for item in items)


def split_digest(items: Sequence[ReIDItem]) -> str:
    """A BLAKE2b digest (32 hex digits) of a split's file names, identities and cameras, in
    order: equal for the same images wherever the dataset folder is, different for another
    dataset or another selection of it.

    Example:
        >>> name = "0002_c1s1_000451_03.jpg"
        >>> here, there = ReIDItem(Path("/data") / name, 0, 1), ReIDItem(Path("/copy") / name, 0, 1)
        >>> split_digest([here]) == split_digest([there]), split_digest([here]) == split_digest([])
        (True, False)
    """
    hasher = hashlib.blake2b(digest_size=16)
    for item in items:
        hasher.update(f"{item.path.name} {item.pid} {item.camid}\n".encode())
    return hasher.hexdigest()
