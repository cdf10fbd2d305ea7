"""The gallery bank of occlusion unification (METHOD §5): one feature per occlusion type.

Each gallery image gets a feature under each of the 9 occlusion types (0 none, 1-4 half
top/bottom/left/right, 5-8 quarter top/bottom/left/right; ``oamn.occlusion_aug``'s convention), so a
query predicted to be occluded in type ``t`` is compared with every gallery item in type ``t``.
Type ``t``'s feature is ``embed(f * m_t)``: the clean E^I features ``f`` weighted by the mask the
model gives to an occluded version of the image. The strategies differ in how that version is
made:

* ``"mask_swap"`` (the authors'): the image with the band filled by a constant (a black box),
  through E^I: ``m_t = mask(E^I(occlude(x, t)))``. Cost per image: 9 E^I + 9 E^II passes.
* ``"feature"`` (cheaper): the band zeroed on ``f`` itself, ``m_t = mask(occlude(f, t, 0))``,
  at ``f``'s resolution (``oamn.occlusion_aug.band_mask`` rounding). Cost: 1 E^I + 9 E^II passes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from oamn.occlusion_aug import NUM_OCCLUSION_TYPES, location_and_area, occlude

__all__ = ["BANK_STRATEGIES", "occlusion_bank"]

#: Gallery-bank strategies: the authors' image-level "mask swap", and feature-level occlusion.
BANK_STRATEGIES: tuple[str, ...] = ("mask_swap", "feature")


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
            a model without mask: every type then gets the unoccluded feature.
        embed: ``g = m * f`` to the ``(N, D)`` embedding (E^II, pooling, BN neck).
        strategy: one of :data:`BANK_STRATEGIES`.
        image_fill: ``"mask_swap"`` only: the value written into the band of the images, a
            number or a ``(3,)`` tensor (e.g. ``-mean / std``, black after normalisation).

    Returns:
        ``(9, N, D)`` tensor, row ``t`` the L2-normalised features under occlusion type ``t``.

    Example:
        >>> encode = torch.nn.Conv2d(3, 4, 1)
        >>> bank = occlusion_bank(torch.randn(2, 3, 8, 4), encode, lambda f: f[:, :1].sigmoid(),
        ...                       lambda g: g.mean((2, 3)), strategy="feature")
        >>> bank.shape, bool(torch.allclose(bank.norm(dim=2), torch.ones(9, 2)))
        (torch.Size([9, 2, 4]), True)
    """
    if strategy not in BANK_STRATEGIES:
        raise ValueError(f"strategy must be one of {BANK_STRATEGIES}, got {strategy!r}")
    f = encode(images)
    if attend is None:
        return F.normalize(embed(f), dim=1).expand(NUM_OCCLUSION_TYPES, -1, -1).clone()
    clean = F.normalize(embed(attend(f) * f), dim=1)
    bank = clean.new_empty((NUM_OCCLUSION_TYPES, *clean.shape))
    bank[0] = clean
    count = images.shape[0]
    locations, areas = location_and_area(torch.arange(1, NUM_OCCLUSION_TYPES, device=f.device))
    for occlusion, (location, area) in enumerate(zip(locations, areas, strict=True), start=1):
        location, area = location.expand(count), area.expand(count)
        if strategy == "mask_swap":
            occluded = encode(occlude(images, location, area, image_fill))
        else:
            occluded = occlude(f, location, area, 0.0)
        bank[occlusion] = F.normalize(embed(attend(occluded) * f), dim=1)
    return bank
