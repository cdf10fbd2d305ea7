"""An independent, per-query reference of the ReID metrics, written with numpy only.

It ranks each query with a stable argsort of its full distance row, removes the junk, and
derives CMC, step AP, trapezoid AP (the area under the explicit precision-recall curve) and INP
from the relevance vector, the way the textbook definitions read. It shares no code with
reid_eval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Reference:
    cmc: np.ndarray  # (max_rank,)
    ap: np.ndarray  # (Q,), NaN for skipped queries
    trapezoid_ap: np.ndarray
    inp: np.ndarray
    ranks: list[np.ndarray]  # per query, the 1-based ranks of its valid matches
    num_valid: int


def relevance_metrics(relevant: np.ndarray) -> tuple[float, float, float]:
    """Step AP, trapezoid AP and INP of one ranked relevance vector (at least one hit)."""
    hits = np.cumsum(relevant)
    precision = hits / np.arange(1, len(relevant) + 1)
    step = precision[relevant].mean()
    last = np.flatnonzero(relevant)[-1]
    # The precision-recall curve through every rank up to the last hit, starting at (0, 1).
    recall_curve = np.concatenate([[0.0], hits[: last + 1] / hits[-1]])
    precision_curve = np.concatenate([[1.0], precision[: last + 1]])
    trapezoid = np.trapezoid(precision_curve, recall_curve)
    return float(step), float(trapezoid), float(hits[-1] / (last + 1))


def reference_metrics(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int,
    junk_pids: tuple[int, ...] = (-1,),
) -> Reference:
    num_q = distmat.shape[0]
    cmc_rows, ranks = [], []
    ap, trapezoid_ap, inp = (np.full(num_q, np.nan) for _ in range(3))
    for i in range(num_q):
        order = np.argsort(distmat[i].astype(np.float64), kind="stable")
        same = g_pids[order] == q_pids[i]
        junk = (same & (g_camids[order] == q_camids[i])) | np.isin(g_pids[order], junk_pids)
        relevant = same[~junk]
        ranks.append(np.flatnonzero(relevant) + 1)
        if not relevant.any():
            continue
        ap[i], trapezoid_ap[i], inp[i] = relevance_metrics(relevant)
        first = ranks[-1][0]
        cmc_rows.append(np.arange(1, max_rank + 1) >= first)
    cmc = np.mean(cmc_rows, axis=0) if cmc_rows else np.zeros(max_rank)
    return Reference(cmc, ap, trapezoid_ap, inp, ranks, len(cmc_rows))


def random_labels(rng: np.random.Generator, num_q: int, num_g: int, num_ids: int, num_cams: int):
    """Labels with Market-1501's quirks: junk (-1) and distractor (0) gallery identities,
    queries whose identity is absent from the gallery, and queries seen by one camera only."""
    g_pids = rng.integers(-1, num_ids, num_g)
    q_pids = rng.integers(1, num_ids + 3, num_q)
    g_camids = rng.integers(0, num_cams, num_g)
    q_camids = rng.integers(0, num_cams, num_q)
    return q_pids, g_pids, q_camids, g_camids
