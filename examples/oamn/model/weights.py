"""ImageNet backbone weights from a local torchvision state dict (nothing is ever downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["CLASSIFIER_PREFIXES", "load_backbone_weights"]

#: State-dict prefixes of torchvision's ImageNet classification heads (ResNet ``fc``,
#: MobileNetV2 ``classifier``): OAMN drops those layers, so their keys are ignored on both sides.
CLASSIFIER_PREFIXES: tuple[str, ...] = ("fc.", "classifier.")

_LISTED_KEYS = 5
_OPTIONAL_SUFFIX = ".num_batches_tracked"


def load_backbone_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    r"""Load a local torchvision ImageNet state dict into a torchvision model, in place.

    The file is read with ``torch.load(weights_only=True)`` onto the CPU; values are copied into
    ``model``'s parameters and buffers (keeping their device and dtype). Keys of the ImageNet
    classification head (:data:`CLASSIFIER_PREFIXES`) are ignored, in the file and in the model;
    every other key must match by name and shape.

    Args:
        model: the full torchvision model, e.g. from
            :func:`~examples.oamn.model.build_torchvision_model` (load before splitting it).
        path: a ``.pth`` file holding the model's ``state_dict()`` (a mapping of names to
            tensors), e.g. ``torchvision.models.ResNet50_Weights.IMAGENET1K_V1`` saved elsewhere.

    Raises:
        FileNotFoundError: ``path`` does not exist (there is no network to download weights).
        ValueError: the file is not a state dict, or keys are missing, unexpected or of another
            shape (a few of each are listed).

    Example:
        >>> import tempfile
        >>> from examples.oamn.model import build_torchvision_model
        >>> source = build_torchvision_model("resnet18")
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = Path(folder) / "resnet18.pth"
        ...     torch.save(source.state_dict(), path)
        ...     target = build_torchvision_model("resnet18")
        ...     load_backbone_weights(target, path)
        >>> torch.equal(target.conv1.weight, source.conv1.weight)
        True
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"backbone weights not found at {str(path)!r}. No network is available to download "
            f"ImageNet weights: pass --weights PATH to a local torchvision ImageNet state dict "
            f"(or no weights for a random initialisation)"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(
            f"{str(path)!r} does not hold a state dict (a mapping of names to tensors) but a "
            f"{type(state).__name__}; save torchvision_model.state_dict() instead"
        )
    state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIXES)}
    expected = {
        k: v for k, v in model.state_dict().items() if not k.startswith(CLASSIFIER_PREFIXES)
    }
    # Old torchvision files predate BatchNorm's num_batches_tracked; load_state_dict fills it in.
    missing = [k for k in expected.keys() - state.keys() if not k.endswith(_OPTIONAL_SUFFIX)]
    problems = [
        _listed("missing", sorted(missing)),
        _listed("unexpected", sorted(state.keys() - expected.keys())),
        _listed(
            "of another shape",
            [
                f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
                for k, v in expected.items()
                if k in state and state[k].shape != v.shape
            ],
        ),
    ]
    problems = [p for p in problems if p]
    if problems:
        raise ValueError(
            f"{str(path)!r} does not match {type(model).__name__}: " + "; ".join(problems) + ". "
            "Pass the state dict of the same torchvision architecture as --backbone"
        )
    model.load_state_dict(state, strict=False)


def _listed(kind: str, keys: list[str]) -> str:
    if not keys:
        return ""
    more = f" and {len(keys) - _LISTED_KEYS} more" if len(keys) > _LISTED_KEYS else ""
    return f"{len(keys)} {kind} key(s): {', '.join(keys[:_LISTED_KEYS])}{more}"
