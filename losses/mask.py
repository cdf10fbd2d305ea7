"""OAMN's two mask losses (paper §3.2): consistency with the holistic image, complementary halves.

Both take feature maps ``(B, C, H, W)`` and offer two reductions of the same sum of squares:

* ``"mean"`` (default): the authors' code, ``F.mse_loss`` element means, i.e. divided by
  ``B * C * H * W`` as well, summed over locations (L_mask1) or over the two pairs (L_mask2).
  The paper's loss weights ``lambda_1 = 5`` and ``alpha_1 = alpha_2 = 1`` were tuned with these
  reductions, so they are the default.
* ``"batchmean"``: the paper's formulas, ``1/n sum`` of squared L2 norms, divided by the number of
  images only (eq. 2: the batch size ``B``; eq. 3: the number ``|I|`` of half-occluded images).
  They are ``C * H * W`` times larger (about 131,000 for ResNet-50's layer3 at 256x128), so the
  weights must shrink accordingly.

Both losses as printed are homogeneous of degree 2 in the mask: ``L(c * m) = c^2 * L(m)``. A
network whose next layers undo a global scale of ``m`` (a BatchNorm after the first convolution
of E^II, a BN-neck and an L2-normalised test feature, as in OAMN) lowers them cheapest by shrinking
the mask everywhere, which teaches it nothing about visibility. Both offer a *scale-normalised*
form whose value cannot be lowered by a scale, so only the mask's *shape* can lower it:

* ``L_mask1`` with ``normalize=True``: each copy's mask is divided by its own spatial mean
  (a mask that keeps its total weight must move it off the positions where the copy differs),
  and each image's features by a stop-gradient scale, the root mean square of its holistic
  features. Invariant to ``m -> c * m`` per copy and ``f -> c * f`` per image (``c > 0``). A
  mask in ``[0, 1]`` over its mean is at most ``H * W``, so the normalisation cannot blow up.
* ``L_mask2`` with ``m_holistic``: every masked feature map is divided by ``mu * sg(s)``, with
  ``mu`` the mean of all the holistic masks of the batch and ``s`` the root mean square of
  ``g_holistic / mu`` over the batch (no gradient through ``s``). Invariant to a common scale
  of the masks or of the features of the batch, which keeps the tiling relation
  ``g_top + g_bottom = g`` meaningful (per-copy means would not), and batch-level so that one
  image with a near-empty holistic mask cannot inflate the loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ._precision import float32_under_autocast
from ._validation import (
    check_bool_vector,
    check_choice,
    check_finite,
    check_flag,
    check_float_tensor,
    check_same_kind,
)

__all__ = [
    "MaskComplementLoss",
    "MaskConsistencyLoss",
    "mask_complement_loss",
    "mask_consistency_loss",
]

_REDUCTIONS = ("mean", "batchmean")
# Keeps the normalising divisors away from zero for an all-zero mask or feature map; far below
# any mask mean or feature scale a trained network produces, so it never changes a real value.
_SCALE_FLOOR = 1e-12


@float32_under_autocast
def mask_consistency_loss(
    f_holistic: Tensor,
    f_occluded: Tensor,
    m_occluded: Tensor,
    reduction: str = "mean",
    *,
    normalize: bool = False,
) -> Tensor:
    r"""``L_mask1`` (paper eq. 2): an occluded copy's mask should select the same features as
    on the holistic image.

    ``sum_p sum_i ||(f_i - f_i^p) * m_i^p||^2`` over the ``P`` occluded copies ``p`` of each
    image ``i``, where ``m^p`` is the mask computed on the occluded copy (broadcast over
    channels). The copies must be pixel-aligned with their holistic image.

    Layout: ``f_occluded`` holds ``P`` blocks of ``B`` rows; row ``p * B + i`` is an occluded
    copy of holistic row ``i``. This is the layout of ``occlusion_aug``'s output: for features
    ``f`` and masks ``m`` of its ``5 * B`` images, pass ``f[:B], f[B:], m[B:]``. The order of the
    locations does not matter.

    Args:
        f_holistic: ``(B, C, H, W)`` features ``f`` of the holistic images.
        f_occluded: ``(P*B, C, H, W)`` features ``f^p`` of the occluded copies, same dtype and
            device.
        m_occluded: ``(P*B, 1, H, W)`` masks of the occluded copies (values in ``[0, 1]`` in
            OAMN), or ``(P*B, C, H, W)``.
        reduction: ``"mean"`` divides the sum by ``B * C * H * W`` (the authors' code: an
            element mean per location, summed over locations; what ``lambda_1 = 5`` assumes);
            ``"batchmean"`` by ``B`` (eq. 2 as printed).
        normalize: ``False`` (default): eq. 2 as printed. ``True``: scale-normalised (see the
            module docstring), ``sum_p sum_i ||(f_i - f_i^p) / sg(s_i) * m_i^p / mu_i^p||^2``
            with ``mu_i^p = mean_hw(m_i^p)`` and ``s_i`` the root mean square of ``f_i`` (no
            gradient flows through ``s_i``); invariant to a positive scale of each mask and of
            the features of each image.

    Returns:
        ``()`` loss in the features' dtype.

    Raises:
        ValueError: for mismatched shapes, or an input holding NaN or inf.

    Example:
        >>> f = torch.tensor([[[[1.0, 2.0]]]])  # B = 1 image, C = H = 1, W = 2
        >>> f_occluded = torch.tensor([[[[0.0, 2.0]]], [[[1.0, 0.0]]]])  # P = 2 copies
        >>> m_occluded = torch.tensor([[[[1.0, 1.0]]], [[[0.5, 1.0]]]])
        >>> mask_consistency_loss(f, f_occluded, m_occluded)  # (1 + 4) / (C * H * W)
        tensor(2.5000)
        >>> mask_consistency_loss(f, f_occluded, m_occluded, reduction="batchmean")  # / B
        tensor(5.)
        >>> # normalised: masks over their means (1 and 0.75), f over its rms sqrt(2.5):
        >>> mask_consistency_loss(f, f_occluded, m_occluded, normalize=True)  # (1 + 4 / 0.75^2) / 5
        tensor(1.6222)
        >>> mask_consistency_loss(f, f_occluded, 0.1 * m_occluded, normalize=True)
        tensor(1.6222)
    """
    check_choice(reduction, "reduction", _REDUCTIONS)
    check_float_tensor(f_holistic, "f_holistic", "(B, C, H, W)", ndim=4)
    batch, channels, height, width = f_holistic.shape
    check_float_tensor(f_occluded, "f_occluded", "(P*B, C, H, W)", ndim=4)
    if f_occluded.shape[1:] != f_holistic.shape[1:] or len(f_occluded) % batch:
        raise ValueError(
            f"f_occluded must have shape (P*B, C, H, W) = (P*{batch}, {channels}, {height}, "
            f"{width}): P blocks of the {batch} holistic rows; got {tuple(f_occluded.shape)}"
        )
    check_float_tensor(m_occluded, "m_occluded", "(P*B, 1, H, W)", ndim=4)
    if m_occluded.shape[0] != len(f_occluded) or m_occluded.shape[2:] != (height, width):
        raise ValueError(
            f"m_occluded must have shape ({len(f_occluded)}, 1, {height}, {width}), one mask per "
            f"row of f_occluded; got {tuple(m_occluded.shape)}"
        )
    if m_occluded.shape[1] not in (1, channels):
        raise ValueError(
            f"m_occluded must have 1 channel (broadcast over C) or C = {channels}, got "
            f"{m_occluded.shape[1]}"
        )
    check_same_kind(f_occluded, "f_occluded", f_holistic, "f_holistic")
    check_same_kind(m_occluded, "m_occluded", f_holistic, "f_holistic")
    check_finite(f_holistic=f_holistic, f_occluded=f_occluded, m_occluded=m_occluded)
    copies = len(f_occluded) // batch
    masks = m_occluded.reshape(copies, batch, *m_occluded.shape[1:])
    residual = f_holistic - f_occluded.reshape(copies, *f_holistic.shape)
    if check_flag(normalize, "normalize"):
        residual = residual / _root_mean_square(f_holistic, (1, 2, 3)).detach()
        masks = masks / masks.mean((-2, -1), keepdim=True).clamp_min(_SCALE_FLOOR)
    total = (residual * masks).square().sum()
    return total / (f_holistic.numel() if reduction == "mean" else batch)


@float32_under_autocast
def mask_complement_loss(
    g_holistic: Tensor,
    g_top: Tensor | None,
    g_bottom: Tensor | None,
    g_left: Tensor | None,
    g_right: Tensor | None,
    is_half: Tensor | Sequence[bool],
    reduction: str = "mean",
    *,
    m_holistic: Tensor | None = None,
) -> Tensor:
    r"""``L_mask2`` (paper eq. 3): the masked features of opposite half occlusions should add up
    to the holistic one.

    ``sum_{i in I} ||g_i^t + g_i^b - g_i||^2 + ||g_i^l + g_i^r - g_i||^2`` over the set ``I`` of
    half-occluded images (``is_half``); quarter-occluded rows do not count. A batch without
    half-occluded rows gives a zero that is still part of the autograd graph (its gradients are
    zero), so a training step need not special-case it. When the augmentation makes only some
    locations (the paper's Table 3), pass ``None`` for both members of a pair that is not
    complete: that pair's term is left out (at least one pair must remain).

    With ``occlusion_aug``'s output for ``B`` images, masked features ``g`` of its ``5 * B``
    rows and ``area`` its labels: ``g[:B], g[B:2*B], ..., g[4*B:]`` and
    ``is_half = area[B:2*B] == 0.5``.

    Args:
        g_holistic: ``(B, C, H, W)`` masked features ``g = m * f`` of the holistic images.
        g_top: ``(B, C, H, W)`` those of the top-occluded copies, same dtype and device, or
            ``None`` together with ``g_bottom``.
        g_bottom: the bottom-occluded copies, likewise.
        g_left: the left-occluded copies, likewise (``None`` together with ``g_right``).
        g_right: the right-occluded copies, likewise.
        is_half: ``(B,)`` bool tensor or list of bools, ``True`` where the copies are
            half-occluded.
        reduction: ``"mean"`` divides by ``B * C * H * W`` with ``B`` *all* the rows (the
            authors' code: ``F.mse_loss`` over the batch with non-half rows zeroed, per pair,
            summed over the two pairs; what ``lambda_1 = 5`` assumes); ``"batchmean"`` by
            ``|I|`` (eq. 3 as printed).
        m_holistic: ``(B, 1, H, W)`` masks of the holistic images, or ``None`` (default, eq. 3
            as printed). Given, the loss is scale-normalised (see the module docstring): every
            ``g`` is divided by ``mu * sg(s)``, with ``mu`` the mean of ``m_holistic`` and ``s``
            the root mean square of ``g_holistic / mu``, both over the whole batch (no gradient
            through ``s``); invariant to a common positive scale of the masks or of the
            features. Its value is that of eq. 3 over ``rms(g_holistic)^2``: ``mu`` cancels out
            of the value and acts through the gradient only, which then has no component along
            the masks' common scale.

    Returns:
        ``()`` loss in the features' dtype.

    Raises:
        ValueError: for mismatched shapes, a pair with one member ``None``, both pairs
            ``None``, or an input holding NaN or inf, in any row: a row that does not count
            would still pass NaN to the gradients.

    Example:
        >>> g = torch.ones(2, 1, 1, 1)
        >>> g_tb, g_lr = torch.full((2, 1, 1, 1), 0.5), torch.ones(2, 1, 1, 1)
        >>> is_half = torch.tensor([True, False])  # only row 0 counts: 0^2 + 1^2
        >>> mask_complement_loss(g, g_tb, g_tb, g_lr, g_lr, is_half)  # / (B * C * H * W)
        tensor(0.5000)
        >>> mask_complement_loss(g, g_tb, g_tb, g_lr, g_lr, is_half, reduction="batchmean")
        tensor(1.)
        >>> mask_complement_loss(g, None, None, g_lr, g_lr, is_half)  # left/right only: 1 / 2
        tensor(0.5000)
        >>> m = torch.full((2, 1, 1, 1), 0.5)  # mu 0.5, g / mu has rms 2: every g is over 1
        >>> mask_complement_loss(g, g_tb, g_tb, g_lr, g_lr, is_half, m_holistic=m)
        tensor(0.5000)
    """
    check_choice(reduction, "reduction", _REDUCTIONS)
    check_float_tensor(g_holistic, "g_holistic", "(B, C, H, W)", ndim=4)
    pairs = {"g_top": g_top, "g_bottom": g_bottom}, {"g_left": g_left, "g_right": g_right}
    for pair in pairs:
        if sum(value is None for value in pair.values()) == 1:
            first, second = pair
            raise ValueError(
                f"{first} and {second} must both be tensors or both be None (a pair whose "
                f"locations the augmentation does not make)"
            )
    pairs = tuple(pair for pair in pairs if None not in pair.values())
    if not pairs:
        raise ValueError(
            "at least one complete pair is needed: g_top and g_bottom, or g_left and g_right"
        )
    copies = {name: value for pair in pairs for name, value in pair.items()}
    for name, value in copies.items():
        check_float_tensor(value, name, "(B, C, H, W)", ndim=4)
        if value.shape != g_holistic.shape:
            raise ValueError(
                f"{name} must have the shape of g_holistic, {tuple(g_holistic.shape)}, got "
                f"{tuple(value.shape)}"
            )
        check_same_kind(value, name, g_holistic, "g_holistic")
    is_half = check_bool_vector(is_half, "is_half", len(g_holistic), g_holistic.device)
    check_finite(g_holistic=g_holistic, **copies)
    per_image = sum(
        (first + second - g_holistic).square().sum((1, 2, 3))
        for first, second in (tuple(pair.values()) for pair in pairs)
    )
    if m_holistic is not None:
        mask_mean = _holistic_mask_mean(m_holistic, g_holistic)
        feature_scale = _root_mean_square(g_holistic, (0, 1, 2, 3)).detach() / mask_mean.detach()
        per_image = per_image / (mask_mean * feature_scale).square()
    total = torch.where(is_half, per_image, 0).sum()
    divisor = g_holistic.numel() if reduction == "mean" else is_half.sum().clamp_min(1)
    return total / divisor


def _holistic_mask_mean(m_holistic: Tensor, features: Tensor) -> Tensor:
    """``()`` mean of the checked holistic masks over the batch, floored above zero."""
    batch, _, height, width = features.shape
    check_float_tensor(m_holistic, "m_holistic", "(B, 1, H, W)", ndim=4)
    if m_holistic.shape != (batch, 1, height, width):
        raise ValueError(
            f"m_holistic must have shape ({batch}, 1, {height}, {width}), one mask per holistic "
            f"image; got {tuple(m_holistic.shape)}"
        )
    check_same_kind(m_holistic, "m_holistic", features, "the holistic features")
    check_finite(m_holistic=m_holistic)
    return m_holistic.mean().clamp_min(_SCALE_FLOOR)


def _root_mean_square(features: Tensor, dims: tuple[int, ...]) -> Tensor:
    """Root mean square over ``dims`` (kept), floored above zero."""
    return features.square().mean(dims, keepdim=True).sqrt().clamp_min(_SCALE_FLOOR)


class _MaskLoss(nn.Module):
    """Holds and checks the reduction shared by the mask loss modules."""

    def __init__(self, reduction: str) -> None:
        super().__init__()
        self.reduction = check_choice(reduction, "reduction", _REDUCTIONS)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class MaskConsistencyLoss(_MaskLoss):
    r"""Module form of :func:`mask_consistency_loss` (``L_mask1``).

    Args:
        reduction: ``"mean"`` (the authors' element mean, default) or ``"batchmean"`` (eq. 2).
        normalize: the scale-normalised form (see :func:`mask_consistency_loss`).

    Shape:
        - f_holistic: ``(B, C, H, W)``.
        - f_occluded: ``(P*B, C, H, W)``, blocks of ``B`` rows aligned with ``f_holistic``.
        - m_occluded: ``(P*B, 1, H, W)``.
        - output: ``()``.

    Example:
        >>> f = torch.rand(2, 8, 4, 2)
        >>> MaskConsistencyLoss()(f, f.repeat(4, 1, 1, 1), torch.rand(8, 1, 4, 2))
        tensor(0.)
    """

    def __init__(self, reduction: str = "mean", normalize: bool = False) -> None:
        super().__init__(reduction)
        self.normalize = check_flag(normalize, "normalize")

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, normalize={self.normalize}"

    def forward(self, f_holistic: Tensor, f_occluded: Tensor, m_occluded: Tensor) -> Tensor:
        """How much the occluded copies' masked features differ from the holistic ones.

        Args:
            f_holistic: ``(B, C, H, W)`` encoder features of the holistic images.
            f_occluded: ``(P*B, C, H, W)`` those of their ``P`` occluded copies, pixel-aligned,
                ``P`` blocks of ``B`` rows (row ``p * B + i`` is a copy of image ``i``:
                ``occlusion_aug``'s layout without its holistic block); same dtype and device.
            m_occluded: ``(P*B, 1, H, W)`` masks computed on the occluded copies, in ``[0, 1]``.

        Returns:
            The ``()`` loss in the features' dtype (float32 under autocast), ``>= 0``.
        """
        return mask_consistency_loss(
            f_holistic, f_occluded, m_occluded, self.reduction, normalize=self.normalize
        )


class MaskComplementLoss(_MaskLoss):
    r"""Module form of :func:`mask_complement_loss` (``L_mask2``).

    Args:
        reduction: ``"mean"`` (the authors' element mean, default) or ``"batchmean"`` (eq. 3).

    Shape:
        - g_holistic, g_top, g_bottom, g_left, g_right: ``(B, C, H, W)`` (a pair may be
          ``None``, see :func:`mask_complement_loss`).
        - is_half: ``(B,)`` bool tensor or list of bools.
        - m_holistic (optional): ``(B, 1, H, W)``, for the scale-normalised loss.
        - output: ``()``.

    Example:
        >>> g = torch.rand(2, 8, 4, 2)
        >>> MaskComplementLoss()(g, g / 2, g / 2, g / 2, g / 2, torch.tensor([True, True]))
        tensor(0.)
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__(reduction)

    def forward(
        self,
        g_holistic: Tensor,
        g_top: Tensor | None,
        g_bottom: Tensor | None,
        g_left: Tensor | None,
        g_right: Tensor | None,
        is_half: Tensor | Sequence[bool],
        m_holistic: Tensor | None = None,
    ) -> Tensor:
        """How far opposite half occlusions' masked features are from adding up to the
        holistic ones.

        Args:
            g_holistic: ``(B, C, H, W)`` masked features ``m * f`` of the holistic images.
            g_top, g_bottom, g_left, g_right: ``(B, C, H, W)`` those of the aligned
                top/bottom/left/right copies (``g.split(B)`` of ``occlusion_aug``'s 5 blocks);
                a pair may be ``None`` together to leave its term out.
            is_half: ``(B,)`` bool, ``True`` where the copies are half-occluded (only those
                rows count).
            m_holistic: ``(B, 1, H, W)`` holistic masks for the scale-normalised loss, or
                ``None`` (eq. 3 as printed).

        Returns:
            The ``()`` loss in the features' dtype (float32 under autocast), ``>= 0``; a zero
            still connected to the inputs when no row is half-occluded.
        """
        return mask_complement_loss(
            g_holistic,
            g_top,
            g_bottom,
            g_left,
            g_right,
            is_half,
            self.reduction,
            m_holistic=m_holistic,
        )
