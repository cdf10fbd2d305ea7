r"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) from features, without an ``(N, N)`` matrix.

Notation: the ``N = Q + G`` items are the queries followed by the gallery; ``d(i, j)`` is the
chosen metric, ``n(i, j) = d(i, j)^2 / max_l d(i, l)^2`` the normalised squared distance in
``[0, 1]``. The published algorithm builds, for every item ``i``:

* ``R(i)``: those of its ``k1 + 1`` nearest items (itself included) that have ``i`` among
  their own ``k1 + 1`` nearest, its k-reciprocal set;
* ``E(i)``: ``R(i)`` joined with the half-size set ``R'(c)`` (``round(k1 / 2) + 1``
  neighbours, the same test) of every ``c`` in ``R(i)`` that shares strictly more than 2/3 of
  its elements with ``R(i)``;
* the row ``V_i``: ``exp(-n(i, j))`` on ``E(i)``, normalised to sum 1, zero elsewhere; then,
  unless ``k2 == 1``, the mean of ``V`` over ``i``'s ``k2`` nearest items (local query
  expansion);

and returns ``(1 - lambda) * jaccard(i, j) + lambda * n(i, j)`` for query ``i`` and gallery
``j``, where ``jaccard(i, j) = 1 - s / (2 - s)`` with ``s = sum_k min(V_ik, V_jk)``.

``V`` is sparse (``E(i)`` holds tens of items). Apart from the ``(Q, G)`` result and the
distance rows of one chunk of items, the memory is that of the neighbour lists and of ``V`` as
compressed sparse rows: ``crow`` of length ``N + 1`` and, per nonzero, its column and value.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ._inputs import ArrayLike, check_choice, check_fraction, check_positive_int
from .distances import METRICS, PreparedGallery, check_chunk_size, check_feature_pair
from .features import type_groups, unified_queries
from .ranking import segment_positions

__all__ = ["rerank"]


