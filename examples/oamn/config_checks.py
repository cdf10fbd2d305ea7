"""The checks of a :class:`~examples.oamn.config.TrainConfig`'s values, run on construction.

Each raises ``ValueError`` for the first bad value, naming the field and its command-line option
(``lr (--lr) must be a finite number, got nan``): types and choices, finiteness (NaN passes
every range check written as a comparison), ranges, the learning-rate schedule, the occlusion
settings, the losses and the device.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import types
import typing
from typing import Any

from oamn.occlusion_aug import AREAS, BAND_LOCATIONS

from .dataclass_cli import is_instance, option_flag, optional_type

__all__ = ["check_config"]


def _flag(name: str) -> str:
    return f"{name} ({option_flag(name)})"


def check_config(config: Any) -> None:
    """Raise ``ValueError`` naming the field and its option for the first bad value of
    ``config``, a :class:`~examples.oamn.config.TrainConfig` being constructed (typed ``Any``:
    the configuration module imports this one, which must not import it back)."""
    _check_types_and_choices(config)
    _check_finite(config)
    _check_ranges(config)
    _check_schedule(config)
    _check_occlusion(config)
    _check_losses(config)
    _check_device(config)


def _check_types_and_choices(config: Any) -> None:
    hints = typing.get_type_hints(type(config))
    for spec in dataclasses.fields(config):
        value = getattr(config, spec.name)
        _check_type(spec.name, value, hints[spec.name])
        choices = spec.metadata["choices"]
        if choices and value not in choices:
            raise ValueError(f"{_flag(spec.name)} must be one of {choices}, got {value!r}")


def _check_finite(config: Any) -> None:
    """Every float is finite: the range checks below compare, and NaN passes every
    comparison it fails (``nan < 0`` is false)."""
    for spec in dataclasses.fields(config):
        value = getattr(config, spec.name)
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            if isinstance(value, tuple):
                shown = ",".join(map(str, values))
                raise ValueError(f"{_flag(spec.name)} must be finite numbers, got {shown}")
            raise ValueError(f"{_flag(spec.name)} must be a finite number, got {value}")


def _check_ranges(config: Any) -> None:
    positive = (
        "height", "width", "instances_per_id", "epochs", "val_every", "val_batch_size",
        "mask_spatial_reduction", "mask_down_ratio",
    )  # fmt: skip
    for name in positive:  # None, where allowed, is automatic
        if getattr(config, name) is not None and getattr(config, name) < 1:
            raise ValueError(f"{_flag(name)} must be >= 1, got {getattr(config, name)}")
    if config.ids_per_batch < 2:
        raise ValueError(
            f"{_flag('ids_per_batch')} must be >= 2 (triplets need negatives), "
            f"got {config.ids_per_batch}"
        )
    non_negative = (
        "workers", "pad", "rotation", "max_steps_per_epoch", "warmup_epochs", "lr", "momentum",
        "weight_decay", "lr_mult_backbone", "lr_mult_mask", "lr_mult_head", "lambda_mask",
        "lambda_triplet", "lambda_id", "lambda_score", "mask_alpha1", "mask_alpha2", "margin",
        "val_ids",
    )  # fmt: skip
    for name in non_negative:
        if getattr(config, name) < 0:
            raise ValueError(f"{_flag(name)} must be >= 0, got {getattr(config, name)}")
    if config.nesterov and config.momentum == 0:
        raise ValueError(
            f"{_flag('nesterov')} needs a momentum > 0; set --momentum or add --no-nesterov"
        )
    if not 0.0 <= config.flip_prob <= 1.0:
        raise ValueError(
            f"{_flag('flip_prob')} must be a probability in [0, 1], got {config.flip_prob}"
        )
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"{_flag('dropout')} must be in [0, 1), got {config.dropout}")
    if not 0.0 <= config.label_smoothing < 1.0:
        raise ValueError(
            f"{_flag('label_smoothing')} must be in [0, 1), got {config.label_smoothing}"
        )
    if config.last_stride not in (1, 2):
        raise ValueError(f"{_flag('last_stride')} must be 1 or 2, got {config.last_stride}")
    if config.val_ids >= 1 and config.val_ids != int(config.val_ids):
        raise ValueError(
            f"{_flag('val_ids')} must be a whole count (>= 1) or a fraction (< 1), "
            f"got {config.val_ids}"
        )


def _check_losses(config: Any) -> None:
    if config.loss_triplet and config.instances_per_id < 2:
        raise ValueError(
            f"{_flag('instances_per_id')} must be >= 2 for the triplet loss (positives), got "
            f"{config.instances_per_id}; or add --no-loss-triplet"
        )
    if not (config.loss_id or config.loss_triplet):
        raise ValueError("at least one identity loss is needed: enable --loss-id or --loss-triplet")
    if not config.grader_none_weight > 0:
        raise ValueError(
            f"{_flag('grader_none_weight')} must be > 0, got {config.grader_none_weight}"
        )
    if config.lambda_visibility < 0:
        raise ValueError(
            f"{_flag('lambda_visibility')} must be >= 0, got {config.lambda_visibility}"
        )
    if config.lambda_visibility > 0 and not (config.mask_module and config.occlusion):
        raise ValueError(
            f"{_flag('lambda_visibility')} supervises the mask with the augmentation's occluders: "
            "it needs --mask-module and --occlusion (or set it to 0)"
        )


def _check_device(config: Any) -> None:
    if config.device != "auto" and not config.device.startswith(("cpu", "cuda")):
        raise ValueError(
            f"{_flag('device')} must be auto, cpu, cuda or cuda:N, got {config.device!r}"
        )
    if config.amp == "fp16" and config.device == "cpu":
        raise ValueError(
            f"{_flag('amp')} fp16 needs CUDA (a GradScaler on the GPU); on the CPU use --amp bf16 "
            "or --amp none"
        )


def _check_type(name: str, value: Any, kind: Any) -> None:
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        valid = isinstance(value, tuple) and all(is_instance(v, item) for v in value)
        expected = f"a list of {item.__name__}"
    elif isinstance(kind, types.UnionType):
        item = optional_type(kind)
        valid = value is None or is_instance(value, item)
        expected = f"of type {item.__name__} or null"
    else:
        valid = is_instance(value, kind)
        expected = f"of type {kind.__name__}"
    if not valid:
        raise ValueError(f"{_flag(name)} must be {expected}, got {value!r}")


def _check_schedule(config: Any) -> None:
    if len(config.lr_steps) != len(config.lr_step_values):
        raise ValueError(
            f"{_flag('lr_steps')} and {_flag('lr_step_values')} must have the same length, got "
            f"{config.lr_steps} and {config.lr_step_values}"
        )
    steps = config.lr_steps
    if any(b <= a for a, b in itertools.pairwise(steps)) or any(s < 0 for s in steps):
        raise ValueError(f"{_flag('lr_steps')} must be increasing epochs >= 0, got {steps}")
    if any(v < 0 for v in config.lr_step_values):
        raise ValueError(f"{_flag('lr_step_values')} must be >= 0, got {config.lr_step_values}")


def _check_occlusion(config: Any) -> None:
    locations = config.occlusion_locations
    unknown = [name for name in locations if name not in BAND_LOCATIONS]
    if unknown or not locations or len(set(locations)) != len(locations):
        raise ValueError(
            f"{_flag('occlusion_locations')} must be distinct names from "
            f"{','.join(BAND_LOCATIONS)}, got {','.join(locations) or 'nothing'}"
        )
    areas = config.occlusion_areas
    if not areas or len(set(areas)) != len(areas) or any(a not in AREAS for a in areas):
        raise ValueError(
            f"{_flag('occlusion_areas')} must be distinct values from "
            f"{','.join(map(str, AREAS))} (the grader and the test-time bank know these two), "
            f"got {areas}"
        )
    if config.loss_mask and not config.mask_module:
        raise ValueError(
            "L_mask constrains the attention mask, which --no-mask-module removes; "
            "add --no-loss-mask"
        )
