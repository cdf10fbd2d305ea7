"""The files of a run directory: written atomically, listed, and cleared.

Every file is written to a temporary ``NAME.<pid>-<random>.partial`` in the same folder, flushed
to the disk (``fsync``) and renamed over ``NAME``, and the folder itself is synced: a process
killed at any moment leaves each file either as it was or as it was meant to be, plus the
``.partial`` leftover of the write it was killed in, which the next command writing that file
deletes (:func:`remove_leftovers`). The rename is atomic on POSIX file systems and on NTFS. The
temporary's name is unique to the process and the call, so two writers of one file never write
into each other's temporary (the last rename wins; the commands lock what they write,
:mod:`~examples.oamn.locking`, so that this does not happen).

JSON files are strict (:func:`write_json`: no ``NaN`` or ``Infinity``, which JSON does not
have; a non-finite number is written as ``null``).

A failed write (a full disk, a permission) raises an ``OSError`` that names the file;
:func:`os_error_message` turns it into the one line a command prints.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import math
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "PARTIAL_SUFFIX",
    "RUN_FILE_PATTERNS",
    "finite_or_none",
    "make_parent",
    "os_error_message",
    "partial_target",
    "remove_leftovers",
    "remove_run",
    "run_files",
    "write_atomic",
    "write_json",
]

PARTIAL_SUFFIX = ".partial"
#: The files of a training run (``examples.oamn.train``), as glob patterns.
RUN_FILE_PATTERNS = ("config.json", "log.json", "log.csv", "checkpoint_*.pt")
#: ``NAME.<pid>-<hex>.partial`` (and ``NAME.partial``, the name before it was made unique).
_PARTIAL_NAME = re.compile(r"(?P<target>.+?)(?:\.\d+-[0-9a-f]+)?" + re.escape(PARTIAL_SUFFIX))


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
    token = f".{os.getpid()}-{secrets.token_hex(4)}{PARTIAL_SUFFIX}"
    partial = path.with_name(path.name + token)
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
    """Write ``payload`` to the new file ``path`` and flush it to the disk."""
    with path.open("xb") as file:
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


def make_parent(path: str | os.PathLike[str]) -> None:
    """Create the folder of the file ``path`` (and its parents).

    Raises:
        NotADirectoryError: a file stands where the folder should be (``mkdir`` would say
            "File exists", which misleads); the error names it.
    """
    folder = Path(path).parent
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
    folder.mkdir(parents=True, exist_ok=True)


def run_files(run_dir: str | os.PathLike[str]) -> list[Path]:
    """The training-run files (:data:`RUN_FILE_PATTERNS`) in ``run_dir``, sorted; ``[]`` for a
    folder that does not exist."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return sorted({path for pattern in RUN_FILE_PATTERNS for path in run_dir.glob(pattern)})


def partial_target(partial: str | os.PathLike[str]) -> str | None:
    """The name of the file a temporary of :func:`write_atomic` was written for; ``None`` for
    a name that is not such a temporary's.

    Example:
        >>> partial_target("runs/a/log.json.4242-9f3c21aa.partial"), partial_target("log.json")
        ('log.json', None)
    """
    match = _PARTIAL_NAME.fullmatch(Path(partial).name)
    return None if match is None else match["target"]


def remove_leftovers(
    folder: str | os.PathLike[str], patterns: Iterable[str] = RUN_FILE_PATTERNS
) -> list[Path]:
    """Delete the temporaries that interrupted writes of the files named by ``patterns`` (glob
    patterns; default: a training run's files) left in ``folder``; return them.

    Only the caller's own files: the temporaries of other files in the folder (an evaluation's
    metrics beside a run's checkpoints) may belong to a write in progress.
    """
    patterns = tuple(patterns)
    leftovers = sorted(
        path
        for path in Path(folder).glob("*" + PARTIAL_SUFFIX)
        if any(fnmatch.fnmatchcase(partial_target(path) or "", p) for p in patterns)
    )
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


def write_json(path: str | os.PathLike[str], value: Any, indent: int = 2) -> None:
    """Write ``value`` as strict, indented JSON to ``path``, atomically (:func:`write_atomic`).

    Non-finite floats (a metric without any valid query) are written as ``null``
    (:func:`finite_or_none`): ``NaN`` and ``Infinity`` are not JSON, and strict readers refuse
    them.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "metrics.json"
        >>> write_json(path, {"mAP": float("nan"), "R1": [0.5, 1.0]}, indent=None)
        >>> path.read_text()
        '{"mAP": null, "R1": [0.5, 1.0]}\\n'
    """
    text = json.dumps(finite_or_none(value), indent=indent, allow_nan=False)
    write_atomic(path, text + "\n")


def finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float, in any nesting of dicts, lists and tuples,
    replaced by ``None`` (tuples become lists, as in JSON).

    Example:
        >>> finite_or_none({"a": [1.0, float("inf")], "b": (float("nan"), "x")})
        {'a': [1.0, None], 'b': [None, 'x']}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(item) for item in value]
    return value


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
