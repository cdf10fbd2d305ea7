r"""Ranks of each query's true matches, found without sorting the whole gallery.

Protocol (Market-1501 / DukeMTMC, as in torchreid and fast-reid). For a query with identity
``pid`` and camera ``cam``, a gallery item is

* **junk** (removed from the ranking) if it has the same identity *and* the same camera, or if
  its identity is one of ``junk_pids`` (Market-1501 labels its junk detections ``-1``);
* a **match** if it has the same identity from another camera;
* a negative otherwise. Market-1501's distractors (identity ``0``) are ordinary negatives.

The ranking is the *stable* order of the valid (non-junk) gallery items by distance: equal
distances keep gallery order, exactly as ``np.argsort(kind="stable")`` after removing the junk.

Only the ranks of the matches matter for CMC, AP and INP: the rank of a match is one plus the
number of valid items that sort before it, and those all lie at most at the query's largest
match distance. Each block of rows is counted one of two ways, both exact:

* few such *candidates* (a trained model: a few per cent of the matrix): they are extracted and
  sorted by an int64 key that encodes (row, distance, gallery index) uniquely; a match's rank is
  its position among them;
* many (a weak model): every row's distances are sorted (a plain value sort, several times
  cheaper than an argsort) and each match is located by binary search; the rare ties of
  distance with a match are then resolved by gallery index;
* many, and every distance an integer of a small range (Hamming distances of binary codes,
  where nearly every match ties with hundreds of items): no sort at all. The items are counted
  in a histogram of (row, block of columns, distance) bins; a match's rank is the count of the
  lower distances, plus its own distance in the earlier blocks, plus the few equal items before
  it in its own block, compared one by one.

Whichever way, the same-camera junk before a match is subtracted. On the CPU the comparisons,
the nonzero, the sorts and the histograms run in numpy, whose vectorised kernels are 3-9x faster
than torch's there (torch's ``searchsorted`` of every distance into the match distances, a
sort-free alternative, measured 15-19 ns a distance against 3-6 ns for numpy's value sort).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

#: Above this fraction of candidates in a block of rows, sorting every row's distances costs
#: less than keying and sorting the candidates (the break-even measured on a 2-core CPU).
DENSE_FRACTION = 0.1

#: Distance entries compared at once when resolving ties of the row-sorting path.
_TIE_ENTRIES_PER_STEP = 1 << 22

#: One column in this many decides between the candidates' keys and the dense paths.
_SAMPLE_STRIDE = 16

#: Integer-valued distances spanning at most this many values are counted, not sorted
#: (0 turns the counting path off).
MAX_COUNTED_LEVELS = 1024

#: Least columns per block of the counting path: its histogram has ``G / width * levels`` bins
#: a row, and each match compares up to ``width`` items of its own block.
_COUNTING_BLOCK = 128

#: Use numpy for the comparisons, nonzero and sorts of CPU tensors. ``False`` runs the torch
#: code of other devices instead (the tests run both).
NUMPY_ON_CPU = True


@dataclass(frozen=True)
class GalleryLabels:
    """The gallery's identities and cameras, indexed once for all queries.

    Attributes:
        pids: ``(G,)`` int64 identities.
        camids: ``(G,)`` int64 camera ids.
        junk: ``(G,)`` bool, ``True`` where the identity is one of the junk identities.
        pid_order: ``(G,)`` int64 gallery indices sorted by identity (stable).
        sorted_pids: ``(G,)`` int64, ``pids[pid_order]``.
    """

    pids: Tensor
    camids: Tensor
    junk: Tensor
    pid_order: Tensor
    sorted_pids: Tensor

    @classmethod
    def build(cls, pids: Tensor, camids: Tensor, junk_pids: Sequence[int]) -> GalleryLabels:
        """Index ``(G,)`` int64 ``pids`` / ``camids``; ``junk_pids`` are removed for every query."""
        junk = torch.isin(pids, torch.tensor(junk_pids, dtype=pids.dtype, device=pids.device))
        sorted_pids, pid_order = torch.sort(pids, stable=True)
        return cls(pids, camids, junk, pid_order, sorted_pids)


@dataclass(frozen=True)
class MatchRanks:
    """The ranks of the valid matches of a block of ``C`` queries.

    Attributes:
        row: ``(M,)`` int64 query row in the block, non-decreasing.
        order: ``(M,)`` int64, ``k`` for the ``k``-th match of its query (1-based).
        rank: ``(M,)`` int64 rank of that match among the query's valid gallery items (1-based),
            increasing with ``order`` within a row.
        num_matches: ``(C,)`` int64 number of valid matches of each query (0: no valid match).
    """

    row: Tensor
    order: Tensor
    rank: Tensor
    num_matches: Tensor


def rank_matches(
    distances: Tensor, q_pids: Tensor, q_camids: Tensor, gallery: GalleryLabels
) -> MatchRanks:
    r"""Rank every valid match of ``C`` queries among their valid gallery items.

    Args:
        distances: ``(C, G)`` floating distances, smaller = more similar; ``±inf`` allowed, NaN
            not (the callers check their input: a user's matrix, or computed features).
            ``C * G`` must stay below ``2**31`` (the callers rank a few rows at a time).
        q_pids: ``(C,)`` int64 query identities.
        q_camids: ``(C,)`` int64 query cameras.
        gallery: the gallery's labels, see :class:`GalleryLabels`.

    Returns:
        The ranks, see :class:`MatchRanks`; everything on ``distances``' device.
    """
    num_queries, num_gallery = distances.shape
    # Row-major memory for every path: flat indices, views and sorted rows assume it.
    distances = distances.contiguous()
    pair_rows, pair_cols, is_match = _same_identity_pairs(q_pids, q_camids, gallery)
    pair_index = pair_rows * num_gallery + pair_cols  # row-major flat indices
    pair_distances = torch.take(distances, pair_index)
    last_match = torch.full_like(distances[:, 0], -torch.inf)
    last_match.scatter_reduce_(0, pair_rows[is_match], pair_distances[is_match], "amax")
    # Only the speed depends on this choice: every path is exact. A sample of the columns
    # decides, so that the dense paths never build the whole candidate mask.
    sampled = _candidate_mask(
        distances[:, ::_SAMPLE_STRIDE], last_match, gallery.junk[::_SAMPLE_STRIDE]
    )
    many = int(sampled.count_nonzero()) > DENSE_FRACTION * sampled.numel()
    if many and bool(is_match.any()):
        candidate_keys = None
        coder = _KeyCoder.for_values(pair_distances, num_gallery)
    else:
        index = _flatnonzero(_candidate_mask(distances, last_match, gallery.junk))
        values = torch.take(distances, index)
        coder = _KeyCoder.for_values(values, num_gallery)
        candidate_keys = _sorted(coder.keys(index, values))

    # Keys are unique and ordered by (row, distance, gallery index): sorting the matches' keys
    # lists them row by row in ranking order, and a key's position among other sorted keys,
    # less the position of its row's first possible key, counts the keys before it in its row.
    pair_keys = coder.keys(pair_index, pair_distances)
    match_keys, by_key = torch.sort(pair_keys[is_match])
    row = match_keys // coder.row_size
    row_start = row * coder.row_size
    num_matches = torch.bincount(row, minlength=num_queries)
    slot = (
        torch.arange(row.numel(), device=row.device)
        - (torch.cumsum(num_matches, 0) - num_matches)[row]
    )
    if candidate_keys is None:
        match = torch.nonzero(is_match).squeeze(1)[by_key]
        match_distances, match_cols = pair_distances[match], pair_cols[match]
        levels = _integer_levels(distances)
        if levels is None:
            ranked_before = _items_before_by_row_sort(
                distances, last_match, gallery.junk, row, slot, match_distances, match_cols
            )
        else:
            ranked_before = _items_before_by_counting(
                distances, gallery.junk, row, match_distances, match_cols, *levels
            )
    else:
        ranked_before = _count_below(candidate_keys, match_keys)
        ranked_before -= _count_below(candidate_keys, row_start)
    # Same-camera junk that ranks before a match is counted above: take it out.
    junk_keys = _sorted(pair_keys[~is_match])
    junk_before = _count_below(junk_keys, match_keys) - _count_below(junk_keys, row_start)
    return MatchRanks(row, slot + 1, ranked_before - junk_before + 1, num_matches)


def _candidate_mask(distances: Tensor, last_match: Tensor, junk_columns: Tensor) -> Tensor:
    """``(C, G)`` bool: at most the row's ``last_match`` distance, and not a junk identity."""
    if distances.device.type == "cpu" and NUMPY_ON_CPU:
        if distances.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds it exactly
            distances, last_match = distances.float(), last_match.float()
        mask = np.less_equal(distances.detach().numpy(), last_match.numpy()[:, None])
        if bool(junk_columns.any()):
            mask &= ~junk_columns.numpy()
        return torch.from_numpy(mask)
    return distances.le(last_match[:, None]) & ~junk_columns


def _flatnonzero(mask: Tensor) -> Tensor:
    """Row-major flat indices of the ``True`` entries of ``mask``."""
    if mask.device.type == "cpu" and NUMPY_ON_CPU:
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return mask.view(-1).nonzero().squeeze(1)


def _items_before_by_row_sort(
    distances: Tensor,
    last_match: Tensor,
    junk_columns: Tensor,
    row: Tensor,
    slot: Tensor,
    match_distances: Tensor,
    match_cols: Tensor,
) -> Tensor:
    """Non-junk-identity items before each match in its row, found by sorting every row.

    Used when most of the matrix sorts before the last matches: sorting the distances alone is
    cheaper than keying them all. Matches are given in ranking order, ``slot`` being their
    position among their row's matches; ties of distance are resolved by gallery index.
    Distances beyond the row's ``last_match`` are first lowered to one value just above it:
    they still rank after every match, and a run of equal values sorts several times faster.
    """
    rankable = distances.float() if distances.element_size() < 4 else distances
    beyond = torch.nextafter(last_match.to(rankable.dtype), rankable.new_tensor(torch.inf))
    sorted_rows = _sorted_below(rankable, beyond, junk_columns)
    needles = sorted_rows.new_full((distances.shape[0], int(slot.max()) + 1), torch.inf)
    needles[row, slot] = match_distances.to(needles.dtype)
    below = torch.searchsorted(sorted_rows, needles)[row, slot]
    equal = torch.searchsorted(sorted_rows, needles, side="right")[row, slot] - below
    tied = torch.nonzero(equal > 1).squeeze(1)
    if tied.numel():
        below[tied] += _tied_before(
            distances, junk_columns, row[tied], match_distances[tied], match_cols[tied]
        )
    return below


def _integer_levels(distances: Tensor) -> tuple[int, int] | None:
    """``(lowest, number of levels)`` when every distance is an integer and they span at most
    :data:`MAX_COUNTED_LEVELS` values, else ``None``."""
    if MAX_COUNTED_LEVELS < 1 or not _all_integers(distances[0]):  # the first row screens
        return None
    lowest, highest = (float(v) for v in _aminmax(distances))
    # Beyond 2**24 the bin indices would not be exact in float32 (and ±inf is no level).
    if not max(abs(lowest), abs(highest)) < 2**24:
        return None
    if highest - lowest >= MAX_COUNTED_LEVELS or not _all_integers(distances):
        return None
    return int(lowest), int(highest - lowest) + 1


def _items_before_by_counting(
    distances: Tensor,
    junk_columns: Tensor,
    row: Tensor,
    match_distances: Tensor,
    match_cols: Tensor,
    lowest: int,
    num_levels: int,
) -> Tensor:
    """Non-junk-identity items before each match, counted without a sort.

    For integer distances in ``[lowest, lowest + num_levels)``: a histogram over (row, block of
    ``width`` columns, distance) counts, for a match of distance ``t`` in block ``b``, the items
    of a lower distance, and those of distance ``t`` in the blocks before ``b``; the items of
    distance ``t`` at a lower gallery index within ``b`` are compared one by one.
    """
    num_rows, num_gallery = distances.shape
    width = max(_COUNTING_BLOCK, num_levels)
    num_blocks = -(-num_gallery // width)
    device = distances.device
    column = torch.arange(num_gallery, device=device)
    # Junk-identity columns all count in one extra block per row, which is never read.
    column_block = torch.where(junk_columns, num_blocks, column // width)
    row_bins = (num_blocks + 1) * num_levels
    counts = _histogram(distances, column_block * num_levels - lowest, row_bins, lowest)
    counts = counts.view(num_rows, num_blocks + 1, num_levels)[:, :num_blocks]
    per_level = counts.sum(1)
    lower_levels = per_level.cumsum(1) - per_level
    earlier_blocks = counts.cumsum(1) - counts
    level = (match_distances.double() - lowest).long()
    block = match_cols // width
    before = lower_levels[row, level] + earlier_blocks[row, block, level]

    # Within its own block, the match's distance at a lower gallery index ranks first.
    window = block[:, None] * width + torch.arange(width, device=device)  # (matches, width)
    earlier = window < match_cols[:, None]  # also keeps the window within the gallery
    window.clamp_max_(num_gallery - 1)
    values = torch.take(distances, row[:, None] * num_gallery + window)
    earlier &= (values == match_distances[:, None].to(values.dtype)) & ~junk_columns[window]
    return before + earlier.sum(1)


def _histogram(distances: Tensor, column_offset: Tensor, row_bins: int, lowest: int) -> Tensor:
    """Counts of the bins ``distance + column_offset[col] + row * row_bins``, ``(C * row_bins,)``.

    ``distance + column_offset[col]`` is an integer in ``[0, row_bins)``, summed in float32
    (exact while the terms stay below 2**24; float64 for a gallery of millions of items, whose
    ``row_bins`` may exceed it) and stored as int64 in the same pass; the rows' offsets are
    added in int64.
    """
    num_rows = distances.shape[0]
    num_bins = num_rows * row_bins
    dtype = torch.float32 if abs(lowest) + row_bins < 2**24 else torch.float64
    row_offset = torch.arange(num_rows, device=distances.device)[:, None] * row_bins
    if distances.device.type == "cpu" and NUMPY_ON_CPU:
        values = distances.detach().to(dtype).numpy()
        index = np.empty(values.shape, np.intp)
        np.add(values, column_offset.to(dtype).numpy(), out=index, casting="unsafe")
        index += row_offset.numpy()
        return torch.from_numpy(np.bincount(index.ravel(), minlength=num_bins))
    index = (distances.to(dtype) + column_offset.to(dtype)).long()
    index += row_offset
    return torch.bincount(index.view(-1), minlength=num_bins)


def _all_integers(values: Tensor) -> bool:
    """Whether every entry of floating ``values`` is an integer or ``±inf`` (NaN is not)."""
    if values.device.type == "cpu" and NUMPY_ON_CPU and values.dtype != torch.bfloat16:
        array = values.detach().numpy()
        return bool(np.array_equal(array, np.rint(array)))
    return torch.equal(values, values.round())


def _aminmax(values: Tensor) -> tuple[Tensor, Tensor]:
    """The smallest and largest entry of ``values``."""
    if values.device.type == "cpu" and NUMPY_ON_CPU and values.dtype != torch.bfloat16:
        array = values.detach().numpy()
        return torch.tensor(array.min()), torch.tensor(array.max())
    return torch.aminmax(values)


def _tied_before(
    distances: Tensor, junk_columns: Tensor, rows: Tensor, values: Tensor, cols: Tensor
) -> Tensor:
    """For each ``(row, value, col)``: non-junk-identity items of the row equal to ``value``
    at a lower gallery index (they rank first in a stable sort); a few rows at a time."""
    rows_per_step = max(1, _TIE_ENTRIES_PER_STEP // distances.shape[1])
    counts = []
    for start in range(0, rows.numel(), rows_per_step):
        part = slice(start, start + rows_per_step)
        # Equal items are few: list them, then keep the earlier, non-junk ones.
        tie, column = torch.nonzero(distances[rows[part]] == values[part, None]).unbind(1)
        earlier = (column < cols[part][tie]) & ~junk_columns[column]
        counts.append(torch.bincount(tie[earlier], minlength=cols[part].numel()))
    return torch.cat(counts)


def _same_identity_pairs(
    q_pids: Tensor, q_camids: Tensor, gallery: GalleryLabels
) -> tuple[Tensor, Tensor, Tensor]:
    """``(rows, cols, is_match)`` of every (query, gallery item) pair of the same identity.

    Pairs with a junk-identity item are left out; the others are valid matches (another
    camera) or junk (the same camera). Found through the identity index, never a (C, G) mask.
    """
    first = torch.searchsorted(gallery.sorted_pids, q_pids, side="left")
    counts = torch.searchsorted(gallery.sorted_pids, q_pids, side="right") - first
    rows = torch.repeat_interleave(torch.arange(q_pids.numel(), device=q_pids.device), counts)
    cols = gallery.pid_order[segment_positions(first, counts)]
    kept = ~gallery.junk[cols]
    rows, cols = rows[kept], cols[kept]
    return rows, cols, gallery.camids[cols] != q_camids[rows]


class _KeyCoder:
    """Unique int64 keys ordered by (row, distance, gallery index), for ``C x G`` distances.

    ``key = (row * codes + code(distance)) * G + col``, where ``code`` is an order-preserving
    integer code in ``[0, codes)`` shared by equal distances (-0.0 and +0.0 included): for
    dtypes of at most 32 bits, the float32 bit pattern made monotonic (``codes = 2**32``); for
    float64, the number of smaller distances among the given ``values``, which orders any
    distance correctly against them.

    Args:
        num_gallery: ``G``.
        sorted_values: the sorted given distances, for float64 only.
    """

    def __init__(self, num_gallery: int, sorted_values: Tensor | None = None) -> None:
        self.num_gallery = num_gallery
        self.sorted_values = sorted_values
        codes = 2**32 if sorted_values is None else sorted_values.numel() + 1
        self.row_size = codes * num_gallery  # keys of row r are in [r, r + 1) * row_size

    @classmethod
    def for_values(cls, values: Tensor, num_gallery: int) -> _KeyCoder:
        """A coder for ``values``' dtype, exact for any distance among ``values`` or above."""
        if values.element_size() <= 4:  # float32 holds float16 / bfloat16 exactly
            return cls(num_gallery)
        return cls(num_gallery, _sorted(values + 0.0))

    def keys(self, index: Tensor, distances: Tensor) -> Tensor:
        """Keys of the entries at row-major flat ``index`` with the given ``distances``."""
        distances = distances + 0.0  # -0.0 becomes +0.0
        if self.sorted_values is None:
            bits = distances.float().view(torch.int32)
            code = (bits >> 31).bitwise_and_(0x7FFFFFFF).bitwise_xor_(bits).long().add_(2**31)
        else:
            code = torch.searchsorted(self.sorted_values, distances)
        # row * codes * G + col == index + row * (row_size - G)
        row_offset = (index // self.num_gallery).mul_(self.row_size - self.num_gallery)
        return code.mul_(self.num_gallery).add_(index).add_(row_offset)


def _count_below(sorted_keys: Tensor, keys: Tensor) -> Tensor:
    """For each of ``keys``, the number of ``sorted_keys`` (1-D) strictly below it."""
    return torch.searchsorted(sorted_keys, keys)


def _sorted_below(distances: Tensor, ceiling: Tensor, junk_columns: Tensor) -> Tensor:
    """Each row of ``(C, G)`` ``distances`` capped at its ``(C,)`` ``ceiling``, with the junk
    identities at ``+inf`` (last, and never equal to a finite match), sorted ascending."""
    junk = torch.nonzero(junk_columns).squeeze(1)
    if distances.device.type == "cpu" and NUMPY_ON_CPU:
        capped = np.minimum(distances.detach().numpy(), ceiling.numpy()[:, None])
        capped[:, junk.numpy()] = np.inf
        capped.sort(axis=-1)  # in place: np.minimum made the copy
        return torch.from_numpy(capped)
    capped = torch.minimum(distances, ceiling[:, None])
    capped[:, junk] = torch.inf
    return torch.sort(capped).values


def _sorted(values: Tensor) -> Tensor:
    """1-D ``values`` sorted ascending, on their device."""
    if values.device.type == "cpu" and NUMPY_ON_CPU:
        return torch.from_numpy(np.sort(values.detach().numpy()))
    return torch.sort(values).values


def segment_positions(starts: Tensor, lengths: Tensor) -> Tensor:
    """The concatenated index ranges ``starts[s] : starts[s] + lengths[s]`` (1-D int64).

    Example:
        >>> segment_positions(torch.tensor([5, 0]), torch.tensor([2, 3])).tolist()
        [5, 6, 0, 1, 2]
    """
    offsets = torch.repeat_interleave(starts - (lengths.cumsum(0) - lengths), lengths)
    return offsets + torch.arange(offsets.numel(), device=offsets.device)
