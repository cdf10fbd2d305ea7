"""Bad image files: found up front by ``load_dataset(verify_images=True)``, named with their
split when read by ``ImageDataset``, and broken symbolic links refused by the layouts."""

from __future__ import annotations

import os
import shutil
import struct
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, UnidentifiedImageError

from examples.oamn.data import (
    ImageDataset,
    ReIDItem,
    build_test_loader,
    build_train_loader,
    load_dataset,
    read_image,
    test_transform,
    verify_images,
)

SKIP_HINT = "pass verify_images=False (--no-verify-images for training)"
SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


@pytest.fixture
def market(tiny_market: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny Market tree, free to damage."""
    return Path(shutil.copytree(tiny_market, tmp_path / "market"))


def _first_image(root: Path, split: str) -> Path:
    return sorted((root / SPLIT_FOLDERS[split]).glob("0*.jpg"))[0]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 20])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _text(path: Path) -> None:
    path.write_text("this is not a JPEG\n")


def _bomb(path: Path) -> None:
    """A 67-byte PNG whose header claims 20000 x 20000 pixels (400 M, over twice Pillow's limit)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)  # 8-bit greyscale
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated": (_truncate, "image file is truncated"),
    "empty": (_empty, "empty file (0 bytes)"),
    "text": (_text, "not an image (Pillow cannot identify its format)"),
    "bomb": (_bomb, "decompression bomb: Image size (400000000 pixels) exceeds limit"),
}


@pytest.mark.parametrize("split", ["train", "query", "gallery"])
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_verification_names_split_file_and_reason(market: Path, damage: str, split: str) -> None:
    write, reason = DAMAGE[damage]
    bad = _first_image(market, split)
    write(bad)
    total = sum(len(getattr(load_dataset("market1501", market), s)) for s in SPLIT_FOLDERS)
    with pytest.raises(ValueError, match="cannot be read") as info:
        load_dataset("market1501", market, verify_images=True)
    message = str(info.value)
    assert message.startswith(f"1 of {total} images cannot be read")
    assert f"\n  {split}: {bad}: {reason}" in message
    assert SKIP_HINT in message


def test_all_failures_are_collected_in_one_error(market: Path) -> None:
    bad = sorted((market / "bounding_box_test").glob("0*.jpg"))[:12]
    for path in bad:
        _empty(path)
    _text(_first_image(market, "train"))
    with pytest.raises(ValueError, match="cannot be read") as info:
        load_dataset("market1501", market, verify_images=True)
    lines = str(info.value).splitlines()
    assert lines[0].startswith("13 of ")
    # Splits in order train, query, gallery; files in path order; 10 listed, the rest counted.
    assert lines[1].startswith(f"  train: {_first_image(market, 'train')}: not an image")
    assert lines[2:11] == [f"  gallery: {path}: empty file (0 bytes)" for path in bad[:9]]
    assert lines[11] == "  ... and 3 more"
    assert SKIP_HINT in lines[12]


def test_pillow_warning_range_counts_as_a_bomb(
    market: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tree's images have 32 x 16 = 512 pixels: over a 300-pixel limit, under twice it, where
    # Pillow only warns. The check reports it, and the warning does not leak out.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)
    items = [ReIDItem(_first_image(market, "query"), 7, 1)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="1 of 1 images cannot be read") as info:
            verify_images({"query": items})
    assert (
        f"query: {items[0].path}: decompression bomb: 16x32 = 512 pixels, over "
        "PIL.Image.MAX_IMAGE_PIXELS = 300"
    ) in str(info.value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # read_image too reports it once, as its error
        with pytest.raises(OSError, match=r"\(query split\): decompression bomb: 16x32"):
            read_image(items[0].path, "query")


def test_clean_dataset_verifies_and_gives_the_same_items(market: Path, capsys) -> None:
    plain = load_dataset("market1501", market)
    verified = load_dataset("market1501", market, verify_images=True, progress=True)
    assert verified == plain
    assert "verifying images" in capsys.readouterr().err
    for workers in (1, 3):
        verify_images({"train": plain.train, "gallery": plain.gallery}, workers=workers)


def test_verification_is_off_by_default(market: Path) -> None:
    _empty(_first_image(market, "train"))
    assert len(load_dataset("market1501", market).train) == 36


def test_verify_images_argument_errors(market: Path) -> None:
    with pytest.raises(ValueError, match="workers must be an int >= 1"):
        verify_images({}, workers=0)
    with pytest.raises(TypeError, match="split 'query' must hold ReIDItem records, got a str"):
        verify_images({"query": [str(_first_image(market, "query"))]})


@pytest.mark.parametrize("verify", [False, True])
@pytest.mark.parametrize("target", ["0099_c1s1_000001_01.jpg", "loop"])
def test_broken_symlink_is_an_error_naming_link_and_target(
    market: Path, verify: bool, target: str
) -> None:
    folder = market / "query"
    link = folder / "0007_c1s1_999999_01.jpg"
    # "loop" points at itself: stat fails with "Too many levels of symbolic links".
    os.symlink(link.name if target == "loop" else target, link)
    with pytest.raises(FileNotFoundError, match="1 broken symbolic link") as info:
        load_dataset("market1501", market, verify_images=verify)
    reason = "Too many levels" if target == "loop" else "No such file or directory"
    assert f"{folder}:\n  {link} -> {link.name if target == 'loop' else target} ({reason}" in str(
        info.value
    )


def test_working_symlinks_are_followed_and_other_broken_links_skipped(market: Path) -> None:
    clean = load_dataset("market1501", market)
    gallery = market / "bounding_box_test"
    image = _first_image(market, "gallery")
    os.symlink(image, gallery / "0007_c9s1_999999_01.jpg")
    os.symlink("nowhere", gallery / ".#0007_c1s1_000001_01.jpg")  # an editor's lock file
    os.symlink("nowhere", gallery / "notes.txt")
    data = load_dataset("market1501", market, verify_images=True)
    assert len(data.gallery) == len(clean.gallery) + 1
    assert ReIDItem(gallery / "0007_c9s1_999999_01.jpg", 7, 9) in data.gallery


def test_train_loader_error_names_file_and_split(market: Path) -> None:
    data = load_dataset("market1501", market, verify_images=True)
    bad = {item.path for item in data.train if item.pid == 0}
    for path in bad:
        _truncate(path)  # damaged after the check
    # Every batch holds all 6 identities, so the first one reads a damaged image.
    loader = build_train_loader(data.train, 32, 16, 6, 2, seed=0, workers=0)
    loader.batch_sampler.set_epoch(0)
    with pytest.raises(OSError, match=r"\(train split\): image file is truncated") as info:
        next(iter(loader))
    path = Path(str(info.value).removeprefix("cannot read image ").split(" (train split)")[0])
    assert path in bad
    assert isinstance(info.value.__cause__, OSError)


def test_test_loader_error_names_split_through_a_worker(market: Path) -> None:
    data = load_dataset("market1501", market)
    _empty(data.query[-1].path)
    loader = build_test_loader(data.query, 32, 16, batch_size=64, workers=1, split="query")
    # The worker's OSError comes back as an OSError with the original message.
    with pytest.raises(OSError, match=r"\(query split\): empty file \(0 bytes\)") as info:
        next(iter(loader))
    assert f"cannot read image {data.query[-1].path} (query split)" in str(info.value)


@pytest.mark.parametrize(("damage", "split"), [("text", "gallery"), ("bomb", "unnamed")])
def test_image_dataset_item_error(market: Path, damage: str, split: str) -> None:
    path = _first_image(market, "gallery")
    write, reason = DAMAGE[damage]
    write(path)
    options = {} if split == "unnamed" else {"split": split}
    dataset = ImageDataset([ReIDItem(path, 7, 1)], test_transform(32, 16), **options)
    with pytest.raises(OSError, match="cannot read image") as info:
        dataset[0]
    assert str(info.value).startswith(f"cannot read image {path} ({split} split): {reason}")
    assert isinstance(info.value, UnidentifiedImageError) == (damage == "text")


def test_read_image_missing_file_and_split_type(tmp_path: Path) -> None:
    missing = tmp_path / "0001_c1s1_000001_01.jpg"
    with pytest.raises(FileNotFoundError, match="No such file or directory") as info:
        read_image(missing, "gallery")
    assert (
        str(info.value) == f"cannot read image {missing} (gallery split): No such file or directory"
    )
    with pytest.raises(TypeError, match="split must be a str"):
        ImageDataset([ReIDItem(missing, 1, 1)], test_transform(32, 16), split=None)
