"""ImageNet backbone weights: a local torchvision state dict, or a torchvision weight enum.

``weights`` names either a file (``torch.load``'ed) or one of torchvision's weight enum members
for the backbone (``torchvision.models.ResNet50_Weights.IMAGENET1K_V2``, or its name such as
``"IMAGENET1K_V2"``, ``"DEFAULT"`` or ``"ResNet50_Weights.IMAGENET1K_V2"``). An enum member is read
the torchvision way, ``weights.get_state_dict()``: from the torch hub cache
(``$TORCH_HOME/hub/checkpoints/<file name of weights.url>``) when the file is there, otherwise
downloaded into it, which needs a network. Offline, that download fails with a
``ConnectionError`` that says to pass a local file instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn
from torchvision.models import WeightsEnum, get_model_weights, get_weight

from .backbones import BACKBONE_SPECS

__all__ = ["CLASSIFIER_PREFIXES", "load_backbone_weights", "resolve_backbone_weights"]

#: State-dict prefixes of the backbones' ImageNet classification heads (ResNet ``fc.``,
#: MobileNetV2 ``classifier.``; :attr:`~examples.oamn.model.BackboneSpec.classifier`): OAMN drops
#: those layers, so their keys are ignored on both sides.
CLASSIFIER_PREFIXES: tuple[str, ...] = tuple(
    dict.fromkeys(f"{spec.classifier}." for spec in BACKBONE_SPECS.values())
)

_LISTED_KEYS = 5
_OPTIONAL_SUFFIX = ".num_batches_tracked"


def resolve_backbone_weights(
    backbone: str, weights: str | os.PathLike[str] | WeightsEnum
) -> Path | WeightsEnum:
    r"""What ``weights`` names for ``backbone``: a local file or a torchvision weight enum member.

    A path object is a file. A string is a file if one exists at that path, else a weight name
    of ``backbone``'s enum (``torchvision.models.get_model_weights(backbone)``, e.g.
    ``ResNet18_Weights``): a member name (``"IMAGENET1K_V1"``), ``"DEFAULT"`` or the full
    ``"ResNet18_Weights.IMAGENET1K_V1"``. Nothing is read or downloaded here.

    Args:
        backbone: a torchvision model name, e.g. ``"resnet18"``.
        weights: a path, an enum member, or a weight name.

    Returns:
        The file's :class:`~pathlib.Path` (checked at load time) or the enum member.

    Raises:
        TypeError: ``weights`` is none of these types.
        ValueError: an enum member (or full name) of another architecture's weights.
        FileNotFoundError: a string that is neither an existing file nor a weight name (the
            valid names are listed).

    Example:
        >>> resolve_backbone_weights("resnet18", "DEFAULT")
        ResNet18_Weights.IMAGENET1K_V1
        >>> resolve_backbone_weights("resnet50", "ResNet50_Weights.IMAGENET1K_V2")
        ResNet50_Weights.IMAGENET1K_V2
    """
    expected = get_model_weights(backbone)
    if isinstance(weights, os.PathLike):
        return Path(weights)
    if isinstance(weights, str):
        if Path(weights).is_file():
            return Path(weights)
        member = _weight_named(weights, expected)
        if member is None:
            raise FileNotFoundError(
                f"weights={weights!r} is neither an existing file (no such path was found) nor a "
                f"weight name of backbone={backbone!r}; use {_valid_names(expected)}, or a path "
                f"to a local torchvision state dict (--weights PATH)"
            )
        weights = member
    if not isinstance(weights, WeightsEnum):
        raise TypeError(
            f"weights must be a path to a local torchvision state dict, a torchvision weight "
            f"enum member of the backbone or its name, or None; got {type(weights).__name__}"
        )
    if not isinstance(weights, expected):
        raise ValueError(
            f"weights={weights!r} are for another architecture than backbone={backbone!r}; use "
            f"{_valid_names(expected)}"
        )
    return weights


def load_backbone_weights(
    model: nn.Module, weights: str | os.PathLike[str] | WeightsEnum, progress: bool = True
) -> None:
    r"""Load ImageNet weights into a torchvision model, in place.

    A file is read with ``torch.load(weights_only=True)`` onto the CPU; an enum member with
    torchvision's ``weights.get_state_dict(progress=progress)`` (also ``weights_only``), which
    reads ``$TORCH_HOME/hub/checkpoints/<file name of weights.url>`` if it exists and otherwise
    downloads it there. Values are copied into ``model``'s parameters and buffers (keeping
    their device and dtype). Keys of the ImageNet classification head
    (:data:`CLASSIFIER_PREFIXES`) are ignored, in the state dict and in the model; every other
    key must match by name and shape.

    Args:
        model: the full torchvision model, e.g. from
            :func:`~examples.oamn.model.build_torchvision_model` (load before splitting it).
        weights: a ``.pth`` file holding the model's ``state_dict()`` (a mapping of names to
            tensors), e.g. ``torchvision.models.ResNet50_Weights.IMAGENET1K_V1`` saved
            elsewhere; or such an enum member (see :func:`resolve_backbone_weights` for names).
        progress: show torchvision's download progress bar (on stderr).

    Raises:
        FileNotFoundError: the file does not exist.
        ConnectionError: the enum's file is not in the cache and its download failed (no
            network).
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
    if isinstance(weights, WeightsEnum):
        source = repr(weights)
        state = _cached_or_downloaded(weights, progress)
    else:
        source = repr(str(weights))
        state = _read_file(Path(weights))
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
            f"{source} does not match {type(model).__name__}: " + "; ".join(problems) + ". "
            "Pass the state dict of the same torchvision architecture as --backbone"
        )
    model.load_state_dict(state, strict=False)


