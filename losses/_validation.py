"""Argument checks shared by the losses of this package."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def check_float_tensor(value: Tensor, name: str, shape: str, ndim: int) -> None:
    """Raise unless ``value`` is a floating tensor of rank ``ndim`` with a non-empty batch.

    ``shape`` describes the expected shape in the error message, e.g. ``"(N, D)"``.
    """
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(
            f"{name} must be a floating tensor, got {value.dtype}; convert with {name}.float()"
        )
    if value.ndim != ndim:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(value.shape)}")
    if value.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (its first dimension is 0)")
    if value.numel() == 0:
        raise ValueError(f"{name} must have no empty dimension, got shape {tuple(value.shape)}")


def check_same_kind(value: Tensor, name: str, reference: Tensor, reference_name: str) -> None:
    """Raise unless ``value`` has the dtype and device of ``reference``."""
    if value.dtype != reference.dtype:
        raise TypeError(
            f"{name} is {value.dtype} but {reference_name} is {reference.dtype}; "
            f"convert with {name}.to({reference_name}.dtype)"
        )
    if value.device != reference.device:
        raise ValueError(
            f"{name} is on {value.device} but {reference_name} is on {reference.device}; "
            f"move it with {name}.to({reference_name}.device)"
        )


def to_tensor(value: Tensor | Sequence, name: str) -> Tensor:
    """``value`` as a tensor: tensors as they are, lists, tuples and numpy arrays converted.

    A value torch cannot convert (a ragged list, one holding strings or ``None``...) raises a
    TypeError naming ``name`` with torch's reason; torch's own error types do not tell a ragged
    list from a non-numeric one, so neither does this.
    """
    if isinstance(value, Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(
            f"{name} could not be made a tensor ({error}); pass a tensor or a list of numbers "
            f"whose nested lists all have the same length"
        ) from None


def check_integer_vector(
    value: Tensor | Sequence[int],
    name: str,
    length: int | None,
    device: torch.device | None,
    rows_of: str = "the features",
) -> Tensor:
    """``value`` as an int64 ``(length,)`` tensor on ``device``, or a clear error.

    ``length=None`` accepts any length; ``device=None`` keeps ``value``'s device.
    """
    value = to_tensor(value, name)
    if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
        raise TypeError(
            f"{name} must hold integers, got dtype {value.dtype}; convert with {name}.long()"
        )
    if length is None and value.ndim != 1:
        raise ValueError(f"{name} must have shape (N,), got {tuple(value.shape)}")
    if length is not None and (value.ndim != 1 or value.numel() != length):
        raise ValueError(
            f"{name} must have shape ({length},), one entry per row of {rows_of}, "
            f"got {tuple(value.shape)}"
        )
    return value.to(device=device, dtype=torch.int64)


def check_bool_vector(
    value: Tensor | Sequence[bool], name: str, length: int, device: torch.device
) -> Tensor:
    """``value`` (a tensor or a list of bools) as a bool ``(length,)`` tensor on ``device``, or a
    clear error."""
    value = to_tensor(value, name)
    if value.dtype != torch.bool:
        raise TypeError(
            f"{name} must be a bool tensor or a list of bools, got {value.dtype}; "
            f"convert with {name}.bool() or {name} == 1"
        )
    if value.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), got {tuple(value.shape)}")
    return value.to(device)


def check_margin(margin: float) -> float:
    """``margin`` as a float, or a ValueError unless it is a finite number ``>= 0``."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float)):
        raise TypeError(f"margin must be a number, got {type(margin).__name__}")
    if not math.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0, got {margin}")
    return float(margin)


def check_flag(value: bool, name: str) -> bool:
    """Raise a TypeError unless ``value`` is a bool (catches options passed positionally)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def check_choice(value: str, name: str, choices: tuple[str, ...]) -> str:
    """Raise a ValueError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_finite(**inputs: Tensor) -> None:
    """Raise a ValueError naming the first of ``inputs`` that holds NaN or inf.

    A sum per input screens them all with one device sync, at the cost of one read (an element
    test would allocate a mask as large as the input, about 15x slower on CPU); only a
    non-finite sum, which may also be a mere overflow, leads to the exact element test.
    """
    with torch.no_grad():
        sums = torch.stack([value.sum().float() for value in inputs.values()])
        if bool(torch.isfinite(sums).all()):
            return
        for name, value in inputs.items():
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"{name} contains NaN or inf values")
