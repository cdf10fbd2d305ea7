r"""Reading one folder of images: identity and camera from each file name, by a pattern.

Files in the folder are handled as follows:

* names starting with ``.`` (``.DS_Store``, macOS ``._0002_c1s1_...jpg`` forks) and files whose
  extension is not in :data:`IMAGE_EXTENSIONS` (``Thumbs.db``, ``readme.txt``) are skipped, as
  are folders (and other non-files) named like images;
* a symbolic link to an image is followed; a broken one (missing target, or a loop) with an
  image extension is an error naming the link and its target, not a silent gap in the split;
* images whose names do not match the pattern are an error that lists them (a renamed or
  foreign image would otherwise change the protocol silently), as is a missing folder or a
  folder with no image.

The standard dataset layouts built on it are :mod:`~examples.oamn.data.layouts`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from . import verify
from .items import ReIDItem

__all__ = ["IMAGE_EXTENSIONS", "parse_folder"]

#: File extensions read as images (compared case-insensitively); other files are skipped.
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

PathLike = str | os.PathLike


def parse_folder(
    folder: PathLike,
    pattern: str | re.Pattern[str],
    *,
    camid: int | None = None,
    recursive: bool = False,
    layout: str = "",
) -> tuple[ReIDItem, ...]:
    r"""Read the images of one folder, taking identity and camera from each file name.

    Args:
        folder: the folder to read.
        pattern: regular expression that must match each image's whole file name (not its
            path), with a named group ``(?P<pid>...)`` and optionally ``(?P<camid>...)``,
            both integers (``-1`` allowed).
        camid: camera of every image, for patterns without a ``camid`` group.
        recursive: also read the sub-folders (Occluded-REID keeps one folder per identity).
        layout: description of the expected layout, added to error messages.

    Returns:
        the images sorted by path, with absolute paths and the parsed (not relabelled) ids.

    Raises:
        FileNotFoundError: ``folder`` does not exist, or holds broken symbolic links named like
            images (the message lists them with their targets).
        ValueError: a bad pattern, no image in the folder, or misnamed images (the first 10).

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> for name in ("0002_c1_f01.jpg", "0007_c3_f02.jpg", "Thumbs.db"):
        ...     (folder / name).touch()
        >>> items = parse_folder(folder, r"(?P<pid>\d+)_c(?P<camid>\d)_f\d+\.jpg")
        >>> [(item.path.name, item.pid, item.camid) for item in items]
        [('0002_c1_f01.jpg', 2, 1), ('0007_c3_f02.jpg', 7, 3)]
    """
    regex = _compile_pattern(pattern)
    has_camid = "camid" in regex.groupindex
    if has_camid == (camid is not None):
        raise ValueError(
            "pass camid=<int> exactly when pattern has no (?P<camid>...) group; pattern "
            f"{regex.pattern!r} {'has' if has_camid else 'has no'} camid group, camid={camid!r}"
        )
    folder = Path(folder).expanduser().absolute()
    where = f"\nExpected layout:\n{layout}" if layout else ""
    if not folder.is_dir():
        raise FileNotFoundError(
            f"image folder {folder} does not exist; create it or fix the dataset root.{where}"
        )
    files = folder.rglob("*") if recursive else folder.iterdir()
    items, broken, misnamed = [], [], []
    for path in sorted(files):
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if not path.is_file():  # a folder named like an image, or a broken link
            link = _broken_link(path)
            if link is not None:
                broken.append(link)
            continue
        match = regex.fullmatch(path.name)
        if match is None:
            misnamed.append(str(path))
        else:
            items.append(
                ReIDItem(path, int(match["pid"]), int(match["camid"]) if has_camid else camid)
            )
    if misnamed:
        raise ValueError(
            f"{len(misnamed)} image(s) in {folder} do not match the file-name pattern "
            f"{regex.pattern!r}:{verify.listing(misnamed)}\n"
            f"Rename or remove them, or pass the right dataset name / pattern.{where}"
        )
    if broken:
        raise FileNotFoundError(
            f"{len(broken)} broken symbolic link(s) named like images in {folder}:"
            f"{verify.listing(broken)}\n"
            "Point them at existing images or remove them."
        )
    if not items:
        raise ValueError(
            f"no image ({', '.join(IMAGE_EXTENSIONS)}) found in {folder}"
            f"{' or its sub-folders' if recursive else ''}; the split is empty: copy the "
            f"images there or fix the dataset root.{where}"
        )
    return tuple(items)


def _broken_link(path: Path) -> str | None:
    """``link -> target (reason)`` if ``path`` is a symbolic link whose target cannot be read."""
    if not path.is_symlink():
        return None
    try:
        path.stat()
    except OSError as error:  # a missing target, a loop of links, no permission
        return f"{path} -> {os.readlink(path)} ({error.strerror or error})"
    return None


def _compile_pattern(pattern: str | re.Pattern[str]) -> re.Pattern[str]:
    if isinstance(pattern, re.Pattern):
        regex = pattern
    elif isinstance(pattern, str):
        try:
            regex = re.compile(pattern)
        except re.error as error:
            raise ValueError(
                f"pattern {pattern!r} is not a valid regular expression: {error}"
            ) from error
    else:
        raise TypeError(f"pattern must be a str or re.Pattern, got {type(pattern).__name__}")
    if "pid" not in regex.groupindex:
        raise ValueError(
            f"pattern {regex.pattern!r} needs a named group (?P<pid>...) for the identity"
        )
    return regex
