r"""The pipeline's occlusion graders by name, built from ``oamn.attention.OcclusionGrader``.

* ``"pooled"`` (the authors'; the paper says FC + softmax): the global average pool of
  ``g = m * f``. It shrinks with the mask's global scale, which the paper's mask losses drive
  towards 0: once the per-channel spread falls below the BatchNorm's ``sqrt(eps)`` the grader
  sees a constant, answers the uniform 0.25, and eq. 8 reads every query as unoccluded.
* ``"profiles"``: scale-free row and column profiles of ``g`` (where the mask lets things
  through, blind to its scale).
* ``"profiles_mlp"``: the same profiles through a hidden layer of 256 ReLU units.
* ``"feature_profiles"``: the profiles of E^I's features ``f`` instead of ``g``: the occluder's
  appearance, whatever the mask learnt.

Heads (``head``): ``"locations"``, the paper's 4 columns (top, bottom, left, right) read by eq. 8;
``"types"``, 9 columns (none and the 8 occlusion types) trained by cross-entropy and read by
their argmax.
"""

from __future__ import annotations

from oamn.attention import OcclusionGrader
from oamn.occlusion_aug import BAND_LOCATIONS, NUM_OCCLUSION_TYPES

__all__ = ["FEATURE_GRADERS", "GRADERS", "GRADER_HEADS", "build_grader"]

#: Graders by name: ``(summary, hidden width)`` of :class:`oamn.attention.OcclusionGrader`.
_GRADERS: dict[str, tuple[str, int | None]] = {
    "pooled": ("pooled", None),
    "profiles": ("profiles", None),
    "profiles_mlp": ("profiles", 256),
    "feature_profiles": ("profiles", None),
}
GRADERS: tuple[str, ...] = tuple(_GRADERS)
#: The graders that read E^I's features ``f`` instead of ``g = m * f``.
FEATURE_GRADERS: tuple[str, ...] = ("feature_profiles",)
#: Grader heads and their number of columns: a score per band location, or per occlusion type
#: (in ``oamn.occlusion_aug``'s orders).
GRADER_HEADS: dict[str, int] = {"locations": len(BAND_LOCATIONS), "types": NUM_OCCLUSION_TYPES}


def build_grader(
    kind: str, channels: int, feature_size: tuple[int, int], head: str = "locations"
) -> OcclusionGrader:
    r"""The grader ``kind`` with ``head``'s columns, for ``(N, C, h, w)`` input maps.

    Example:
        >>> import torch
        >>> grader = build_grader("profiles", 8, (4, 2), head="types")
        >>> grader(torch.randn(3, 8, 4, 2)).shape, grader[1].num_features
        (torch.Size([3, 9]), 48)
    """
    if kind not in GRADERS:
        raise ValueError(f"grader must be one of {GRADERS}, got {kind!r}")
    if head not in GRADER_HEADS:
        raise ValueError(f"grader_head must be one of {tuple(GRADER_HEADS)}, got {head!r}")
    summary, hidden = _GRADERS[kind]
    return OcclusionGrader(channels, feature_size, summary, GRADER_HEADS[head], hidden)
