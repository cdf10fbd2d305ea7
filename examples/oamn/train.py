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
epoch on ties), ``checkpoint_epoch{N}.pt`` with ``--keep-epoch-checkpoints``.

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
import json
import os
import shutil
import sys
import time
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from oamn.occlusion_aug import OcclusionAugmentation
from oamn.reid_eval import evaluate_features

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, build_model, config_from_args
from .data import (
    build_test_loader,
    build_train_loader,
    load_dataset,
    split_validation,
    train_transform,
)
from .distributed import DistributedContext, init_distributed
from .inference import extract_features
from .objective import OAMNObjective, ObjectiveResult
from .schedule import build_optimizer, set_learning_rates

__all__ = ["Trainer", "main", "train", "training_split", "training_step"]

_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: Steps between updates of the progress bar's loss values (each update waits for the device).
_BAR_INTERVAL = 10


def train(config: TrainConfig) -> list[dict[str, Any]]:
    """Run (or resume, with ``config.resume``) a training; return the per-epoch records.

    Under ``torchrun`` each process calls this; rank 0 writes the run directory.

    Raises:
        ValueError: a configuration that cannot run here (no ``data_root``, CUDA asked for
            but absent, fp16 on the CPU, a checkpoint of another dataset split), naming the
            option to change.
    """
    context = init_distributed(config.device)
    try:
        return Trainer(config, context).run()
    finally:
        context.close()


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
        dataset = load_dataset(config.dataset, config.data_root)
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
            build_test_loader(items, config.height, config.width, config.val_batch_size, 0)
            for items in ((val_query, val_gallery) if val_query else ())
        )
        torch.manual_seed(config.seed)  # the same initial weights on every rank
        self.model = build_model(config, self.num_classes).to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(self.model.parameter_groups(), config)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.amp == "fp16")
        self.history: list[dict[str, Any]] = []
        self.start_epoch = 0
        if config.resume:
            self._resume(config.resume)
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
        """Train the remaining epochs; return every epoch's record (resumed ones included)."""
        if self.context.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.config.save(self.run_dir / "config.json")
        for epoch in range(self.start_epoch, self.config.epochs):
            record = self._train_epoch(epoch)
            if self._validates(epoch):
                record |= self._validate()
            self.history.append(record)
            if self.context.is_main:
                self._write(epoch)
            self.context.barrier()
        return self.history

    def _resume(self, path: str) -> None:
        state = load_checkpoint(path)
        if state["num_classes"] != self.num_classes:
            raise ValueError(
                f"checkpoint {path} has {state['num_classes']} classes but this run trains "
                f"{self.num_classes} identities: resume with the dataset, --val-ids and --seed "
                "of the checkpoint's run"
            )
        self.model.load_state_dict(state["model"])
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
        if self.start_epoch >= self.config.epochs:
            raise ValueError(
                f"checkpoint {path} has already trained {self.start_epoch} epochs, not fewer "
                f"than epochs={self.config.epochs}; pass a larger --epochs to train further"
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
        """Logs and checkpoints after ``epoch`` (rank 0)."""
        _write_logs(self.history, self.run_dir)
        last = self.run_dir / "checkpoint_last.pt"
        save_checkpoint(
            last,
            model=self.model,
            optimizer=self.optimizer,
            epoch=epoch + 1,
            config=self.config,
            num_classes=self.num_classes,
            rng_state=_rng_state(),
            history=self.history,
            scaler=self.scaler,
        )
        if self.config.keep_epoch_checkpoints:
            shutil.copyfile(last, self.run_dir / f"checkpoint_epoch{epoch + 1}.pt")
        scores = [r["val_mAP"] for r in self.history if "val_mAP" in r]
        if "val_mAP" in self.history[-1] and self.history[-1]["val_mAP"] == max(scores):
            shutil.copyfile(last, self.run_dir / "checkpoint_best.pt")


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
    location = area = None
    if augmentation is not None:
        views = augmentation(images, generator=generator)
        images, location, area = views.images, views.location, views.area
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    # The forward pass updates the running statistics before the loss can be checked.
    buffers = [buffer.detach().clone() for buffer in network.buffers()]
    try:
        result = _finite_objective(network, objective, images, pids, location, area, amp)
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
    location: torch.Tensor | None,
    area: torch.Tensor | None,
    amp: str,
) -> ObjectiveResult:
    """The forward pass and the objective of :func:`training_step`; a FloatingPointError if
    the model's outputs or the loss are not finite."""
    with _autocast(images.device, amp):
        output = network(images)
    advice = "lower --lr, or train without --amp"
    try:
        result = objective(output, pids, location, area)
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


def _autocast(device: torch.device, amp: str):
    if amp == "none":
        return nullcontext()
    return torch.autocast(device.type, dtype=_AMP_DTYPES[amp])


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _write_logs(history: list[dict[str, Any]], run_dir: Path) -> None:
    (run_dir / "log.json").write_text(json.dumps(history, indent=2) + "\n")
    columns = list(dict.fromkeys(key for record in history for key in record))
    with (run_dir / "log.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: resolve the configuration, train, print where the run was written."""
    config = config_from_args(argv)
    try:
        history = train(config)
    # Settings that cannot run (ConnectionError: weights to download offline): no traceback.
    except (ValueError, FileNotFoundError, ConnectionError) as error:
        raise SystemExit(f"python -m examples.oamn.train: error: {error}") from error
    if history and int(os.environ.get("RANK", "0")) == 0:
        last = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in history[-1].items()}
        print(f"trained {last['epoch']} epochs into {config.output_dir}: {last}", file=sys.stderr)


if __name__ == "__main__":
    main()