def _weight_named(name: str, expected: type[WeightsEnum]) -> WeightsEnum | None:
    """The enum member ``name`` stands for, or ``None`` if it names none."""
    try:  # a member of the backbone's enum: "IMAGENET1K_V1", "DEFAULT" or the full name
        return expected.verify(name)
    except KeyError:
        pass
    # Another enum's full name, "ResNet50_Weights.IMAGENET1K_V2", so that the caller can say it
    # is another architecture's. torchvision raises ValueError for a name without one ".",
    # KeyError for an unknown member, TypeError where the part before "." (as in
    # "resnet18.pth") is a function of torchvision.models rather than an enum.
    try:
        return get_weight(name)
    except (KeyError, TypeError, ValueError):
        return None


def _valid_names(weights_enum: type[WeightsEnum]) -> str:
    members = ", ".join(member.name for member in weights_enum)
    default = weights_enum["DEFAULT"].name
    return (
        f"a member of torchvision.models.{weights_enum.__name__} or its name: {members} or "
        f"DEFAULT (= {default}), also written {weights_enum.__name__}.<name>"
    )


def _read_file(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise FileNotFoundError(
            f"backbone weights not found at {str(path)!r}: pass --weights PATH (weights=PATH) "
            f"to a local torchvision ImageNet state dict, a torchvision weight name such as "
            f"IMAGENET1K_V1 (downloaded when online), or no weights for a random "
            f"initialisation"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(
            f"{str(path)!r} does not hold a state dict (a mapping of names to tensors) but a "
            f"{type(state).__name__}; save torchvision_model.state_dict() instead"
        )
    return state


def _cached_or_downloaded(weights: WeightsEnum, progress: bool) -> dict[str, Tensor]:
    try:
        return weights.get_state_dict(progress=progress, map_location="cpu", weights_only=True)
    except OSError as error:  # urllib's URLError, socket timeouts, refused connections
        # torch.hub caches a URL's file under its base name.
        cached = (
            Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)
        )
        raise ConnectionError(
            f"the download of {weights!r} from {weights.url} failed ({error}): there is no "
            f"network (or the server cannot be reached), and torchvision's cache has no "
            f"{cached}. Pass --weights PATH (weights=PATH) to a local copy of that file, or "
            f"put it at {cached}"
        ) from error


def _listed(kind: str, keys: list[str]) -> str:
    if not keys:
        return ""
    more = f" and {len(keys) - _LISTED_KEYS} more" if len(keys) > _LISTED_KEYS else ""
    return f"{len(keys)} {kind} key(s): {', '.join(keys[:_LISTED_KEYS])}{more}"
