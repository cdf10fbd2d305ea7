"""The synthetic occluded benchmark: Market-1501 layout, protocol, occlusion, determinism, cache."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from examples.oamn.synthetic import (
    COMPLETE_MARKER,
    FOLDERS,
    MANIFEST,
    OCCLUDER_KINDS,
    contact_sheet,
    generate_synthetic_reid,
)
from examples.oamn.synthetic.__main__ import main

# Market-1501's own pattern (the one ReID code bases parse it with) and the full file name.
MARKET_PATTERN = re.compile(r"([-\d]+)_c(\d)")
FILE_NAME = re.compile(r"^(-1|\d{4})_c(\d)s1_(\d{6})_(\d{2})\.jpg$")

SMALL = {
    "seed": 3,
    "num_train_ids": 12,
    "num_test_ids": 14,
    "cameras": 4,
    "images_per_id_per_camera": 2,
    "queries_per_id": 3,
    "num_distractors": 3,
    "num_junk": 2,
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return generate_synthetic_reid(tmp_path_factory.mktemp("synthetic"), **SMALL)


@pytest.fixture(scope="module")
def manifest(dataset) -> dict:
    return json.loads((dataset / MANIFEST).read_text())


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def parse(folder: Path) -> list[tuple[int, int, str]]:
    """(pid, camera, name) of every image, parsed the way Market-1501 readers do."""
    items = []
    for path in sorted(folder.iterdir()):
        pid, camera = map(int, MARKET_PATTERN.search(path.name).groups())
        items.append((pid, camera, path.name))
    return items


def cameras_by_pid(folder: Path) -> dict[int, list[int]]:
    cameras = defaultdict(list)
    for pid, camera, _ in parse(folder):
        cameras[pid].append(camera)
    return cameras


def test_layout_and_names(dataset) -> None:
    assert sorted(p.name for p in dataset.iterdir()) == sorted(
        [*FOLDERS.values(), MANIFEST, COMPLETE_MARKER]
    )
    names = [p.name for folder in FOLDERS.values() for p in (dataset / folder).iterdir()]
    assert all(FILE_NAME.match(name) for name in names)
    for folder in ("bounding_box_train", "bounding_box_test", "query"):
        unique_names = {name for _, _, name in parse(dataset / folder)}
        assert len(unique_names) == len(list((dataset / folder).iterdir()))
    with Image.open(next((dataset / "query").iterdir())) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (64, 128))


def test_identities_and_cameras_per_split(dataset) -> None:
    num_train, num_test = SMALL["num_train_ids"], SMALL["num_test_ids"]
    train = parse(dataset / "bounding_box_train")
    gallery = parse(dataset / "bounding_box_test")
    assert {pid for pid, _, _ in train} == set(range(1, num_train + 1))
    people = {pid for pid, _, _ in gallery if pid > 0}
    assert people == set(range(num_train + 1, num_train + num_test + 1))
    assert sum(pid == 0 for pid, _, _ in gallery) == SMALL["num_distractors"]
    assert sum(pid == -1 for pid, _, _ in gallery) == SMALL["num_junk"]
    for folder in (dataset / "bounding_box_train", dataset / "bounding_box_test"):
        for pid, cameras in cameras_by_pid(folder).items():
            assert all(1 <= camera <= SMALL["cameras"] for camera in cameras)
            if pid > 0:
                per_camera = np.unique(cameras, return_counts=True)[1]
                assert len(per_camera) >= 2
                assert set(per_camera.tolist()) == {SMALL["images_per_id_per_camera"]}


def test_queries_follow_the_market_protocol(dataset) -> None:
    query = cameras_by_pid(dataset / "query")
    gallery = cameras_by_pid(dataset / "bounding_box_test")
    assert set(query) == {pid for pid in gallery if pid > 0}
    for pid, cameras in query.items():
        assert len(set(cameras)) == len(cameras)  # one query per camera
        assert len(cameras) == min(SMALL["queries_per_id"], len(set(gallery[pid])))
        for camera in cameras:
            assert set(gallery[pid]) - {camera}  # a cross-camera match exists
    holistic = sorted(p.name for p in (dataset / "query_holistic").iterdir())
    assert holistic == sorted(p.name for p in (dataset / "query").iterdir())


def test_manifest_counts_match_the_files(dataset, manifest) -> None:
    counts = manifest["counts"]
    assert counts["train_images"] == len(list((dataset / "bounding_box_train").iterdir()))
    assert counts["gallery_images"] == len(list((dataset / "bounding_box_test").iterdir()))
    assert counts["query_images"] == len(list((dataset / "query").iterdir()))
    assert counts["query_ids"] == SMALL["num_test_ids"]
    assert counts["distractor_images"] == SMALL["num_distractors"]
    assert counts["junk_images"] == SMALL["num_junk"]
    listed = sorted(query["file"] for query in manifest["queries"])
    assert listed == [name for _, _, name in parse(dataset / "query")]


def test_no_single_region_identifies_a_person(manifest) -> None:
    table = np.array(
        [manifest["identities"][str(pid)] for pid in range(1, len(manifest["identities"]) + 1)]
    )
    assert len(np.unique(table, axis=0)) == len(table)
    columns = {name: index for index, name in enumerate(manifest["attributes"])}
    num_train = SMALL["num_train_ids"]
    for split in (table[:num_train], table[num_train:]):
        for attributes in manifest["regions"].values():
            region = split[:, [columns[name] for name in attributes]]
            _, wearers = np.unique(region, axis=0, return_counts=True)
            assert wearers.min() >= 3  # min_share, both splits hold >= 2 * 3 identities


def test_occlusion_in_manifest(manifest) -> None:
    queries = manifest["queries"]
    assert {q["location"] for q in queries} == {"top", "bottom", "left", "right"}
    assert {q["occluder"] for q in queries} <= set(OCCLUDER_KINDS)
    assert len({q["occluder"] for q in queries}) >= 4
    for query in queries:
        side = 128 if query["location"] in ("top", "bottom") else 64
        assert 0.25 <= query["fraction"] <= 0.5
        assert query["lines"] == round(query["fraction"] * side)


def band_profile(occluded: np.ndarray, holistic: np.ndarray, location: str) -> np.ndarray:
    """Mean absolute difference of each line, counted from the occluded side inwards."""
    diff = np.abs(occluded.astype(np.float64) - holistic.astype(np.float64)).mean(axis=2)
    lines = diff.mean(axis=1) if location in ("top", "bottom") else diff.mean(axis=0)
    return lines[::-1] if location in ("bottom", "right") else lines


def test_occlusion_in_pixels(dataset, manifest) -> None:
    for query in manifest["queries"]:
        occluded = np.asarray(Image.open(dataset / "query" / query["file"]))
        holistic = np.asarray(Image.open(dataset / "query_holistic" / query["file"]))
        profile = band_profile(occluded, holistic, query["location"])
        lines = query["lines"]
        # The camera blur spreads the band by one line, JPEG to the end of its 8x8 block;
        # beyond that the two shots (same sensor noise) decode to the same pixels.
        untouched_from = -(-(lines + 1) // 8) * 8
        assert profile[untouched_from:].max() == 0
        assert np.median(profile[: lines - 2]) > 12.0  # the band is hidden
        assert (profile[: lines - 2] > 2.0).all()


def test_same_seed_same_bytes_other_seed_other_images(dataset, tmp_path) -> None:
    again = generate_synthetic_reid(tmp_path / "a", **SMALL)
    assert again.name == dataset.name
    assert contents(again) == contents(dataset)
    other = generate_synthetic_reid(tmp_path / "b", **{**SMALL, "seed": 4})
    assert other.name != dataset.name
    first, second = contents(dataset), contents(other)
    shared = [name for name in first if name in second and name.endswith(".jpg")]
    assert all(first[name] != second[name] for name in shared)
    assert sorted(first) != sorted(second)


def test_cache_hit_does_not_rewrite(tmp_path) -> None:
    kwargs = {**SMALL, "num_train_ids": 2, "num_test_ids": 2}
    path = generate_synthetic_reid(tmp_path, **kwargs)
    (path / "query" / "stray.txt").write_text("kept on a cache hit")
    stamps = {p: p.stat().st_mtime_ns for p in path.rglob("*")}
    assert generate_synthetic_reid(tmp_path, **kwargs) == path
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert (path / "query" / "stray.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no staging folder left
    assert generate_synthetic_reid(tmp_path, **{**kwargs, "width": 48}) != path


def test_incomplete_cache_is_regenerated(tmp_path) -> None:
    kwargs = {**SMALL, "num_train_ids": 2, "num_test_ids": 2}
    path = generate_synthetic_reid(tmp_path, **kwargs)
    expected = contents(path)
    (path / COMPLETE_MARKER).unlink()
    for image in list((path / "query").iterdir())[1:]:
        image.unlink()  # a crash half-way through
    (path / "query" / "stray.txt").write_text("left by the crash")
    assert generate_synthetic_reid(tmp_path, **kwargs) == path
    assert contents(path) == expected


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"seed": -1}, ValueError, r"seed must be >= 0, got -1"),
        ({"seed": 1.5}, TypeError, "seed must be an int, got float"),
        ({"num_train_ids": 0}, ValueError, "num_train_ids must be >= 1"),
        ({"num_test_ids": True}, TypeError, "num_test_ids must be an int, got bool"),
        ({"num_train_ids": 9000, "num_test_ids": 1000}, ValueError, "<= 9999"),
        ({"cameras": 1}, ValueError, r"cameras must be in \[2, 9\], got 1"),
        ({"cameras": 10}, ValueError, r"cameras must be in \[2, 9\]"),
        ({"images_per_id_per_camera": 0}, ValueError, "images_per_id_per_camera must be >= 1"),
        ({"queries_per_id": 0}, ValueError, "queries_per_id must be >= 1"),
        ({"height": 16}, ValueError, "height must be >= 32"),
        ({"width": "64"}, TypeError, "width must be an int, got str"),
        ({"occlusion_range": (0.5, 0.25)}, ValueError, "0 < low <= high < 1"),
        ({"occlusion_range": (0.0, 0.5)}, ValueError, "0 < low <= high < 1"),
        ({"occlusion_range": 0.3}, TypeError, r"occlusion_range must be a \(low, high\) pair"),
        (
            {"occlusion_range": (0.251, 0.259)},
            ValueError,
            "holds no whole line of a 64-pixel width",
        ),
        ({"occluder_kinds": ("pole", "tree")}, ValueError, r"unknown \['tree'\]"),
        ({"occluder_kinds": "pole"}, TypeError, "occluder_kinds must be a sequence of names"),
        ({"occluder_kinds": ()}, ValueError, "occluder_kinds must be non-empty"),
        ({"locations": ("top", "top")}, ValueError, "locations must list each name once"),
        ({"locations": ("middle",)}, ValueError, r"locations: unknown \['middle'\]"),
        ({"min_share": 0}, ValueError, "min_share must be >= 1"),
        ({"num_junk": -1}, ValueError, "num_junk must be >= 0"),
        ({"jpeg_quality": 100}, ValueError, r"jpeg_quality must be in \[1, 95\]"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        generate_synthetic_reid(tmp_path, **kwargs)


def test_bad_root() -> None:
    with pytest.raises(TypeError, match=r"root must be a path"):
        generate_synthetic_reid(None)


def test_restricted_occluders_and_locations(tmp_path) -> None:
    path = generate_synthetic_reid(
        tmp_path,
        **{**SMALL, "occluder_kinds": ("wall",), "locations": ("left",)},
        occlusion_range=(0.375, 0.375),
    )
    queries = json.loads((path / MANIFEST).read_text())["queries"]
    assert {(q["occluder"], q["location"], q["lines"]) for q in queries} == {("wall", "left", 24)}


def test_contact_sheet(dataset, tmp_path) -> None:
    sheet = contact_sheet(dataset, num_queries=3, gallery_per_query=2, zoom=1)
    assert sheet.size == (4 * 64 + 3 * 4, 3 * 128 + 2 * 4)
    first = json.loads((dataset / MANIFEST).read_text())["queries"][0]
    occluded = np.asarray(Image.open(dataset / "query" / first["file"]))
    np.testing.assert_array_equal(np.asarray(sheet)[:128, 68:132], occluded)
    with pytest.raises(FileNotFoundError, match=r"no manifest\.json in"):
        contact_sheet(tmp_path)
    with pytest.raises(ValueError, match="zoom must be an int >= 1"):
        contact_sheet(dataset, zoom=0)


def test_command_line(tmp_path, capsys) -> None:
    sheet = tmp_path / "sheet.png"
    argv = [str(tmp_path / "data"), "--num-train-ids", "2", "--num-test-ids", "2"]
    path = main([*argv, "--images-per-id-per-camera", "1", "--sheet", str(sheet)])
    assert str(path) in capsys.readouterr().out
    assert (path / COMPLETE_MARKER).is_file()
    assert sheet.is_file()
