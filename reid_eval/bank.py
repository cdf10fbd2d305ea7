"""The bank of occlusion unification: each image's feature under each of the 9 occlusion types.

Each image (gallery, and for the two-sided unification the query too) gets a feature under each
of the 9 occlusion types (0 none, 1-4 half top/bottom/left/right, 5-8 quarter
top/bottom/left/right; ``oamn.occlusion_aug``'s convention), so a query predicted to be occluded
in type ``t`` is compared with every gallery item in type ``t``
(:func:`~oamn.reid_eval.evaluate_unified`). The builder is model-free: it takes the model's
parts as callables, so any network with a feature map can be unified. The strategies:

* ``"mask_swap"`` (the authors'): ``embed(f * m_t)``, the clean E^I features ``f`` weighted by the
  mask of the image with the band filled by a constant (a black box):
  ``m_t = mask(E^I(occlude(x, t)))``. Cost per image: 9 E^I + 9 E^II passes.
* ``"feature"``: ``embed(f * m_t)`` with the band zeroed on ``f`` itself,
  ``m_t = mask(occlude(f, t, 0))``. Cost: 1 E^I + 9 E^II passes.
* ``"band"``: the band removed from the attentive features themselves,
  ``embed(occlude(m * f, t, 0))``: what the band shows cannot reach the feature, whatever the mask
  learnt, and a model without a mask gets ``embed(occlude(f, t, 0))``. Cost: 1 E^I + 9 E^II passes.

The two swap strategies keep the band's *features* and only change the mask, so they remove the
band only as far as the mask learnt to drop occluded positions (a mask that never saw a black box
or a zeroed ``f`` in training reads them as it pleases); ``"band"`` removes it exactly. The bands
are taken at ``f``'s resolution with ``oamn.occlusion_aug.band_mask``'s rounding: a band of
area ``a`` over ``n`` lines covers ``floor(a * n + 1/2)`` of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["BANK_STRATEGIES", "NUM_OCCLUSION_TYPES", "band_of_type", "occlusion_bank"]

#: Number of occlusion types: none, 4 half and 4 quarter bands.
NUM_OCCLUSION_TYPES = 9

#: Bank strategies: the authors' image-level "mask swap", the feature-level mask swap, and the
#: band removed from the attentive features.
BANK_STRATEGIES: tuple[str, ...] = ("mask_swap", "feature", "band")


def occlusion_bank(
    images: Tensor,
    encode: Callable[[Tensor], Tensor],
    attend: Callable[[Tensor], Tensor] | None,
    embed: Callable[[Tensor], Tensor],
    strategy: str = "mask_swap",
    image_fill: float | Tensor = 0.0,
) -> Tensor:
    r"""L2-normalised features of ``images`` under each of the 9 occlusion types.

    The types are processed one after another, each as one batch of the ``N`` images, so the
    peak memory is about that of one pass of the model over ``images`` plus ``f`` and the
    ``(9, N, D)`` result (the caller picks ``N``). Type 0 is ``embed(attend(f) * f)`` with the
    same operations as a plain forward pass, so it equals the unoccluded feature bit for bit.

    Args:
        images: ``(N, 3, H, W)`` normalised images, ``N >= 1``.
        encode: E^I, images to features ``f`` ``(N, C, h, w)``.
        attend: the mask module, ``f``-shaped features to the mask ``(N, 1, h, w)``; ``None`` for
            a model without mask: the swap strategies then give every type the unoccluded
            feature, ``"band"`` removes the band from ``f``.
        embed: ``g = m * f`` to the ``(N, D)`` embedding (E^II, pooling, BN neck).
        strategy: one of :data:`BANK_STRATEGIES`.
        image_fill: ``"mask_swap"`` only: the value written into the band of the images, a
            number or a ``(3,)`` tensor (e.g. ``-mean / std``, black after normalisation).

    Returns:
        ``(9, N, D)`` tensor, row ``t`` the L2-normalised features under occlusion type ``t``.

    Example:
        >>> encode = torch.nn.Conv2d(3, 4, 1)  # any E^I, mask and E^II of your own model
        >>> bank = occlusion_bank(torch.randn(2, 3, 8, 4), encode, lambda f: f[:, :1].sigmoid(),
        ...                       lambda g: g.mean((2, 3)), strategy="feature")
        >>> bank.shape, bool(torch.allclose(bank.norm(dim=2), torch.ones(9, 2)))
        (torch.Size([9, 2, 4]), True)
    """
    if strategy not in BANK_STRATEGIES:
        raise ValueError(f"strategy must be one of {BANK_STRATEGIES}, got {strategy!r}")
    f = encode(images)
    if attend is None and strategy != "band":
        return F.normalize(embed(f), dim=1).expand(NUM_OCCLUSION_TYPES, -1, -1).clone()
    g = f if attend is None else attend(f) * f
    clean = F.normalize(embed(g), dim=1)
    bank = clean.new_empty((NUM_OCCLUSION_TYPES, *clean.shape))
    bank[0] = clean
    for occlusion in range(1, NUM_OCCLUSION_TYPES):
        if strategy == "band":
            occluded_g = _remove(g, occlusion, 0.0)
        else:
            swapped = (
                encode(_remove(images, occlusion, image_fill))
                if strategy == "mask_swap"
                else _remove(f, occlusion, 0.0)
            )
            occluded_g = attend(swapped) * f
        bank[occlusion] = F.normalize(embed(occluded_g), dim=1)
    return bank


def band_of_type(
    occlusion_type: int, height: int, width: int, device: torch.device | str | None = None
) -> Tensor:
    r"""``(1, 1, H, W)`` bool mask of the band of one occlusion type (0 gives an empty mask).

    Types 1-4 are the half bands top, bottom, left, right, 5-8 the quarter bands; a band of area
    ``a`` covers ``floor(a * n + 1/2)`` of the ``n`` lines, as ``oamn.occlusion_aug.band_mask``.

    Example:
        >>> band_of_type(6, 4, 2)[0, 0].long()  # quarter bottom of a 4 x 2 map
        tensor([[0, 0],
                [0, 0],
                [0, 0],
                [1, 1]])
    """
    if not 0 <= occlusion_type < NUM_OCCLUSION_TYPES:
        raise ValueError(f"occlusion_type must be in [0, 9), got {occlusion_type!r}")
    mask = torch.zeros((1, 1, height, width), dtype=torch.bool, device=device)
    if occlusion_type == 0:
        return mask
    location, area = (occlusion_type - 1) % 4, 0.5 if occlusion_type <= 4 else 0.25
    lines = math.floor(area * (height if location < 2 else width) + 0.5)
    band = [slice(0, lines), slice(height - lines, height), slice(None), slice(None)][location]
    columns = [slice(None), slice(None), slice(0, lines), slice(width - lines, width)][location]
    mask[..., band, columns] = True
    return mask


def _remove(x: Tensor, occlusion_type: int, fill: float | Tensor) -> Tensor:
    """``x`` ``(N, C, H, W)`` with the band of ``occlusion_type`` set to ``fill`` (a number or
    a ``(C,)`` tensor)."""
    band = band_of_type(occlusion_type, x.shape[2], x.shape[3], x.device)
    fill = torch.as_tensor(fill, dtype=x.dtype, device=x.device)
    if fill.ndim == 1 and fill.numel() == x.shape[1]:
        fill = fill.view(1, -1, 1, 1)
    elif fill.ndim != 0:
        raise ValueError(
            f"fill must be a number or have shape ({x.shape[1]},), one value per channel, got "
            f"shape {tuple(fill.shape)}"
        )
    return torch.where(band, fill, x)
