r"""OAMN's occlusion grader (paper §3.4) as a layer: where, and how much, an image is occluded.

The grader reads a feature map (OAMN: the attentive features ``g = m * f`` or E^I's ``f``,
detached) through ``summary -> BatchNorm1d -> [Linear -> ReLU] -> Linear`` and gives logits:

* ``num_outputs=4``: the paper's head, columns top, bottom, left, right; its softmax is read
  by eq. 8 (area from thresholds on the largest score), which has no trained "none";
* ``num_outputs=9``: one column per occlusion type, 0 none, 1-4 half top/bottom/left/right,
  5-8 quarter top/bottom/left/right (``oamn.occlusion_aug``'s convention), trained by
  cross-entropy on holistic and occluded views alike, read by its argmax (not in the paper).

Summaries:

* ``"pooled"`` (the authors'): the global average pool, ``C`` numbers. It discards where
  anything is and shrinks with the mask's scale (which the paper's mask losses drive to 0).
* ``"profiles"``: the map divided by its own root mean square (a positive scale changes
  nothing), averaged over the width (``h`` row profiles per channel) and over the height
  (``w`` column profiles): ``C * (h + w)`` numbers that keep the vertical and horizontal
  position of what is seen.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from ._validation import check_positive_int, check_spatial_size

__all__ = ["GRADER_SUMMARIES", "GlobalAveragePool", "OcclusionGrader", "ScaleFreeProfiles"]

#: The grader's summaries of its input map.
GRADER_SUMMARIES: tuple[str, ...] = ("pooled", "profiles")

# Floors the root mean square of an all-zero map (a fully masked image) so it gives zeros, not NaN.
_SCALE_FLOOR = 1e-12


class GlobalAveragePool(nn.Module):
    r"""``(N, C, h, w)`` -> ``(N, C)`` spatial means."""

    def forward(self, g: Tensor) -> Tensor:
        """The ``(N, C)`` means of ``g`` ``(N, C, h, w)`` over ``h, w``."""
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
        """The ``(N, C * (h + w))`` profiles of ``g`` ``(N, C, h, w)``."""
        scale = g.square().mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(_SCALE_FLOOR)
        normalised = g / scale
        profiles = torch.cat([normalised.mean(dim=3), normalised.mean(dim=2)], dim=2)
        return profiles.flatten(1)


class OcclusionGrader(nn.Sequential):
    r"""``summary -> BatchNorm1d -> [Linear(., hidden) -> ReLU] -> Linear(., num_outputs)``.

    Gives logits (no softmax); see the module docstring for the columns and the summaries. The
    layers are indexed as a ``Sequential`` (``[0]`` summary, ``[1]`` BatchNorm, ``[-1]`` the
    output layer), so state dicts of the same layout load unchanged.

    Args:
        channels: ``C`` of the input map.
        feature_size: ``(h, w)`` of the input map; needed by ``"profiles"`` only.
        summary: one of :data:`GRADER_SUMMARIES`.
        num_outputs: 4 (the paper's locations) or 9 (none and the 8 occlusion types).
        hidden: width of a hidden ReLU layer, or ``None`` for a linear read-out.

    Shape:
        - input: ``(N, C, h, w)`` floating, ``N >= 2`` in training mode (BatchNorm).
        - output: ``(N, num_outputs)`` logits.

    Example:
        >>> grader = OcclusionGrader(8, (4, 2), num_outputs=9)
        >>> logits = grader(torch.randn(3, 8, 4, 2))
        >>> logits.shape, grader[1].num_features
        (torch.Size([3, 9]), 48)
        >>> logits.softmax(dim=1).argmax(dim=1).shape  # the predicted occlusion types
        torch.Size([3])
    """

    def __init__(
        self,
        channels: int,
        feature_size: tuple[int, int] | None = None,
        summary: str = "profiles",
        num_outputs: int = 4,
        hidden: int | None = None,
    ) -> None:
        channels = check_positive_int(channels, "channels")
        if summary not in GRADER_SUMMARIES:
            raise ValueError(f"summary must be one of {GRADER_SUMMARIES}, got {summary!r}")
        if num_outputs not in (4, 9):
            raise ValueError(
                f"num_outputs must be 4 (top, bottom, left, right; paper eq. 8) or 9 (none and "
                f"the 8 occlusion types), got {num_outputs!r}"
            )
        if summary == "pooled":
            layers, width = [GlobalAveragePool()], channels
        else:
            if feature_size is None:
                raise ValueError(
                    "the 'profiles' summary needs feature_size=(h, w) of the input map: its "
                    "profiles have C * (h + w) entries"
                )
            height, width_ = check_spatial_size(feature_size)
            layers, width = [ScaleFreeProfiles()], channels * (height + width_)
        layers.append(nn.BatchNorm1d(width))
        if hidden is not None:
            hidden = check_positive_int(hidden, "hidden")
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, num_outputs))
        super().__init__(*layers)
        self.num_outputs = num_outputs

    def __getitem__(self, index: int | slice) -> nn.Module:
        # A slice is a plain Sequential: Sequential would rebuild this class from the layers.
        if isinstance(index, slice):
            return nn.Sequential(OrderedDict(list(self._modules.items())[index]))
        return super().__getitem__(index)
