"""Training checkpoints: save, load, and rebuild the model for evaluation.

A checkpoint is a ``torch.save``'d dict (loadable with ``weights_only=True``)::

    {"format": 1, "config": TrainConfig.to_dict(), "model": state dict (no DDP "module."
     prefix), "num_classes": int, "epoch": epochs completed, "optimizer": state dict,
     "scaler": GradScaler state dict or None, "rng": generator states at the end of the epoch,
     "history": the per-epoch log records so far, "torch_threads": int,
     "train_images": split_digest of the training images or None,
     "digest": checkpoint_digest of all the rest}

``rng`` is informative: a resumed run does not need it, since every epoch re-derives all its
random draws from ``(seed, epoch)`` (see :mod:`examples.oamn.training`). ``torch_threads``,
``train_images`` and ``digest`` are absent from checkpoints written before they existed; those
load unverified.
Files are written atomically (:func:`~examples.oamn.run_files.write_atomic`), and a
checkpoint's weights load into a model only where the architecture options agree
(:func:`load_weights` names those that do not).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import ARCHITECTURE_FIELDS, TrainConfig, config_differences
from .model import OAMN, build_model
from .run_files import write_atomic

__all__ = [
    "checkpoint_bytes",
    "checkpoint_digest",
    "load_checkpoint",
    "load_model",
    "load_weights",
    "non_finite_tensors",
    "save_checkpoint",
]

FORMAT_VERSION = 1
_KEYS = ("config", "model", "num_classes", "epoch", "optimizer", "rng", "history")
#: ``torch.save`` writes a zip archive (since torch 1.6), which starts with these bytes.
_ZIP_MAGIC = b"PK\x03\x04"


def checkpoint_bytes(
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    config: TrainConfig,
    num_classes: int,
    rng_state: Mapping[str, Any],
    history: list[dict[str, Any]],
    scaler: torch.amp.GradScaler | None = None,
    train_images: str | None = None,
) -> bytes:
    """A checkpoint's file contents (``torch.save`` of the dict in the module docstring).

    Args:
        model: the model, or its ``DistributedDataParallel`` wrapper (the inner module is saved).
        optimizer: its state (momentum buffers, learning rates).
        epoch: number of epochs completed.
        config: the run's configuration.
        num_classes: the classifier's number of identities.
        rng_state: generator states to record, e.g. ``{"torch": torch.get_rng_state()}``.
        history: per-epoch records (JSON-compatible dicts).
        scaler: the fp16 ``GradScaler``, if one is in use.
        train_images: :func:`~examples.oamn.data.split_digest` of the images trained on, which
            a resumed run compares with its own.

    The checkpoint also records ``torch.get_num_threads()`` as ``"torch_threads"`` and its
    :func:`checkpoint_digest`. Serialised in memory, so that one epoch's copies
    (``checkpoint_last.pt``, ``checkpoint_best.pt``) are written from the same bytes.
    """
    module = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    state = {
        "format": FORMAT_VERSION,
        "config": config.to_dict(),
        "model": module.state_dict(),
        "num_classes": num_classes,
        "epoch": epoch,
        "optimizer": optimizer.state_dict(),
        "scaler": None if scaler is None or not scaler.is_enabled() else scaler.state_dict(),
        "rng": dict(rng_state),
        "history": list(history),
        # CPU results depend on it: resuming bit for bit needs the same count.
        "torch_threads": torch.get_num_threads(),
        "train_images": train_images,
    }
    state["digest"] = checkpoint_digest(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def save_checkpoint(path: str | os.PathLike[str], **contents: Any) -> None:
    """Write a checkpoint atomically (:func:`~examples.oamn.run_files.write_atomic`: a kill
    while writing leaves the previous file intact).

    Args:
        path: destination file; its folder must exist.
        **contents: the keyword arguments of :func:`checkpoint_bytes`.

    Raises:
        OSError: the file could not be written (the error names it).
    """
    write_atomic(path, checkpoint_bytes(**contents))


def checkpoint_digest(state: Mapping[str, Any]) -> str:
    """A BLAKE2b digest (64 hex digits) of a checkpoint's contents: every key, value and tensor
    (dtype, shape and bytes) but ``"digest"`` itself, in the order they are stored.

    ``torch.load`` does not check a file's tensor bytes, so a damaged checkpoint would load
    with corrupted weights; :func:`load_checkpoint` compares this digest instead.
    """
    hasher = hashlib.blake2b(digest_size=32)

    def add(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            hasher.update(f"tensor {value.dtype} {tuple(value.shape)};".encode())
            flat = value.detach().reshape(-1).cpu().contiguous()
            hasher.update(flat.view(torch.uint8).numpy().data)
        elif isinstance(value, Mapping):
            hasher.update(f"dict {len(value)};".encode())
            for key, item in value.items():
                add(key)
                add(item)
        elif isinstance(value, list | tuple):
            hasher.update(f"{type(value).__name__} {len(value)};".encode())
            for item in value:
                add(item)
        else:
            hasher.update(f"{type(value).__name__} {value!r};".encode())

    add({key: value for key, value in state.items() if key != "digest"})
    return hasher.hexdigest()


#: Settings added after checkpoints were first written, with the behaviour those checkpoints
#: were trained with: a stored configuration without them means these values, not today's
#: defaults (docs/AWARENESS.md changed the defaults).
_FIELDS_BEFORE_THEY_EXISTED: dict[str, Any] = {"grader": "pooled", "mask_loss_scale": "paper"}


def load_checkpoint(
    path: str | os.PathLike[str],
    map_location: str | torch.device = "cpu",
    *,
    verify: bool = True,
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: the checkpoint file.
        map_location: where its tensors go (default: the CPU).
        verify: compare the contents with the digest. ``False`` is for reading the settings,
            epoch or history only: the tensors are memory-mapped instead of read, and no digest
            is computed (a tenth of the time for a ResNet-50 checkpoint); load with ``True``
            before using the weights.

    Returns:
        The dict described in the module docstring. A configuration written before the
        ``grader`` and ``mask_loss_scale`` settings existed gets the values it was trained with
        (``"pooled"``, ``"paper"``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a file that is not such a checkpoint (the missing keys are named), or one
            whose contents do not match its digest (damaged after it was written).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:  # torch's own error for it is an empty message
        raise ValueError(
            f"checkpoint {path} is empty (0 bytes): a write that never finished; use another "
            "checkpoint of the run or train again"
        )
    with path.open("rb") as file:
        magic = file.read(len(_ZIP_MAGIC))
    if magic != _ZIP_MAGIC:  # torch's own errors for it talk of mmap or of unsafe loading
        raise ValueError(
            f"{path} is not a checkpoint: it is not the zip archive that torch.save writes; "
            "pass a checkpoint_*.pt written by python -m examples.oamn.train"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=not verify)
    except Exception as error:  # torch raises several kinds for corrupt or foreign files
        raise ValueError(f"checkpoint {path} could not be read: {_load_error(error)}") from error
    missing = [key for key in _KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise ValueError(
            f"{path} is not an OAMN training checkpoint (missing keys {missing}); write one "
            "with python -m examples.oamn.train"
        )
    if verify and "digest" in state and checkpoint_digest(state) != state["digest"]:
        raise ValueError(
            f"checkpoint {path} is corrupt: its contents do not match the digest written with "
            "them (the file was damaged after it was saved); restore it from a copy or train "
            "again"
        )
    if isinstance(state["config"], dict):
        state["config"] = {**_FIELDS_BEFORE_THEY_EXISTED, **state["config"]}
    return state


def _load_error(error: Exception) -> str:
    """Why ``torch.load`` failed, without its advice to load with ``weights_only=False``:
    that would run whatever code the file holds."""
    reason = str(error) or type(error).__name__
    if "weights_only" in reason:
        return (
            "it holds Python objects other than tensors and plain values, which a safe load "
            "refuses; it was not written by python -m examples.oamn.train"
        )
    return reason.strip().splitlines()[0]


def non_finite_tensors(tensors: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The names (dotted paths) of the floating-point tensors of a nested mapping that hold a
    NaN or an infinity, e.g. of a state dict or a checkpoint.

    Example:
        >>> weights = {"w": torch.ones(2), "b": torch.tensor([1.0, float("nan")])}
        >>> non_finite_tensors({"model": weights, "step": torch.tensor(3)})
        ['model.b']
    """
    names = []
    for key, value in tensors.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            names += non_finite_tensors(value, f"{name}.")
        elif (
            isinstance(value, torch.Tensor)
            and value.is_floating_point()
            and not bool(value.isfinite().all())
        ):
            names.append(name)
    return names


