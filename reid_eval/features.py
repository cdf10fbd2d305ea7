r"""Evaluation straight from features: plain, and occlusion-unified ("occlude them all").

Distances are computed for a chunk of queries at a time and ranked at once (see
:mod:`.ranking`), so the full ``(Q, G)`` matrix never exists: the working memory is about
``chunk_size * G`` distances plus their comparison mask.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ._inputs import ArrayLike, check_choice, check_positive_int, to_labels, to_tensor
from .distances import METRICS, PreparedGallery, check_chunk_size, check_feature_pair
from .metrics import AP_KINDS, MetricsAccumulator, RankMetrics, check_labels

__all__ = ["evaluate_features", "evaluate_soft_unified", "evaluate_unified"]

#: How far a row of ``q_probs`` may sum from 1.
_PROBABILITY_TOLERANCE = 1e-3


def evaluate_features(
    q_feats: ArrayLike,
    g_feats: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    metric: str = "euclidean",
    max_rank: int = 50,
    chunk_size: int = 256,
    ap: str = "step",
    *,
    junk_pids: Sequence[int] = (-1,),
    progress: bool | Callable[[int, int], None] = False,
) -> RankMetrics:
    r"""CMC, mAP and mINP from features, computing the distances chunk by chunk of queries.

    Equals ``evaluate_rank(pairwise_distance(q_feats, g_feats, metric), q_pids, ...)`` exactly
    (same distances bit for bit, same ranking), for every ``chunk_size``, without ever holding
    the ``(Q, G)`` matrix.

    Args:
        q_feats: ``(Q, D)`` floating query features, a tensor on any device, a numpy array or a
            nested list (Python floats give float64).
        g_feats: ``(G, D)`` gallery features, same dtype and device.
        q_pids: ``(Q,)`` integer query identities.
        g_pids: ``(G,)`` integer gallery identities.
        q_camids: ``(Q,)`` integer query camera ids.
        g_camids: ``(G,)`` integer gallery camera ids.
        metric: ``"euclidean"``, ``"sqeuclidean"`` or ``"cosine"``, see
            :func:`~oamn.reid_eval.pairwise_distance`. torchreid's and fast-reid's
            ``"euclidean"`` is ``"sqeuclidean"`` (the ranking, hence every metric, is the same
            for both; the difference matters to :func:`~oamn.reid_eval.rerank`).
        max_rank: length of the CMC curve, ``>= 1`` (at most ``G`` values are returned).
        chunk_size: queries whose distances are held at once, rounded up to a multiple of
            :data:`~oamn.reid_eval.distances.ROW_BLOCK` (256); peak memory grows with
            ``chunk_size * G``.
        ap: ``"step"`` (default) or ``"trapezoid"``, see :func:`~oamn.reid_eval.evaluate_rank`.
        junk_pids: gallery identities removed for every query, see
            :func:`~oamn.reid_eval.evaluate_rank`.
        progress: ``True`` writes the queries ranked so far and the elapsed time on one line of
            standard error, updated after each chunk; a callable is called instead as
            ``progress(done, total)`` (for a progress bar of your own). ``False``: silent.

    Returns:
        The metrics, see :class:`~oamn.reid_eval.RankMetrics`; tensors on the features' device.

    Example:
        >>> q = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # identities 1 and 2, camera 0
        >>> g = torch.tensor([[1.0, 0.1], [0.1, 0.9], [0.9, 0.2]])  # identities 1, 1, 2
        >>> m = evaluate_features(q, g, torch.tensor([1, 2]), torch.tensor([1, 1, 2]),
        ...                       torch.tensor([0, 0]), torch.tensor([1, 1, 1]), metric="cosine")
        >>> m.cmc[:2].tolist(), m.ap.tolist(), m.inp.tolist()
        ([0.5, 1.0], [0.8333, 0.5], [0.6667, 0.5])
    """
    queries, gallery = check_feature_pair(q_feats, g_feats, "g_feats", "(G, D)")
    all_queries = torch.arange(queries.shape[0], device=queries.device)
    labels = (q_pids, g_pids, q_camids, g_camids)
    groups = [(all_queries, _distances_to(gallery, "g_feats", queries))]
    settings = (metric, max_rank, chunk_size, ap, junk_pids, progress)
    return _evaluate_groups(queries, groups, gallery.shape[0], labels, settings)


def evaluate_unified(
    q_feats: ArrayLike,
    q_types: ArrayLike,
    g_bank: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    metric: str = "euclidean",
    max_rank: int = 50,
    chunk_size: int = 256,
    ap: str = "step",
    *,
    junk_pids: Sequence[int] = (-1,),
    progress: bool | Callable[[int, int], None] = False,
) -> RankMetrics:
    r"""Occlusion-unified evaluation: each query against the gallery occluded like itself.

    OAMN's "occlude them all" (paper §3.4): query ``i`` has a predicted occlusion type
    ``q_types[i]`` (see :func:`~oamn.reid_eval.predict_occlusion_type`) and is ranked against
    ``g_bank[q_types[i]]``, the gallery's features under that occlusion. The queries are grouped
    by type and each group is evaluated like :func:`evaluate_features` against its slice: one
    chunked distance computation per type present, never ``T`` full distance matrices (the
    authors' code builds all ``T``). With every ``q_types`` equal to ``t`` this is exactly
    ``evaluate_features(q_feats, g_bank[t], ...)``.

    **Two-sided** (this library's rule): pass ``q_feats`` as the queries' own ``(T, Q, D)``
    bank; query ``i`` is then ``q_feats[q_types[i], i]``, so query and gallery are both
    compared with the band of the query's type removed, and what the occluder shows in the
    query cannot match anything. The paper (§3.4) only says that the query "may also" be
    occluded where a gallery image already is; that union of two bands is not one of the ``T``
    types and is not implemented.

    Args:
        q_feats: ``(Q, D)`` floating query features (unoccluded, as in the authors' code), or
            ``(T, Q, D)`` query features under each type (two-sided, see above).
        q_types: ``(Q,)`` integer occlusion types in ``[0, T)``; README convention: 0 none,
            1-4 half top/bottom/left/right, 5-8 quarter top/bottom/left/right.
        g_bank: ``(T, G, D)`` gallery features under each occlusion type (``T = 9`` for
            OAMN), same dtype and device as ``q_feats``.
        q_pids: ``(Q,)`` integer query identities.
        g_pids: ``(G,)`` integer gallery identities.
        q_camids: ``(Q,)`` integer query camera ids.
        g_camids: ``(G,)`` integer gallery camera ids.
        metric: ``"euclidean"``, ``"sqeuclidean"`` or ``"cosine"``.
        max_rank: length of the CMC curve, ``>= 1`` (at most ``G`` values are returned).
        chunk_size: queries whose distances are held at once, see :func:`evaluate_features`.
        ap: ``"step"`` (default) or ``"trapezoid"``.
        junk_pids: gallery identities removed for every query.
        progress: ``True`` (a line on standard error) or ``progress(done, total)``, see
            :func:`evaluate_features`.

    Returns:
        The metrics, see :class:`~oamn.reid_eval.RankMetrics`, per query in the input order.

    Example:
        >>> q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> bank = torch.stack([torch.eye(2), torch.eye(2).flip(0)])  # type 1 swaps the items
        >>> ids, cams = torch.tensor([0, 1]), torch.tensor([0, 0])
        >>> evaluate_unified(q, torch.tensor([0, 0]), bank, ids, ids, cams, cams + 1).mAP
        1.0
        >>> evaluate_unified(q, torch.tensor([0, 1]), bank, ids, ids, cams, cams + 1).ap
        tensor([1.0000, 0.5000], dtype=torch.float64)
        >>> q_bank = torch.stack([q, q.flip(0)])  # two-sided: query 1 under type 1 is [1, 0]
        >>> evaluate_unified(q_bank, torch.tensor([0, 1]), bank, ids, ids, cams, cams + 1).ap
        tensor([1., 1.], dtype=torch.float64)
    """
    queries, bank, types = unified_queries(q_feats, q_types, g_bank, "g_bank")
    check_bank_layout(bank, g_pids, "g_bank")
    groups = [(index, _distances_to(bank[t], "g_bank", queries)) for t, index in type_groups(types)]
    labels = (q_pids, g_pids, q_camids, g_camids)
    settings = (metric, max_rank, chunk_size, ap, junk_pids, progress)
    return _evaluate_groups(queries, groups, bank.shape[1], labels, settings)


def evaluate_soft_unified(
    q_feats: ArrayLike,
    q_probs: ArrayLike,
    g_bank: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    metric: str = "euclidean",
    max_rank: int = 50,
    chunk_size: int = 256,
    ap: str = "step",
    *,
    junk_pids: Sequence[int] = (-1,),
    progress: bool | Callable[[int, int], None] = False,
) -> RankMetrics:
    r"""Soft occlusion unification: each distance weighted by the query's type probabilities.

    ``d(q, g) = sum_t p(t | q) * d_t(q, g)``, where ``d_t`` compares the query with
    ``g_bank[t]``, the gallery under type ``t``: the plain query (one-sided, ``q_feats`` of shape
    ``(Q, D)``) or the query under type ``t`` too (two-sided, ``q_feats`` of shape ``(T, Q, D)``).
    Where the grader hesitates between types, the ranking blends them instead of staking
    everything on its argmax. For one-hot ``q_probs`` (``p(t | q) = 1`` for the type ``t_q``)
    the distances are those of :func:`evaluate_unified` with ``q_types = t_q``, bit for bit
    (the other terms add exact zeros), hence the same metrics.

    Cost: each chunk of queries computes one distance block per type that any of its queries
    gives a non-zero probability, so up to ``T`` times :func:`evaluate_features` (9 for OAMN);
    memory is two ``(chunk, G)`` blocks.

    Args:
        q_feats: ``(Q, D)`` query features, or their ``(T, Q, D)`` bank (two-sided).
        q_probs: ``(Q, T)`` non-negative type probabilities, rows summing to 1 (within 1e-3),
            e.g. the softmax of a 9-way grader (columns 0 none, 1-4 half top/bottom/left/right,
            5-8 quarter).
        g_bank: ``(T, G, D)`` gallery features under each type, same dtype and device.
        q_pids, g_pids, q_camids, g_camids: identities and cameras, see
            :func:`evaluate_features`.
        metric, max_rank, chunk_size, ap, junk_pids, progress: see :func:`evaluate_features`.

    Returns:
        The metrics, see :class:`~oamn.reid_eval.RankMetrics`, per query in the input order.

    Example:
        >>> q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> bank = torch.stack([torch.eye(2), torch.eye(2).flip(0)])  # type 1 swaps the items
        >>> ids, cams = torch.tensor([0, 1]), torch.tensor([0, 0])
        >>> probs = torch.tensor([[0.9, 0.1], [0.2, 0.8]])  # query 1 mostly type 1
        >>> evaluate_soft_unified(q, probs, bank, ids, ids, cams, cams + 1).ap
        tensor([1.0000, 0.5000], dtype=torch.float64)
    """
    checked, bank = query_features(q_feats, g_bank, "g_bank")
    q_bank = checked if checked.ndim == 3 else checked.expand(bank.shape[0], -1, -1)
    queries = q_bank[0]  # the query count and device the labels are checked against
    check_bank_layout(bank, g_pids, "g_bank")
    probs = _check_probabilities(q_probs, queries, bank.shape[0])
    all_queries = torch.arange(queries.shape[0], device=queries.device)
    groups = [(all_queries, _weighted_distances_to(bank, q_bank, probs))]
    labels = (q_pids, g_pids, q_camids, g_camids)
    settings = (metric, max_rank, chunk_size, ap, junk_pids, progress)
    return _evaluate_groups(queries, groups, bank.shape[1], labels, settings)


def unified_queries(
    q_feats: ArrayLike, q_types: ArrayLike, g_bank: ArrayLike, g_name: str
) -> tuple[Tensor, Tensor, Tensor]:
    """Checked ``(Q, D)`` query features (each under its type when given a query bank), the
    ``(T, G, D)`` gallery bank (argument ``g_name``) and the ``(Q,)`` int64 types."""
    queries, bank = query_features(q_feats, g_bank, g_name)
    if queries.ndim == 2:
        return queries, bank, _check_types(q_types, queries, bank.shape[0], g_name)
    types = _check_types(q_types, queries[0], bank.shape[0], g_name)
    return queries[types, torch.arange(queries.shape[1], device=queries.device)], bank, types


def query_features(q_feats: ArrayLike, g_bank: ArrayLike, g_name: str) -> tuple[Tensor, Tensor]:
    """Checked query features, ``(Q, D)`` or a ``(T, Q, D)`` query bank, and the ``(T, G, D)``
    gallery bank (argument ``g_name``)."""
    given = to_tensor(q_feats, "q_feats")
    if given.ndim != 3:
        return check_feature_pair(given, g_bank, g_name, "(T, G, D)")
    flat, bank = check_feature_pair(given.flatten(0, 1), g_bank, g_name, "(T, G, D)")
    if given.shape[0] != bank.shape[0]:
        raise ValueError(
            f"q_feats as a query bank must have {g_name}'s {bank.shape[0]} types first, got "
            f"shape {tuple(given.shape)} against {g_name}'s {tuple(bank.shape)}: banks are laid "
            "out (T, Q, D) and (T, G, D), types first (a (Q, T, D) or (G, T, D) stack needs "
            ".transpose(0, 1)); pass (Q, D) features for the one-sided unification"
        )
    return flat.view(given.shape), bank


def check_bank_layout(
    bank: Tensor, pids: ArrayLike, bank_name: str, pids_name: str = "g_pids"
) -> None:
    """Raise when a ``(T, N, D)`` bank (argument ``bank_name``) looks transposed: its first
    dimension, not its second, matches the number of identities ``pids`` (``pids_name``)."""
    try:
        count = len(pids)  # type: ignore[arg-type]
    except TypeError:
        return  # not a sequence: to_labels names the problem
    if count != bank.shape[1] and count == bank.shape[0]:
        raise ValueError(
            f"{bank_name} has shape {tuple(bank.shape)}, whose first dimension matches the "
            f"{count} entries of {pids_name}: a bank is laid out (T, N, D), types first, as "
            f"occlusion_bank returns it; pass {bank_name}.transpose(0, 1) if it is (N, T, D), "
            f"else {pids_name} needs {bank.shape[1]} entries"
        )


def type_groups(types: Tensor) -> list[tuple[int, Tensor]]:
    """Each type present in ``(Q,)`` int64 ``types``, ascending, with the ``(n,)`` int64
    indices of its queries.

    Example:
        >>> [(t, index.tolist()) for t, index in type_groups(torch.tensor([2, 0, 2]))]
        [(0, [1]), (2, [0, 2])]
    """
    return [(t, torch.nonzero(types == t).squeeze(1)) for t in torch.unique(types).tolist()]


def _check_types(q_types: ArrayLike, queries: Tensor, num_types: int, g_name: str) -> Tensor:
    """``q_types`` as ``(Q,)`` int64 types in ``[0, num_types)``, else a clear error."""
    types = to_labels(q_types, "q_types", queries.shape[0], queries.device)
    if bool(((types < 0) | (types >= num_types)).any()):
        raise ValueError(
            f"q_types must be in [0, {num_types}) to index {g_name}'s first dimension, got "
            f"values from {int(types.min())} to {int(types.max())}"
        )
    return types


def _check_probabilities(q_probs: ArrayLike, queries: Tensor, num_types: int) -> Tensor:
    """``q_probs`` as ``(Q, T)`` probabilities on the queries' device, else a clear error."""
    probs = to_tensor(q_probs, "q_probs")
    if probs.ndim != 2 or probs.shape != (queries.shape[0], num_types):
        raise ValueError(
            f"q_probs must have shape (Q, T) = ({queries.shape[0]}, {num_types}), one row of "
            f"type probabilities per query, got {tuple(probs.shape)}"
        )
    if not probs.is_floating_point():
        raise TypeError(f"q_probs must be floating, got {probs.dtype}")
    probs = probs.to(queries.device)
    if not bool(torch.isfinite(probs).all()) or bool((probs < 0).any()):
        raise ValueError("q_probs must be finite and non-negative (a softmax's output)")
    if bool(((probs.sum(dim=1) - 1).abs() > _PROBABILITY_TOLERANCE).any()):
        raise ValueError("each row of q_probs must sum to 1; pass the grader's softmax")
    return probs


#: A group's distances: given the metric, a function of the group's query indices.
DistancesOf = Callable[[str], Callable[[Tensor], Tensor]]


def _distances_to(gallery: Tensor, gallery_name: str, queries: Tensor) -> DistancesOf:
    """The distances of ``queries[index]`` to one ``(G, D)`` gallery."""

    def prepare(metric: str) -> Callable[[Tensor], Tensor]:
        prepared = PreparedGallery.build(gallery, metric, gallery_name)
        return lambda index: prepared.distances(queries[index])

    return prepare


def _weighted_distances_to(bank: Tensor, q_bank: Tensor, probs: Tensor) -> DistancesOf:
    """``sum_t probs[index, t] * d(q_bank[t, index], bank[t])``, skipping the types that no
    query of the chunk gives a non-zero probability."""

    def prepare(metric: str) -> Callable[[Tensor], Tensor]:
        prepared: dict[int, PreparedGallery] = {}

        def distances(index: Tensor) -> Tensor:
            weights = probs[index]
            total = None
            for t in torch.nonzero(weights.any(dim=0)).squeeze(1).tolist():
                if t not in prepared:
                    prepared[t] = PreparedGallery.build(bank[t], metric, "g_bank")
                block = prepared[t].distances(q_bank[t, index])
                term = weights[:, t, None].to(block.dtype) * block
                total = term if total is None else total.add_(term)
                del block, term
            return total

        return distances

    return prepare


def _evaluate_groups(
    queries: Tensor,
    groups: Sequence[tuple[Tensor, DistancesOf]],
    num_gallery: int,
    labels: tuple[ArrayLike, ArrayLike, ArrayLike, ArrayLike],
    settings: tuple[str, int, int, str, Sequence[int], bool | Callable[[int, int], None]],
) -> RankMetrics:
    """Rank each group ``(query indices, its distances)`` and merge in query order.

    ``labels`` are ``(q_pids, g_pids, q_camids, g_camids)`` and ``settings`` ``(metric,
    max_rank, chunk_size, ap, junk_pids, progress)``, as given to the public functions.
    """
    metric, max_rank, chunk_size, ap, junk_pids, progress = settings
    q_pid, q_cam, gallery_labels = check_labels(
        queries.device, queries.shape[0], num_gallery, *labels, junk_pids
    )
    metric = check_choice(metric, "metric", METRICS)
    max_rank = check_positive_int(max_rank, "max_rank")
    chunk = check_chunk_size(chunk_size)
    ap = check_choice(ap, "ap", AP_KINDS)
    report = _progress_reporter(progress, queries.shape[0])
    metrics = MetricsAccumulator(queries.shape[0], num_gallery, queries.device, ap)
    done = 0
    with torch.no_grad():
        for query_index, distances_of in groups:
            distances_to = distances_of(metric)
            for start in range(0, query_index.numel(), chunk):
                index = query_index[start : start + chunk]
                distances = distances_to(index)
                metrics.rank(distances, index, q_pid[index], q_cam[index], gallery_labels)
                del distances  # before the next chunk's: one (chunk, G) matrix at a time
                done += index.numel()
                report(done)
    return metrics.result(max_rank)


def _progress_reporter(
    progress: bool | Callable[[int, int], None], total: int
) -> Callable[[int], None]:
    """``report(done)`` for ``total`` queries: nothing, a line on standard error, or the user's
    callable ``progress(done, total)``."""
    if callable(progress):
        return lambda done: progress(done, total)
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be a bool or a callable(done, total), got {progress!r}")
    if not progress:
        return lambda done: None
    start = time.perf_counter()

    def write(done: int) -> None:
        seconds = time.perf_counter() - start
        end = "\n" if done >= total else ""
        sys.stderr.write(
            f"\rreid_eval: {done:,}/{total:,} queries ranked ({done / total:.0%}), "
            f"{seconds:.1f} s{end}"
        )
        sys.stderr.flush()

    return write
