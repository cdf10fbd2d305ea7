"""Argument checks and conversions shared by the public functions of this package.

Every public function accepts torch tensors (on any device), numpy arrays, or (nested) Python
lists and tuples of numbers. The first distance-like argument fixes the device; numpy arrays and
lists are moved there, torch tensors must already be there (moving a user's tensor silently would
hide a mistake).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

ArrayLike = Tensor | np.ndarray | list | tuple

#: numpy dtype kinds that convert to a torch dtype: bool, signed, unsigned, float, complex.
_NUMERIC_KINDS = "biufc"


def to_tensor(value: object, name: str, device: torch.device | None = None) -> Tensor:
    """``value`` as a tensor on ``device`` (zero-copy for numpy arrays on the CPU).

    Lists and tuples go through numpy, so Python floats stay float64 and ints int64.
    """
    if isinstance(value, Tensor):
        if device is not None and value.device != device:
            raise ValueError(
                f"{name} is on {value.device} but the distances/features are on {device}; "
                f"move it with {name}.to({str(device)!r})"
            )
        return value
    if isinstance(value, list | tuple):
        try:
            value = np.asarray(value)
        except ValueError:
            raise ValueError(
                f"{name} is a ragged list: its nested lists must all have the same length"
            ) from None
    if not isinstance(value, np.ndarray):
        raise TypeError(
            f"{name} must be a torch.Tensor, a numpy array or a list of numbers, "
            f"got {type(value).__name__}"
        )
    if value.dtype.kind not in _NUMERIC_KINDS:
        raise TypeError(f"{name} must hold numbers, got numpy dtype {value.dtype}")
    # torch refuses to alias read-only numpy memory without a warning; copy it instead.
    array = value if value.flags.writeable else value.copy()
    tensor = torch.from_numpy(array)
    return tensor if device is None else tensor.to(device)


def check_floating(tensor: Tensor, name: str, ndim: int, shape_text: str) -> Tensor:
    """Raise unless ``tensor`` is a real floating tensor with ``ndim`` dims."""
    if tensor.ndim != ndim:
        raise ValueError(f"{name} must have shape {shape_text}, got {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        raise TypeError(
            f"{name} must be a floating tensor/array, got {tensor.dtype}; "
            f"convert it with .float() / .astype(np.float32)"
        )
    return tensor


def check_no_nan(tensor: Tensor, name: str) -> None:
    """Raise a ValueError if floating ``tensor`` holds a NaN."""
    # The maximum propagates NaN and is several times faster than isnan().any() on large inputs.
    if tensor.numel() and bool(tensor.amax().isnan()):
        raise ValueError(f"{name} contains NaN; remove or replace them before evaluating")


def all_finite(tensor: Tensor) -> bool:
    """Whether floating ``tensor`` holds no NaN and no ``±inf`` (one pass over it)."""
    if not tensor.numel():
        return True
    lowest, highest = torch.aminmax(tensor)  # NaN propagates to both
    return bool(torch.isfinite(lowest) & torch.isfinite(highest))


def check_finite(tensor: Tensor, name: str) -> None:
    """Raise a ValueError naming ``name`` if floating ``tensor`` holds a NaN or an ``±inf``."""
    if all_finite(tensor):
        return
    highest = tensor.amax()
    found = "NaN" if bool(highest.isnan()) else "inf" if bool(highest.isinf()) else "-inf"
    raise ValueError(f"{name} contains {found}; remove or replace them before evaluating")


def to_labels(value: object, name: str, length: int, device: torch.device) -> Tensor:
    """``value`` as an int64 ``(length,)`` tensor on ``device`` (identities or camera ids)."""
    tensor = to_tensor(value, name, device)
    if tensor.dtype == torch.bool or tensor.is_floating_point() or tensor.is_complex():
        raise TypeError(
            f"{name} must hold integers, got {tensor.dtype}; convert it with .long() / "
            f".astype(np.int64)"
        )
    if tensor.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(tensor.shape)}")
    if tensor.numel() != length:
        raise ValueError(f"{name} has {tensor.numel()} entries, expected {length}")
    return tensor.to(torch.int64)


def check_positive_int(value: object, name: str) -> int:
    """``value`` if it is an int >= 1 (bools excluded), else a clear error."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def check_fraction(value: object, name: str) -> float:
    """``value`` as a float if it is a finite number in ``[0, 1]`` (bools excluded)."""
    if not isinstance(value, int | float | np.integer | np.floating) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number in [0, 1], got {type(value).__name__}")
    if not 0 <= value <= 1:  # NaN fails it too
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def check_flag(value: object, name: str) -> bool:
    """``value`` if it is a bool, else a TypeError (catches options passed in the wrong place)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else a ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value  # type: ignore[return-value]


def check_junk_pids(junk_pids: object) -> tuple[int, ...]:
    """``junk_pids`` as a tuple of ints."""
    if isinstance(junk_pids, str | bytes) or not isinstance(junk_pids, Sequence):
        raise TypeError(f"junk_pids must be a sequence of ints, got {type(junk_pids).__name__}")
    for pid in junk_pids:
        if not isinstance(pid, int | np.integer) or isinstance(pid, bool):
            raise TypeError(f"junk_pids must hold ints, got {pid!r}")
    return tuple(int(pid) for pid in junk_pids)


def check_thresholds(thresholds: object) -> tuple[float, float]:
    """``thresholds`` as a ``(low, high)`` pair of finite floats with ``low <= high``."""
    if not isinstance(thresholds, Sequence) or len(thresholds) != 2:
        raise ValueError(f"thresholds must be a (low, high) pair, got {thresholds!r}")
    if not all(isinstance(t, int | float | np.floating | np.integer) for t in thresholds):
        raise TypeError(f"thresholds must hold numbers, got {thresholds!r}")
    low, high = (float(t) for t in thresholds)
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"thresholds must be finite with low <= high, got {thresholds!r}")
    return low, high
