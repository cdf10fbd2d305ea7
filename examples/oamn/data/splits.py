"""A validation protocol carved out of the training identities (never the test set)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .items import ReIDItem, relabel_ids

__all__ = ["split_validation"]


def split_validation(
    train: Sequence[ReIDItem], num_ids: int | float, seed: int, *, name: str = "num_ids"
) -> tuple[tuple[ReIDItem, ...], tuple[ReIDItem, ...], tuple[ReIDItem, ...]]:
    """Hold out training identities as a query/gallery validation set.

    Protocol, deterministic in ``seed``:

    1. Eligible identities are those seen by at least 2 cameras with at least 2 images in one
       of them: for these some query always has a cross-camera match. ``num_ids`` of them
       are drawn at random.
    2. For each held-out identity and each of its cameras, one random image becomes a query;
       the other images form the gallery.
    3. A query whose identity has no gallery image from another camera (it could never be
       matched under the same-camera filter) is moved to the gallery, so every validation
       query has a cross-camera match and no query is skipped by the evaluation.

    Args:
        train: training images (ids as given, e.g. already relabelled), no junk.
        num_ids: number of identities to hold out (``int >= 0``), or a fraction in ``(0, 1)``
            of all training identities (rounded, at least 1).
        seed: seed of the draws.
        name: what error messages call ``num_ids``: a command line passes its option's name
            (``"--val-ids"``).

    Returns:
        ``(train_rest, val_query, val_gallery)``: ``train_rest`` keeps the input order with
        its identities relabelled ``0..n-1``; the validation splits keep the input ids and are
        sorted by (id, camera, path).

    Raises:
        ValueError: empty ``train``, a bad ``num_ids``, not enough eligible identities, or no
            identity left for training.

    Example:
        >>> from pathlib import Path
        >>> train = [ReIDItem(Path(f"/d/{p}_{c}_{i}.jpg"), p, c)
        ...          for p in (5, 6, 7) for c in (1, 2) for i in range(2)]
        >>> rest, query, gallery = split_validation(train, num_ids=1, seed=0)
        >>> sorted({item.pid for item in rest}), len(query), len(gallery)
        ([0, 1], 2, 2)
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not train:
        raise ValueError("train is empty: pass the training images to split")
    pids = np.array([item.pid for item in train], dtype=np.int64)
    camids = np.array([item.camid for item in train], dtype=np.int64)
    unique_pids = np.unique(pids)
    count = _resolve_num_ids(num_ids, len(unique_pids), name)
    if count == 0:
        return relabel_ids(train), (), ()

    eligible = _eligible_ids(pids, camids)
    if count > len(eligible):
        raise ValueError(
            f"{_given(name, num_ids)} asks for {count} validation identities but only "
            f"{len(eligible)} of the {len(unique_pids)} training identities have images from "
            f">= 2 cameras with 2 images in one camera; lower {name}"
        )
    rng = np.random.default_rng(seed)
    held_out = rng.choice(eligible, size=count, replace=False)
    is_val = np.isin(pids, held_out)

    # One query per (id, camera): the image with the smallest random key of its group.
    val = np.flatnonzero(is_val)
    order = val[np.lexsort((rng.random(len(val)), camids[val], pids[val]))]
    group_starts = np.ones(len(order), dtype=bool)
    group_starts[1:] = (pids[order][1:] != pids[order][:-1]) | (
        camids[order][1:] != camids[order][:-1]
    )
    is_query = np.zeros(len(train), dtype=bool)
    is_query[order[group_starts]] = True

    # Queries without any gallery image of their id from another camera move to the gallery.
    gallery = val[~is_query[val]]
    queries = np.flatnonzero(is_query)
    same_id = pids[queries][:, None] == pids[gallery][None, :]
    other_cam = camids[queries][:, None] != camids[gallery][None, :]
    is_query[queries[~(same_id & other_cam).any(axis=1)]] = False

    def ordered(mask: np.ndarray) -> tuple[ReIDItem, ...]:
        picked = sorted((train[i] for i in np.flatnonzero(mask)), key=_protocol_order)
        return tuple(picked)

    rest = relabel_ids([item for item, held in zip(train, is_val, strict=True) if not held])
    return rest, ordered(is_query), ordered(is_val & ~is_query)


def _resolve_num_ids(num_ids: int | float, total: int, name: str) -> int:
    if isinstance(num_ids, bool) or not isinstance(num_ids, int | float):
        raise TypeError(f"{name} must be an int or a float, got {type(num_ids).__name__}")
    if isinstance(num_ids, float):
        if not 0.0 < num_ids < 1.0:
            raise ValueError(
                f"{_given(name, num_ids)}: a float is a fraction of the identities, in (0, 1); "
                "pass an int for a count"
            )
        count = max(1, round(num_ids * total))
    elif num_ids < 0:
        raise ValueError(f"{name} must be >= 0, got {num_ids}")
    else:
        count = num_ids
    if count >= total and count > 0:
        raise ValueError(
            f"{_given(name, num_ids)} would hold out {count} of the {total} training "
            f"identities, leaving none to train on; lower {name}"
        )
    return count


def _given(name: str, value: int | float) -> str:
    """``num_ids=5`` for an argument, ``--val-ids 5`` for an option."""
    return f"{name} {value:g}" if name.startswith("-") else f"{name}={value!r}"


def _eligible_ids(pids: np.ndarray, camids: np.ndarray) -> np.ndarray:
    """Ids seen by >= 2 cameras, with >= 2 images from at least one of them (sorted)."""
    pairs, pair_counts = np.unique(np.stack([pids, camids], axis=1), axis=0, return_counts=True)
    ids, cameras = np.unique(pairs[:, 0], return_counts=True)
    has_repeat = np.isin(ids, pairs[pair_counts >= 2, 0])
    return ids[(cameras >= 2) & has_repeat]


def _protocol_order(item: ReIDItem) -> tuple[int, int, str]:
    return item.pid, item.camid, str(item.path)