def load_model(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[OAMN, TrainConfig]:
    """The trained model of a checkpoint, in eval mode on ``device``, with its configuration.

    The ImageNet ``weights`` file named in the configuration is not read (the checkpoint holds
    every weight), so a checkpoint evaluates on a machine without that file.

    Example:
        >>> model, config = load_model("runs/oamn/checkpoint_best.pt")  # doctest: +SKIP
        >>> features, scores = model.extract(images)  # doctest: +SKIP
    """
    state = load_checkpoint(path)
    config = TrainConfig.from_dict(state["config"])
    model = build_model(dataclasses.replace(config, weights=None), state["num_classes"])
    load_weights(model, config, state, path)
    return model.to(device).eval(), config


def load_weights(
    model: nn.Module,
    config: TrainConfig,
    state: Mapping[str, Any],
    path: str | os.PathLike[str],
) -> None:
    """Load a checkpoint's weights into ``model``, built from ``config``.

    Args:
        model: the model to fill.
        config: the configuration ``model`` was built from.
        state: the checkpoint (:func:`load_checkpoint`).
        path: the checkpoint's file, for messages.

    Raises:
        ValueError: the weights do not fit: the message names the architecture options
            (:data:`~examples.oamn.config.ARCHITECTURE_FIELDS`) whose values differ between
            ``config`` and the checkpoint's, or else the parameters that differ (a checkpoint
            of another version of this code); or some are NaN or infinite (a diverged run).
    """
    non_finite = non_finite_tensors(state["model"])
    if non_finite:
        raise ValueError(
            f"checkpoint {path} holds {len(non_finite)} non-finite weight or buffer tensors "
            f"(e.g. {', '.join(non_finite[:3])}): it comes from a run that diverged; use an "
            "earlier checkpoint of that run"
        )
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:
        stored = TrainConfig.from_dict(state["config"])
        options = config_differences(stored, config, ARCHITECTURE_FIELDS, "checkpoint")
        if options:
            raise ValueError(
                f"checkpoint {path} holds a model of another architecture than this one: "
                f"{', '.join(options)}; use the checkpoint's values of these options"
            ) from None
        raise ValueError(
            f"checkpoint {path}'s weights do not fit the model its configuration describes "
            f"({_parameter_differences(model.state_dict(), state['model'])}); it was probably "
            "written by another version of examples.oamn"
        ) from None


def _parameter_differences(own: Mapping[str, torch.Tensor], saved: Mapping[str, Any]) -> str:
    """The first parameters that are missing, unexpected or of another shape, in words."""
    missing = sorted(own.keys() - saved.keys())
    unexpected = sorted(saved.keys() - own.keys())
    reshaped = [
        f"{name} {tuple(saved[name].shape)} instead of {tuple(own[name].shape)}"
        for name in own
        if name in saved and tuple(saved[name].shape) != tuple(own[name].shape)
    ]
    parts = [
        f"{len(names)} {kind}, e.g. {names[0]}"
        for kind, names in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("of another shape", reshaped),
        )
        if names
    ]
    return "; ".join(parts)
