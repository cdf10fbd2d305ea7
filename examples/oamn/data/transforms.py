"""CPU-side image transforms: PIL image in, normalised float32 ``(3, H, W)`` tensor out.

The occluded views are made afterwards, on the device, by ``oamn.occlusion_aug`` (so the four copies
of an image stay pixel-aligned with it): nothing here occludes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "test_transform", "train_transform"]

#: Per-channel RGB mean and std of ImageNet, for images scaled to ``[0, 1]``.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def train_transform(
    height: int,
    width: int,
    pad: int = 10,
    flip_prob: float = 0.5,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    *,
    rotation: float = 0.0,
) -> v2.Compose:
    """Training augmentation: resize, pad + random crop, horizontal flip, normalise.

    Steps: resize to ``(height, width)`` (bilinear, antialiased), zero-pad ``pad`` pixels on
    every side and crop a random ``(height, width)`` window, flip left-right with probability
    ``flip_prob``, rotate by an angle uniform in ``[-rotation, rotation]`` degrees if
    ``rotation > 0`` (the authors' code used 5; off by default), scale to ``[0, 1]`` and
    normalise ``(x - mean) / std``. Randomness comes from torch's global generator, which the
    loaders seed per image (see ``build_train_loader``).

    Args:
        height: output height ``H >= 1``.
        width: output width ``W >= 1``.
        pad: padding before the random crop, ``>= 0`` (0 disables the crop).
        flip_prob: flip probability in ``[0, 1]``.
        mean: 3 channel means (RGB, ``[0, 1]`` scale).
        std: 3 positive channel stds.
        rotation: maximum rotation in degrees, ``>= 0``.

    Returns:
        a transform from a PIL image (or uint8 ``(3, h, w)`` tensor) to a float32 ``(3, H, W)``
        plain tensor.

    Example:
        >>> from PIL import Image
        >>> image = Image.new("RGB", (64, 128), (124, 116, 104))
        >>> out = train_transform(32, 16)(image)
        >>> out.shape, out.dtype
        (torch.Size([3, 32, 16]), torch.float32)
    """
    _check_size(height, width)
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"pad must be an int >= 0, got {pad!r}")
    if not 0.0 <= flip_prob <= 1.0:
        raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob!r}")
    if not rotation >= 0.0:
        raise ValueError(f"rotation must be >= 0 degrees, got {rotation!r}")
    steps: list[v2.Transform] = [v2.ToImage(), v2.Resize((height, width), antialias=True)]
    if pad > 0:
        steps += [v2.Pad(pad, fill=0), v2.RandomCrop((height, width))]
    steps.append(v2.RandomHorizontalFlip(flip_prob))
    if rotation > 0:
        steps.append(v2.RandomRotation(rotation))
    return v2.Compose(steps + _to_normalised_tensor(mean, std))


def test_transform(
    height: int,
    width: int,
    mean: Sequence[float] = IMAGENET_MEAN,  # noqa: PT028 (not a test: the contract's name)
    std: Sequence[float] = IMAGENET_STD,  # noqa: PT028
) -> v2.Compose:
    """Evaluation transform: resize to ``(height, width)`` and normalise, nothing random.

    Args:
        height: output height ``H >= 1``.
        width: output width ``W >= 1``.
        mean: 3 channel means (RGB, ``[0, 1]`` scale).
        std: 3 positive channel stds.

    Returns:
        a transform from a PIL image (or uint8 ``(3, h, w)`` tensor) to a float32 ``(3, H, W)``
        plain tensor ``(x / 255 - mean) / std``.

    Example:
        >>> gray = torch.full((3, 8, 4), 124, dtype=torch.uint8)
        >>> test_transform(4, 2)(gray)[:, 0, 0]
        tensor([0.0056, 0.1352, 0.3568])
    """
    _check_size(height, width)
    steps = [v2.ToImage(), v2.Resize((height, width), antialias=True)]
    return v2.Compose(steps + _to_normalised_tensor(mean, std))


# pytest would otherwise collect it as a test wherever it is imported into a test module.
test_transform.__test__ = False


def _to_normalised_tensor(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    for name, values in (("mean", mean), ("std", std)):
        if len(values) != 3:
            raise ValueError(f"{name} must have 3 values (R, G, B), got {len(values)}")
    if min(std) <= 0:
        raise ValueError(f"std must be positive, got {tuple(std)}")
    return [
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(mean), list(std)),
        v2.ToPureTensor(),
    ]


def _check_size(height: int, width: int) -> None:
    for name, size in (("height", height), ("width", width)):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"{name} must be a positive int, got {size!r}")
