"""Reading images with errors that name the file and split, and checking whole splits up front.

A dataset with one bad file should fail before training starts, with the file named, not in the
middle of an epoch with ``OSError: image file is truncated``. :func:`verify_images` opens and
fully decodes every image (``PIL.Image.Image.verify`` would miss truncated JPEGs) in a thread pool
(Pillow releases the GIL while decoding) and reports all failures in one error;
:func:`read_image` is the reader of :class:`~examples.oamn.data.ImageDataset`, whose errors name
the file, the split and the cause.

Failures, as worded in the errors: ``empty file (0 bytes)``, ``image file is truncated ...``
(Pillow's text), ``not an image (Pillow cannot identify its format)``, ``decompression bomb ...``
(more pixels than ``PIL.Image.MAX_IMAGE_PIXELS``, about 89 M by default; Pillow only warns below
twice that, but no ReID crop comes near it), the system's reason for a missing or unreadable file,
and ``<ExceptionType>: <message>`` for any other decoder error.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from .items import ReIDItem

__all__ = ["read_image", "verify_images"]

#: Failures listed in the error of :func:`verify_images`; the others are counted.
MAX_LISTED = 10

PathLike = str | os.PathLike

#: Errors that :func:`read_image` re-raises as the same type (with a message naming the file).
_KEPT_ERRORS = (FileNotFoundError, IsADirectoryError, PermissionError, UnidentifiedImageError)


def read_image(path: PathLike, split: str = "unnamed") -> Image.Image:
    """Open and fully decode an image as RGB.

    Args:
        path: the image file.
        split: the split it belongs to, named in the error.

    Returns:
        the decoded RGB image.

    From the first call on, Pillow's ``DecompressionBombWarning`` is ignored in the process:
    such an image is this function's error instead.

    Raises:
        OSError: the file cannot be read or decoded; the message names the file, the split and
            the cause, e.g. ``cannot read image /x/0002_c1s1_000451_03.jpg (train split): image
            file is truncated (141 bytes not processed)``. A missing file, a folder, no permission
            and an unknown format keep their subclass (``FileNotFoundError``,
            ``IsADirectoryError``, ``PermissionError``, ``PIL.UnidentifiedImageError``).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "bad.jpg"
        >>> path.write_text("not a JPEG")
        10
        >>> read_image(path, "train")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        PIL.UnidentifiedImageError: cannot read image /.../bad.jpg (train split): not an image ...
    """
    _ignore_bomb_warnings()
    try:
        return _decode(path)
    except Exception as error:  # Pillow's decoders raise many types for corrupt files
        kind = type(error) if type(error) in _KEPT_ERRORS else OSError
        raise kind(f"cannot read image {path} ({split} split): {_describe(path, error)}") from error


def _ignore_bomb_warnings() -> None:
    """Keep an ignore filter for Pillow's ``DecompressionBombWarning`` first in the warning
    filters: :func:`_decode` reports such an image as an error, which the warning would only
    repeat. A filter is added only when another one came first (normally once a process): a
    ``catch_warnings`` block per image would reset Python's once-only warnings each time."""
    first = warnings.filters[0] if warnings.filters else None
    if first is None or first[0] != "ignore" or first[2] is not Image.DecompressionBombWarning:
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def verify_images(
    splits: Mapping[str, Sequence[ReIDItem]],
    *,
    workers: int | None = None,
    progress: bool = False,
) -> None:
    """Open and fully decode every image of every split; raise one error listing the failures.

    Args:
        splits: the images of each split by split name, e.g. ``{"train": dataset.train,
            "query": dataset.query, "gallery": dataset.gallery}``; empty splits are fine.
        workers: decoding threads; ``None``: ``min(8, os.cpu_count())``.
        progress: show a tqdm progress bar.

    Raises:
        ValueError: some images cannot be read. The message gives their number and lists the
            first ones as ``split: path: reason`` (the reasons are in the module docstring), and
            says how to skip the check.
        TypeError: a split holds something other than :class:`ReIDItem` records.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> folder = Path(tempfile.mkdtemp())
        >>> Image.new("RGB", (16, 32)).save(folder / "good.jpg")
        >>> (folder / "empty.jpg").touch()
        >>> verify_images({"query": [ReIDItem(folder / "good.jpg", 1, 1)]})
        >>> verify_images({"gallery": [ReIDItem(folder / "empty.jpg", 1, 1)]})
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: 1 of 1 images cannot be read (each was opened and fully decoded):
          gallery: /.../empty.jpg: empty file (0 bytes)
        Replace or remove these files, or pass verify_images=False
        (--no-verify-images for training) to skip this check.
    """
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1 or None, got {workers!r}")
    jobs = []
    for split, items in splits.items():
        for item in items:
            if not isinstance(item, ReIDItem):
                raise TypeError(
                    f"split {split!r} must hold ReIDItem records, got a {type(item).__name__}"
                )
            jobs.append((split, item.path))
    failures = []
    # Every failure is reported in the error: silence Pillow's warning for the images between
    # MAX_IMAGE_PIXELS and twice that (set once here: catch_warnings is not thread-safe).
    with (
        warnings.catch_warnings(),
        ThreadPoolExecutor(workers) as pool,
        tqdm(total=len(jobs), desc="verifying images", unit="img", disable=not progress) as bar,
    ):
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        for (split, path), reason in zip(
            jobs, pool.map(_problem, [p for _, p in jobs]), strict=True
        ):
            if reason is not None:
                failures.append(f"{split}: {path}: {reason}")
            bar.update()
    if failures:
        raise ValueError(
            f"{len(failures):,} of {len(jobs):,} images cannot be read (each was opened and fully "
            f"decoded):{listing(failures)}\nReplace or remove these files, or pass "
            "verify_images=False (--no-verify-images for training) to skip this check."
        )


def listing(lines: Sequence[str]) -> str:
    """The first :data:`MAX_LISTED` of ``lines``, each on a new indented line, and how many
    more there are, for error messages.

    Example:
        >>> listing(["a", "b"])
        '\\n  a\\n  b'
    """
    shown = "".join(f"\n  {line}" for line in lines[:MAX_LISTED])
    hidden = len(lines) - MAX_LISTED
    return shown + (f"\n  ... and {hidden:,} more" if hidden > 0 else "")


def _decode(path: PathLike) -> Image.Image:
    with Image.open(path) as file:
        width, height = file.size
        limit = Image.MAX_IMAGE_PIXELS
        # Pillow raises above 2 * limit but only warns above limit.
        if limit is not None and width * height > limit:
            raise Image.DecompressionBombError(
                f"{width}x{height} = {width * height:,} pixels, over "
                f"PIL.Image.MAX_IMAGE_PIXELS = {limit:,}"
            )
        return file.convert("RGB")


def _problem(path: PathLike) -> str | None:
    try:
        _decode(path)
    except Exception as error:  # Pillow's decoders raise many types for corrupt files
        return _describe(path, error)
    return None


def _describe(path: PathLike, error: Exception) -> str:
    """The cause of a read failure, in words that do not repeat the path."""
    try:
        empty = os.path.getsize(path) == 0
    except OSError:
        empty = False
    if empty:
        return "empty file (0 bytes)"
    if isinstance(error, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"decompression bomb: {error}"
    if isinstance(error, UnidentifiedImageError):
        return "not an image (Pillow cannot identify its format)"
    if isinstance(error, OSError):
        # strerror: "No such file or directory" without the path that str(error) repeats.
        return error.strerror or str(error) or type(error).__name__
    return f"{type(error).__name__}: {error}"
