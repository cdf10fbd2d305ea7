r"""OAMN's training objective (paper §3.2-3.5, eq. 9-10) composed from the ``oamn.losses`` package.

``L1 = lambda_1 (alpha_1 L_mask1 + alpha_2 L_mask2) + lambda_2 L_tri-g + lambda_3 L_ide`` and
``L2 = lambda_4 L_score``; the training step back-propagates ``L1 + L2`` once.

The batch is an ``oamn.occlusion_aug.OcclusionBatch``: ``V`` view-major blocks of ``B`` rows,
the holistic images first, then one block per occlusion location; its ``sample_index`` gives
each row's image, hence its identity label. ``L_ide`` is the cross-entropy over all ``V * B``
logits, the triplet loss mines the pooled features ``h`` of all rows (within each location group
for ``L_tri-g``), ``L_score`` supervises the grader on all rows. Without occlusion augmentation
(the baseline) the batch is the ``B`` holistic images only, and ``L_mask``, ``L_score`` and the
grouping are skipped.

Gradient routing (``routing``): what the mask losses read, see :mod:`~examples.oamn.routing`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from oamn.losses import (
    batch_hard_triplet_loss,
    grader_loss,
    grouped_triplet_loss,
    mask_complement_loss,
    mask_consistency_loss,
    mask_visibility_loss,
)
from oamn.occlusion_aug import (
    AREAS,
    BAND_LOCATIONS,
    LOCATIONS,
    ObjectOcclusionParams,
    OcclusionBatch,
)

from .config import MASK_LOSS_SCALES, TrainConfig
from .routing import ROUTINGS

__all__ = ["ModelOutput", "OAMNObjective", "ObjectiveResult"]

#: The location pairs of L_mask2 whose masked features add up to the holistic ones.
_COMPLEMENT_PAIRS = (("top", "bottom"), ("left", "right"))


class ModelOutput(Protocol):
    """What the objective reads of :class:`~examples.oamn.model.OAMNOutput` (``N`` rows)."""

    f: Tensor  # (N, C, h, w) E^I features
    m: Tensor  # (N, 1, h, w) attention masks
    g: Tensor  # (N, C, h, w) m * f
    pooled: Tensor  # (N, D) triplet features
    logits: Tensor  # (N, num_classes)
    grader_scores: Tensor  # (N, 4) columns top, bottom, left, right; (N, 9) types
    grader_logits: Tensor  # (N, 4) or (N, 9), the logits of grader_scores


@dataclass(frozen=True)
class ObjectiveResult:
    """The total loss and its parts.

    Attributes:
        loss: ``()`` float32 ``L1 + L2``, with its graph.
        components: detached ``()`` float32 values of the *unweighted* terms that were computed,
            among ``"mask1"``, ``"mask2"``, ``"visibility"``, ``"triplet"``, ``"id"``,
            ``"score"``, and ``"loss"``
            (the total, weighted), for logging.
    """

    loss: Tensor
    components: dict[str, Tensor]


@dataclass(frozen=True)
class OAMNObjective:
    r"""The OAMN loss: ``L1 + L2`` of a batch of views, with a switch per term.

    The fields have the names and defaults of :class:`~examples.oamn.config.TrainConfig`'s (the
    paper's values but for the occlusion-awareness remedies); :meth:`from_config` copies them.

    Args:
        lambda_mask, lambda_triplet, lambda_id, lambda_score: ``lambda_1`` to ``lambda_4``.
        lambda_visibility: weight of ``oamn.losses.mask_visibility_loss`` (the mask against
            each cell's visible fraction, from the views' ``occluded`` pixels; not in the
            paper); 0 leaves it out.
        grader_head: ``"locations"``: ``L_score`` is ``oamn.losses.grader_loss`` on the 4
            scores (``grader_convention``); ``"types"``: the cross-entropy of the 9 grader
            logits against each view's occlusion type (0 for the holistic views).
        mask_alpha1, mask_alpha2: weights of ``L_mask1`` and ``L_mask2`` inside ``L_mask``.
        loss_mask, loss_triplet, loss_id, loss_score: include the term.
        grouped_triplet: mine within each occlusion location (``L_tri-g``), else plain batch-hard.
        margin: triplet margin; distances are plain Euclidean on un-normalised ``h``.
        label_smoothing: of the identity cross-entropy.
        mask_reduction: ``"mean"`` or ``"batchmean"``, see ``oamn.losses.mask_consistency_loss``.
        grader_convention: ``"paper"``, ``"official"`` or ``"distribution"``, see
            ``oamn.losses.grader_targets``.
        routing: ``"paper"`` or ``"official"``, see the module docstring.
        mask_loss_scale: ``"paper"`` (the mask losses as printed, homogeneous of degree 2 in the
            mask) or ``"invariant"`` (their scale-normalised forms: ``normalize=True`` for
            ``L_mask1``, the holistic masks as ``m_holistic`` for ``L_mask2``; see
            ``oamn.losses.mask``).

    ``L_mask2`` pairs top with bottom and left with right; with a location set that lacks one
    pair (Table 3's ``{t, b}``) only the complete pairs count (an incomplete pair is passed to
    ``oamn.losses.mask_complement_loss`` as ``None``, which leaves its term out), and without any
    complete pair ``L_mask2`` is left out. It is also left out for ``ObjectOcclusion``'s views:
    object occluders at opposite sides do not add up to the image as half bands do.

    Example:
        >>> from types import SimpleNamespace
        >>> from oamn.occlusion_aug import OcclusionAugmentation
        >>> views = OcclusionAugmentation()(torch.rand(4, 3, 16, 8))  # 4 images, 5 views each
        >>> N = views.images.shape[0]  # 20 rows, as a model would give them
        >>> out = SimpleNamespace(f=torch.rand(N, 8, 4, 2), m=torch.rand(N, 1, 4, 2),
        ...     pooled=torch.rand(N, 16), logits=torch.rand(N, 3),
        ...     grader_scores=torch.rand(N, 4).softmax(1))
        >>> out.g = out.m * out.f
        >>> result = OAMNObjective()(out, torch.tensor([0, 0, 1, 1]), views)
        >>> sorted(result.components)
        ['id', 'loss', 'mask1', 'mask2', 'score', 'triplet']
    """

    lambda_mask: float = 1.0
    lambda_triplet: float = 0.5
    lambda_id: float = 1.0
    lambda_score: float = 1.0
    lambda_visibility: float = 0.0
    mask_alpha1: float = 1.0
    mask_alpha2: float = 1.0
    loss_mask: bool = True
    loss_triplet: bool = True
    grouped_triplet: bool = True
    loss_id: bool = True
    loss_score: bool = True
    margin: float = 0.5
    label_smoothing: float = 0.0
    mask_reduction: str = "mean"
    grader_convention: str = "paper"
    routing: str = "official"
    mask_loss_scale: str = "invariant"
    grader_head: str = "locations"

    def __post_init__(self) -> None:
        if self.routing not in ROUTINGS:
            raise ValueError(f"routing must be one of {tuple(ROUTINGS)}, got {self.routing!r}")
        if self.mask_loss_scale not in MASK_LOSS_SCALES:
            raise ValueError(
                f"mask_loss_scale must be one of {MASK_LOSS_SCALES}, got {self.mask_loss_scale!r}"
            )

    @classmethod
    def from_config(cls, config: TrainConfig) -> OAMNObjective:
        """The objective of a training configuration (same-named fields)."""
        return cls(**{spec.name: getattr(config, spec.name) for spec in dataclasses.fields(cls)})

    def __call__(
        self, output: ModelOutput, pids: Tensor, views: OcclusionBatch | None = None
    ) -> ObjectiveResult:
        r"""The loss of one batch.

        Args:
            output: the model's output for the ``N = V * B`` rows of ``views.images``, or for
                the ``B`` holistic images when ``views`` is ``None``.
            pids: ``(B,)`` int64 identity labels (``0..num_classes-1``) of the ``B`` images.
            views: the augmentation's output the model ran on, holistic views included (the
                default ``include_holistic=True``); ``None`` for a batch of holistic images
                only (the baseline).

        Returns:
            The :class:`ObjectiveResult`. Outputs in a lower precision (AMP) are promoted to
            float32 first.
        """
        blocks = _view_blocks(output, pids, views)
        batch = pids.shape[0]
        labels = pids if views is None else pids[views.sample_index]
        location = area = None
        if views is not None:
            location, area = views.location, views.area
        occluded = len(blocks) > 1
        weighted: list[Tensor] = []
        components: dict[str, Tensor] = {}

        def add(name: str, value: Tensor, weight: float) -> None:
            components[name] = value.detach()
            weighted.append(weight * value)

        if self.loss_id:
            logits = output.logits.float()
            identity = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
            add("id", identity, self.lambda_id)
        if self.loss_triplet:
            pooled = output.pooled.float()
            if self.grouped_triplet and occluded:
                triplet = grouped_triplet_loss(pooled, labels, location, self.margin)
            else:
                triplet = batch_hard_triplet_loss(pooled, labels, self.margin)
            add("triplet", triplet, self.lambda_triplet)
        if self.loss_mask and occluded:
            for name, value, alpha in self._mask_losses(output, blocks, batch, views):
                add(name, value, self.lambda_mask * alpha)
        if self.lambda_visibility > 0 and occluded:
            visibility = mask_visibility_loss(output.m.float(), views.occluded)
            add("visibility", visibility, self.lambda_visibility)
        if self.loss_score and occluded:
            if self.grader_head == "types":
                types = views.occlusion_type
                score = F.cross_entropy(output.grader_logits.float(), types)
            else:
                score = grader_loss(
                    output.grader_scores.float(), location, area, self.grader_convention
                )
            add("score", score, self.lambda_score)
        loss = torch.stack(weighted).sum()
        components["loss"] = loss.detach()
        return ObjectiveResult(loss, components)

    def _mask_losses(
        self, output: ModelOutput, views: list[str], batch: int, batch_views: OcclusionBatch
    ) -> list[tuple[str, Tensor, float]]:
        area, views_params = batch_views.area, batch_views.params
        f, m = output.f.float(), output.m.float()
        if ROUTINGS[self.routing].mask_losses_detach_features:
            f = f.detach()
            g = m * f
        else:
            g = output.g.float()
        invariant = self.mask_loss_scale == "invariant"
        m_holistic = m[:batch] if invariant else None
        terms = [
            (
                "mask1",
                mask_consistency_loss(
                    f[:batch], f[batch:], m[batch:], self.mask_reduction, normalize=invariant
                ),
                self.mask_alpha1,
            )
        ]
        blocks = {name: g[v * batch : (v + 1) * batch] for v, name in enumerate(views)}
        holistic = blocks["none"]
        complete = [pair for pair in _COMPLEMENT_PAIRS if all(p in blocks for p in pair)]
        if isinstance(views_params, ObjectOcclusionParams):
            # Object occluders of two opposite sides do not tile the image as half bands do.
            complete = []
        if complete:
            # An incomplete pair (e.g. top without bottom) has no L_mask2 term: pass it as None.
            copies = [
                blocks[name] if any(name in pair for pair in complete) else None
                for name in BAND_LOCATIONS
            ]
            is_half = area[batch : 2 * batch] == AREAS[0]  # the half bands
            mask2 = mask_complement_loss(
                holistic, *copies, is_half, self.mask_reduction, m_holistic=m_holistic
            )
            terms.append(("mask2", mask2, self.mask_alpha2))
        return terms


def _view_blocks(output: ModelOutput, pids: Tensor, views: OcclusionBatch | None) -> list[str]:
    """Check that ``output``, ``pids`` and ``views`` describe one batch; return the location
    name of each block of ``B`` rows."""
    if not isinstance(pids, Tensor) or pids.ndim != 1 or pids.numel() == 0:
        raise ValueError("pids must be a non-empty (B,) tensor of identity labels")
    batch, rows = pids.shape[0], output.logits.shape[0]
    if views is None:
        if rows != batch:
            raise ValueError(
                f"without views the batch must be the {batch} holistic images, got {rows} "
                "rows; pass the OcclusionBatch the model ran on"
            )
        return ["none"]
    if views.params.batch_size != batch or views.images.shape[0] != rows:
        raise ValueError(
            f"the views were made from {views.params.batch_size} images into "
            f"{views.images.shape[0]} rows, but pids has {batch} labels and the output {rows} "
            "rows: pass the OcclusionBatch the model ran on and its images' labels"
        )
    codes: list[Any] = views.location[::batch].tolist()
    if codes[0] != 0:
        raise ValueError(
            "the views lack the holistic images, which the objective compares the occluded "
            "views with: make them with OcclusionAugmentation(include_holistic=True)"
        )
    return [LOCATIONS[code] for code in codes]