def rerank(
    q_feats: ArrayLike,
    g_feats: ArrayLike,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    metric: str = "euclidean",
    *,
    q_types: ArrayLike | None = None,
    chunk_size: int = 256,
) -> Tensor:
    r"""Query-gallery distances re-ranked with k-reciprocal encoding (Zhong et al., CVPR 2017).

    Returns what torchreid's (and the authors' published) ``re_ranking(q_g_dist, q_q_dist,
    g_g_dist, k1, k2, lambda_value)`` returns when given ``pairwise_distance(q, g, metric)``,
    ``pairwise_distance(q, q, metric)`` and ``pairwise_distance(g, g, metric)`` (so for
    ``"euclidean"`` the plain, not squared, distances, which it then squares), up to float32
    rounding: within 1e-4 when no two distances of an item tie (a tie may be ordered either way,
    and the order decides the neighbour sets). See the module docstring for the algorithm.

    Unlike the published code it never holds an ``(N, N)`` matrix (``N = Q + G``): distances
    are computed for ``chunk_size`` items at a time, and only each item's nearest neighbours,
    its largest distance and the query rows' gallery distances are kept; the encodings ``V``
    are sparse. The features are copied once, queries and gallery side by side (in float32 for
    16-bit features). Time: one pass of distance products (``N^2 D`` multiply-adds, the bulk), a
    top-k per row, about ``N k1^2`` steps for the neighbour sets and one per pair of a query's
    and a gallery item's nonzeros in a column for the Jaccard sums. At Occluded-Duke size
    (2,210 x 17,661, 256-d, one thread) that is about 9 s and under 400 MiB at the peak, the
    150 MiB result included, against 90 to 116 s and 8.7 GiB for the published code with its
    three input matrices (``benchmarks/bench_rerank.py``).

    Evaluate with ``evaluate_rank(rerank(q, g), q_pids, g_pids, q_camids, g_camids)``.

    **Unified** (see :func:`~oamn.reid_eval.evaluate_unified`): with ``q_types``, ``g_feats``
    is the ``(T, G, D)`` gallery bank and ``q_feats`` the ``(Q, D)`` queries or their own
    ``(T, Q, D)`` bank (query ``i`` is then ``q_feats[q_types[i], i]``). The queries of type
    ``t`` are re-ranked together against ``g_feats[t]`` (their ``N`` items are those queries and
    that gallery) and row ``i`` of the result is query ``i``'s; with every ``q_types`` equal to
    ``t`` this is ``rerank(q_feats, g_feats[t], ...)``.

    Args:
        q_feats: ``(Q, D)`` floating query features (or ``(T, Q, D)``, see above), a tensor on
            any device, a numpy array or a nested list. float16 and bfloat16 are computed in
            float32, float64 in float64 throughout (the published code rounds to float32).
        g_feats: ``(G, D)`` gallery features, or the ``(T, G, D)`` bank with ``q_types``; same
            dtype and device.
        k1: neighbours of the k-reciprocal sets, ``>= 1``; ``min(k1 + 1, N)`` are used.
        k2: neighbours averaged in the query expansion, ``>= 1`` (1: none).
        lambda_value: weight of the original distance, a number in ``[0, 1]``.
        metric: ``"euclidean"``, ``"sqeuclidean"`` or ``"cosine"``, see
            :func:`~oamn.reid_eval.pairwise_distance` (the published code squares it). To
            re-rank as torchreid or fast-reid do with their ``"euclidean"`` matrices, which
            are squared distances, pass ``"sqeuclidean"``: ``"euclidean"`` gives values up to
            about 0.1 apart from theirs.
        q_types: ``(Q,)`` integer occlusion types in ``[0, T)`` for the unified use, or None.
        chunk_size: items whose distance rows are held at once, rounded up to a multiple of
            :data:`~oamn.reid_eval.distances.ROW_BLOCK` (256); the working memory grows with
            ``chunk_size * N``. On the CPU the result does not depend on it, to the bit.

    Returns:
        ``(Q, G)`` re-ranked distances on the features' device, float64 for float64 features
        and float32 otherwise, in ``[0, 1]`` up to rounding (both terms are). A row whose item
        is at distance 0 from all ``N`` items (all features equal) is NaN, as in the published
        code.

    Example:
        >>> from oamn.reid_eval import evaluate_rank
        >>> q = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # identities 1 and 2, camera 0
        >>> g = torch.tensor([[0.2, 1.0], [1.0, 0.3], [0.0, 0.7], [0.6, 0.0]])  # ids 1, 2, 1, 2
        >>> reranked = rerank(q, g, k1=2, k2=1)
        >>> reranked
        tensor([[0.0213, 0.9235, 0.0467, 0.9040],
                [0.9460, 0.0500, 0.9235, 0.0867]])
        >>> q_ids, q_cams = torch.tensor([1, 2]), torch.tensor([0, 0])
        >>> g_ids, g_cams = torch.tensor([1, 2, 1, 2]), torch.tensor([1, 1, 1, 1])
        >>> evaluate_rank(reranked, q_ids, g_ids, q_cams, g_cams).mAP
        1.0
    """
    k1 = check_positive_int(k1, "k1")
    k2 = check_positive_int(k2, "k2")
    lambda_value = check_fraction(lambda_value, "lambda_value")
    metric = check_choice(metric, "metric", METRICS)
    chunk = check_chunk_size(chunk_size)
    if q_types is None:
        queries, gallery = check_feature_pair(q_feats, g_feats, "g_feats", "(G, D)")
        bank = gallery[None]  # one type, 0, for every query
        types = torch.zeros(queries.shape[0], dtype=torch.long, device=queries.device)
    else:
        queries, bank, types = unified_queries(q_feats, q_types, g_feats, "g_feats")
    work_dtype = torch.float64 if queries.dtype == torch.float64 else torch.float32
    result_shape = (queries.shape[0], bank.shape[1])
    if 0 in result_shape:
        return queries.new_zeros(result_shape, dtype=work_dtype)
    settings = (k1, k2, lambda_value, metric, chunk)
    groups = type_groups(types)
    with torch.no_grad():
        # 16-bit features are widened once, by PreparedGallery.build in _rerank_group.
        if len(groups) == 1:  # every query, in order: no copy into a result
            return _rerank_group(queries, bank[groups[0][0]], *settings)
        result = queries.new_empty(result_shape, dtype=work_dtype)
        for t, index in groups:
            result[index] = _rerank_group(queries[index], bank[t], *settings)
    return result


