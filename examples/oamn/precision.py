"""Mixed precision: the ``amp`` modes that training, extraction and the command lines accept.

``"none"`` runs in float32; ``"bf16"`` and ``"fp16"`` run the forward passes under
:func:`torch.autocast` with that dtype. Losses, features and distances stay float32 whatever
the mode (the model casts its outputs back). fp16 training needs a ``GradScaler`` (CUDA only);
bfloat16 needs none.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

__all__ = ["AMP_DTYPES", "AMP_MODES", "autocast", "check_amp"]

#: Autocast dtypes by mode name.
AMP_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: Every mode, ``"none"`` (float32) first: the choices of the ``--amp`` options.
AMP_MODES: tuple[str, ...] = ("none", *AMP_DTYPES)


def check_amp(amp: str | None) -> str | None:
    """``amp`` as a key of :data:`AMP_DTYPES`, or ``None`` for float32 (``None`` or ``"none"``).

    Example:
        >>> check_amp("none"), check_amp("bf16")
        (None, 'bf16')
    """
    if amp is None or amp == "none":
        return None
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp must be None, 'none' or one of {tuple(AMP_DTYPES)}, got {amp!r}")
    return amp


def autocast(device: torch.device, amp: str | None) -> AbstractContextManager:
    """The autocast context of mode ``amp`` on ``device``'s type (a no-op for float32).

    Example:
        >>> with autocast(torch.device("cpu"), "bf16"):
        ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
        torch.bfloat16
    """
    amp = check_amp(amp)
    if amp is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=AMP_DTYPES[amp])
