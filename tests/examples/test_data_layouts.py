"""Dataset layouts on generated file trees and on the real subsets; their error messages."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from examples.oamn.data import (
    DATASETS,
    GALLERY_CAMID,
    QUERY_CAMID,
    ReIDItem,
    load_dataset,
    parse_folder,
    relabel_ids,
)
from tests.conftest import SHARED_DATA
from tests.examples.fake_data import make_market_tree, make_test_only_tree, write_image


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _pids(items: tuple[ReIDItem, ...]) -> Counter:
    return Counter(item.pid for item in items)


def test_market_counts_ids_and_cameras(tiny_market: Path) -> None:
    data = load_dataset("market1501", tiny_market)
    assert data.name == "market1501"
    assert data.root == tiny_market
    # 6 ids x 3 cameras x 2 images, relabelled 0..5 in the order of the original ids 1..6.
    assert _pids(data.train) == dict.fromkeys(range(6), 6)
    assert data.num_train_ids == 6
    assert {item.camid for item in data.train} == {1, 2, 3}
    assert _pids(data.query) == dict.fromkeys(range(7, 13), 3)
    # Test ids keep their original numbers; junk (-1) and distractors (0) stay in the gallery.
    assert _pids(data.gallery) == {-1: 2, 0: 2, **dict.fromkeys(range(7, 13), 6)}
    assert all(item.path.is_absolute() and item.path.is_file() for item in data.gallery)


def test_market_file_name_fields(tmp_path: Path) -> None:
    for folder, name in (
        ("bounding_box_train", "0002_c1s1_000451_03.jpg"),
        ("bounding_box_train", "0007_c6s2_012345_01.jpg"),
        ("query", "0001_c1s1_001051_00.jpg"),
        ("bounding_box_test", "0001_c4s1_001051_03.jpg"),
        ("bounding_box_test", "-1_c5s3_065312_01.jpg"),
        ("bounding_box_test", "0000_c2s1_000151_01.jpg"),
    ):
        write_image(tmp_path / folder / name, 1, (8, 4), _rng())
    data = load_dataset("market1501", tmp_path)
    assert [(i.path.name, i.pid, i.camid) for i in data.train] == [
        ("0002_c1s1_000451_03.jpg", 0, 1),
        ("0007_c6s2_012345_01.jpg", 1, 6),
    ]
    assert [(i.pid, i.camid) for i in data.query] == [(1, 1)]
    assert sorted((i.pid, i.camid) for i in data.gallery) == [(-1, 5), (0, 2), (1, 4)]


def test_market_drops_junk_from_train(tmp_path: Path) -> None:
    make_market_tree(tmp_path, ids=[3, 9], cams=2, per_cam=1)
    write_image(tmp_path / "bounding_box_train" / "-1_c1s1_000001_01.jpg", -1, (8, 4), _rng())
    data = load_dataset("market1501", tmp_path)
    assert _pids(data.train) == {0: 2, 1: 2}


@pytest.mark.parametrize("name", ["dukemtmc", "occluded_duke", "Occluded-Duke"])
def test_duke_layouts(tmp_path: Path, name: str) -> None:
    make_market_tree(tmp_path, ids=[5, 8], cams=8, per_cam=1, test_ids=[2], duke_names=True)
    data = load_dataset(name, tmp_path)
    assert data.name == name.lower().replace("-", "_")
    assert _pids(data.train) == {0: 8, 1: 8}
    assert {item.camid for item in data.train} == set(range(1, 9))
    assert _pids(data.query) == {2: 8}
    assert _pids(data.gallery) == {2: 8}
    assert data.train[0].path.name == "0005_c1_f0000001.jpg"


@pytest.mark.parametrize(
    ("name", "query", "gallery", "options"),
    [
        ("partial_reid", "partial_body_images", "whole_body_images", {}),
        ("partial_ilids", "Probe", "Gallery", {"numbered": False, "per_id": 1}),
        ("partial_ilids", "query", "gallery", {"numbered": False, "per_id": 1}),
        ("occluded_reid", "occluded_body_images", "whole_body_images", {"per_id_folders": True}),
        (
            "occluded_reid",
            "occluded_body_images",
            "whole_body_images",
            {"per_id_folders": True, "suffix": ".tif"},
        ),
    ],
)
def test_test_only_layouts(tmp_path: Path, name: str, query: str, gallery: str, options) -> None:
    per_id = options.pop("per_id", 3)
    make_test_only_tree(tmp_path, query, gallery, ids=[4, 17, 120], per_id=per_id, **options)
    data = DATASETS[name](tmp_path)
    assert data.train == ()
    assert data.num_train_ids == 0
    assert _pids(data.query) == dict.fromkeys([4, 17, 120], per_id)
    assert _pids(data.gallery) == dict.fromkeys([4, 17, 120], per_id)
    assert {item.camid for item in data.query} == {QUERY_CAMID}
    assert {item.camid for item in data.gallery} == {GALLERY_CAMID}
    assert all(item.path.parent.parent.name == query for item in data.query) == (
        "per_id_folders" in options
    )


def test_partial_reid_ignores_the_uncropped_folder(tmp_path: Path) -> None:
    make_test_only_tree(tmp_path, "partial_body_images", "whole_body_images", ids=2, per_id=1)
    make_test_only_tree(tmp_path, "occluded_body_images", "unused", ids=5, per_id=1)
    data = load_dataset("partial_reid", tmp_path)
    assert len(data.query) == 2


def test_skips_non_images_and_hidden_files(tiny_market: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(tiny_market, tmp_path / "market"))
    for junk_file in ("Thumbs.db", "readme.txt", "._0001_c1s1_000001_01.jpg", ".DS_Store"):
        (root / "bounding_box_test" / junk_file).write_bytes(b"not an image")
    (root / "query" / "sub.jpg").mkdir()  # a folder named like an image
    clean, dirty = load_dataset("market1501", tiny_market), load_dataset("market1501", root)
    for split in ("train", "query", "gallery"):
        want = [(i.path.relative_to(tiny_market), i.pid, i.camid) for i in getattr(clean, split)]
        got = [(i.path.relative_to(root), i.pid, i.camid) for i in getattr(dirty, split)]
        assert got == want


def test_summary_lists_each_split(tiny_market: Path) -> None:
    lines = load_dataset("market1501", tiny_market).summary().splitlines()
    assert lines[2].split() == ["train", "36", "6", "3"]
    assert lines[3].split() == ["query", "18", "6", "3"]
    assert lines[4].split() == ["gallery", "40", "8", "3"]


# --- errors -------------------------------------------------------------------------------


def test_unknown_dataset_lists_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown dataset 'cuhk03'; choose one of market1501, "):
        load_dataset("cuhk03", "/data")


def test_missing_root_names_it_and_the_layout(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=r"(?s)Market-1501 root .*nowhere.*query/"):
        load_dataset("market1501", missing)


@pytest.mark.parametrize("folder", ["bounding_box_train", "query", "bounding_box_test"])
def test_missing_split_folder(tiny_market: Path, tmp_path: Path, folder: str) -> None:
    root = Path(shutil.copytree(tiny_market, tmp_path / "market"))
    shutil.rmtree(root / folder)
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("market1501", root)
    message = str(info.value)
    assert f"{root / folder} does not exist" in message
    assert "Expected layout:" in message
    assert "0002_c1s1_000451_03.jpg" in message


def test_root_one_level_too_high_gets_a_hint(tiny_market: Path, tmp_path: Path) -> None:
    shutil.copytree(tiny_market, tmp_path / "Market-1501-v15.09.15")
    with pytest.raises(FileNotFoundError, match=r"Did you mean root=.*Market-1501-v15\.09\.15\?"):
        load_dataset("market1501", tmp_path)


def test_empty_split(tiny_market: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(tiny_market, tmp_path / "market"))
    for image in (root / "query").iterdir():
        image.unlink()
    (root / "query" / "Thumbs.db").touch()
    with pytest.raises(ValueError, match=r"(?s)no image .* found in .*query; the split is empty"):
        load_dataset("market1501", root)


def test_non_matching_image_name(tiny_market: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(tiny_market, tmp_path / "market"))
    bad = root / "bounding_box_test" / "person_7.jpg"
    write_image(bad, 7, (8, 4), _rng())
    with pytest.raises(ValueError, match="do not match the file-name pattern") as info:
        load_dataset("market1501", root)
    message = str(info.value)
    assert f"1 image(s) in {bad.parent} do not match the file-name pattern" in message
    assert f"\n  {bad}\n" in message
    assert "Rename or remove them" in message
    assert "Expected layout:" in message


def test_every_misnamed_image_is_listed_up_to_ten(tiny_market: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(tiny_market, tmp_path / "market"))
    bad = [root / "bounding_box_train" / f"person_{i:02d}.jpg" for i in range(12)]
    for path in bad:
        write_image(path, 7, (8, 4), _rng())
    with pytest.raises(ValueError, match=r"12 image\(s\) in .*bounding_box_train do not") as info:
        load_dataset("market1501", root)
    lines = str(info.value).splitlines()
    listed = [line.strip() for line in lines if line.startswith(f"  {root}/bounding_box_train/")]
    assert listed == [str(path) for path in bad[:10]]  # sorted, the first ten
    assert "\n  ... and 2 more\n" in str(info.value)


def test_duke_names_are_not_market_names(tmp_path: Path) -> None:
    make_market_tree(tmp_path, ids=1, cams=2, per_cam=1, duke_names=True)
    with pytest.raises(
        ValueError, match=r"do not match the file-name pattern (?s:.*)/0001_c1_f0000001\.jpg\n"
    ):
        load_dataset("market1501", tmp_path)


def test_junk_query_is_an_error(tiny_market: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(tiny_market, tmp_path / "market"))
    write_image(root / "query" / "-1_c1s1_000001_01.jpg", -1, (8, 4), _rng())
    with pytest.raises(ValueError, match=r"query image .*-1_c1s1_000001_01\.jpg has the junk id"):
        load_dataset("market1501", root)


def test_only_junk_in_train_is_an_error(tmp_path: Path) -> None:
    make_market_tree(tmp_path, ids=1, cams=2, per_cam=1, test_ids=[4])
    for image in (tmp_path / "bounding_box_train").iterdir():
        image.rename(image.with_name("-1" + image.name[4:]))
    with pytest.raises(ValueError, match=r"bounding_box_train holds only junk"):
        load_dataset("market1501", tmp_path)


# --- the generic parser -------------------------------------------------------------------


def test_parse_folder_with_fixed_camera_and_recursion(tmp_path: Path) -> None:
    for rel in ("a/12-x.png", "b/c/3-y.PNG", "top.txt"):
        path = tmp_path / rel
        if rel.endswith("txt"):
            path.touch()
        else:
            write_image(path, 1, (4, 4), _rng())
    items = parse_folder(tmp_path, r"(?P<pid>\d+)-\w\.(?i:png)", camid=7, recursive=True)
    assert [(i.path.relative_to(tmp_path).as_posix(), i.pid, i.camid) for i in items] == [
        ("a/12-x.png", 12, 7),
        ("b/c/3-y.PNG", 3, 7),
    ]
    with pytest.raises(ValueError, match="no image"):
        parse_folder(tmp_path, r"(?P<pid>\d+)-\w\.png", camid=7)


@pytest.mark.parametrize(
    ("pattern", "camid", "error", "match"),
    [
        (r"(?P<id>\d+)\.jpg", 0, ValueError, r"needs a named group \(\?P<pid>"),
        (r"(?P<pid>\d+\.jpg", 0, ValueError, "not a valid regular expression"),
        (r"(?P<pid>\d+)\.jpg", None, ValueError, "pass camid=<int> exactly when pattern has no"),
        (r"(?P<pid>\d+)_(?P<camid>\d)\.jpg", 1, ValueError, "has camid group, camid=1"),
        (42, 0, TypeError, "pattern must be a str or re.Pattern"),
    ],
)
def test_parse_folder_bad_pattern(tmp_path: Path, pattern, camid, error, match) -> None:
    with pytest.raises(error, match=match):
        parse_folder(tmp_path, pattern, camid=camid)


def test_parse_folder_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"image folder .*absent does not exist"):
        parse_folder(tmp_path / "absent", r"(?P<pid>\d+)\.jpg", camid=0)


def test_relabel_keeps_order_and_sorts_ids() -> None:
    items = [ReIDItem(Path(f"/x/{i}.jpg"), pid, 1) for i, pid in enumerate([40, 3, 40, 17])]
    assert [item.pid for item in relabel_ids(items)] == [2, 0, 2, 1]
    assert [item.path for item in relabel_ids(items)] == [item.path for item in items]


# --- the real subsets ---------------------------------------------------------------------


# (dataset, folder, (images, ids) of train / query / gallery, cameras) measured on the subsets.
REAL_SUBSETS = [
    ("market1501", "market1501_mini", [(1517, 80), (170, 40), (587, 40)], 6),
    ("occluded_duke", "occluded_duke_mini", [(2485, 120), (345, 80), (2991, 544)], 8),
]


@pytest.mark.parametrize(("name", "folder", "counts", "cameras"), REAL_SUBSETS)
def test_real_subsets(name: str, folder: str, counts, cameras: int) -> None:
    root = SHARED_DATA / folder
    if not root.is_dir():
        pytest.skip(f"real images not found at {root} (the shared data folder is absent)")
    data = load_dataset(name, root)
    splits = (data.train, data.query, data.gallery)
    assert [(len(items), len({item.pid for item in items})) for items in splits] == counts
    for items in splits:
        assert {item.camid for item in items} == set(range(1, cameras + 1))
    assert data.num_train_ids == counts[0][1]
    assert all(item.pid != -1 for item in data.query)
    assert {item.pid for item in data.train} == set(range(data.num_train_ids))
    assert {item.pid for item in data.query} <= {item.pid for item in data.gallery}
    # The Market subset's query is one image per (id, camera), as its README says.
    if name == "market1501":
        assert len({(item.pid, item.camid) for item in data.query}) == len(data.query)
