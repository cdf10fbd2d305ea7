"""The losses' precision under ``torch.autocast``: float32, whatever the autocast dtype."""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, TypeVar

import torch
from torch import Tensor

Function = TypeVar("Function", bound=Callable[..., Any])


def float32_under_autocast(function: Function) -> Function:
    """Run ``function`` in float32 when autocast is on for its tensors' devices.

    A loss under bfloat16 or float16 autocast would otherwise compute its distance matrices in
    16 bits (autocast lowers matrix products), and sum 16-bit features with 8 bits of mantissa.
    So autocast is switched off for the call and 16-bit floating arguments are widened to
    float32: the loss, and its gradient with respect to them, are float32. Outside autocast the
    call is unchanged (a bfloat16 input computes in bfloat16, as asked).
    """

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        devices = {
            value.device.type
            for value in (*args, *kwargs.values())
            if isinstance(value, Tensor) and torch.amp.is_autocast_available(value.device.type)
        }
        if not any(torch.is_autocast_enabled(device) for device in devices):
            return function(*args, **kwargs)
        with ExitStack() as stack:
            for device in devices:
                stack.enter_context(torch.autocast(device, enabled=False))
            return function(
                *map(_widened, args), **{name: _widened(value) for name, value in kwargs.items()}
            )

    return wrapper  # type: ignore[return-value]


def _widened(value: Any) -> Any:
    if isinstance(value, Tensor) and value.is_floating_point() and value.element_size() < 4:
        return value.float()
    return value
