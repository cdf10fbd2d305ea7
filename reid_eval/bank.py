"""The gallery bank of occlusion unification (METHOD §5): one feature per occlusion type.

Each image (gallery, and for the two-sided unification the query too) gets a feature under each
of the 9 occlusion types (0 none, 1-4 half
top/bottom/left/right, 5-8 quarter top/bottom/left/right; ``oamn.occlusion_aug``'s convention), so a
query predicted to be occluded in type ``t`` is compared with every gallery item in type ``t``.
The strategies:

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
are taken at ``f``'s resolution with ``oamn.occlusion_aug.band_mask``'s rounding.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from oamn.occlusion_aug import NUM_OCCLUSION_TYPES, location_and_area, occlude

__all__ = ["BANK_STRATEGIES", "occlusion_bank"]

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
        >>> encode = torch.nn.Conv2d(3, 4, 1)
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
    count = images.shape[0]
    locations, areas = location_and_area(torch.arange(1, NUM_OCCLUSION_TYPES, device=f.device))
    for occlusion, (location, area) in enumerate(zip(locations, areas, strict=True), start=1):
        location, area = location.expand(count), area.expand(count)
        if strategy == "band":
            occluded_g = occlude(g, location, area, 0.0)
        else:
            swapped = (
                encode(occlude(images, location, area, image_fill))
                if strategy == "mask_swap"
                else occlude(f, location, area, 0.0)
            )
            occluded_g = attend(swapped) * f
        bank[occlusion] = F.normalize(embed(occluded_g), dim=1)
    return bank
