r"""The occlusion grader: where, and how much, of an image is occluded (paper §3.4).

Both graders map the attentive features ``g = m * f`` (detached by the model) to 4 softmax scores,
columns top, bottom, left, right, through a summary of ``g`` -> ``BatchNorm1d`` -> ``Linear``:

* ``"pooled"`` (the authors'; the paper says FC + softmax): ``GAP(g)``, ``C`` numbers. A global
  average pool discards *where* anything is, and ``GAP(g)`` shrinks with the mask's global scale,
  which the paper's mask losses drive towards 0: once the per-channel spread of ``GAP(g)`` falls
  below the BatchNorm's ``sqrt(eps)`` the grader sees a constant, answers the uniform 0.25, and
  eq. 8 reads every query as unoccluded.
* ``"profiles"``: ``g`` divided by its own root mean square (so a positive scale of the mask or
  the features changes nothing), then averaged over the width (``C x h`` row profiles) and over
  the height (``C x w`` column profiles): ``C * (h + w)`` numbers that keep the vertical and
  horizontal position of what the mask lets through, which is what the location question needs.
* ``"profiles_mlp"``: the same profiles through ``BatchNorm1d`` -> ``Linear(., 256)`` -> ReLU
  -> ``Linear(256, 4)``: an occluder is a *difference* between parts of the body, which one
  linear layer over the profiles can only approximate.
* ``"feature_profiles"``: the ``"profiles"`` grader reading E^I's features ``f`` (detached)
  instead of ``g``: the occluder's appearance, whatever the mask learnt (the mask then matters
  to the unified ranking only).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["FEATURE_GRADERS", "GRADERS", "GlobalAveragePool", "ScaleFreeProfiles", "build_grader"]

#: Graders: the authors' global average pool; scale-free row and column profiles read by a
#: linear layer, or by a small MLP (one hidden layer of 256 ReLU units).
GRADERS: tuple[str, ...] = ("pooled", "profiles", "profiles_mlp", "feature_profiles")
#: The graders that read E^I's features ``f`` instead of ``g = m * f``.
FEATURE_GRADERS: tuple[str, ...] = ("feature_profiles",)

_HIDDEN = 256

_NUM_LOCATIONS = 4  # grader columns: top, bottom, left, right
# Floors the root mean square of an all-zero map (a fully masked image) so it gives zeros, not NaN.
_SCALE_FLOOR = 1e-12


class GlobalAveragePool(nn.Module):
    r"""``(N, C, h, w)`` -> ``(N, C)`` spatial means."""

    def forward(self, g: Tensor) -> Tensor:
        return g.mean(dim=(2, 3))


class ScaleFreeProfiles(nn.Module):
    r"""``(N, C, h, w)`` -> ``(N, C * (h + w))`` row and column profiles of ``g / rms(g)``.

    Each image's map is divided by its root mean square over ``C, h, w``, then averaged over the
    width (row profiles, ``h`` per channel) and over the height (column profiles, ``w`` per
    channel); the output is channel-major: ``[c0 rows, c0 columns, c1 rows, ...]``.

    Example:
        >>> g = torch.zeros(1, 1, 4, 2)
        >>> g[0, 0, :2] = 1.0  # the top half lit
        >>> ScaleFreeProfiles()(g)  # rms sqrt(1/2): rows 1.41, 1.41, 0, 0; columns 0.71, 0.71
        tensor([[1.4142, 1.4142, 0.0000, 0.0000, 0.7071, 0.7071]])
        >>> torch.equal(ScaleFreeProfiles()(0.01 * g), ScaleFreeProfiles()(g))
        True
    """

    def forward(self, g: Tensor) -> Tensor:
        scale = g.square().mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(_SCALE_FLOOR)
        normalised = g / scale
        profiles = torch.cat([normalised.mean(dim=3), normalised.mean(dim=2)], dim=2)
        return profiles.flatten(1)


def build_grader(kind: str, channels: int, feature_size: tuple[int, int]) -> nn.Sequential:
    r"""The grader's layers: ``Sequential(summary, BatchNorm1d, Linear(., 4))``, without softmax.

    Args:
        kind: one of :data:`GRADERS`.
        channels: ``C``, channels of ``g``.
        feature_size: ``(h, w)`` of ``g``.

    Returns:
        The module, taking ``(N, C, h, w)`` and giving ``(N, 4)`` logits (columns top, bottom,
        left, right): ``Sequential(summary, BatchNorm1d, Linear(., 4))``, with ``Linear(., 256),
        ReLU`` before the last layer for ``"profiles_mlp"``; the last layer is the output one.

    Example:
        >>> grader = build_grader("profiles", 8, (4, 2))
        >>> grader(torch.randn(3, 8, 4, 2)).shape, grader[1].num_features
        (torch.Size([3, 4]), 48)
    """
    if kind not in GRADERS:
        raise ValueError(f"grader must be one of {GRADERS}, got {kind!r}")
    if kind == "pooled":
        summary, width = GlobalAveragePool(), channels
    else:
        summary, width = ScaleFreeProfiles(), channels * sum(feature_size)
    if kind != "profiles_mlp":
        return nn.Sequential(summary, nn.BatchNorm1d(width), nn.Linear(width, _NUM_LOCATIONS))
    return nn.Sequential(
        summary,
        nn.BatchNorm1d(width),
        nn.Linear(width, _HIDDEN),
        nn.ReLU(),
        nn.Linear(_HIDDEN, _NUM_LOCATIONS),
    )