@dataclass(frozen=True)
class _SparseRows:
    """Compressed sparse rows of an ``(N, N)`` matrix, columns ascending within each row."""

    crow: Tensor  # (N + 1,) int64: row i's nonzeros are entries crow[i]:crow[i + 1]
    cols: Tensor  # (nnz,) int64
    values: Tensor  # (nnz,) floating


def _entry_rows(crow: Tensor) -> Tensor:
    """The row of each entry of the rows whose ``R + 1`` pointers are ``crow``, from 0 to R-1."""
    lengths = crow.diff()
    return torch.repeat_interleave(torch.arange(lengths.numel(), device=crow.device), lengths)


def _rerank_group(
    queries: Tensor,
    gallery: Tensor,
    k1: int,
    k2: int,
    lambda_value: float,
    metric: str,
    chunk: int,
) -> Tensor:
    """The ``(Q, G)`` re-ranked distances of ``(Q, D)`` queries to a ``(G, D)`` gallery."""
    num_query = queries.shape[0]
    # Queries first, like the published matrix; a row's chunk decides its distances' bits.
    prepared = PreparedGallery.build(torch.cat([queries, gallery]), metric)
    neighbours, max_squared, query_squared = _nearest(prepared, max(k1 + 1, k2), num_query, chunk)
    crow, cols = _expanded_reciprocal_sets(neighbours, k1, chunk)
    encodings = _encodings(prepared, crow, cols, max_squared, chunk)
    if k2 != 1:
        encodings = _local_query_expansion(encodings, neighbours[:, :k2], chunk)
    return _blend(encodings, query_squared, max_squared[:num_query], lambda_value, chunk)


def _nearest(
    prepared: PreparedGallery, k: int, num_query: int, chunk: int
) -> tuple[Tensor, Tensor, Tensor]:
    """``(N, min(k, N))`` indices of each item's nearest items, nearest first (itself, unless
    another item coincides with it), the ``(N,)`` largest squared distance of each item, and
    the ``(Q, G)`` squared distances of the first ``num_query`` items to the others."""
    items = prepared.features
    num_items = items.shape[0]
    neighbours = torch.empty(num_items, min(k, num_items), dtype=torch.long, device=items.device)
    max_squared = items.new_empty(num_items)
    query_squared = items.new_empty(num_query, num_items - num_query)
    for start in range(0, num_items, chunk):
        rows = slice(start, start + chunk)
        distances = prepared.distances(items[rows])
        # Squaring and normalising are monotone: the order of the plain distances is theirs
        # (bar values they would round together, which count as ties anyway).
        neighbours[rows] = distances.topk(neighbours.shape[1], 1, largest=False).indices
        max_squared[rows] = distances.amax(1).square_()
        query_squared[rows] = distances[: max(num_query - start, 0), num_query:].square_()
    return neighbours, max_squared, query_squared


def _reciprocal(first_neighbours: Tensor, rows: Tensor) -> Tensor:
    """``(len(rows), w)`` mask: which of the ``w`` first neighbours of each item of ``rows``
    have it among their own ``w`` first (``first_neighbours`` is ``(N, w)``)."""
    forward = first_neighbours[rows]
    return (first_neighbours[forward] == rows[:, None, None]).any(2)


