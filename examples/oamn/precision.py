"""Mixed precision: the ``amp`` modes that training, extraction and the command lines accept.

``"none"`` runs in float32; ``"bf16"`` and ``"fp16"`` run the forward passes under
:func:`torch.autocast` with that dtype; ``"auto"`` (the commands' default) is ``"bf16"`` where
the device computes in bfloat16 natively (:func:`native_bf16`) and ``"none"`` elsewhere
(:func:`resolve_amp`). Losses, features and distances stay float32 whatever the mode: the
objective and the extraction cast the model's outputs to float32, and ``oamn.losses`` and
``oamn.reid_eval`` compute in float32 under autocast. fp16 training needs a ``GradScaler``
(CUDA only); bfloat16 needs none.

On a CPU without bfloat16 instructions autocast still runs, but oneDNN emulates bfloat16 and
the step is slower than in float32, which is why ``"auto"`` asks for the instructions.
"""

from __future__ import annotations

import platform
from contextlib import AbstractContextManager, nullcontext
from functools import cache
from pathlib import Path

import torch

__all__ = [
    "AMP_DTYPES",
    "AMP_MODES",
    "NATIVE_BF16_FLAGS",
    "autocast",
    "bf16_flags",
    "check_amp",
    "cpu_bf16_flags",
    "native_bf16",
    "resolve_amp",
]

#: Autocast dtypes by mode name.
AMP_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: Every mode: the choices of the ``--amp`` options (``"auto"`` the default).
AMP_MODES: tuple[str, ...] = ("auto", "none", *AMP_DTYPES)
#: CPU feature flags (``/proc/cpuinfo``) of native bfloat16 arithmetic: Intel AMX and
#: AVX-512 BF16 (x86-64), the ARMv8.6 BF16 extension (aarch64).
NATIVE_BF16_FLAGS: frozenset[str] = frozenset({"amx_bf16", "avx512_bf16", "bf16"})


def check_amp(amp: str | None) -> str | None:
    """``amp`` as a key of :data:`AMP_DTYPES`, or ``None`` for float32 (``None`` or ``"none"``).

    ``"auto"`` needs a device: resolve it first with :func:`resolve_amp`.

    Example:
        >>> check_amp("none"), check_amp("bf16")
        (None, 'bf16')
    """
    if amp is None or amp == "none":
        return None
    if amp == "auto":
        raise ValueError("amp='auto' depends on the device: resolve it with resolve_amp first")
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp must be one of {AMP_MODES} or None, got {amp!r}")
    return amp


@cache
def cpu_bf16_flags() -> frozenset[str]:
    """This CPU's flags among :data:`NATIVE_BF16_FLAGS`, from ``/proc/cpuinfo`` (empty where it
    cannot be read: systems other than Linux count as having none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    return bf16_flags(text, platform.machine())


def bf16_flags(cpuinfo: str, machine: str) -> frozenset[str]:
    r"""The flags among :data:`NATIVE_BF16_FLAGS` of a ``/proc/cpuinfo`` text, on ``machine``
    (:func:`platform.machine`: ``bf16`` counts on ARM only).

    Example:
        >>> sorted(bf16_flags("flags\t\t: fpu avx512f avx512_bf16 amx_tile\n", "x86_64"))
        ['avx512_bf16']
        >>> sorted(bf16_flags("Features\t: fp asimd bf16\n", "aarch64"))
        ['bf16']
    """
    flags = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86-64, ARM
            flags.update(value.split())
    if machine.lower() not in ("aarch64", "arm64"):
        flags.discard("bf16")
    return frozenset(flags & NATIVE_BF16_FLAGS)


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes in bfloat16 natively: a CUDA device that supports it
    (compute capability 8.0 and up), a CPU with AMX, AVX-512 BF16 or ARM BF16 instructions.

    Example:
        >>> native_bf16("meta")
        False
    """
    device = torch.device(device)
    if device.type == "cuda":
        # Compute capability 8.0 (Ampere) and up: bf16 tensor cores. Asked of the device itself
        # (torch.cuda.is_bf16_supported asks the current one).
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        return bool(cpu_bf16_flags())
    return False


def resolve_amp(amp: str | None, device: torch.device | str) -> str:
    """The mode ``amp`` stands for on ``device``: ``"auto"`` becomes ``"bf16"`` where
    :func:`native_bf16` holds and ``"none"`` elsewhere; ``None`` becomes ``"none"``; the
    others are returned as they are, once checked.

    Raises:
        ValueError: an unknown mode, or ``"fp16"`` off CUDA (it needs a ``GradScaler`` on the
            GPU; use ``"bf16"`` or ``"none"``).

    Example:
        >>> resolve_amp("none", "cpu"), resolve_amp(None, "cpu"), resolve_amp("bf16", "cpu")
        ('none', 'none', 'bf16')
    """
    device = torch.device(device)
    if amp == "auto":
        return "bf16" if native_bf16(device) else "none"
    amp = check_amp(amp) or "none"
    if amp == "fp16" and device.type != "cuda":
        raise ValueError(f"amp fp16 needs CUDA but the device is {device}; use bf16 or none")
    return amp


def autocast(device: torch.device, amp: str | None) -> AbstractContextManager:
    """The autocast context of mode ``amp`` on ``device``'s type (a no-op for float32);
    ``"auto"`` is resolved on ``device`` (:func:`resolve_amp`).

    Example:
        >>> with autocast(torch.device("cpu"), "bf16"):
        ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
        torch.bfloat16
    """
    amp = check_amp(resolve_amp(amp, device))
    if amp is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=AMP_DTYPES[amp])
