"""The folder of one training run: locked for the run (:func:`lock_run_directory`), refused when
it holds another run, prepared, repaired after a kill, and written after each epoch (rank 0
writes it).

Files: ``config.json`` (the resolved configuration), ``log.csv`` and ``log.json`` (one record
per epoch), ``checkpoint_last.pt`` every epoch, ``checkpoint_best.pt`` (the best validation
mAP; the later epoch on ties), ``checkpoint_epoch{N}.pt`` with ``keep_epoch_checkpoints``. Each
is written atomically (:mod:`~examples.oamn.run_files`), an epoch's checkpoints before the logs
that describe them: a ``checkpoint_last.pt`` of epoch ``N`` means every file of epoch ``N - 1``
was written, so a run killed at any moment loses at most the epoch in progress, and
:meth:`RunDirectory.prepare` of the resumed run writes what the kill left undone.
"""

from __future__ import annotations

import contextlib
import csv
import io
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .checkpoint import load_checkpoint
from .config import TrainConfig, resume_differences
from .distributed import DistributedContext
from .locking import lock_folder
from .run_files import remove_leftovers, remove_run, run_files, write_atomic, write_json

__all__ = ["RunDirectory", "best_epoch", "lock_run_directory"]


class RunDirectory:
    """The run directory ``config.output_dir`` of a training configuration.

    Args:
        config: the run's configuration (``output_dir``, ``resume``, ``overwrite``,
            ``keep_epoch_checkpoints``).

    Example:
        >>> import tempfile
        >>> folder = RunDirectory(TrainConfig(output_dir=tempfile.mkdtemp()))
        >>> folder.check_usable()  # an empty folder holds no other run
        >>> folder.prepare(history=[])
        >>> sorted(path.name for path in folder.path.iterdir())
        ['config.json']
    """

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.path = Path(config.output_dir)

    def other_run_files(self) -> list[Path]:
        """The files in the folder of a run that this configuration does not continue: none
        when it resumes a checkpoint of that folder; a ``config.json`` of the same training is
        what a run killed before its first checkpoint leaves, and may be run again."""
        resume = self.config.resume
        if resume and Path(resume).parent.resolve() == self.path.resolve():
            return []
        return [path for path in run_files(self.path) if not self._same_training(path)]

    def check_usable(self, resume_epoch: int | None = None) -> None:
        """Create the folder and check that it can be written, before the data is read.

        Args:
            resume_epoch: the epoch of the checkpoint the run resumes, if any.

        Raises:
            ValueError: without ``overwrite``, the folder holds another run, or this run
                resumes an older checkpoint of it than its ``checkpoint_last.pt`` (resuming
                would replace the later epochs' files).
            OSError: the folder cannot be created or written (the error names the path).
        """
        self.path.mkdir(parents=True, exist_ok=True)
        probe = self.path / ".write_check"
        write_atomic(probe, b"")
        probe.unlink()
        if self.config.overwrite:
            return
        others = self.other_run_files()
        if others:
            names = ", ".join(path.name for path in others)
            last = self.path / "checkpoint_last.pt"
            advice = f"pass --resume {last} to continue it, " if last.is_file() else ""
            raise ValueError(
                f"output_dir (--output-dir) {self.path} already holds a run ({names}); "
                f"{advice}--overwrite to replace it, or another --output-dir"
            )
        if resume_epoch is None:
            return
        later = self._epoch_of(self.path / "checkpoint_last.pt")
        if later is not None and later > resume_epoch:
            raise ValueError(
                f"--resume {self.config.resume} continues from epoch {resume_epoch}, but "
                f"{self.path} has trained {later} epochs: resuming would replace the later "
                "epochs' checkpoints and logs; pass --overwrite to do so, or resume into another "
                "--output-dir"
            )

    def prepare(self, history: list[dict[str, Any]]) -> None:
        """Create the folder, remove what an interrupted write of a run file left and the run
        that ``overwrite`` replaces, write ``config.json``; on resume (``history``: the checkpoint's
        records), write that epoch's copies and logs if a kill left them undone."""
        self.path.mkdir(parents=True, exist_ok=True)
        remove_leftovers(self.path)
        if self.other_run_files():  # check_usable refused them without overwrite
            remove_run(self.path)
        self.config.save(self.path / "config.json")
        if self.config.resume:
            resume = Path(self.config.resume)
            self._remove_later_epochs(history[-1]["epoch"] if history else 0)
            self._write_copies(resume.read_bytes(), history, resume)

    def write_epoch(self, checkpoint: bytes, history: list[dict[str, Any]]) -> None:
        """The files of the epoch ``history[-1]`` describes: ``checkpoint`` (its bytes) as
        ``checkpoint_last.pt`` and its copies, then the logs."""
        write_atomic(self.path / "checkpoint_last.pt", checkpoint)
        self._write_copies(checkpoint, history)

    def _write_copies(
        self, checkpoint: bytes, history: list[dict[str, Any]], source: Path | None = None
    ) -> None:
        """``checkpoint``'s copies of its epoch (``_last`` when written from another
        ``source``, ``_epochN``, ``_best``) where they differ, then the logs."""
        epoch = history[-1]["epoch"] if history else 0
        copies = [self.path / "checkpoint_last.pt"] if source is not None else []
        if self.config.keep_epoch_checkpoints:
            copies.append(self.path / f"checkpoint_epoch{epoch}.pt")
        best = best_epoch(history)
        if best == epoch:
            copies.append(self.path / "checkpoint_best.pt")
        elif best is not None and not (self.path / "checkpoint_best.pt").is_file():
            self._restore_best(best)
        for path in copies:
            # A repair rewrites only what differs (the source itself is left alone).
            unchanged = source is not None and path.is_file()
            if unchanged and (
                path.resolve() == source.resolve() or path.read_bytes() == checkpoint
            ):
                continue
            write_atomic(path, checkpoint)
        self._write_logs(history)

    def _remove_later_epochs(self, epoch: int) -> None:
        """Remove the checkpoints of epochs after ``epoch`` (a resume from an older checkpoint
        that ``overwrite`` allowed): the resumed run writes them again."""
        for path in self.path.glob("checkpoint_epoch*.pt"):
            later = path.stem.removeprefix("checkpoint_epoch")
            if later.isdigit() and int(later) > epoch:
                path.unlink()
        best = self.path / "checkpoint_best.pt"
        if (self._epoch_of(best) or 0) > epoch:
            best.unlink()

    def _restore_best(self, best: int) -> None:
        """Copy ``checkpoint_epoch{best}.pt`` to the missing ``checkpoint_best.pt``, or warn."""
        kept = self.path / f"checkpoint_epoch{best}.pt"
        if kept.is_file():
            write_atomic(self.path / "checkpoint_best.pt", kept.read_bytes())
            return
        warnings.warn(
            f"{self.path} has no checkpoint_best.pt (epoch {best}, the best validation mAP); "
            "the run goes on without it until a later epoch validates better",
            stacklevel=4,
        )

    @staticmethod
    def _epoch_of(path: Path) -> int | None:
        """The epoch of a readable checkpoint; ``None`` for a missing or damaged one."""
        try:
            return load_checkpoint(path, verify=False).epoch
        except (FileNotFoundError, ValueError):
            return None

    def _write_logs(self, history: list[dict[str, Any]]) -> None:
        write_json(self.path / "log.json", history)
        table = io.StringIO(newline="")
        columns = list(dict.fromkeys(key for record in history for key in record))
        writer = csv.DictWriter(table, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
        write_atomic(self.path / "log.csv", table.getvalue())

    def _same_training(self, path: Path) -> bool:
        """Whether ``path`` is a ``config.json`` of the same training as this run's."""
        if path.name != "config.json":
            return False
        try:
            return not resume_differences(TrainConfig.load(path), self.config)
        except ValueError:  # not a configuration of this version
            return False


def best_epoch(history: list[dict[str, Any]]) -> int | None:
    """The epoch of the best validation mAP (the later one on ties); ``None`` without any.

    Example:
        >>> best_epoch([{"epoch": 1, "val_mAP": 0.5}, {"epoch": 2}, {"epoch": 3, "val_mAP": 0.5}])
        3
    """
    scored = [(record["val_mAP"], record["epoch"]) for record in history if "val_mAP" in record]
    return max(scored)[1] if scored else None


@contextlib.contextmanager
def lock_run_directory(config: TrainConfig, context: DistributedContext) -> Iterator[None]:
    """Rank 0 holds the lock of ``config.output_dir`` from before the folder is looked at
    until its last file is written; when another process holds it, every rank stops with the
    same error (rather than waiting for rank 0 at the first collective)."""
    with contextlib.ExitStack() as stack:
        refusal = None
        if context.is_main:
            try:
                stack.enter_context(lock_folder(config.output_dir, option="--output-dir"))
            except OSError as error:
                refusal = error
        # errno, strerror, filename: an InUseError itself does not unpickle.
        shared = context.from_main(
            None if refusal is None else (refusal.errno, refusal.strerror, refusal.filename)
        )
        if refusal is not None:
            raise refusal
        if shared is not None:
            raise OSError(*shared)
        yield
