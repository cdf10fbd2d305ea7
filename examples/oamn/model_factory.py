"""The model a training configuration describes.

The bridge between :class:`~examples.oamn.config.TrainConfig` and
:class:`~examples.oamn.model.OAMN`: the model package knows nothing of the configuration, and the
configuration only takes its choices (backbones, graders...) from the model package.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any

from .config import TrainConfig
from .model import OAMN
from .routing import ROUTINGS

__all__ = ["build_model", "model_arguments", "option_names"]


def model_arguments(config: TrainConfig) -> dict[str, Any]:
    """The keyword arguments of :class:`~examples.oamn.model.OAMN` (all but ``num_classes``)
    that a configuration describes.

    Its model fields: ``backbone``, ``split_after``, ``last_stride``, ``height`` and ``width``,
    ``weights``, ``pooling``, ``dropout``, ``mask_module``, ``mask_spatial_reduction``,
    ``mask_down_ratio``, ``grader``, ``grader_head``, and ``routing``, whose
    :class:`~examples.oamn.routing.Routing` says whether the mask module sees ``f.detach()``.
    The defaults of :class:`TrainConfig` give :class:`~examples.oamn.model.OAMN`'s defaults.

    Example:
        >>> arguments = model_arguments(TrainConfig(height=128, width=64, routing="paper"))
        >>> arguments["input_size"], arguments["detach_mask_input"], arguments["grader"]
        ((128, 64), False, 'feature_profiles')
    """
    return {
        **{name: getattr(config, name) for name in _SAME_NAMES},
        "input_size": (config.height, config.width),
        "use_mask": config.mask_module,
        "detach_mask_input": ROUTINGS[config.routing].mask_input_detached,
    }


def build_model(config: TrainConfig, num_classes: int) -> OAMN:
    """The :class:`~examples.oamn.model.OAMN` a configuration describes, in train mode.

    Args:
        config: the run's configuration (its model fields, see :func:`model_arguments`).
        num_classes: number of training identities of the classifier.

    Returns:
        The model on the CPU.

    Raises:
        ValueError, FileNotFoundError: settings that cannot build a model (a feature map too
            small for the mask's reductions, weights that are neither a file nor a name),
            naming the training options (:func:`option_names`).

    Example:
        >>> config = TrainConfig(backbone="resnet18", height=64, width=32, routing="official")
        >>> model = build_model(config, num_classes=3)
        >>> model.classifier.out_features, model.mask.detach_input
        (3, True)
    """
    try:
        return OAMN(num_classes, **model_arguments(config))
    except (ValueError, FileNotFoundError) as error:
        raise type(error)(option_names(str(error))) from error


#: The arguments of :class:`~examples.oamn.model.OAMN` that :func:`model_arguments` passes from
#: the configuration field of the same name.
_SAME_NAMES: tuple[str, ...] = tuple(
    name
    for name in inspect.signature(OAMN).parameters
    if name in {spec.name for spec in dataclasses.fields(TrainConfig)}
)


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
