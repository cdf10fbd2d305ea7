"""The synthetic benchmark's parameters: checked, and as JSON-ready values (its cache key)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from oamn.occlusion_aug import BAND_LOCATIONS

from .occluders import OCCLUDER_KINDS

__all__ = ["check_parameters", "thickness_bounds"]


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return int(value)


def _check_names(name: str, values: object, allowed: Sequence[str]) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a sequence of names from {tuple(allowed)}, got {values!r}")
    unknown = [value for value in values if value not in allowed]
    if unknown:
        raise ValueError(f"{name}: unknown {unknown}, choose from {tuple(allowed)}")
    if not values:
        raise ValueError(f"{name} must be non-empty, choose from {tuple(allowed)}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} must list each name once, got {list(values)}")
    return list(values)


def check_parameters(**kwargs: object) -> dict[str, object]:
    """The validated parameters as JSON-ready values (the cache key and the manifest)."""
    checked = {
        "seed": _check_int("seed", kwargs["seed"], 0),
        "num_train_ids": _check_int("num_train_ids", kwargs["num_train_ids"], 1),
        "num_test_ids": _check_int("num_test_ids", kwargs["num_test_ids"], 1),
        "cameras": _check_int("cameras", kwargs["cameras"], 2, 9),
        "images_per_id_per_camera": _check_int(
            "images_per_id_per_camera", kwargs["images_per_id_per_camera"], 1
        ),
        "queries_per_id": _check_int("queries_per_id", kwargs["queries_per_id"], 1),
        "height": _check_int("height", kwargs["height"], 32),
        "width": _check_int("width", kwargs["width"], 16),
        "occluder_kinds": _check_names("occluder_kinds", kwargs["occluder_kinds"], OCCLUDER_KINDS),
        "locations": _check_names("locations", kwargs["locations"], BAND_LOCATIONS),
        "min_share": _check_int("min_share", kwargs["min_share"], 1),
        "num_distractors": _check_int("num_distractors", kwargs["num_distractors"], 0),
        "num_junk": _check_int("num_junk", kwargs["num_junk"], 0),
        "jpeg_quality": _check_int("jpeg_quality", kwargs["jpeg_quality"], 1, 95),
    }
    total_ids = checked["num_train_ids"] + checked["num_test_ids"]
    if total_ids > 9999:
        raise ValueError(
            f"num_train_ids + num_test_ids must be <= 9999 (four-digit pids), got {total_ids}"
        )
    occlusion = kwargs["occlusion_range"]
    if not isinstance(occlusion, Sequence) or len(occlusion) != 2:
        raise TypeError(f"occlusion_range must be a (low, high) pair, got {occlusion!r}")
    low, high = (float(value) for value in occlusion)
    if not 0 < low <= high < 1:
        raise ValueError(f"occlusion_range must satisfy 0 < low <= high < 1, got {occlusion!r}")
    for side in ("height", "width"):
        thinnest, thickest = thickness_bounds(checked[side], low, high)
        if thinnest > thickest:
            raise ValueError(
                f"occlusion_range {occlusion!r} holds no whole line of a {checked[side]}-pixel "
                f"{side}; widen it"
            )
    checked["occlusion_range"] = [low, high]
    return checked


def thickness_bounds(length: int, low: float, high: float) -> tuple[int, int]:
    """The smallest and largest band thickness, in lines, within ``[low, high] * length``."""
    return max(1, math.ceil(low * length - 1e-9)), math.floor(high * length + 1e-9)
