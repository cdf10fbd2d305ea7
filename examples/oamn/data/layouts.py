r"""Parsers of the standard ReID folder layouts.

Each split folder is read by :func:`~examples.oamn.data.folders.parse_folder` with the layout's
file-name pattern (hidden and non-image files skipped; broken links, misnamed images, missing
or empty folders are errors). The contents are not read, unless ``load_dataset(...,
verify_images=True)``: then every image of every split is opened and fully decoded first, and
one error lists the images that fail (empty, truncated, not an image, decompression bomb) as
``split: path: reason`` (see :mod:`examples.oamn.data.verify`).

Camera ids are kept as written in the names (Market ``c1``..``c6``, Duke ``c1``..``c8``); the
sets without cameras (Partial-REID, Partial-iLIDS, Occluded-REID) give every query camera ``0``
and every gallery image camera ``1``, so the same-camera filter of the protocol removes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import verify
from .folders import parse_folder
from .items import JUNK_PID, ReIDDataset, ReIDItem, relabel_ids

__all__ = [
    "DATASETS",
    "GALLERY_CAMID",
    "QUERY_CAMID",
    "dukemtmc",
    "load_dataset",
    "market1501",
    "occluded_duke",
    "occluded_reid",
    "partial_ilids",
    "partial_reid",
]

#: Camera of every query / gallery image of the sets that have no camera ids.
QUERY_CAMID = 0
GALLERY_CAMID = 1

PathLike = str | os.PathLike


@dataclass(frozen=True)
class _Layout:
    """Where the splits of one benchmark live and how their files are named."""

    title: str
    pattern: str
    example: str
    query: tuple[str, ...]  # accepted folder names, first one preferred
    gallery: tuple[str, ...]
    train: str | None = None
    cameras_in_names: bool = True
    per_id_folders: bool = False

    def describe(self, root: Path) -> str:
        entry = f"<id>/{self.example}" if self.per_id_folders else self.example
        folders = ([self.train] if self.train else []) + [
            " | ".join(self.query),
            " | ".join(self.gallery),
        ]
        tree = "\n".join(f"    {folder}/  {entry} ..." for folder in folders)
        return f"  {root}/  ({self.title})\n{tree}\n  file names: {self.pattern}"


_MARKET_PATTERN = r"(?P<pid>-1|\d+)_c(?P<camid>\d+)s\d+_\d+_\d+\.jpg"
_DUKE_PATTERN = r"(?P<pid>\d+)_c(?P<camid>\d+)_f\d+\.jpg"
_ANY_IMAGE = r"\.(?:jpe?g|png|bmp|tiff?|webp)"


def _standard_layout(title: str, pattern: str, example: str) -> _Layout:
    """The Market-1501 folder names, which DukeMTMC-reID and Occluded-DukeMTMC reuse."""
    return _Layout(
        title,
        pattern,
        example,
        train="bounding_box_train",
        query=("query",),
        gallery=("bounding_box_test",),
    )


_LAYOUTS = {
    "market1501": _standard_layout("Market-1501", _MARKET_PATTERN, "0002_c1s1_000451_03.jpg"),
    "dukemtmc": _standard_layout("DukeMTMC-reID", _DUKE_PATTERN, "0005_c2_f0046985.jpg"),
    "occluded_duke": _standard_layout("Occluded-DukeMTMC", _DUKE_PATTERN, "0005_c2_f0046985.jpg"),
    "partial_reid": _Layout(
        "Partial-REID",
        rf"(?P<pid>\d+)_\d+{_ANY_IMAGE}",
        "001_01.jpg",
        query=("partial_body_images",),
        gallery=("whole_body_images",),
        cameras_in_names=False,
    ),
    "partial_ilids": _Layout(
        "Partial-iLIDS",
        rf"(?P<pid>\d+){_ANY_IMAGE}",
        "001.jpg",
        query=("Probe", "probe", "query"),
        gallery=("Gallery", "gallery"),
        cameras_in_names=False,
    ),
    "occluded_reid": _Layout(
        "Occluded-REID",
        rf"(?P<pid>\d+)_\d+{_ANY_IMAGE}",
        "001_01.tif",
        query=("occluded_body_images",),
        gallery=("whole_body_images",),
        cameras_in_names=False,
        per_id_folders=True,
    ),
}


def _find_folder(root: Path, names: tuple[str, ...], layout: _Layout) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    # A common mistake is to pass the folder above the dataset (an archive's top folder).
    nested = sorted(
        child for child in root.iterdir() if child.is_dir() and (child / names[0]).is_dir()
    )
    hint = f" Did you mean root={nested[0]}?" if nested else ""
    raise FileNotFoundError(
        f"{layout.title} folder {root / names[0]} does not exist.{hint} Pass as root the folder "
        f"that holds the split folders.\nExpected layout:\n{layout.describe(root)}"
    )


def _read_layout(name: str, root: PathLike) -> ReIDDataset:
    layout = _LAYOUTS[name]
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise FileNotFoundError(
            f"{layout.title} root {root} does not exist or is not a folder.\nExpected layout:\n"
            f"{layout.describe(root)}"
        )
    tree = layout.describe(root)

    def read(names: tuple[str, ...], camid: int) -> tuple[ReIDItem, ...]:
        folder = _find_folder(root, names, layout)
        return parse_folder(
            folder,
            layout.pattern,
            camid=None if layout.cameras_in_names else camid,
            recursive=layout.per_id_folders,
            layout=tree,
        )

    train: tuple[ReIDItem, ...] = ()
    if layout.train is not None:
        all_train = read((layout.train,), QUERY_CAMID)
        train = relabel_ids([item for item in all_train if item.pid != JUNK_PID])
        if not train:
            raise ValueError(f"{root / layout.train} holds only junk (id -1) images")
    query = read(layout.query, QUERY_CAMID)
    junk_queries = [item.path for item in query if item.pid == JUNK_PID]
    if junk_queries:
        raise ValueError(
            f"query image {junk_queries[0]} has the junk id -1 ({len(junk_queries)} such "
            "queries); junk images belong in the gallery folder only: remove them from the query "
            "folder"
        )
    gallery = read(layout.gallery, GALLERY_CAMID)
    return ReIDDataset(name, root, train, query, gallery)


def market1501(root: PathLike) -> ReIDDataset:
    """Market-1501 (Zheng et al., ICCV 2015).

    Layout::

        root/
            bounding_box_train/  0002_c1s1_000451_03.jpg ...  12,936 images, 751 ids
            query/               0001_c1s1_001051_00.jpg ...   3,368 images, 750 ids
            bounding_box_test/   0001_c1s1_001051_03.jpg ...  19,732 images, incl. -1 / 0000

    File names ``PPPP_cCsS_FFFFFF_BB.jpg``: identity ``PPPP`` (``-1`` junk, ``0000``
    distractor, gallery only), camera ``C`` in 1..6, sequence ``S``, frame, box. The gallery
    keeps junk and distractors; junk in the training folder is dropped.

    Example:
        >>> market1501("/no/such/folder")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: Market-1501 root /no/such/folder does not exist ...
    """
    return _read_layout("market1501", root)


def dukemtmc(root: PathLike) -> ReIDDataset:
    """DukeMTMC-reID (Zheng et al., ICCV 2017).

    Layout::

        root/
            bounding_box_train/  0005_c2_f0046985.jpg ...  16,522 images, 702 ids
            query/               0005_c2_f0046985.jpg ...   2,228 images, 702 ids
            bounding_box_test/   0005_c2_f0046985.jpg ...  17,661 images, 1,110 ids

    File names ``PPPP_cC_fFFFFFFF.jpg``: identity, camera ``C`` in 1..8, frame.
    """
    return _read_layout("dukemtmc", root)


def occluded_duke(root: PathLike) -> ReIDDataset:
    """Occluded-DukeMTMC (Miao et al., ICCV 2019): DukeMTMC-reID re-split, all queries occluded.

    Layout (the same as DukeMTMC-reID)::

        root/
            bounding_box_train/  0005_c2_f0046985.jpg ...  15,618 images, 702 ids
            query/               0005_c2_f0046985.jpg ...   2,210 images, 519 ids
            bounding_box_test/   0005_c2_f0046985.jpg ...  17,661 images, 1,110 ids

    File names ``PPPP_cC_fFFFFFFF.jpg``: identity, camera ``C`` in 1..8, frame.
    """
    return _read_layout("occluded_duke", root)


def partial_reid(root: PathLike) -> ReIDDataset:
    """Partial-REID (Zheng et al., ICCV 2015): test only, 60 identities.

    Layout::

        root/
            partial_body_images/  001_01.jpg ...  300 partial queries      (camera 0)
            whole_body_images/    001_01.jpg ...  300 whole-body gallery   (camera 1)

    File names ``PPP_NN.<ext>``: identity ``PPP``, image number ``NN``. The distribution's
    ``occluded_body_images/`` (uncropped occluded images) is not part of the protocol and is
    ignored. ``train`` is empty: train on another set (Market-1501 in the paper).
    """
    return _read_layout("partial_reid", root)


def partial_ilids(root: PathLike) -> ReIDDataset:
    """Partial-iLIDS (Zheng et al., CVPR 2011; partial protocol of He et al.): test only.

    Layout (the folder names of the common distributions are all accepted)::

        root/
            Probe/   | probe/ | query/    001.jpg ...  119 partial queries   (camera 0)
            Gallery/ | gallery/         001.jpg ...  119 whole-body images (camera 1)

    File names ``PPP.<ext>``: the identity only. ``train`` is empty.
    """
    return _read_layout("partial_ilids", root)


def occluded_reid(root: PathLike) -> ReIDDataset:
    """Occluded-REID (Zhuo et al., ICME 2018): test only, 200 identities.

    Layout (one sub-folder per identity)::

        root/
            occluded_body_images/  001/001_01.tif ...  1,000 occluded queries (camera 0)
            whole_body_images/     001/001_01.tif ...  1,000 whole-body gallery (camera 1)

    File names ``PPP_NN.<ext>`` (``.tif`` in the distribution): identity ``PPP``, image
    number ``NN``. ``train`` is empty.
    """
    return _read_layout("occluded_reid", root)


#: The built-in layouts by name; each takes the dataset root.
DATASETS: dict[str, Callable[[PathLike], ReIDDataset]] = {
    "market1501": market1501,
    "dukemtmc": dukemtmc,
    "occluded_duke": occluded_duke,
    "partial_reid": partial_reid,
    "partial_ilids": partial_ilids,
    "occluded_reid": occluded_reid,
}


def load_dataset(
    name: str, root: PathLike, *, verify_images: bool = False, progress: bool = False
) -> ReIDDataset:
    """Read a built-in dataset by name (case and ``-`` / ``_`` do not matter).

    Args:
        name: a key of :data:`DATASETS`, e.g. ``"market1501"`` or ``"Occluded-Duke"``.
        root: the folder holding the dataset's split folders (see each parser's layout).
        verify_images: open and fully decode every image of every split before returning
            (:func:`~examples.oamn.data.verify_images`), so that a bad file stops the run now,
            named, instead of in the middle of an epoch. On a shared 2-core CPU this took 0.8 s
            for market1501_mini (2,274 images) and 12 to 16 s for occluded_duke_dev (30,860).
        progress: show a progress bar while verifying.

    Returns:
        the dataset; see :class:`ReIDDataset` for the id conventions.

    Raises:
        ValueError: unknown name (the message lists the choices), empty split, bad file name, or
            (``verify_images``) unreadable images: their number and the first ones as
            ``split: path: reason``.
        FileNotFoundError: missing root or split folder (the message shows the layout), or a
            broken symbolic link named like an image (the message names it and its target).

    Example:
        >>> load_dataset("cuhk03", "/data")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: unknown dataset 'cuhk03'; choose one of market1501, dukemtmc, ...
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    if key not in DATASETS:
        raise ValueError(
            f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)} (or read another "
            "layout with parse_folder)"
        )
    dataset = DATASETS[key](root)
    if verify_images:
        splits = {split: getattr(dataset, split) for split in ("train", "query", "gallery")}
        verify.verify_images(splits, progress=progress)
    return dataset
