r"""CMC, mAP and mINP from a distance matrix (the Market-1501 protocol, see :mod:`.ranking`).

For one query with ``n`` valid matches at ranks ``r_1 < ... < r_n`` (1-based, among its valid
gallery items):

* CMC: ``cmc[k] = 1`` if ``r_1 <= k + 1``, else ``0`` (first hit), averaged over the queries.
  A query with fewer valid gallery items than ``max_rank`` keeps ``1`` after its hit, since
  ``r_1`` is at most that number: the curve is "padded with its last value". It has
  ``min(max_rank, G)`` values: at rank ``G`` every valid query has had its first hit.
* AP, ``"step"`` (torchreid, fast-reid, the usual mAP): ``mean_k k / r_k``.
* AP, ``"trapezoid"`` (open-reid's ``auc(recall, precision)``, the OAMN authors' number): the
  trapezoid area under the precision-recall curve, which starts at (recall 0, precision 1):
  ``mean_k (p_prev(k) + k / r_k) / 2`` with ``p_prev(k) = (k - 1) / (r_k - 1)``, the precision
  just before the ``k``-th hit, and ``p_prev(1) = 1`` when ``r_1 = 1``. It is always below
  the step AP unless every hit is at the top.
* INP: ``n / r_n``, the precision at the last hit.

Queries without any valid match are skipped, and counted (``num_valid_queries``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ._inputs import (
    ArrayLike,
    check_choice,
    check_flag,
    check_floating,
    check_junk_pids,
    check_no_nan,
    check_positive_int,
    to_labels,
    to_tensor,
)
from .ranking import GalleryLabels, MatchRanks, rank_matches

__all__ = [
    "AP_KINDS",
    "REPORTED_RANKS",
    "RankMetrics",
    "evaluate_rank",
    "evaluate_rank_torchreid",
]

#: The AP formulas ``evaluate_*`` accept as ``ap=``.
AP_KINDS: tuple[str, ...] = ("step", "trapezoid")

#: The CMC ranks usually reported (R1, R5, R10): those ``str`` / ``repr`` of :class:`RankMetrics`
#: show (where ``max_rank`` allows).
REPORTED_RANKS: tuple[int, ...] = (1, 5, 10)

#: Distance entries ranked at once (rows of the matrix or of a chunk); bounds the memory.
_ENTRIES_PER_STEP = 1 << 22


@dataclass(frozen=True, repr=False)
class RankMetrics:
    r"""Retrieval metrics of a query set against a gallery.

    Tensors are float64 on the device of the distances or features (the CPU for numpy or list
    input); the means are Python floats. All values are fractions in ``[0, 1]`` (multiply by 100
    for the usual percentages). ``str(m)`` is a one-line summary in percentages, ``repr(m)``
    a short one in fractions (neither prints the per-query tensors), and :meth:`to_dict` gives
    plain Python values for JSON.

    Attributes:
        cmc: ``(min(max_rank, G),)`` float64, ``cmc[k]`` = fraction of the valid queries
            whose first valid match is within the top ``k + 1``; ``cmc[0]`` is rank-1
            accuracy.
        mAP: mean of ``ap`` over the valid queries.
        mINP: mean of ``inp`` over the valid queries.
        ap: ``(Q,)`` float64 average precision of each query (the ``ap=`` formula); NaN for a
            query without any valid match.
        inp: ``(Q,)`` float64 inverse negative penalty of each query; NaN likewise.
        num_valid_queries: number of queries with at least one valid match (the others are
            skipped); ``~ap.isnan()`` marks them.
        first_match: ``(Q,)`` int64 rank (1-based) of each query's first valid match, 0 for a
            query without any; ``first_match == 1`` are the rank-1 hits (per-query values for
            paired comparisons and bootstrap intervals). ``None`` when built by hand without it.

    Example:
        >>> m = evaluate_rank([[0.0, 1, 2], [2, 1, 0], [0, 1, 2]], [1, 2, 3], [1, 4, 3],
        ...                   [0, 0, 0], [1, 1, 1], max_rank=3)  # query 1's identity is absent
        >>> print(m)  # max_rank 3 < 10: its last rank stands in for R5 and R10
        R1 50.0 R3 100.0 mAP 66.7 mINP 66.7 (2/3 valid queries)
        >>> m
        RankMetrics(R1=0.5000, R3=1.0000, mAP=0.6667, mINP=0.6667, num_valid_queries=2,
                    num_queries=3, max_rank=3)
        >>> m.to_dict()
        {'cmc': [0.5, 0.5, 1.0], 'mAP': 0.6667, 'mINP': 0.6667, 'num_valid_queries': 2,
         'num_queries': 3}
        >>> m.to_dict(per_query=True)["ap"]
        [1.0, None, 0.3333]
    """

    cmc: Tensor
    mAP: float
    mINP: float
    ap: Tensor
    inp: Tensor
    num_valid_queries: int
    first_match: Tensor | None = None

    @property
    def num_queries(self) -> int:
        """``Q``, the number of queries, valid or not."""
        return self.ap.numel()

    def _reported_ranks(self) -> tuple[int, ...]:
        """The CMC ranks of the summaries: 1, 5 and 10 where ``max_rank`` reaches them, and
        ``max_rank`` itself when it is below 10 (the last rank there is)."""
        max_rank = self.cmc.numel()
        ranks = [k for k in REPORTED_RANKS if k <= max_rank]
        if max_rank < REPORTED_RANKS[-1] and max_rank not in ranks:
            ranks.append(max_rank)
        return tuple(ranks)

    def __str__(self) -> str:
        cmc = self.cmc.tolist()
        ranks = " ".join(f"R{k} {100 * cmc[k - 1]:.1f}" for k in self._reported_ranks())
        return (
            f"{ranks} mAP {100 * self.mAP:.1f} mINP {100 * self.mINP:.1f} "
            f"({self.num_valid_queries:,}/{self.num_queries:,} valid queries)"
        )

    def __repr__(self) -> str:
        cmc = self.cmc.tolist()
        ranks = ", ".join(f"R{k}={cmc[k - 1]:.4f}" for k in self._reported_ranks())
        return (
            f"RankMetrics({ranks}, mAP={self.mAP:.4f}, mINP={self.mINP:.4f}, "
            f"num_valid_queries={self.num_valid_queries}, num_queries={self.num_queries}, "
            f"max_rank={self.cmc.numel()})"
        )

    def to_dict(self, per_query: bool = False) -> dict[str, list[float | None] | float | int]:
        """The metrics as plain Python values, ready for ``json.dumps``.

        Args:
            per_query: also return ``"ap"``, ``"inp"`` and ``"first_match"``, ``Q`` values each
                (large for a real query set, hence off by default).

        Returns:
            ``{"cmc": [min(max_rank, G) floats], "mAP": float, "mINP": float,
            "num_valid_queries": int, "num_queries": int}``, fractions in ``[0, 1]``; with
            ``per_query``, also ``"ap"`` and ``"inp"``: lists of ``Q`` floats in query order,
            ``None`` (JSON ``null``) for the queries without a valid match, and
            ``"first_match"`` (``Q`` ints, 0 for those queries) when known.
        """
        result: dict[str, list[float | None] | float | int] = {
            "cmc": self.cmc.tolist(),
            "mAP": float(self.mAP),
            "mINP": float(self.mINP),
            "num_valid_queries": int(self.num_valid_queries),
            "num_queries": self.num_queries,
        }
        if per_query:
            result["ap"] = _none_for_nan(self.ap)
            result["inp"] = _none_for_nan(self.inp)
            if self.first_match is not None:
                result["first_match"] = self.first_match.tolist()
        return result


def _none_for_nan(values: Tensor) -> list[float | None]:
    """``values`` as a list of floats, NaN as ``None`` (JSON has no NaN)."""
    return [None if math.isnan(value) else value for value in values.tolist()]


class MetricsAccumulator:
    """Per-query results, filled block by block of queries, then reduced to :class:`RankMetrics`.

    Args:
        num_queries: ``Q``.
        num_gallery: ``G``.
        device: where the per-query tensors live.
        ap: one of :data:`AP_KINDS`.
    """

    def __init__(self, num_queries: int, num_gallery: int, device: torch.device, ap: str) -> None:
        self.num_gallery = num_gallery
        self.trapezoid = ap == "trapezoid"
        self.first_hit = torch.zeros(num_queries, dtype=torch.int64, device=device)
        self.ap = torch.full((num_queries,), torch.nan, dtype=torch.float64, device=device)
        self.inp = torch.full_like(self.ap, torch.nan)

    def rank(
        self,
        distances: Tensor,
        query_index: Tensor,
        q_pids: Tensor,
        q_camids: Tensor,
        gallery: GalleryLabels,
    ) -> None:
        """Rank and record the queries ``query_index`` (``(C,)`` int64) of ``(C, G)`` distances,
        a few rows at a time (bounded working memory); ``q_pids`` / ``q_camids`` are theirs.

        On the CPU, the rows are split into at least ``torch.get_num_threads()`` steps, ranked
        that many at once: numpy's sorts and comparisons, which do most of the work there, are
        single-threaded but release the GIL.
        """
        distances = distances.detach()  # no_grad does not reach the worker threads
        num_rows = distances.shape[0]
        on_cpu = distances.device.type == "cpu"
        threads = torch.get_num_threads() if on_cpu else 1
        rows_per_step = max(
            1, min(_ENTRIES_PER_STEP // distances.shape[1], -(-num_rows // threads))
        )
        steps = [slice(start, start + rows_per_step) for start in range(0, num_rows, rows_per_step)]

        def rank_step(rows: slice) -> MatchRanks:
            return rank_matches(distances[rows], q_pids[rows], q_camids[rows], gallery)

        workers = min(threads, len(steps))
        if workers < 2:
            for rows in steps:
                self._add(query_index[rows], rank_step(rows))
            return
        # `workers` steps run at once, so the working memory stays bounded; the results kept
        # until their turn are only the matches' ranks.
        with ThreadPoolExecutor(workers) as pool:
            for rows, ranks in zip(steps, pool.map(rank_step, steps), strict=True):
                self._add(query_index[rows], ranks)

    def _add(self, query_index: Tensor, ranks: MatchRanks) -> None:
        """Record the queries ``query_index``, ranked as ``ranks``."""
        counts = ranks.num_matches
        hits = ranks.order.double()
        rank = ranks.rank.double()
        precision = hits / rank
        if self.trapezoid:
            before_hit = torch.where(ranks.rank > 1, (hits - 1) / (rank - 1).clamp_min(1), 1.0)
            precision = (before_hit + precision) / 2
        area = torch.zeros(counts.shape, dtype=torch.float64, device=counts.device)
        area.index_add_(0, ranks.row, precision)
        last_rank = torch.zeros_like(counts).scatter_reduce_(0, ranks.row, ranks.rank, "amax")
        first = ranks.order == 1
        first_hit = torch.zeros_like(counts).index_copy_(0, ranks.row[first], ranks.rank[first])
        valid = counts > 0
        self.first_hit[query_index] = first_hit
        self.ap[query_index] = torch.where(valid, area / counts, torch.nan)
        self.inp[query_index] = torch.where(valid, counts.double() / last_rank, torch.nan)

    def result(self, max_rank: int) -> RankMetrics:
        """The metrics over the valid queries, with a CMC of ``min(max_rank, G)`` ranks (every
        valid query has its first hit within ``G``); a ValueError if there is no valid query."""
        max_rank = min(max_rank, self.num_gallery)
        valid = self.first_hit > 0
        num_valid = int(valid.sum())
        if num_valid == 0:
            raise ValueError(
                "no query has a valid match (a gallery item with the same identity from another "
                "camera, not a junk identity): check the identities and camera ids"
            )
        # Bin r - 1 for a first hit at rank r <= max_rank; every later hit falls in bin max_rank.
        bins = self.first_hit[valid].clamp_max(max_rank + 1) - 1
        hits_within = torch.bincount(bins, minlength=max_rank + 1)[:max_rank].cumsum(0)
        return RankMetrics(
            cmc=hits_within.double() / num_valid,
            mAP=float(self.ap[valid].mean()),
            mINP=float(self.inp[valid].mean()),
            ap=self.ap,
            inp=self.inp,
            num_valid_queries=num_valid,
            first_match=self.first_hit,
        )


def evaluate_rank(
    distmat: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    max_rank: int = 50,
    ap: str = "step",
    *,
    junk_pids: Sequence[int] = (-1,),
) -> RankMetrics:
    r"""CMC, mAP and mINP of a query-gallery distance matrix, exactly, without a full sort.

    The first six arguments are those of torchreid's ``evaluate_rank``, in its order, but this
    is not a drop-in replacement: it returns a :class:`RankMetrics` (``m.cmc``, ``m.mAP``,
    ``m.mINP``) instead of torchreid's ``(cmc, mAP)`` tuple, drops identity ``-1`` by default
    (``junk_pids``), and has no ``use_metric_cuhk03``.
    :func:`evaluate_rank_torchreid` takes torchreid's arguments and returns its tuple.
    Protocol and formulas: see the module docstrings of :mod:`oamn.reid_eval.ranking` and
    :mod:`oamn.reid_eval.metrics`. The ranks are those of a stable sort of each row after junk
    removal (equal distances keep gallery order), computed from the gallery items that sort
    before each query's last match only, a few rows at a time (bounded working memory).

    Args:
        distmat: ``(Q, G)`` floating distances (smaller = more similar), a torch tensor on any
            device, a numpy array or a nested list; ``±inf`` allowed, NaN rejected.
        q_pids: ``(Q,)`` integer query identities.
        g_pids: ``(G,)`` integer gallery identities.
        q_camids: ``(Q,)`` integer query camera ids.
        g_camids: ``(G,)`` integer gallery camera ids.
        max_rank: length of the CMC curve, ``>= 1``; a larger value than ``G`` gives ``G``
            values (the curve is 1 from there).
        ap: ``"step"`` (default; torchreid / fast-reid) or ``"trapezoid"`` (open-reid, the
            OAMN authors' number, lower).
        junk_pids: gallery identities removed for every query, like same-camera matches.
            Default ``(-1,)``: Market-1501's junk detections, as in its official protocol
            (torchreid drops them when loading, so either way gives its numbers). Pass ``()``
            to rank them as ordinary negatives. Identity ``0`` (Market-1501's distractors) is
            an ordinary negative.

    Returns:
        The metrics, see :class:`RankMetrics`; tensors on ``distmat``'s device (CPU for numpy
        or lists).

    Raises:
        TypeError: wrong argument types or dtypes.
        ValueError: wrong shapes or lengths, an empty gallery, a NaN distance, or no query with
            a valid match.

    Example:
        >>> import numpy as np
        >>> distmat = np.arange(6.0)[None]  # one query; its matches come 1st, 3rd and 6th
        >>> g_pids, g_camids = np.array([7, 2, 7, 3, 0, 7]), np.array([1, 1, 2, 1, 1, 2])
        >>> m = evaluate_rank(distmat, np.array([7]), g_pids, np.array([0]), g_camids, max_rank=3)
        >>> m.cmc, m.mAP, m.mINP, m.num_valid_queries
        (tensor([1., 1., 1.], dtype=torch.float64), 0.7222, 0.5, 1)
        >>> evaluate_rank(distmat, np.array([7]), g_pids, np.array([0]), g_camids,
        ...               ap="trapezoid").mAP
        0.6778
    """
    distances = check_floating(to_tensor(distmat, "distmat"), "distmat", 2, "(Q, G)")
    num_queries, num_gallery = distances.shape
    q_pid, q_cam, gallery = check_labels(
        distances.device, num_queries, num_gallery, q_pids, g_pids, q_camids, g_camids, junk_pids
    )
    check_no_nan(distances, "distmat")  # here, not per step: the feature evaluators check theirs
    max_rank = check_positive_int(max_rank, "max_rank")
    ap = check_choice(ap, "ap", AP_KINDS)
    metrics = MetricsAccumulator(num_queries, num_gallery, distances.device, ap)
    with torch.no_grad():
        all_queries = torch.arange(num_queries, device=distances.device)
        metrics.rank(distances, all_queries, q_pid, q_cam, gallery)
    return metrics.result(max_rank)


def evaluate_rank_torchreid(
    distmat: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    max_rank: int = 50,
    use_metric_cuhk03: bool = False,
    use_cython: bool = True,
) -> tuple[np.ndarray, float]:
    r"""torchreid's ``evaluate_rank``: its arguments in its order, and its ``(cmc, mAP)`` result.

    A replacement for ``torchreid.metrics.evaluate_rank`` on the Market-1501 protocol, computed
    by :func:`evaluate_rank` (the same exact ranking) with torchreid's conventions:

    * a gallery item with the query's identity and camera is removed; nothing else is. Identity
      ``-1`` is *not* junk here: torchreid's dataset loaders drop those images before
      evaluation, its ``evaluate_rank`` does not. Drop them from the gallery first to get its
      Market-1501 numbers, or call :func:`evaluate_rank`, which removes them by default;
    * the CMC is the first-hit curve with ``min(max_rank, G)`` values, as float32; the mAP is
      the step AP averaged over the queries with a valid match (the others are skipped).

    Differences that cannot change a result without ties: equal distances keep gallery order
    here (a stable sort), while torchreid's ``np.argsort`` orders them arbitrarily, and its
    Cython path first rounds the distances to float32. A query with fewer valid gallery items
    than ``max_rank`` keeps ``1`` after its hit here; torchreid's Python path fails on it and
    its Cython path reads stale values there.

    Args:
        distmat: ``(Q, G)`` floating distances (smaller = more similar): a torch tensor on any
            device, a numpy array or a nested list; NaN rejected.
        q_pids: ``(Q,)`` integer query identities.
        g_pids: ``(G,)`` integer gallery identities.
        q_camids: ``(Q,)`` integer query camera ids.
        g_camids: ``(G,)`` integer gallery camera ids.
        max_rank: CMC ranks to return, ``>= 1``; at most ``G`` are.
        use_metric_cuhk03: ``True`` (torchreid's CUHK03 single-gallery-shot protocol) raises
            a NotImplementedError, see below.
        use_cython: accepted for compatibility and ignored: there is one implementation.

    Returns:
        ``(cmc, mAP)``: ``cmc`` a ``(min(max_rank, G),)`` float32 numpy array of fractions in
        ``[0, 1]``, ``cmc[0]`` the rank-1 accuracy; ``mAP`` a Python float in ``[0, 1]``.

    Raises:
        NotImplementedError: for ``use_metric_cuhk03=True``.
        TypeError: wrong argument types or dtypes.
        ValueError: wrong shapes or lengths, a NaN distance, or no query with a valid match
            (torchreid fails an assertion there).

    Example:
        >>> distmat = [[0.0, 1, 2, 3]]  # identity -1 at rank 2 is an ordinary negative here
        >>> cmc, mAP = evaluate_rank_torchreid(distmat, [7], [7, -1, 0, 7], [0], [1, 1, 1, 2])
        >>> cmc, mAP
        (array([1., 1., 1., 1.], dtype=float32), 0.75)
        >>> float(evaluate_rank(distmat, [7], [7, -1, 0, 7], [0], [1, 1, 1, 2]).mAP)
        0.8333
    """
    check_flag(use_cython, "use_cython")
    if check_flag(use_metric_cuhk03, "use_metric_cuhk03"):
        raise NotImplementedError(
            "use_metric_cuhk03=True, torchreid's CUHK03 single-gallery-shot protocol (the CMC "
            "averaged over 10 random draws of one gallery image per identity; the mAP "
            "unchanged), is not implemented: use torchreid itself for the classic CUHK03 "
            "splits, or use_metric_cuhk03=False for the new (767/700) protocol, which is "
            "evaluated like Market-1501"
        )
    metrics = evaluate_rank(
        distmat, q_pids, g_pids, q_camids, g_camids, max_rank, "step", junk_pids=()
    )
    return metrics.cmc.cpu().numpy().astype(np.float32), metrics.mAP


def check_labels(
    device: torch.device,
    num_queries: int,
    num_gallery: int,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    junk_pids: Sequence[int],
) -> tuple[Tensor, Tensor, GalleryLabels]:
    """Checked int64 query identities and cameras, and the indexed gallery labels."""
    if num_queries == 0:
        raise ValueError("there are no queries (Q = 0); nothing to evaluate")
    if num_gallery == 0:
        raise ValueError("the gallery is empty (G = 0); nothing to rank the queries against")
    q_pid = to_labels(q_pids, "q_pids", num_queries, device)
    q_cam = to_labels(q_camids, "q_camids", num_queries, device)
    g_pid = to_labels(g_pids, "g_pids", num_gallery, device)
    g_cam = to_labels(g_camids, "g_camids", num_gallery, device)
    return q_pid, q_cam, GalleryLabels.build(g_pid, g_cam, check_junk_pids(junk_pids))