def _expanded_reciprocal_sets(neighbours: Tensor, k1: int, chunk: int) -> tuple[Tensor, Tensor]:
    """The ``crow`` and ``cols`` of the sets ``E(i)`` (see the module docstring)."""
    num_items = neighbours.shape[0]
    device = neighbours.device
    first = neighbours[:, : min(k1 + 1, num_items)]
    # Python's round, like the published np.around, rounds k1 / 2 half to even (2.5 -> 2).
    half = neighbours[:, : min(round(k1 / 2) + 1, num_items)]
    all_rows = torch.arange(num_items, device=device)
    half_reciprocal = torch.cat([_reciprocal(half, rows) for rows in all_rows.split(chunk)])
    # Index num_items marks "no item" in the padded tables below; it sorts after every item.
    absent = num_items
    counts, cols = [], []
    for rows in all_rows.split(chunk):
        forward = first[rows]
        reciprocal_set = torch.where(_reciprocal(first, rows), forward, absent)  # R(i)
        candidate_sets = torch.where(half_reciprocal[forward], half[forward], absent)  # R'(c)
        candidates = candidate_sets != absent
        in_set = _is_member(candidate_sets.flatten(1), reciprocal_set.sort(1).values)
        shared = (in_set.view(candidate_sets.shape) & candidates).sum(2)
        size = candidates.sum(2)
        # "More than 2/3 of R'(c)" in integers: the same as the published float test
        # shared > 2. / 3 * size (checked for every size up to 10^5).
        accepted = (reciprocal_set != absent) & (3 * shared > 2 * size)
        expansion = torch.where(accepted[:, :, None], candidate_sets, absent).flatten(1)
        members = torch.cat([reciprocal_set, expansion], 1).sort(1).values
        # Sorted, so each repeat follows its first occurrence (and "absent" comes last).
        kept = members != absent
        kept[:, 1:] &= members[:, 1:] != members[:, :-1]
        counts.append(kept.sum(1))
        cols.append(members[kept])
    return torch.cat([neighbours.new_zeros(1), torch.cat(counts).cumsum(0)]), torch.cat(cols)


def _is_member(values: Tensor, sorted_sets: Tensor) -> Tensor:
    """``(B, M)`` mask: which ``values`` are in their row of the ``(B, S)`` ascending
    ``sorted_sets``, by binary search."""
    position = torch.searchsorted(sorted_sets, values).clamp_max_(sorted_sets.shape[1] - 1)
    return sorted_sets.gather(1, position) == values


