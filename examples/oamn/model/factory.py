"""The model a training configuration describes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..routing import ROUTINGS
from .oamn import OAMN

if TYPE_CHECKING:  # the configuration module imports this package for its choices
    from ..config import TrainConfig

__all__ = ["build_model"]


def build_model(config: TrainConfig, num_classes: int) -> OAMN:
    """The :class:`~examples.oamn.model.OAMN` a configuration describes, in train mode.

    Args:
        config: the run's configuration (its model fields: ``backbone``, ``split_after``,
            ``last_stride``, ``height`` and ``width``, ``weights``, ``pooling``, ``dropout``,
            ``mask_module``, ``mask_spatial_reduction``, ``mask_down_ratio``, ``grader``, and
            ``routing``, whose :class:`~examples.oamn.routing.Routing` says whether the mask
            module sees ``f.detach()``).
        num_classes: number of training identities of the classifier.

    Returns:
        The model on the CPU.

    Example:
        >>> from examples.oamn.config import TrainConfig
        >>> config = TrainConfig(backbone="resnet18", height=64, width=32, routing="official")
        >>> model = build_model(config, num_classes=3)
        >>> model.classifier.out_features, model.mask.detach_input
        (3, True)
    """
    return OAMN(
        num_classes,
        backbone=config.backbone,
        split_after=config.split_after,
        last_stride=config.last_stride,
        input_size=(config.height, config.width),
        weights=config.weights,
        pooling=config.pooling,
        dropout=config.dropout,
        use_mask=config.mask_module,
        detach_mask_input=ROUTINGS[config.routing].mask_input_detached,
        mask_spatial_reduction=config.mask_spatial_reduction,
        mask_down_ratio=config.mask_down_ratio,
        grader=config.grader,
    )
