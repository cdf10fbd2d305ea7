"""How the commands end on an error they expect: one line, no traceback (and the lock of the
folder the training commands write, held meanwhile).

A file that cannot be read or written, a folder that another command is writing, settings that
cannot run here, a diverged training: the command prints ``PROG: error: MESSAGE`` and exits
with status 1. Ctrl-C prints ``PROG: interrupted; ADVICE`` (what was kept and how to go on)
and exits with status 130, as a shell reports a process stopped by SIGINT.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator

from .locking import lock_folder
from .run_files import os_error_message

__all__ = ["EXPECTED_ERRORS", "RERUN_TO_CONTINUE", "exit_on_errors", "locked_command"]

#: What a command that trains expects and words as one line: settings that cannot run here
#: (``ValueError``; ``ConnectionError``: weights to download offline), files that cannot be read
#: or written or are in use (``OSError``), a diverged training (``FloatingPointError``).
EXPECTED_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    ConnectionError,
    OSError,
    FloatingPointError,
)
#: What the commands that train several models (the demo, the study, the ablation) say after
#: Ctrl-C.
RERUN_TO_CONTINUE = (
    "what finished is kept; run the same command again to go on (it reuses the trained models, "
    "and a training resumes from its last finished epoch)"
)


@contextlib.contextmanager
def exit_on_errors(
    prog: str,
    kinds: tuple[type[Exception], ...],
    interrupted: Callable[[], str],
) -> Iterator[None]:
    """Turn the exceptions ``kinds`` raised in the block into a one-line exit, and Ctrl-C too.

    Args:
        prog: the command's name, e.g. ``"python -m examples.oamn.train"``.
        kinds: the exceptions that are the user's to fix (an ``OSError`` is worded by
            :func:`~examples.oamn.run_files.os_error_message`, naming the file); others keep
            their traceback.
        interrupted: what to tell after Ctrl-C, computed then (a checkpoint to resume from).

    Raises:
        SystemExit: with the one-line message (status 1), or status 130 after Ctrl-C.

    Example:
        >>> with exit_on_errors("tool", (ValueError,), lambda: "nothing was written"):
        ...     raise ValueError("--size must be >= 1, got 0")
        Traceback (most recent call last):
        ...
        SystemExit: tool: error: --size must be >= 1, got 0
    """
    try:
        yield
    except kinds as error:
        message = os_error_message(error) if isinstance(error, OSError) else str(error)
        raise SystemExit(f"{prog}: error: {message}") from error
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; {interrupted()}", file=sys.stderr)
        raise SystemExit(130) from None


@contextlib.contextmanager
def locked_command(prog: str, output_dir: str | os.PathLike[str]) -> Iterator[None]:
    """The body of a command that trains and writes into ``output_dir`` (``--output-dir``):
    :data:`EXPECTED_ERRORS` and Ctrl-C end it with one line (:func:`exit_on_errors`), and the
    folder is locked (:func:`~examples.oamn.locking.lock_folder`) for the whole command, so a
    second command writing it is refused at once.
    """
    with (
        exit_on_errors(prog, EXPECTED_ERRORS, lambda: RERUN_TO_CONTINUE),
        lock_folder(output_dir, option="--output-dir"),
    ):
        yield
