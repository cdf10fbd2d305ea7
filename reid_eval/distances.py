r"""Query-gallery distances, computed in fixed blocks of query rows.

Metrics (for feature rows ``q`` and ``g``):

* ``"euclidean"``: ``sqrt(max(|q|^2 + |g|^2 - 2 q.g, 0))``;
* ``"sqeuclidean"``: ``max(|q|^2 + |g|^2 - 2 q.g, 0)``, what torchreid and fast-reid call
  ``"euclidean"`` (their default);
* ``"cosine"``: ``1 - q.g / (|q| |g|)``, in ``[0, 2]`` up to rounding (a zero vector has
  distance 1 to all).

Distances are computed in at least float32: 16-bit features (float16, bfloat16) are converted
first, since their squared norms overflow float16 from a norm of 256 on. A distance that still
overflows (float32 features of norm 1e19 and more) is an error, not a silent ``inf``.

Every query row is computed by the same matrix product whatever the caller's chunking: rows are
taken in blocks of :data:`ROW_BLOCK` aligned to the start of the query set, each block copied to
fresh memory first. So a distance never changes in its last bits between
:func:`pairwise_distance` and the chunked evaluators, and neither do the rankings (GEMM results
may depend on the matrix shape and on memory alignment).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ._inputs import (
    ArrayLike,
    all_finite,
    check_choice,
    check_finite,
    check_floating,
    check_positive_int,
    to_tensor,
)

__all__ = ["METRICS", "ROW_BLOCK", "pairwise_distance"]

#: The distance metrics of :func:`pairwise_distance` and the evaluators.
METRICS: tuple[str, ...] = ("euclidean", "sqeuclidean", "cosine")

#: Query rows per matrix product; chunk sizes are rounded up to a multiple of it.
ROW_BLOCK = 256


def check_chunk_size(chunk_size: int) -> int:
    """``chunk_size`` (argument of that name, ``>= 1``) rounded up to whole :data:`ROW_BLOCK`s,
    so that chunks split no block (a row's distances do not depend on the chunking).

    Example:
        >>> check_chunk_size(1), check_chunk_size(256), check_chunk_size(300)
        (256, 256, 512)
    """
    return -(-check_positive_int(chunk_size, "chunk_size") // ROW_BLOCK) * ROW_BLOCK


#: Norms below this count as this in the cosine (as in ``torch.nn.functional.normalize``).
_EPS = 1e-12


@dataclass(frozen=True)
class PreparedGallery:
    """Gallery features and their squared row norms, computed once per gallery.

    The features are used as given (no normalised copy: the cosine divides the products by the
    norms instead) and the norms are summed a few rows at a time, so preparing a gallery
    allocates nothing of the gallery's size, but for a float32 copy of 16-bit features.

    Attributes:
        features: ``(G, D)`` gallery features, float32 or float64.
        squared_norms: ``(1, G)`` their squared L2 norms.
        metric: one of :data:`METRICS`.
        name: the gallery's argument name, for error messages.
    """

    features: Tensor
    squared_norms: Tensor
    metric: str
    name: str = "g_feats"

    @classmethod
    def build(cls, g_feats: Tensor, metric: str, name: str = "g_feats") -> PreparedGallery:
        """Prepare ``(G, D)`` floating ``g_feats`` (argument ``name``) for ``metric``."""
        features = _at_least_float32(g_feats)
        return cls(features, _squared_norms(features)[None], metric, name)

    def distances(self, q_feats: Tensor) -> Tensor:
        """``(M, G)`` distances of the ``(M, D)`` query rows, block by block of ``ROW_BLOCK``,
        in the gallery's dtype (float32 for 16-bit features).

        Raises:
            ValueError: if a distance overflows to ``inf`` (or NaN) despite finite features.
        """
        out = self.features.new_empty(q_feats.shape[0], self.features.shape[0])
        for start in range(0, q_feats.shape[0], ROW_BLOCK):
            rows = slice(start, start + ROW_BLOCK)
            # One contiguous copy in the gallery's dtype (16-bit rows widened in that copy).
            block = q_feats[rows].to(
                self.features.dtype, memory_format=torch.contiguous_format, copy=True
            )
            torch.mm(block, self.features.T, out=out[rows])
            q_squared_norms = _squared_norms(block)[:, None]
            _distances_from_dots(out[rows], q_squared_norms, self.squared_norms, self.metric)
        self._check_finite(out)
        return out

    def pair_distances(self, rows: Tensor, cols: Tensor) -> Tensor:
        """``(P,)`` distances between the gallery items ``rows[p]`` and ``cols[p]`` (``(P,)``
        int64 each), by the formulas of :meth:`distances` (equal to its entries up to the
        rounding of the dot products)."""
        norms = self.squared_norms[0]
        dots = (self.features[rows] * self.features[cols]).sum(1)
        return _distances_from_dots(dots, norms[rows], norms[cols], self.metric)

    def _check_finite(self, distances: Tensor) -> None:
        """Raise if finite features gave a non-finite distance (float overflow)."""
        if all_finite(distances):
            return
        raise ValueError(
            f"the {self.metric} distances between q_feats and {self.name} overflow "
            f"{distances.dtype} (features of very large norm); scale or L2-normalise the "
            "features first"
        )


def _distances_from_dots(
    dots: Tensor, row_squared_norms: Tensor, col_squared_norms: Tensor, metric: str
) -> Tensor:
    """``metric``'s distances from the dot products of feature rows and their squared norms
    (broadcast to ``dots``), computed in ``dots``' memory, which is returned."""
    if metric == "cosine":
        dots.div_(row_squared_norms.sqrt().clamp_min(_EPS))
        dots.div_(col_squared_norms.sqrt().clamp_min(_EPS))
        return dots.neg_().add_(1.0)
    dots.mul_(-2.0).add_(col_squared_norms).add_(row_squared_norms).clamp_min_(0.0)
    return dots.sqrt_() if metric == "euclidean" else dots


def _at_least_float32(features: Tensor) -> Tensor:
    """``features`` as float32 if they are 16-bit floats, else unchanged."""
    return features.float() if features.element_size() < 4 else features


def _squared_norms(features: Tensor, rows_per_step: int = 1024) -> Tensor:
    """``(N,)`` squared L2 norms of the rows of ``(N, D)`` ``features``, without an ``(N, D)``
    temporary: the sum of squares, exact for small integers, a few rows at a time.

    The squares of each step go to one reused buffer: a fresh temporary per step, interleaved
    with the small results, fragments glibc's heap (366 MiB kept for a 500,000-row gallery).
    """
    norms = features.new_empty(features.shape[0])
    squares = features.new_empty(min(rows_per_step, features.shape[0]), features.shape[1])
    for part, out in zip(features.split(rows_per_step), norms.split(rows_per_step), strict=True):
        torch.sum(torch.mul(part, part, out=squares[: part.shape[0]]), 1, out=out)
    return norms


def pairwise_distance(q_feats: ArrayLike, g_feats: ArrayLike, metric: str = "euclidean") -> Tensor:
    r"""The full ``(Q, G)`` distance matrix, exactly as the chunked evaluators compute it.

    ``evaluate_rank(pairwise_distance(q, g, metric), ...)`` equals
    ``evaluate_features(q, g, ..., metric=metric)`` bit for bit, whatever its ``chunk_size``;
    the latter never holds the whole matrix.

    Args:
        q_feats: ``(Q, D)`` floating query features, a tensor on any device, a numpy array or a
            nested list (Python floats give float64); finite, ``D >= 1``.
        g_feats: ``(G, D)`` floating gallery features, same dtype and device.
        metric: ``"euclidean"``, ``"sqeuclidean"`` or ``"cosine"`` (see the module docstring).
            torchreid's and fast-reid's ``"euclidean"`` is ``"sqeuclidean"`` here (they do not
            take the square root); their ``"cosine"`` is ``"cosine"``.

    Returns:
        ``(Q, G)`` tensor on the features' device, float64 for float64 features and float32
        otherwise (16-bit features are converted: see the module docstring).

    Raises:
        ValueError: NaN or ``±inf`` in the features, ``D = 0``, mismatched shapes, or a
            distance that overflows float32.

    Example:
        >>> q = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
        >>> pairwise_distance(q, torch.tensor([[3.0, 0.0], [0.0, 4.0]]))
        tensor([[3., 4.],
                [4., 3.]])
        >>> pairwise_distance(q[1:], torch.tensor([[1.0, 0.0], [-3.0, -4.0]]), "cosine")
        tensor([[0.4000, 2.0000]])
    """
    queries, gallery = check_feature_pair(q_feats, g_feats, "g_feats", "(G, D)")
    metric = check_choice(metric, "metric", METRICS)
    with torch.no_grad():
        return PreparedGallery.build(gallery, metric).distances(queries)


def check_feature_pair(
    q_feats: object, g_feats: object, g_name: str, g_shape: str
) -> tuple[Tensor, Tensor]:
    """Checked ``(Q, D)`` query features and gallery features of shape ``g_shape`` (``D`` last).

    Both must be floating, of one dtype and device, finite, with ``D >= 1``.
    """
    queries = check_floating(to_tensor(q_feats, "q_feats"), "q_feats", 2, "(Q, D)")
    gallery = to_tensor(g_feats, g_name, queries.device)
    gallery = check_floating(gallery, g_name, g_shape.count(",") + 1, g_shape)
    if gallery.dtype != queries.dtype:
        raise TypeError(
            f"{g_name} is {gallery.dtype} but q_feats is {queries.dtype}; convert one of them"
        )
    if gallery.shape[-1] != queries.shape[1]:
        raise ValueError(
            f"{g_name} has shape {tuple(gallery.shape)}; its last dimension must be the "
            f"feature size D = {queries.shape[1]} of q_feats"
        )
    if queries.shape[1] == 0:
        raise ValueError(
            f"q_feats and {g_name} have no feature dimensions (D = 0): every distance would "
            "be 0; pass the features themselves"
        )
    check_finite(queries, "q_feats")
    check_finite(gallery, g_name)
    return queries, gallery
