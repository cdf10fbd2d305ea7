"""Validation on held-out training identities: the split, its loaders, its metrics.

``--val-ids N`` holds ``N`` training identities out of training (a query/gallery split of them,
:func:`~examples.oamn.data.split_validation`); the run evaluates them every ``--val-every``
epochs and after the last one, and keeps ``checkpoint_best.pt`` by their mAP. The test set is
never looked at.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from oamn.reid_eval import evaluate_features

from .config import TrainConfig
from .data import ReIDItem, build_test_loader, split_validation
from .extraction import extract_features
from .reporting import rank_accuracies

__all__ = ["training_split", "validation_loaders", "validation_metrics"]


def training_split(
    train_items: Sequence[ReIDItem], config: TrainConfig
) -> tuple[Sequence[ReIDItem], Sequence[ReIDItem], Sequence[ReIDItem]]:
    """``(train_rest, val_query, val_gallery)``: the identities ``config.val_ids`` holds out for
    validation (:func:`~examples.oamn.data.split_validation`; a count ``>= 1`` or a fraction),
    or all of ``train_items`` and no validation split."""
    if not config.val_ids:
        return train_items, (), ()
    count = config.val_ids
    return split_validation(
        train_items, int(count) if count >= 1 else count, config.seed, name="--val-ids"
    )


def validation_loaders(
    query: Sequence[ReIDItem], gallery: Sequence[ReIDItem], config: TrainConfig
) -> tuple[DataLoader, ...]:
    """The loaders of the held-out identities' query and gallery images; none without them."""
    if not query:
        return ()
    return tuple(
        build_test_loader(items, config.height, config.width, config.val_batch_size, 0, split=split)
        for split, items in (("validation query", query), ("validation gallery", gallery))
    )


def validation_metrics(
    model: nn.Module,
    query: DataLoader,
    gallery: DataLoader,
    config: TrainConfig,
    device: torch.device,
) -> dict[str, float]:
    """``val_mAP``, ``val_R1``, ``val_R5``, ``val_R10`` and ``val_mINP`` of the held-out
    identities (the :data:`oamn.reid_eval.REPORTED_RANKS`, by
    :func:`~examples.oamn.reporting.rank_accuracies`: R_k at the last rank where the gallery is
    smaller than k).

    The forward passes run under ``config.amp``'s autocast (``"auto"`` resolved on ``device``).
    """
    query_set, gallery_set = (
        extract_features(model, loader, device, config.amp, config.progress)
        for loader in (query, gallery)
    )
    result = evaluate_features(
        query_set.features,
        gallery_set.features,
        query_set.pids,
        gallery_set.pids,
        query_set.camids,
        gallery_set.camids,
    )
    ranks = {f"val_{name}": value for name, value in rank_accuracies(result.cmc).items()}
    return {"val_mAP": result.mAP, **ranks, "val_mINP": result.mINP}
