"""Resuming a run, in one place: which checkpoint a run continues, whether its configuration may
continue it, the epoch it starts from and the state it restores.

``--resume DIR/checkpoint_last.pt``: the command line starts from the checkpoint's configuration
(:func:`resumed_settings`; the run directory is the checkpoint's folder unless ``--output-dir``
names another). :meth:`RunStart.of` reads and verifies the checkpoint and refuses options that
would change what the run trains, naming each (those that cannot, such as ``--workers``,
``--device``, ``--no-progress`` or a longer ``--epochs``, may change:
:func:`~examples.oamn.config.resume_differences`); the run keeps the checkpoint's ``--amp`` mode
unless it names one. :meth:`RunStart.restore` checks that the run reads the checkpoint's
images, then restores the weights (into a model built without reading ImageNet weights:
:attr:`RunStart.model_config`), the optimiser's state, the loss scale and the records of the
epochs done, and warns when the torch thread count differs (CPU results depend on it). The run
directory (:class:`~examples.oamn.run_directory.RunDirectory`) refuses to resume an older
checkpoint than its ``checkpoint_last.pt`` without ``--overwrite``, and on resume removes
``.partial`` leftovers and writes the checkpoint's epoch's copies and logs if a kill left them
unwritten. A checkpoint that has all its epochs trains nothing more.

Tools that own their run folders (the demo, the study) continue a run when it is theirs and
replace it otherwise: :func:`resume_or_replace`.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import Checkpoint, load_checkpoint, load_weights
from .config import TrainConfig, resume_differences
from .precision import resolve_amp

__all__ = ["RunStart", "resume_or_replace", "resumed_settings"]

#: Where to write and what to replace are the user's to say, never a checkpoint's.
_NOT_RESUMED = ("output_dir", "resume", "overwrite")


@dataclasses.dataclass(frozen=True)
class RunStart:
    """Where a run starts: afresh, or from the checkpoint ``config.resume``.

    Attributes:
        config: the configuration the run trains with: the given one, with ``amp`` resolved
            (:func:`~examples.oamn.precision.resolve_amp`; on resume, ``"auto"`` is the
            checkpoint's mode).
        checkpoint: the checkpoint the run continues (read and verified); ``None`` for a fresh
            run.

    Example:
        >>> start = RunStart.of(TrainConfig(amp="none"), torch.device("cpu"))
        >>> start.checkpoint is None, start.epoch, start.config.amp
        (True, 0, 'none')
    """

    config: TrainConfig
    checkpoint: Checkpoint | None = None

    @classmethod
    def of(cls, config: TrainConfig, device: torch.device) -> RunStart:
        """The start of the run ``config`` describes on ``device``.

        Raises:
            FileNotFoundError: ``config.resume`` does not exist.
            ValueError: ``config.resume`` is not a readable checkpoint, its options that change
                what the run trains differ from the checkpoint's (each is named), or it trained
                with ``--amp fp16`` and ``device`` is not CUDA.
        """
        if not config.resume:
            return cls(dataclasses.replace(config, amp=resolve_amp(config.amp, device)))
        checkpoint = load_checkpoint(config.resume)
        differences = resume_differences(checkpoint.config, config)
        if differences:
            raise ValueError(
                f"--resume {config.resume}: options that change what the run trains differ from "
                f"the checkpoint's: {'; '.join(differences)}. Leave them out to continue the run "
                "as it was, or start a new run in another --output-dir"
            )
        return cls(
            dataclasses.replace(config, amp=_resumed_amp(config, checkpoint, device)), checkpoint
        )

    @property
    def epoch(self) -> int:
        """The epochs already trained: the run's first epoch, 0-based."""
        return 0 if self.checkpoint is None else self.checkpoint.epoch

    @property
    def model_config(self) -> TrainConfig:
        """The configuration to build the run's model from: a resumed run takes every weight
        from its checkpoint, so it reads no ImageNet ``weights`` file (which may be gone)."""
        if self.checkpoint is None:
            return self.config
        return dataclasses.replace(self.config, weights=None)

    def restore(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        *,
        num_classes: int,
        train_images: str,
    ) -> list[dict[str, Any]]:
        """Put the checkpoint's state into the run's new parts, and return its records of the
        epochs done (a fresh run restores nothing and returns ``[]``).

        Args:
            model: the run's model, built from :attr:`model_config` (not DDP-wrapped yet).
            optimizer: its optimiser.
            scaler: its ``GradScaler`` (the loss scale is restored where the checkpoint has one).
            num_classes: the number of identities the run trains on.
            train_images: :func:`~examples.oamn.data.split_digest` of its training images.

        Raises:
            ValueError: the run reads another dataset than the checkpoint's (``--data-root``),
                or the weights do not fit the model
                (:func:`~examples.oamn.checkpoint.load_weights`).
        """
        checkpoint, path = self.checkpoint, self.config.resume
        if checkpoint is None:
            return []
        if checkpoint.num_classes != num_classes:
            raise ValueError(
                f"checkpoint {path} has {checkpoint.num_classes} classes but this run trains "
                f"{num_classes} identities: resume with the dataset of the checkpoint's run "
                "(--data-root)"
            )
        if checkpoint.train_images not in (None, train_images):
            raise ValueError(
                f"checkpoint {path} was trained on other images than those this run reads from "
                f"data_root (--data-root) {self.config.data_root} (another dataset, or another "
                "selection of it): resume with the checkpoint's dataset"
            )
        load_weights(model, self.config, checkpoint, path)
        optimizer.load_state_dict(checkpoint.optimizer)
        if checkpoint.scaler is not None:
            scaler.load_state_dict(checkpoint.scaler)
        _warn_on_another_thread_count(checkpoint, path)
        return list(checkpoint.history)


def _resumed_amp(config: TrainConfig, checkpoint: Checkpoint, device: torch.device) -> str:
    """The mode a resumed run trains in: ``config``'s, or under ``"auto"`` the checkpoint's."""
    if config.amp != "auto":
        return resolve_amp(config.amp, device)
    try:
        return resolve_amp(checkpoint.config.amp, device)
    except ValueError:  # fp16, off CUDA
        raise ValueError(
            f"--resume {config.resume}: the checkpoint trained with --amp fp16, which needs "
            f"CUDA, and this run is on {device}: resume it on a GPU, or start a new run in "
            "another --output-dir"
        ) from None


def _warn_on_another_thread_count(checkpoint: Checkpoint, path: str) -> None:
    """Warn when a checkpoint was written with another torch thread count than this process
    uses: CPU results depend on it."""
    threads = checkpoint.torch_threads  # not recorded by the first checkpoints
    if threads is not None and threads != torch.get_num_threads():
        warnings.warn(
            f"checkpoint {path} was written with {threads} torch threads and this run uses "
            f"{torch.get_num_threads()}: on the CPU the resumed run will not match an "
            f"uninterrupted one bit for bit (set OMP_NUM_THREADS={threads} to match it)",
            stacklevel=4,  # the caller of Trainer()
        )


def resumed_settings(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings a run resumed from checkpoint ``path`` starts from: the checkpoint's
    configuration, but for where to write (the checkpoint's folder) and what to replace.

    Raises:
        FileNotFoundError, ValueError: ``path`` is not a readable checkpoint (the message says
            why).
    """
    stored = load_checkpoint(path, verify=False).config.to_dict()
    settings = {name: value for name, value in stored.items() if name not in _NOT_RESUMED}
    return settings | {"output_dir": str(Path(path).parent)}


def resume_or_replace(config: TrainConfig) -> TrainConfig:
    """``config`` set to continue the run in ``config.output_dir`` when its
    ``checkpoint_last.pt`` was trained with the same settings
    (:func:`~examples.oamn.config.resume_differences`; a run that has all its epochs then
    trains nothing), otherwise to train afresh, replacing it: for tools that own their run
    folders and hold the lock of a folder above them (the demo, the study).

    Example:
        >>> import tempfile
        >>> resume_or_replace(TrainConfig(output_dir=tempfile.mkdtemp())).overwrite  # no run yet
        True
    """
    last = Path(config.output_dir) / "checkpoint_last.pt"
    try:
        stored = load_checkpoint(last, verify=False).config
    except (FileNotFoundError, ValueError):  # no run there yet, or a damaged one: start again
        return dataclasses.replace(config, overwrite=True)
    if resume_differences(stored, config):
        return dataclasses.replace(config, overwrite=True)
    return dataclasses.replace(config, resume=str(last))
