r"""Train OAMN: ``python -m examples.oamn.train --data-root PATH [options]`` (``--help`` lists all).

Each step: a ``P x K`` batch is normalised on the CPU by the loader, moved to the device, where
``oamn.occlusion_aug.OcclusionAugmentation`` makes the ``4 B`` aligned occluded copies; the model
runs on the ``5 B`` views (under autocast with ``--amp``),
:class:`~examples.oamn.objective.OAMNObjective` gives ``L1 + L2``, one backward, one SGD step
(:func:`training_step`). The learning rates are set once per epoch
(:mod:`examples.oamn.schedule`).

Run directory ``--output-dir``: ``config.json`` (the resolved configuration), ``log.csv`` and
``log.json`` (one record per epoch: ``epoch`` (1-based), the base ``lr``, ``steps``,
``seconds``, the mean of each unweighted loss term and of the weighted total ``loss``, and
``val_mAP``, ``val_R1``, ``val_R5``, ``val_R10``, ``val_mINP`` when validated),
``checkpoint_last.pt`` every epoch, ``checkpoint_best.pt`` (the best validation mAP; the later
epoch on ties), ``checkpoint_epoch{N}.pt`` with ``--keep-epoch-checkpoints``. Every file is
written atomically (:mod:`~examples.oamn.run_files`), the checkpoints of an epoch before the
logs that describe them, so a run killed at any moment loses at most the epoch in progress. A
folder that holds a run is refused unless the run resumes it or ``--overwrite`` replaces it.

Resume (``--resume DIR/checkpoint_last.pt``): the run directory is the checkpoint's folder
unless ``--output-dir`` names another; the checkpoint's configuration is the base, and options
that would change what the run trains are refused, naming each (those that cannot, such as
``--workers``, ``--device``, ``--no-progress`` or a longer ``--epochs``, may change;
:data:`~examples.oamn.config.RUN_ONLY_FIELDS`). Resuming removes ``.partial`` leftovers and
writes the checkpoint's epoch's copies and logs if a kill left them unwritten; a checkpoint that
has all its epochs trains nothing more. No ImageNet weights file is read.

Reproducibility: every random draw of epoch ``e`` is a function of ``(seed, e)`` (and the rank):
the batches and the CPU-side augmentation (the data loaders' sampler, whatever the number of
workers), the global torch generator (dropout) reseeded at the start of the epoch, and the
occlusion augmentation's generator seeded from ``(seed, e, rank, step)``. So ``--resume
checkpoint_last.pt`` continues bit for bit on the CPU with the same number of torch threads
(recorded in the checkpoint; resume warns when it differs), and on CUDA up to the
nondeterminism of its kernels.

Mixed precision: ``--amp bf16`` runs the forward passes under ``torch.autocast`` on CUDA or on
the CPU (bfloat16 needs no loss scaling); ``--amp fp16`` only on CUDA, with a ``GradScaler``.
The losses are always computed in float32; validation on the CPU runs in float32.

Validation (``--val-ids N``) holds ``N`` training identities out of training (a query/gallery
split of them, :func:`~examples.oamn.data.split_validation`) and evaluates them every
``--val-every`` epochs and after the last one; the test set is never looked at.

Multi-GPU / multi-node: ``torchrun --nproc_per_node G -m examples.oamn.train ...``, see
:mod:`examples.oamn.distributed`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from oamn.occlusion_aug import OcclusionAugmentation, OcclusionBatch
from oamn.reid_eval import evaluate_features

from .checkpoint import checkpoint_bytes, load_checkpoint, load_weights
from .config import TrainConfig, resume_differences
from .config_cli import config_from_args
from .data import (
    build_test_loader,
    build_train_loader,
    load_dataset,
    split_validation,
    train_transform,
)
from .distributed import DistributedContext, init_distributed
from .inference import extract_features
from .model import build_model
from .objective import OAMNObjective, ObjectiveResult
from .precision import autocast
from .run_files import os_error_message, remove_leftovers, remove_run, run_files, write_atomic
from .schedule import build_optimizer, set_learning_rates

__all__ = ["Trainer", "main", "train", "train_or_resume", "training_split", "training_step"]

#: Steps between updates of the progress bar's loss values (each update waits for the device).
_BAR_INTERVAL = 10


def train(config: TrainConfig) -> list[dict[str, Any]]:
    """Run (or resume, with ``config.resume``) a training; return the per-epoch records.

    Under ``torchrun`` each process calls this; rank 0 writes the run directory.

    Raises:
        ValueError: a configuration that cannot run here (no ``data_root``, CUDA asked for
            but absent, fp16 on the CPU, a resume with options that differ from the
            checkpoint's, an ``output_dir`` holding another run, a bad image), naming the
            option to change.
        OSError: a file that cannot be read or written (the error names it).
    """
    context = init_distributed(config.device)
    try:
        return Trainer(config, context).run()
    finally:
        context.close()


def train_or_resume(config: TrainConfig) -> list[dict[str, Any]]:
    """Bring the run in ``config.output_dir`` to ``config.epochs`` epochs, for tools that own
    their run folders (the demo, the study): resume the run there when its
    ``checkpoint_last.pt`` was trained with the same settings
    (:func:`~examples.oamn.config.resume_differences`; a run that has all its epochs trains
    nothing), otherwise train afresh, replacing it.
    """
    last = Path(config.output_dir) / "checkpoint_last.pt"
    try:
        stored = TrainConfig.from_dict(load_checkpoint(last)["config"])
    except (FileNotFoundError, ValueError):  # no run there yet, or a damaged one: start again
        return train(dataclasses.replace(config, overwrite=True))
    if resume_differences(stored, config):
        return train(dataclasses.replace(config, overwrite=True))
    return train(dataclasses.replace(config, resume=str(last)))


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
        self.config = config
        self.context = context
        self.device = context.device
        _check_runnable(config, self.device)
        # Refused before the minutes that reading the data can take.
        state = _resumable_checkpoint(config) if config.resume else None
        if context.is_main and _other_run_files(config) and not config.overwrite:
            names = ", ".join(path.name for path in _other_run_files(config))
            raise ValueError(
                f"output_dir (--output-dir) {config.output_dir} already holds a run ({names}); "
                f"pass --resume {Path(config.output_dir) / 'checkpoint_last.pt'} to continue "
                "it, --overwrite to replace it, or another --output-dir"
            )
        dataset = load_dataset(
            config.dataset,
            config.data_root,
            # One process is enough to find a bad image; a failure there stops the others.
            verify_images=config.verify_images and context.is_main,
            progress=config.progress,
        )
        train_items, val_query, val_gallery = training_split(dataset.train, config)
        self.num_classes = len({item.pid for item in train_items})
        self.loader = build_train_loader(
            train_items,
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
        self.val_loaders = tuple(
            build_test_loader(
                items, config.height, config.width, config.val_batch_size, 0, split=split
            )
            for split, items in (
                (("validation query", val_query), ("validation gallery", val_gallery))
                if val_query
                else ()
            )
        )
        torch.manual_seed(config.seed)  # the same initial weights on every rank
        # A resumed run takes every weight from its checkpoint: no ImageNet file is read.
        initial = dataclasses.replace(config, weights=None) if config.resume else config
        self.model = build_model(initial, self.num_classes).to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(self.model.parameter_groups(), config)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.amp == "fp16")
        self.history: list[dict[str, Any]] = []
        self.start_epoch = 0
        if state is not None:
            self._resume(state, config.resume)
        # Terms that some switch leaves out leave parameters without gradient (the classifier
        # without L_ide, the grader without L_score); DDP must then look for them each step.
        complete = config.loss_id and config.loss_score and config.occlusion
        self.network = context.wrap(self.model, find_unused_parameters=not complete)
        self.augmentation = (
            OcclusionAugmentation(config.occlusion_locations, config.occlusion_areas)
            if config.occlusion
            else None
        )
        self.objective = OAMNObjective.from_config(config)
        self.run_dir = Path(config.output_dir)

    def run(self) -> list[dict[str, Any]]:
        """Train the remaining epochs; return every epoch's record (resumed ones included).

        Raises:
            ValueError: ``output_dir`` holds another run and ``overwrite`` is off.
            OSError: a file of the run directory could not be written (the error names it).
        """
        if self.context.is_main:
            self._prepare_run_dir()
        self.context.barrier()
        for epoch in range(self.start_epoch, self.config.epochs):
            record = self._train_epoch(epoch)
            if self._validates(epoch):
                record |= self._validate()
            self.history.append(record)
            if self.context.is_main:
                self._write(epoch)
            self.context.barrier()
        return self.history

    def _prepare_run_dir(self) -> None:
        """Create the run directory (rank 0), remove what an interrupted write left and the
        run that ``overwrite`` replaces; on resume, finish the checkpoint's epoch's files."""
        run_dir, config = self.run_dir, self.config
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_leftovers(run_dir)
        if _other_run_files(config):  # the constructor refused them without overwrite
            remove_run(run_dir)
        config.save(run_dir / "config.json")
        if config.resume:
            self._repair(Path(config.resume))

    def _repair(self, resume: Path) -> None:
        """Write what a kill after ``resume``'s epoch's checkpoint may have left undone: that
        epoch's copies (``checkpoint_last``, ``_epochN``, ``_best``) and the logs."""
        checkpoint = resume.read_bytes()
        epoch = self.start_epoch
        copies = [self.run_dir / "checkpoint_last.pt"]
        if self.config.keep_epoch_checkpoints:
            copies.append(self.run_dir / f"checkpoint_epoch{epoch}.pt")
        best = _best_epoch(self.history)
        if best == epoch:
            copies.append(self.run_dir / "checkpoint_best.pt")
        elif best is not None and not (self.run_dir / "checkpoint_best.pt").is_file():
            warnings.warn(
                f"{self.run_dir} has no checkpoint_best.pt (epoch {best}, the best validation "
                "mAP); the run goes on without it until a later epoch validates better",
                stacklevel=3,
            )
        for path in copies:
            same_file = path.is_file() and path.resolve() == resume.resolve()
            if not same_file and (not path.is_file() or path.read_bytes() != checkpoint):
                write_atomic(path, checkpoint)
        _write_logs(self.history, self.run_dir)

    def _resume(self, state: dict[str, Any], path: str) -> None:
        if state["num_classes"] != self.num_classes:
            raise ValueError(
                f"checkpoint {path} has {state['num_classes']} classes but this run trains "
                f"{self.num_classes} identities: resume with the dataset of the checkpoint's "
                "run (--data-root)"
            )
        load_weights(self.model, self.config, state, path)
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.start_epoch = state["epoch"]
        self.history = list(state["history"])
        threads = state.get("torch_threads")  # absent from checkpoints written before it
        if threads is not None and threads != torch.get_num_threads():
            warnings.warn(
                f"checkpoint {path} was written with {threads} torch threads and this run uses "
                f"{torch.get_num_threads()}: on the CPU the resumed run will not match an "
                f"uninterrupted one bit for bit (set OMP_NUM_THREADS={threads} to match it)",
                stacklevel=2,
            )

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
            raise FloatingPointError(f"epoch {epoch + 1}, step {step + 1}: {error}") from None

    def _validates(self, epoch: int) -> bool:
        last = epoch + 1 == self.config.epochs
        return bool(self.val_loaders) and ((epoch + 1) % self.config.val_every == 0 or last)

    def _validate(self) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if self.context.is_main:
            # inference.extract_features takes autocast on CUDA only: the CPU validates in fp32.
            on_cuda = self.device.type == "cuda"
            amp = self.config.amp if on_cuda and self.config.amp != "none" else None
            query, gallery = (
                extract_features(self.model, loader, self.device, amp, self.config.progress)
                for loader in self.val_loaders
            )
            result = evaluate_features(
                query.features,
                gallery.features,
                query.pids,
                gallery.pids,
                query.camids,
                gallery.camids,
            )
            metrics = {
                "val_mAP": result.mAP,
                "val_R1": float(result.cmc[0]),
                "val_R5": float(result.cmc[min(4, len(result.cmc) - 1)]),
                "val_R10": float(result.cmc[min(9, len(result.cmc) - 1)]),
                "val_mINP": result.mINP,
            }
        self.context.barrier()
        return metrics

    def _write(self, epoch: int) -> None:
        """Checkpoints, then the logs that describe them, after ``epoch`` (rank 0).

        The order makes every state a kill can leave one that :meth:`_repair` completes: a
        ``checkpoint_last.pt`` of epoch ``N`` means every file of epoch ``N - 1`` is written.
        """
        checkpoint = checkpoint_bytes(
            model=self.model,
            optimizer=self.optimizer,
            epoch=epoch + 1,
            config=self.config,
            num_classes=self.num_classes,
            rng_state=_rng_state(),
            history=self.history,
            scaler=self.scaler,
        )
        write_atomic(self.run_dir / "checkpoint_last.pt", checkpoint)
        if self.config.keep_epoch_checkpoints:
            write_atomic(self.run_dir / f"checkpoint_epoch{epoch + 1}.pt", checkpoint)
        if _best_epoch(self.history) == epoch + 1:
            write_atomic(self.run_dir / "checkpoint_best.pt", checkpoint)
        _write_logs(self.history, self.run_dir)


def training_step(
    network: nn.Module,
    objective: OAMNObjective,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    pids: torch.Tensor,
    *,
    augmentation: OcclusionAugmentation | None = None,
    generator: torch.Generator | None = None,
    amp: str = "none",
    channels_last: bool = False,
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, torch.Tensor]:
    """One optimisation step on a batch: occluded views, forward, ``L1 + L2``, backward, step.

    Args:
        network: the OAMN model (or its DDP wrapper), in train mode, on ``images``' device.
        objective: the loss.
        optimizer: steps once.
        images: ``(B, 3, H, W)`` normalised images on the model's device.
        pids: ``(B,)`` int64 identity labels on the same device.
        augmentation: makes the occluded views; ``None`` trains on the holistic images only.
        generator: the augmentation's source of randomness (a CPU generator).
        amp: ``"none"``, ``"bf16"`` or ``"fp16"`` autocast of the forward pass.
        channels_last: feed the views in channels_last memory format.
        scaler: a ``GradScaler`` (fp16); ``None`` for a plain backward.

    Returns:
        The objective's detached components (``"loss"`` the total).

    Raises:
        FloatingPointError: the model's outputs or the loss are NaN or infinite (non-finite
            images, or a diverged model). Nothing is updated: no parameter, and no buffer
            either (the forward pass's BatchNorm statistics are put back).
    """
    views = None if augmentation is None else augmentation(images, generator=generator)
    if views is not None:
        images = views.images
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    # The forward pass updates the running statistics before the loss can be checked.
    buffers = [buffer.detach().clone() for buffer in network.buffers()]
    try:
        result = _finite_objective(network, objective, images, pids, views, amp)
    except FloatingPointError:
        with torch.no_grad():
            for buffer, saved in zip(network.buffers(), buffers, strict=True):
                buffer.copy_(saved)
        raise
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        result.loss.backward()
        optimizer.step()
    else:
        scaler.scale(result.loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return result.components


def _finite_objective(
    network: nn.Module,
    objective: OAMNObjective,
    images: torch.Tensor,
    pids: torch.Tensor,
    views: OcclusionBatch | None,
    amp: str,
) -> ObjectiveResult:
    """The forward pass and the objective of :func:`training_step`; a FloatingPointError if
    the model's outputs or the loss are not finite."""
    with autocast(images.device, amp):
        output = network(images)
    advice = "lower --lr, or train without --amp"
    try:
        result = objective(output, pids, views)
    except ValueError as error:  # the losses refuse NaN and inf inputs
        outputs = (output.f, output.m, output.pooled, output.logits, output.grader_scores)
        if all(bool(torch.isfinite(value).all()) for value in outputs):
            raise
        raise FloatingPointError(
            f"the model's outputs are not finite ({error}); {advice}"
        ) from None
    if not torch.isfinite(result.loss):
        terms = {name: round(float(value), 4) for name, value in result.components.items()}
        raise FloatingPointError(f"the loss is not finite (terms {terms}); {advice}")
    return result


def _check_runnable(config: TrainConfig, device: torch.device) -> None:
    if config.data_root is None:
        raise ValueError(
            "data_root (--data-root) is required: the folder of the dataset named by --dataset"
        )
    if config.amp == "fp16" and device.type != "cuda":
        raise ValueError(
            f"amp (--amp) fp16 needs CUDA but this run is on {device}; use --amp bf16 or none"
        )


def training_split(train_items, config: TrainConfig):
    """``(train_rest, val_query, val_gallery)``: the identities ``config.val_ids`` holds out for
    validation (:func:`~examples.oamn.data.split_validation`; a count ``>= 1`` or a fraction),
    or all of ``train_items`` and no validation split."""
    if not config.val_ids:
        return train_items, (), ()
    count = config.val_ids
    return split_validation(train_items, int(count) if count >= 1 else count, config.seed)


def _derived_seed(*keys: int) -> int:
    """A 63-bit seed mixing ``keys`` (numpy's SeedSequence: nearby keys give unrelated seeds)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, np.uint64)[0] >> 1)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _resumable_checkpoint(config: TrainConfig) -> dict[str, Any]:
    """The checkpoint ``config.resume``, if ``config`` may continue it (else a ValueError
    naming every option that differs)."""
    state = load_checkpoint(config.resume)
    differences = resume_differences(TrainConfig.from_dict(state["config"]), config)
    if differences:
        raise ValueError(
            f"--resume {config.resume}: options that change what the run trains differ from "
            f"the checkpoint's: {'; '.join(differences)}. Leave them out to continue the run as "
            "it was, or start a new run in another --output-dir"
        )
    return state


def _other_run_files(config: TrainConfig) -> list[Path]:
    """The files in ``config.output_dir`` of a run that ``config`` does not continue: none when
    it resumes a checkpoint of that folder; a ``config.json`` of the same training is what a
    run killed before its first checkpoint leaves, and may be run again."""
    run_dir = Path(config.output_dir)
    if config.resume and Path(config.resume).parent.resolve() == run_dir.resolve():
        return []
    return [path for path in run_files(run_dir) if not _same_training(path, config)]


def _same_training(path: Path, config: TrainConfig) -> bool:
    """Whether ``path`` is a ``config.json`` of the same training as ``config``."""
    if path.name != "config.json":
        return False
    try:
        return not resume_differences(TrainConfig.load(path), config)
    except ValueError:  # not a configuration of this version
        return False


def _best_epoch(history: list[dict[str, Any]]) -> int | None:
    """The epoch of the best validation mAP (the later one on ties); ``None`` without any."""
    scored = [(record["val_mAP"], record["epoch"]) for record in history if "val_mAP" in record]
    return max(scored)[1] if scored else None


def _write_logs(history: list[dict[str, Any]], run_dir: Path) -> None:
    write_atomic(run_dir / "log.json", json.dumps(history, indent=2) + "\n")
    table = io.StringIO(newline="")
    columns = list(dict.fromkeys(key for record in history for key in record))
    writer = csv.DictWriter(table, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    write_atomic(run_dir / "log.csv", table.getvalue())


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: resolve the configuration, train, print where the run was written."""
    config = config_from_args(argv)
    try:
        history = train(config)
    # Settings that cannot run (ConnectionError: weights to download offline) and files that
    # cannot be read or written: one line, no traceback.
    except (ValueError, ConnectionError, OSError) as error:
        message = os_error_message(error) if isinstance(error, OSError) else str(error)
        raise SystemExit(f"python -m examples.oamn.train: error: {message}") from error
    if history and int(os.environ.get("RANK", "0")) == 0:
        last = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in history[-1].items()}
        print(f"trained {last['epoch']} epochs into {config.output_dir}: {last}", file=sys.stderr)


if __name__ == "__main__":
    main()
