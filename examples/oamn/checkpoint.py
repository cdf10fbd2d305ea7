"""Training checkpoints: the :class:`Checkpoint` a file holds, writing one, reading (and
migrating) one, and rebuilding its model for evaluation.

A checkpoint file is a ``torch.save``'d dict (loadable with ``weights_only=True``) whose keys are
:class:`Checkpoint`'s fields, ``"config"`` as :meth:`TrainConfig.to_dict
<examples.oamn.config.TrainConfig.to_dict>` writes it and ``"digest"`` the
:func:`checkpoint_digest` of all the rest. :func:`checkpoint_bytes` writes one (the run directory
writes the bytes atomically, :func:`~examples.oamn.run_files.write_atomic`);
:func:`load_checkpoint` reads one, verified, as a :class:`Checkpoint`.

Versions: ``"format"`` is the layout's version, :data:`FORMAT_VERSION` for the files this code
writes. A file of an older format is read by its own rules and brought up to date by one
migration per version (:data:`_MIGRATIONS`); a newer one is refused, naming both versions.
Format 1's keys and settings grew over time, so its files may lack ``scaler``,
``torch_threads``, ``train_images``, ``digest`` (those load unverified) and the ``amp``,
``grader`` and ``mask_loss_scale`` settings (they load as what such runs trained with:
``"none"``, ``"pooled"``, ``"paper"``). A format 2 file holds every key, and its configuration
every setting of its time. A setting added later is missing from older files and takes its
default; where that default is not what older runs did, bump :data:`FORMAT_VERSION` and add
the migration that fills in their behaviour.

A checkpoint's weights load into a model only where the architecture options agree
(:func:`load_weights` names those that do not).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import ARCHITECTURE_FIELDS, TrainConfig, config_differences
from .model import OAMN
from .model_factory import build_model

__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "checkpoint_bytes",
    "checkpoint_digest",
    "load_checkpoint",
    "load_model",
    "load_weights",
    "non_finite_tensors",
]

#: The format of the checkpoints this code writes, and the newest it reads.
FORMAT_VERSION = 2
#: ``torch.save`` writes a zip archive (since torch 1.6), which starts with these bytes.
_ZIP_MAGIC = b"PK\x03\x04"


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A training checkpoint as :func:`load_checkpoint` reads it (migrated to
    :data:`FORMAT_VERSION`).

    Attributes:
        format: the format version the file was written in (its contents are migrated).
        config: the run's configuration.
        model: the model's state dict (no DDP ``"module."`` prefix).
        num_classes: the classifier's number of identities.
        epoch: the number of epochs completed.
        optimizer: the optimiser's state dict (momentum buffers, learning rates).
        scaler: the fp16 ``GradScaler``'s state dict; ``None`` without one.
        rng: the generator states at the end of the epoch. Informative: a resumed run does not
            need it, since every epoch re-derives its random draws from ``(seed, epoch)``
            (:mod:`examples.oamn.training`).
        history: the per-epoch log records so far.
        torch_threads: ``torch.get_num_threads()`` of the run (CPU results depend on it);
            ``None`` in format 1 files written before it was recorded.
        train_images: :func:`~examples.oamn.data.split_digest` of the images trained on;
            ``None`` when not recorded.
        digest: the :func:`checkpoint_digest` written with the contents; ``None`` in format 1
            files written before digests (those load unverified).

    Example:
        >>> import tempfile
        >>> from examples.oamn.model_factory import build_model
        >>> config = TrainConfig(backbone="resnet18", height=64, width=32, weights=None)
        >>> model = build_model(config, num_classes=3)
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> path = Path(tempfile.mkdtemp()) / "checkpoint_last.pt"
        >>> _ = path.write_bytes(checkpoint_bytes(model=model, optimizer=optimizer, epoch=1,
        ...     config=config, num_classes=3, rng_state={}, history=[]))
        >>> checkpoint = load_checkpoint(path)
        >>> checkpoint.format, checkpoint.epoch, checkpoint.config == config
        (2, 1, True)
    """

    format: int
    config: TrainConfig
    model: dict[str, torch.Tensor]
    num_classes: int
    epoch: int
    optimizer: dict[str, Any]
    scaler: dict[str, Any] | None
    rng: dict[str, Any]
    history: list[dict[str, Any]]
    torch_threads: int | None
    train_images: str | None
    digest: str | None


#: The keys of every format's files: those that say what the file is and how to read the rest.
_KEYS = ("format", "config", "model", "num_classes", "epoch", "optimizer", "rng", "history")
#: The keys of a file of :data:`FORMAT_VERSION` (after migration).
_FIELDS = tuple(spec.name for spec in dataclasses.fields(Checkpoint))


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
    """A checkpoint's file contents: ``torch.save`` of the dict of :class:`Checkpoint`'s
    fields (see the module docstring), in format :data:`FORMAT_VERSION`.

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
    (``checkpoint_last.pt``, ``checkpoint_best.pt``) are written from the same bytes, which
    the caller writes (atomically: :func:`~examples.oamn.run_files.write_atomic`); the example
    of :class:`Checkpoint` writes and reads one.
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


def checkpoint_digest(state: Mapping[str, Any]) -> str:
    """A BLAKE2b digest (64 hex digits) of a checkpoint file's dict: every key, value and
    tensor (dtype, shape and bytes) but ``"digest"`` itself, in the order they are stored.

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


