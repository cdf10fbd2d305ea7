r"""Training OAMN: :func:`train` runs (or resumes) the run a configuration describes.

Each step: a ``P x K`` batch is normalised on the CPU by the loader, moved to the device, where
``oamn.occlusion_aug.OcclusionAugmentation`` (or ``ObjectOcclusion``) makes the ``4 B`` aligned
occluded copies; the model runs on the ``5 B`` views (under autocast with ``--amp``),
:class:`~examples.oamn.objective.OAMNObjective` gives ``L1 + L2``, one backward, one SGD step
(:func:`~examples.oamn.step.training_step`). The learning rates are set once per epoch
(:mod:`examples.oamn.schedule`).

Run directory ``output_dir`` (:mod:`~examples.oamn.run_directory`): the configuration, the logs
(one record per epoch: ``epoch`` (1-based), the base ``lr``, ``steps``, ``seconds``, the mean of
each unweighted loss term and of the weighted total ``loss``, and ``val_mAP``, ``val_R1``,
``val_R5``, ``val_R10``, ``val_mINP`` when validated) and the checkpoints, each written
atomically, so a run killed at any moment loses at most the epoch in progress. A folder that
holds a run is refused unless the run resumes it or ``--overwrite`` replaces it; a folder that
another process is writing is refused at once (:func:`train` holds its lock,
:func:`~examples.oamn.run_directory.lock_run_directory`). An epoch that leaves a weight, buffer
or momentum non-finite is not saved: the run stops, naming the last finite checkpoint.

Resume (``--resume DIR/checkpoint_last.pt``) continues the checkpoint's run and refuses options
that would change what it trains: :class:`~examples.oamn.resume.RunStart` decides where a run
starts and restores the checkpoint's state (:mod:`examples.oamn.resume`).

Reproducibility: every random draw of epoch ``e`` is a function of ``(seed, e)`` (and the rank):
the batches and the CPU-side augmentation (the data loaders' sampler, whatever the number of
workers), the global torch generator (dropout) reseeded at the start of the epoch, and the
occlusion augmentation's generator seeded from ``(seed, e, rank, step)``. So ``--resume
checkpoint_last.pt`` continues bit for bit on the CPU with the same torch thread count
(resume warns when it differs) and ``channels_last``, and on CUDA up to its kernels' noise.

Mixed precision (:mod:`~examples.oamn.precision`): the forward passes of training and
validation run under ``torch.autocast`` with ``--amp``: bf16 (CUDA or CPU), fp16 (CUDA, with a
``GradScaler``) or the default auto (bf16 where the device has it natively), recorded resolved
in ``config.json`` and the checkpoints; a resumed run keeps its checkpoint's. Losses are float32.

Validation (``--val-ids N``, :mod:`~examples.oamn.validation`) holds ``N`` training identities
out of training and evaluates them every ``--val-every`` epochs and after the last one; the test
set is never looked at.

Multi-GPU / multi-node: under ``torchrun`` each process calls :func:`train`, see
:mod:`examples.oamn.distributed`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from .checkpoint import checkpoint_bytes, non_finite_tensors
from .config import TrainConfig
from .data import (
    ReIDDataset,
    ReIDItem,
    build_train_loader,
    load_dataset,
    split_digest,
    train_transform,
)
from .distributed import DistributedContext, init_distributed
from .model_factory import build_model
from .objective import OAMNObjective
from .resume import RunStart, resume_or_replace
from .run_directory import RunDirectory, lock_run_directory
from .schedule import build_optimizer, set_learning_rates
from .step import build_augmentation, training_step
from .validation import training_split, validation_loaders, validation_metrics

__all__ = ["Trainer", "train", "train_or_resume"]

#: Steps between updates of the progress bar's loss values (each update waits for the device).
_BAR_INTERVAL = 10


def train(config: TrainConfig) -> list[dict[str, Any]]:
    """Run (or resume, with ``config.resume``) a training; return the per-epoch records.

    Under ``torchrun`` each process calls this; rank 0 writes the run directory, and holds
    its lock (:func:`~examples.oamn.run_directory.lock_run_directory`) for the whole run.

    Raises:
        ValueError: a configuration that cannot run here (no ``data_root``, CUDA asked for
            but absent, fp16 on the CPU, a resume with options that differ from the
            checkpoint's, an ``output_dir`` holding another run, a bad image), naming the
            option to change.
        OSError: a file that cannot be read or written (the error names it);
            :class:`~examples.oamn.locking.InUseError` when another process is writing
            ``output_dir``.
        FloatingPointError: a step's loss or outputs, or an epoch's weights, are not finite
            (the message names the epoch, the likely cause and the last finite checkpoint);
            nothing of that epoch is saved.
    """
    context = init_distributed(config.device)
    try:
        _check_runnable(config, context.device)  # before the lock creates the folder
        with lock_run_directory(config, context):
            return Trainer(config, context).run()
    finally:
        context.close()


def train_or_resume(config: TrainConfig) -> list[dict[str, Any]]:
    """Bring the run in ``config.output_dir`` to ``config.epochs`` epochs, for tools that own
    their run folders and hold the lock of a folder above them (the demo, the study): resume
    it when it was trained with the same settings, otherwise train afresh, replacing it
    (:func:`~examples.oamn.resume.resume_or_replace`).
    """
    return train(resume_or_replace(config))


class Trainer:
    """One training run: data, model, optimiser, and the epoch loop.

    :func:`train` is the usual entry point; the class gives access to the run's parts
    (``model``, ``optimizer``, ``loader``, ``history``).

    Args:
        config: the run's configuration.
        context: this process's place in the (possibly single-process) run, from
            :func:`~examples.oamn.distributed.init_distributed`.
    """

    def __init__(self, config: TrainConfig, context: DistributedContext) -> None:
        self.context = context
        self.device = context.device
        _check_runnable(config, self.device)
        # A resume is refused before the minutes that reading the data can take.
        start = RunStart.of(config, self.device)
        self.config = config = start.config
        self.run_dir = RunDirectory(config)
        if context.is_main:
            self.run_dir.check_usable(None if start.checkpoint is None else start.epoch)
        train_items, val_query, val_gallery = training_split(
            _dataset(config, context).train, config
        )
        self.num_classes = len({item.pid for item in train_items})
        _check_batch_fits(config, self.num_classes)
        self.train_images = split_digest(train_items)
        self.loader = _train_loader(train_items, config, context)
        self.val_loaders = validation_loaders(val_query, val_gallery, config)
        torch.manual_seed(config.seed)  # the same initial weights on every rank
        self.model = build_model(start.model_config, self.num_classes).to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(self.model.parameter_groups(), config)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.amp == "fp16")
        self.history = start.restore(
            self.model,
            self.optimizer,
            self.scaler,
            num_classes=self.num_classes,
            train_images=self.train_images,
        )
        self.start_epoch = start.epoch
        # Terms that some switch leaves out leave parameters without gradient (the classifier
        # without L_ide, the grader without L_score); DDP must then look for them each step.
        complete = config.loss_id and config.loss_score and config.occlusion
        self.network = context.wrap(self.model, find_unused_parameters=not complete)
        self.augmentation = build_augmentation(config)
        self.objective = OAMNObjective.from_config(config)

    def run(self) -> list[dict[str, Any]]:
        """Train the remaining epochs; return every epoch's record (resumed ones included).

        Raises:
            ValueError: ``output_dir`` holds another run and ``overwrite`` is off.
            OSError: a file of the run directory could not be written (the error names it).
        """
        if self.context.is_main:
            self.run_dir.prepare(self.history)
        self.context.barrier()
        for epoch in range(self.start_epoch, self.config.epochs):
            record = self._train_epoch(epoch)
            self._check_finite_state(epoch, record["lr"])
            if self._validates(epoch):
                record |= self._validate()
            self.history.append(record)
            if self.context.is_main:
                self._write(epoch)
            self.context.barrier()
        return self.history

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        config, context = self.config, self.context
        lr = set_learning_rates(self.optimizer, config, epoch)
        self.loader.batch_sampler.set_epoch(epoch)
        batches = iter(self.loader)
        # After iter(): a fresh loader iterator draws its base seed from the global generator,
        # and a resumed run creates its first iterator at a later epoch than a straight run.
        torch.manual_seed(_derived_seed(config.seed, epoch, context.rank))
        steps = len(self.loader)
        if config.max_steps_per_epoch:
            steps = min(steps, config.max_steps_per_epoch)
        self.network.train()
        totals: dict[str, torch.Tensor] = {}
        started = time.perf_counter()
        bar = tqdm(
            total=steps,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not (config.progress and context.is_main),
            dynamic_ncols=True,
        )
        with bar:
            for step in range(steps):
                images, pids, *_ = next(batches)
                components = self._step(images, pids, epoch, step)
                for name, value in components.items():
                    totals[name] = totals.get(name, 0.0) + value
                if step % _BAR_INTERVAL == 0 or step == steps - 1:
                    bar.set_postfix({name: f"{float(v):.3f}" for name, v in components.items()})
                bar.update()
        means = context.mean({name: float(total) / steps for name, total in totals.items()})
        return {
            "epoch": epoch + 1,
            "lr": lr,
            "steps": steps,
            "seconds": round(time.perf_counter() - started, 3),
            **means,
        }

    def _step(
        self, images: torch.Tensor, pids: torch.Tensor, epoch: int, step: int
    ) -> dict[str, torch.Tensor]:
        config = self.config
        generator = torch.Generator().manual_seed(
            _derived_seed(config.seed, epoch, self.context.rank, step)
        )
        try:
            return training_step(
                self.network,
                self.objective,
                self.optimizer,
                images.to(self.device, non_blocking=True),
                pids.to(self.device, non_blocking=True),
                augmentation=self.augmentation,
                generator=generator,
                amp=config.amp,
                channels_last=config.channels_last,
                scaler=self.scaler,
            )
        except FloatingPointError as error:
            raise FloatingPointError(
                f"epoch {epoch + 1}, step {step + 1}: {error}; {self._last_checkpoint()}"
            ) from None

    def _check_finite_state(self, epoch: int, lr: float) -> None:
        """Stop before ``epoch``'s checkpoint when a step left a weight, buffer or momentum
        non-finite: every step checks its loss and outputs, but an update can still overflow.
        """
        names = non_finite_tensors(
            {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        )
        if names:
            amp = f" or --amp {self.config.amp}" if self.config.amp != "none" else ""
            raise FloatingPointError(
                f"epoch {epoch + 1} left {len(names)} non-finite weight, buffer or momentum "
                f"tensors (e.g. {', '.join(names[:3])}) although every loss was finite: the "
                f"updates overflowed, most likely a learning rate too high (--lr "
                f"{self.config.lr:g}, {lr:g} this epoch){amp}; nothing of epoch "
                f"{epoch + 1} was saved; {self._last_checkpoint()}; train again with a lower --lr"
            )

    def _last_checkpoint(self) -> str:
        """Where the run's last finite weights are, for a divergence error."""
        if not self.history:
            return "no checkpoint was written"
        last = self.run_dir.path / "checkpoint_last.pt"
        return f"the last finite checkpoint is {last} (epoch {self.history[-1]['epoch']})"

    def _validates(self, epoch: int) -> bool:
        last = epoch + 1 == self.config.epochs
        return bool(self.val_loaders) and ((epoch + 1) % self.config.val_every == 0 or last)

    def _validate(self) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if self.context.is_main:
            query, gallery = self.val_loaders
            metrics = validation_metrics(self.model, query, gallery, self.config, self.device)
        self.context.barrier()
        return metrics

    def _write(self, epoch: int) -> None:
        """The run directory's files after ``epoch`` (rank 0)."""
        checkpoint = checkpoint_bytes(
            model=self.model,
            optimizer=self.optimizer,
            epoch=epoch + 1,
            config=self.config,
            num_classes=self.num_classes,
            rng_state=_rng_state(),
            train_images=self.train_images,
            history=self.history,
            scaler=self.scaler,
        )
        self.run_dir.write_epoch(checkpoint, self.history)


def _check_runnable(config: TrainConfig, device: torch.device) -> None:
    if config.data_root is None:
        raise ValueError(
            "data_root (--data-root) is required: the folder of the dataset named by --dataset"
        )
    if config.amp == "fp16" and device.type != "cuda":
        raise ValueError(
            f"amp (--amp) fp16 needs CUDA but this run is on {device}; use --amp bf16, auto or none"
        )


def _check_batch_fits(config: TrainConfig, num_ids: int) -> None:
    """A ``P x K`` batch needs ``P`` distinct identities among those left to train on."""
    if config.ids_per_batch > num_ids:
        held = f" that --val-ids {config.val_ids:g} leaves" if config.val_ids else ""
        fix = " or --val-ids" if config.val_ids else ""
        raise ValueError(
            f"ids_per_batch (--ids-per-batch) {config.ids_per_batch} exceeds the {num_ids} "
            f"training identities{held}; lower --ids-per-batch{fix}"
        )


def _derived_seed(*keys: int) -> int:
    """A 63-bit seed mixing ``keys`` (numpy's SeedSequence: nearby keys give unrelated seeds)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, np.uint64)[0] >> 1)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _dataset(config: TrainConfig, context: DistributedContext) -> ReIDDataset:
    return load_dataset(
        config.dataset,
        config.data_root,
        # One process is enough to find a bad image; a failure there stops the others.
        verify_images=config.verify_images and context.is_main,
        progress=config.progress,
    )


def _train_loader(
    items: Sequence[ReIDItem], config: TrainConfig, context: DistributedContext
) -> DataLoader:
    return build_train_loader(
        items,
        config.height,
        config.width,
        config.ids_per_batch,
        config.instances_per_id,
        seed=config.seed,
        workers=config.workers,
        num_replicas=context.world_size,
        rank=context.rank,
        transform=train_transform(
            config.height,
            config.width,
            pad=config.pad,
            flip_prob=config.flip_prob,
            rotation=config.rotation,
        ),
    )
