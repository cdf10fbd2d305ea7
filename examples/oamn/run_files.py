"""The files of a run directory: written atomically, listed, and cleared.

Every file is written to ``NAME.partial`` in the same folder, flushed to the disk (``fsync``)
and renamed over ``NAME``, and the folder itself is synced: a process killed at any moment
leaves each file either as it was or as it was meant to be, plus at most one ``.partial``
leftover, which :func:`remove_leftovers` deletes. The rename is atomic on POSIX file systems
and on NTFS.

A failed write (a full disk, a permission) raises an ``OSError`` that names the file;
:func:`os_error_message` turns it into the one line a command prints.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = [
    "PARTIAL_SUFFIX",
    "RUN_FILE_PATTERNS",
    "os_error_message",
    "remove_leftovers",
    "remove_run",
    "run_files",
    "write_atomic",
]

PARTIAL_SUFFIX = ".partial"
#: The files of a training run (``examples.oamn.train``), as glob patterns.
RUN_FILE_PATTERNS = ("config.json", "log.json", "log.csv", "checkpoint_*.pt")


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> None:
    """Write ``data`` (text is UTF-8 encoded) to ``path`` atomically.

    Args:
        path: the destination; its folder must exist.
        data: the file's whole contents.

    Raises:
        OSError: the write failed (no space, no permission, ...); ``path`` is unchanged, no
            ``.partial`` file is left, and the error's ``filename`` is ``path``.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "log.json"
        >>> write_atomic(path, "[]\\n")
        >>> path.read_text(), sorted(p.name for p in path.parent.iterdir())
        ('[]\\n', ['log.json'])
    """
    path = Path(path)
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    payload = data.encode() if isinstance(data, str) else data
    try:
        _write_synced(partial, payload)
        os.replace(partial, path)
    except OSError as error:
        _remove_quietly(partial)
        # ENOSPC from a write names no file; the user needs to know which one failed.
        raise OSError(error.errno, error.strerror or str(error), str(path)) from error
    except BaseException:
        _remove_quietly(partial)
        raise
    _sync_folder(path.parent)


def _remove_quietly(path: Path) -> None:
    """Remove a leftover if the file system lets us: on a read-only one the removal fails too,
    and the error to report is the write's."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _write_synced(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` and flush it to the disk."""
    with path.open("wb") as file:
        file.write(payload)
        file.flush()
        os.fsync(file.fileno())


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; folders cannot be opened on Windows)."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def run_files(run_dir: str | os.PathLike[str]) -> list[Path]:
    """The training-run files (:data:`RUN_FILE_PATTERNS`) in ``run_dir``, sorted; ``[]`` for a
    folder that does not exist."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return sorted({path for pattern in RUN_FILE_PATTERNS for path in run_dir.glob(pattern)})


def remove_leftovers(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Delete the ``*.partial`` files an interrupted write left in ``run_dir``; return them."""
    leftovers = sorted(Path(run_dir).glob("*" + PARTIAL_SUFFIX))
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


def remove_run(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Delete a run's files (:func:`run_files` and leftovers) from ``run_dir``, and nothing
    else (other files the user keeps there stay); return them."""
    removed = run_files(run_dir)
    for path in removed:
        path.unlink()
    return removed + remove_leftovers(run_dir)


def os_error_message(error: OSError) -> str:
    """The message of a failed file operation: the path and the cause.

    A data-loader worker's error arrives with the worker's traceback in its message; only its
    last line, the error itself, is kept.

    Example:
        >>> import errno
        >>> os_error_message(OSError(errno.ENOSPC, "No space left on device", "runs/a/log.json"))
        'runs/a/log.json: No space left on device'
    """
    if error.filename is not None and error.strerror:
        return f"{os.fsdecode(error.filename)}: {error.strerror}"
    message = str(error) or type(error).__name__
    if message.startswith("Caught ") and "\nOriginal Traceback" in message:
        last = message.strip().splitlines()[-1]
        return last.removeprefix(f"{type(error).__name__}: ")
    return message
