"""Exclusive locks on what a command writes: a run directory, an evaluation's outputs.

Two commands writing one folder at once would mix their files (one run's configuration beside
the other's checkpoints) or delete each other's. Each command therefore takes a lock on what
it writes before it looks at what is there, and holds it until it ends; a second command is
refused at once, with the holder's process id, host, start time and command line.

A lock is an advisory ``flock`` on a lock file: ``FOLDER/.lock`` for a folder
(:func:`lock_folder`), ``.NAME.lock`` beside a file (:func:`lock_file`). The kernel drops it
when the holding process ends in any way, SIGKILL included, so a lock file that a killed
process left never blocks: the next command takes it. The file stays (removing it while others
may be opening it would let two processes lock two different files of one name); it holds the
holder's record while the lock is held and is empty otherwise. Processes forked while a lock
is held (data-loader workers) do not hold it. The lock works between the processes of one
machine; on a network file system only where it supports ``flock`` across machines (NFS 4 on
Linux does). Where the file system has no locks (``ENOLCK``, ``EOPNOTSUPP``) or on a system
without ``fcntl`` (Windows), a warning says so and the command goes on unlocked.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shlex
import socket
import sys
import time
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from .run_files import make_parent

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = ["InUseError", "lock_file", "lock_folder"]

#: The lock file of a locked folder, inside it.
FOLDER_LOCK_NAME = ".lock"

#: Lock file descriptors held by this process, closed in forked children: a child keeping a
#: copy open would keep the lock alive after its parent was killed.
_HELD: set[int] = set()
#: ``flock``'s errors on file systems without locks: the command goes on unlocked.
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def _close_held_in_child() -> None:
    for descriptor in _HELD:
        with contextlib.suppress(OSError):
            os.close(descriptor)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_held_in_child)


class InUseError(OSError):
    """Another process holds the lock of ``filename`` (``errno.EBUSY``); the message names
    it and says what to do.

    Example:
        >>> error = InUseError("runs/a", {"pid": 4242, "host": "h", "started": "09:00:00",
        ...                    "command": "python -m examples.oamn.train"}, "--output-dir")
        >>> print(error.strerror)  # doctest: +NORMALIZE_WHITESPACE
        in use by process 4242 on h since 09:00:00 (python -m examples.oamn.train): wait for
        it to end, or pass another --output-dir
    """

    def __init__(self, target: str | os.PathLike[str], holder: dict[str, Any], option: str):
        if holder.get("pid") is None:
            who = "another process"
        else:
            who = f"process {holder['pid']}"
            if holder.get("host"):
                who += f" on {holder['host']}"
            if holder.get("started"):
                who += f" since {holder['started']}"
            if holder.get("command"):
                who += f" ({_shortened(holder['command'])})"
        reason = f"in use by {who}: wait for it to end, or pass another {option}"
        super().__init__(errno.EBUSY, reason, os.fspath(target))
        self.holder = holder


@contextlib.contextmanager
def lock_folder(folder: str | os.PathLike[str], *, option: str) -> Iterator[Path]:
    """Hold the exclusive lock of ``folder`` (created if missing) for the ``with`` block.

    Args:
        folder: the folder a command writes into.
        option: the command-line option that chose it, for the refusal's advice.

    Yields:
        ``folder`` as a ``Path``.

    Raises:
        InUseError: another process holds it (an ``OSError``: the commands print it as one line).
        OSError: the folder or its lock file cannot be created (the error names it), or
            ``flock`` fails for another reason than a file system without locks.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> with lock_folder(folder, option="--output-dir"):
        ...     with lock_folder(folder, option="--output-dir"):  # doctest: +ELLIPSIS
        ...         pass
        Traceback (most recent call last):
        ...
        examples.oamn.locking.InUseError: [Errno 16] in use by process ...
        >>> (folder / ".lock").read_text()  # released: no holder
        ''
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder / FOLDER_LOCK_NAME, folder, option):
        yield folder


@contextlib.contextmanager
def lock_file(path: str | os.PathLike[str], *, option: str) -> Iterator[Path]:
    """Hold the exclusive lock of the file ``path`` (which need not exist; its folder is
    created) for the ``with`` block; the lock file is ``.NAME.lock`` beside it.

    Args:
        path: the file a command writes.
        option: the command-line option that chose it, for the refusal's advice.

    Yields:
        ``path`` as a ``Path``.

    Raises:
        InUseError: another process holds it.
        OSError: the folder or the lock file cannot be created (the error names it), or
            ``flock`` fails for another reason than a file system without locks.
    """
    path = Path(path)
    make_parent(path)
    with _locked(path.with_name(f".{path.name}.lock"), path, option):
        yield path


@contextlib.contextmanager
def _locked(lock_path: Path, target: Path, option: str) -> Iterator[None]:
    descriptor = _acquire(lock_path, target, option) if fcntl is not None else None
    if descriptor is None:
        warnings.warn(
            f"{lock_path.parent}: no file locking here (a file system without locks, or no "
            f"fcntl): nothing stops another command from writing {target} at the same time",
            stacklevel=4,
        )
    owner = os.getpid()
    try:
        yield
    finally:
        # A forked child leaving the block (its copy of the descriptor is closed, and the
        # number may name another file now) must not touch its parent's lock.
        if descriptor is not None and os.getpid() == owner:
            _HELD.discard(descriptor)
            with contextlib.suppress(OSError):  # a record left behind names a dead process
                os.ftruncate(descriptor, 0)
            os.close(descriptor)


def _acquire(lock_path: Path, target: Path, option: str) -> int | None:
    """Open and lock ``lock_path``, write the holder's record into it; return the descriptor
    (``None`` where the file system has no locks)."""
    try:
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)  # the umask decides
    except OSError as error:
        raise OSError(error.errno, error.strerror, str(lock_path)) from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(descriptor)
        os.close(descriptor)
        raise InUseError(target, holder, option) from None
    except OSError as error:
        os.close(descriptor)
        if error.errno in _NO_LOCKS:
            return None
        reason = f"cannot lock it: {error.strerror}"
        raise OSError(error.errno, reason, str(lock_path)) from None
    try:
        record = json.dumps(_holder_record()).encode()
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, record, 0)
    except OSError as error:  # a full disk: the lock holds, only the record is missing
        warnings.warn(
            f"{lock_path}: the lock holder's record could not be written ({error.strerror})",
            stacklevel=5,
        )
    _HELD.add(descriptor)
    return descriptor


def _holder_record() -> dict[str, Any]:
    argv = getattr(sys, "orig_argv", sys.argv)
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now().isoformat(sep=" ", timespec="seconds"),
        "command": shlex.join(argv),
    }


def _read_holder(descriptor: int) -> dict[str, Any]:
    """The holder's record; ``{}`` if it cannot be read within half a second (a holder that
    has only just taken the lock writes it right after)."""
    for _ in range(50):
        try:
            record = json.loads(os.pread(descriptor, 65536, 0))
        except (OSError, ValueError):
            record = None
        if isinstance(record, dict):
            return record
        time.sleep(0.01)
    return {}


def _shortened(command: str, limit: int = 120) -> str:
    """``command`` on one line (a ``python -c`` script has several), at most ``limit`` long."""
    command = " ".join(command.split())
    return command if len(command) <= limit else command[: limit - 3] + "..."