def _migrate_v1_to_v2(state: dict[str, Any]) -> dict[str, Any]:
    """Format 1 gained keys and settings over time; fill in those a file lacks with what its
    run had: no scaler, thread count, image digest or digest recorded, and the behaviour of
    runs from before the ``amp``, ``grader`` and ``mask_loss_scale`` settings (float32, the
    pooled grader, the paper's mask losses; docs/AWARENESS.md changed the defaults since)."""
    before_settings = {"amp": "none", "grader": "pooled", "mask_loss_scale": "paper"}
    config = state["config"]
    if isinstance(config, dict):  # anything else is refused as a configuration below
        config = before_settings | config
    unrecorded = {"scaler": None, "torch_threads": None, "train_images": None, "digest": None}
    return unrecorded | state | {"config": config}


#: ``_MIGRATIONS[v]`` brings the dict of a format ``v`` file to the layout of format ``v + 1``
#: (its ``"format"`` stays the version the file was written in); :func:`load_checkpoint` applies
#: them in turn up to :data:`FORMAT_VERSION`.
_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _migrate_v1_to_v2}


def load_checkpoint(
    path: str | os.PathLike[str],
    map_location: str | torch.device = "cpu",
    *,
    verify: bool = True,
) -> Checkpoint:
    """Read a checkpoint written by :func:`checkpoint_bytes` (of any format up to
    :data:`FORMAT_VERSION`, migrated to it).

    Args:
        path: the checkpoint file.
        map_location: where its tensors go (default: the CPU).
        verify: compare the contents with the digest. ``False`` is for reading the settings,
            epoch or history only: the tensors are memory-mapped instead of read, and no digest
            is computed (a tenth of the time for a ResNet-50 checkpoint); load with ``True``
            before using the weights.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a file that is not such a checkpoint (the missing keys are named), one of a
            newer format than this code reads, one whose configuration this code does not
            accept, or one whose contents do not match its digest (damaged after it was
            written).

    The example of :class:`Checkpoint` writes and reads one.
    """
    path = Path(path)
    state = _read(path, map_location, mmap=not verify)
    _check_keys(path, state, _KEYS)
    version = state["format"]
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise ValueError(
            f"checkpoint {path} is of format {version}, newer than the formats 1 to "
            f"{FORMAT_VERSION} that this version of examples.oamn reads: update examples.oamn "
            "to the version that wrote it"
        )
    if not isinstance(version, int) or version < 1:
        raise ValueError(
            f"{path} is not an OAMN training checkpoint (format {version!r}, which no version "
            "writes); write one with python -m examples.oamn.train"
        )
    # The digest covers the contents as written: checked before any migration changes them.
    if verify and "digest" in state and checkpoint_digest(state) != state["digest"]:
        raise ValueError(
            f"checkpoint {path} is corrupt: its contents do not match the digest written with "
            "them (the file was damaged after it was saved); restore it from a copy or train "
            "again"
        )
    for older in range(version, FORMAT_VERSION):
        state = _MIGRATIONS[older](state)
    _check_keys(path, state, _FIELDS)
    try:
        config = TrainConfig.from_dict(state["config"])
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"checkpoint {path} holds a configuration this version of examples.oamn does not "
            f"accept: {error}"
        ) from None
    return Checkpoint(**{name: state[name] for name in _FIELDS} | {"config": config})


def _read(path: Path, map_location: str | torch.device, *, mmap: bool) -> Any:
    """``torch.load`` of a checkpoint file (weights only), with errors that say what is wrong
    with the file."""
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
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as error:  # torch raises several kinds for corrupt or foreign files
        raise ValueError(f"checkpoint {path} could not be read: {_load_error(error)}") from error


def _check_keys(path: Path, state: Any, keys: tuple[str, ...]) -> None:
    missing = [key for key in keys if not isinstance(state, dict) or key not in state]
    if missing:
        raise ValueError(
            f"{path} is not an OAMN training checkpoint (missing keys {missing}); write one "
            "with python -m examples.oamn.train"
        )


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
    checkpoint = load_checkpoint(path)
    config = checkpoint.config
    model = build_model(dataclasses.replace(config, weights=None), checkpoint.num_classes)
    load_weights(model, config, checkpoint, path)
    return model.to(device).eval(), config


def load_weights(
    model: nn.Module,
    config: TrainConfig,
    checkpoint: Checkpoint,
    path: str | os.PathLike[str],
) -> None:
    """Load a checkpoint's weights into ``model``, built from ``config``.

    Args:
        model: the model to fill.
        config: the configuration ``model`` was built from.
        checkpoint: the checkpoint (:func:`load_checkpoint`).
        path: the checkpoint's file, for messages.

    Raises:
        ValueError: the weights do not fit: the message names the architecture options
            (:data:`~examples.oamn.config.ARCHITECTURE_FIELDS`) whose values differ between
            ``config`` and the checkpoint's, or else the parameters that differ (a checkpoint
            of another version of this code); or some are NaN or infinite (a diverged run).
    """
    non_finite = non_finite_tensors(checkpoint.model)
    if non_finite:
        raise ValueError(
            f"checkpoint {path} holds {len(non_finite)} non-finite weight or buffer tensors "
            f"(e.g. {', '.join(non_finite[:3])}): it comes from a run that diverged; use an "
            "earlier checkpoint of that run"
        )
    try:
        model.load_state_dict(checkpoint.model)
    except RuntimeError:
        options = config_differences(checkpoint.config, config, ARCHITECTURE_FIELDS, "checkpoint")
        if options:
            raise ValueError(
                f"checkpoint {path} holds a model of another architecture than this one: "
                f"{', '.join(options)}; use the checkpoint's values of these options"
            ) from None
        raise ValueError(
            f"checkpoint {path}'s weights do not fit the model its configuration describes "
            f"({_parameter_differences(model.state_dict(), checkpoint.model)}); it was probably "
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
