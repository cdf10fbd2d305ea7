r"""One optimisation step: occluded views, forward, ``L1 + L2``, backward, step.

The path of a batch: the augmentation makes the ``OcclusionBatch`` of views, the model runs on its
images (under autocast with ``amp``), the objective reads the model's output with the views, one
backward, one optimiser step. A step whose outputs or loss are not finite changes nothing.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from oamn.occlusion_aug import ObjectOcclusion, OcclusionAugmentation, OcclusionBatch

from .config import TrainConfig
from .objective import OAMNObjective, ObjectiveResult
from .precision import autocast

__all__ = ["build_augmentation", "make_views", "training_step"]


def build_augmentation(config: TrainConfig) -> OcclusionAugmentation | ObjectOcclusion | None:
    """The occlusion augmentation of a configuration (``None`` without ``occlusion``).

    Example:
        >>> build_augmentation(TrainConfig(occluders="objects")).locations
        ('top', 'bottom', 'left', 'right')
    """
    if not config.occlusion:
        return None
    if config.occluders in ("objects", "people"):
        content = "unscaled" if config.occluders == "people" else "scaled"
        return ObjectOcclusion(config.occlusion_locations, content=content)
    return OcclusionAugmentation(config.occlusion_locations, config.occlusion_areas)


def make_views(
    augmentation: OcclusionAugmentation | ObjectOcclusion,
    images: torch.Tensor,
    pids: torch.Tensor,
    generator: torch.Generator | None = None,
) -> OcclusionBatch:
    """The occluded views of ``images``; ``ObjectOcclusion`` takes its occluders from images of
    another identity (a pedestrian in front, not the same person twice)."""
    if isinstance(augmentation, ObjectOcclusion):
        return augmentation(images, generator=generator, groups=pids)
    return augmentation(images, generator=generator)


def training_step(
    network: nn.Module,
    objective: OAMNObjective,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    pids: torch.Tensor,
    *,
    augmentation: OcclusionAugmentation | ObjectOcclusion | None = None,
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
        augmentation: makes the occluded views (``ObjectOcclusion`` takes its occluders from
            other identities); ``None`` trains on the holistic images only.
        generator: the augmentation's source of randomness (a CPU generator).
        amp: ``"none"``, ``"bf16"`` or ``"fp16"`` autocast of the forward pass.
        channels_last: feed the views in channels_last memory format.
        scaler: a ``GradScaler`` (fp16); ``None`` for a plain backward.

    Returns:
        The objective's detached components (``"loss"`` the total).

    Raises:
        FloatingPointError: the running statistics, the model's outputs or the loss are NaN
            or infinite (non-finite or huge images, or a diverged model). Nothing is updated:
            no parameter, and no buffer either (the forward pass's BatchNorm statistics are put
            back).
    """
    views = None if augmentation is None else make_views(augmentation, images, pids, generator)
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
    the running statistics, the model's outputs or the loss are not finite."""
    with autocast(images.device, amp):
        output = network(images)
    advice = "lower --lr, or train in float32 (--amp none)"
    try:
        result = objective(output, pids, views)
    except ValueError as error:  # the losses refuse NaN and inf inputs
        outputs = (output.f, output.m, output.pooled, output.logits, output.grader_scores)
        if all(bool(torch.isfinite(value).all()) for value in outputs):
            raise
        raise FloatingPointError(
            f"the model's outputs are not finite ({error}); {advice}"
        ) from None
    # Finite but huge inputs (1e30) give a finite loss yet infinite running variances, which
    # would silently spoil every later evaluation. One fused max-abs per buffer list and one
    # device sync for both checks: this runs every step.
    statistics = [buffer for buffer in network.buffers() if buffer.is_floating_point()]
    largest = torch._foreach_norm(statistics, math.inf) if statistics else []
    finite = torch.stack([result.loss.detach(), *largest]).isfinite()
    loss_finite, statistics_finite = torch.stack([finite[0], finite[1:].all()]).tolist()
    if not loss_finite:
        terms = {name: round(float(value), 4) for name, value in result.components.items()}
        raise FloatingPointError(f"the loss is not finite (terms {terms}); {advice}")
    if not statistics_finite:
        raise FloatingPointError(
            "the running (BatchNorm) statistics are not finite after the forward pass: the "
            f"inputs are too large or the model diverged; {advice}"
        )
    return result