def _encodings(
    prepared: PreparedGallery, crow: Tensor, cols: Tensor, max_squared: Tensor, chunk: int
) -> _SparseRows:
    """``V``: ``exp(-n(i, j))`` on the sets ``(crow, cols)``, normalised to sum 1 per row."""
    rows = _entry_rows(crow)
    # Each step gathers both features of its pairs: about as many numbers as a chunk of
    # distance rows each.
    pairs_per_step = max(1, chunk * max_squared.numel() // prepared.features.shape[1])
    squared = torch.cat(
        [
            prepared.pair_distances(row_part, col_part).square_()
            for row_part, col_part in zip(
                rows.split(pairs_per_step), cols.split(pairs_per_step), strict=True
            )
        ]
    )
    weights = squared.div_(max_squared[rows]).neg_().exp_()
    totals = weights.new_zeros(max_squared.numel()).index_add_(0, rows, weights)
    return _SparseRows(crow, cols, weights.div_(totals[rows]))


def _local_query_expansion(
    encodings: _SparseRows, first_neighbours: Tensor, chunk: int
) -> _SparseRows:
    """Each row of ``V`` replaced by the mean of the rows of its ``k2`` first neighbours."""
    num_items, k2 = first_neighbours.shape
    lengths = encodings.crow.diff()
    counts, cols, values = [], [], []
    for rows in torch.arange(num_items, device=lengths.device).split(chunk):
        sources = first_neighbours[rows].flatten()
        positions = segment_positions(encodings.crow[sources], lengths[sources])
        owners = torch.repeat_interleave(rows - rows[0], lengths[sources].view(-1, k2).sum(1))
        keys, slots = torch.unique(
            owners * num_items + encodings.cols[positions], sorted=True, return_inverse=True
        )
        # index_add_ adds in entry order, so each sum runs over the neighbours in rank order as
        # the published code's does (bitwise the same on the CPU).
        sums = encodings.values.new_zeros(keys.numel())
        sums.index_add_(0, slots, encodings.values[positions])
        counts.append(torch.bincount(keys // num_items, minlength=rows.numel()))
        cols.append(keys % num_items)
        values.append(sums.div_(k2))
    crow = torch.cat([lengths.new_zeros(1), torch.cat(counts).cumsum(0)])
    return _SparseRows(crow, torch.cat(cols), torch.cat(values))


def _blend(
    encodings: _SparseRows,
    query_squared: Tensor,
    max_squared: Tensor,
    lambda_value: float,
    chunk: int,
) -> Tensor:
    """``(1 - lambda) * jaccard + lambda * n`` for the ``(Q, G)`` query rows and gallery
    columns, written over their squared distances ``query_squared`` (``max_squared``: ``(Q,)``
    their rows' maxima over all items)."""
    num_query, num_gallery = query_squared.shape
    num_items = num_query + num_gallery
    # Inverted index of the gallery's rows: column k's nonzeros, gallery row and value, are
    # entries column_start[k] : column_start[k] + column_length[k] of these tables.
    gallery_entries = slice(int(encodings.crow[num_query]), None)
    gallery_cols = encodings.cols[gallery_entries]
    by_column = torch.argsort(gallery_cols, stable=True)
    gallery_rows = _entry_rows(encodings.crow[num_query:])[by_column]
    gallery_values = encodings.values[gallery_entries][by_column]
    column_length = torch.bincount(gallery_cols, minlength=num_items)
    column_start = column_length.cumsum(0) - column_length

    # Pairs expanded at once: each takes some 40 bytes of temporaries, so an eighth of the
    # (chunk, G) sums buffer's entries keeps them near its size.
    pairs_per_step = max(1, chunk * num_gallery // 8)
    for start in range(0, num_query, chunk):
        stop = min(start + chunk, num_query)
        entries = slice(int(encodings.crow[start]), int(encodings.crow[stop]))
        query_rows = _entry_rows(encodings.crow[start : stop + 1])
        query_cols, query_values = encodings.cols[entries], encodings.values[entries]
        pair_counts = column_length[query_cols]
        sums = query_squared.new_zeros((stop - start) * num_gallery)
        # Entries are taken in order, so each pair's sum runs over its columns in ascending
        # order whatever the steps (index_add_ adds in index order), as the published loop.
        for step in _steps(pair_counts, pairs_per_step):
            counts = pair_counts[step]
            positions = segment_positions(column_start[query_cols[step]], counts)
            mins = torch.minimum(
                torch.repeat_interleave(query_values[step], counts), gallery_values[positions]
            )
            targets = torch.repeat_interleave(query_rows[step] * num_gallery, counts)
            sums.index_add_(0, targets.add_(gallery_rows[positions]), mins)
        sums = sums.view(stop - start, num_gallery)
        jaccard = sums.div_(sums.neg().add_(2.0)).neg_().add_(1.0)
        original = query_squared[start:stop].div_(max_squared[start:stop, None])
        original.mul_(lambda_value).add_(jaccard.mul_(1 - lambda_value))
    return query_squared


def _steps(counts: Tensor, budget: int) -> list[slice]:
    """Consecutive slices of ``counts`` each summing to at most ``budget`` (or one element)."""
    ends = counts.cumsum(0)
    steps, start, done = [], 0, 0
    while start < counts.numel():
        stop = max(int(torch.searchsorted(ends, done + budget, right=True)), start + 1)
        steps.append(slice(start, stop))
        done, start = int(ends[stop - 1]), stop
    return steps
