"""The model a training configuration describes."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..routing import ROUTINGS
from .oamn import OAMN

if TYPE_CHECKING:  # the configuration module imports this package for its choices
    from ..config import TrainConfig

__all__ = ["build_model", "option_names"]


def build_model(config: TrainConfig, num_classes: int) -> OAMN:
    """The :class:`~examples.oamn.model.OAMN` a configuration describes, in train mode.

    Args:
        config: the run's configuration (its model fields: ``backbone``, ``split_after``,
            ``last_stride``, ``height`` and ``width``, ``weights``, ``pooling``, ``dropout``,
            ``mask_module``, ``mask_spatial_reduction``, ``mask_down_ratio``, ``grader``,
            ``grader_head``, and
            ``routing``, whose :class:`~examples.oamn.routing.Routing` says whether the mask
            module sees ``f.detach()``).
        num_classes: number of training identities of the classifier.

    Returns:
        The model on the CPU.

    Raises:
        ValueError, FileNotFoundError: settings that cannot build a model (a feature map too
            small for the mask's reductions, weights that are neither a file nor a name),
            naming the training options (:func:`option_names`).

    Example:
        >>> from examples.oamn.config import TrainConfig
        >>> config = TrainConfig(backbone="resnet18", height=64, width=32, routing="official")
        >>> model = build_model(config, num_classes=3)
        >>> model.classifier.out_features, model.mask.detach_input
        (3, True)
    """
    try:
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
            grader_head=config.grader_head,
        )
    except (ValueError, FileNotFoundError) as error:
        raise type(error)(option_names(str(error))) from error


#: The arguments of :class:`~examples.oamn.model.OAMN` that :func:`build_model` passes from the
#: configuration field of the same name.
_SAME_NAMES = (
    "backbone", "split_after", "last_stride", "weights", "pooling", "dropout",
    "mask_spatial_reduction", "mask_down_ratio", "grader", "grader_head",
)  # fmt: skip


def option_names(message: str) -> str:
    """``message`` of :class:`~examples.oamn.model.OAMN`, with its arguments written as the
    training options that set them.

    Example:
        >>> option_names("weights='x.pth' is neither a file nor a weight name of backbone='vgg'")
        "--weights 'x.pth' is neither a file nor a weight name of --backbone 'vgg'"
        >>> option_names("input_size=(8, 4) gives a (1, 1) map")
        '--height 8 --width 4 gives a (1, 1) map'
    """
    message = re.sub(r"\binput_size=\((\d+), (\d+)\)", r"--height \1 --width \2", message)
    names = "|".join(_SAME_NAMES)
    return re.sub(rf"\b({names})=", lambda name: f"--{name[1].replace('_', '-')} ", message)
