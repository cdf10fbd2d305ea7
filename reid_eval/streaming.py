r"""A streaming evaluator in the manner of torchmetrics: update batch by batch, compute at the end.

:meth:`ReIDEvaluator.update` stores each batch's features and labels (queries and gallery mixed,
told apart by ``is_query``); :meth:`ReIDEvaluator.compute` evaluates everything stored so far
with the functional API, after gathering every rank's rows under ``torch.distributed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from ._inputs import (
    ArrayLike,
    check_choice,
    check_finite,
    check_flag,
    check_floating,
    check_fraction,
    check_junk_pids,
    check_positive_int,
    check_thresholds,
    to_labels,
    to_tensor,
)
from .distances import METRICS
from .features import (
    check_bank_layout,
    evaluate_features,
    evaluate_soft_unified,
    evaluate_unified,
)
from .k_reciprocal import rerank
from .metrics import AP_KINDS, RankMetrics, evaluate_rank
from .occlusion_type import BOUNDARIES, predict_occlusion_type

__all__ = ["MODES", "ReIDEvaluator"]

#: The evaluations of :class:`ReIDEvaluator`: ``mode=`` and ``compute(mode)``.
MODES: tuple[str, ...] = ("plain", "unified", "soft_unified", "reranked")

_UNIFIED = ("unified", "soft_unified")
_RERANK_KEYS = ("k1", "k2", "lambda_value")
_LAYOUT = ("device", "dtype", "feature size D", "number of types T (0: a (B, D) batch)")
_SCORES = ("width S", "dtype")


@dataclass
class _Rows:
    """Stored items: ``(max(T, 1), B, D)`` features, ``(B, 3)`` int64 ``[pid, camid, is_query]``
    labels and ``(B, S)`` scores (None: not given)."""

    features: Tensor
    labels: Tensor
    scores: Tensor | None


class ReIDEvaluator:
    r"""Accumulates query and gallery features batch by batch, then ranks them all at once.

    :meth:`update` stores detached copies of each batch on its features' device;
    :meth:`compute` evaluates all the items stored so far, queries and gallery each in the order
    they were added, so ``ap[i]`` and ``first_match[i]`` are the ``i``-th query added:

    * ``"plain"``: :func:`~oamn.reid_eval.evaluate_features` with the unoccluded features (type
      0 of a bank);
    * ``"unified"``: :func:`~oamn.reid_eval.evaluate_unified`, each query's type by
      :func:`~oamn.reid_eval.predict_occlusion_type` from its ``occlusion_scores``, against the
      gallery's banks; with ``two_sided`` the queries' own banks too;
    * ``"soft_unified"``: :func:`~oamn.reid_eval.evaluate_soft_unified` with the queries'
      ``(Q, T)`` type probabilities;
    * ``"reranked"``: :func:`~oamn.reid_eval.evaluate_rank` of the
      :func:`~oamn.reid_eval.rerank` distances of the unoccluded features.

    **Distributed**: with ``sync`` and an initialised ``torch.distributed``, :meth:`compute` is
    a collective (every rank of ``process_group`` must call it): it gathers every rank's rows,
    rank 0's first, then rank 1's, and so on, and every rank returns the same metrics. Ranks may
    hold different numbers of rows, or none. Rows are not deduplicated: a
    ``DistributedSampler`` pads the ranks' shares to one length by repeating items, and those
    repeats count twice (as in torchmetrics); shard the evaluation set without padding for exact
    numbers. NCCL groups exchange CUDA tensors, the others CPU tensors; a rank without rows gets
    the metrics on that device. To evaluate on one rank alone, build its evaluator with
    ``sync=False`` (a ``compute()`` that only some ranks call waits for the others forever).

    Args:
        mode: the default evaluation of :meth:`compute`, one of :data:`MODES`. The unified
            modes need ``(T, B, D)`` banks and the queries' ``occlusion_scores`` in
            :meth:`update`.
        metric: ``"euclidean"``, ``"sqeuclidean"`` or ``"cosine"``.
        max_rank: length of the CMC curve, ``>= 1``.
        ap: ``"step"`` or ``"trapezoid"``, see :func:`~oamn.reid_eval.evaluate_rank`.
        junk_pids: gallery identities removed for every query.
        two_sided: in the unified modes, compare each query under its type too (its own bank),
            not its unoccluded features, see :func:`~oamn.reid_eval.evaluate_unified`.
        thresholds: ``(low, high)`` of :func:`~oamn.reid_eval.predict_occlusion_type`.
        boundary: ``"paper"`` or ``"official"``, likewise.
        rerank_options: ``k1``, ``k2`` and ``lambda_value`` of :func:`~oamn.reid_eval.rerank`
            as a dict (some or all of them), or None for its defaults.
        chunk_size: queries (items for the re-ranking) whose distances are held at once.
        sync: gather every rank's rows in :meth:`compute` when ``torch.distributed`` is
            initialised; ``False`` evaluates this process's rows only.
        process_group: the group to gather over; None: the default group.

    Example:
        >>> evaluator = ReIDEvaluator(metric="cosine")
        >>> feats = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.1], [0.1, 0.9], [0.9, 0.2]])
        >>> pids, camids = torch.tensor([1, 2, 1, 1, 2]), torch.tensor([0, 0, 1, 1, 1])
        >>> is_query = torch.tensor([True, True, False, False, False])
        >>> for rows in ([0, 2], [1, 3, 4]):  # two batches, queries and gallery mixed
        ...     evaluator.update(feats[rows], pids[rows], camids[rows], is_query[rows])
        >>> evaluator
        ReIDEvaluator(mode='plain', metric='cosine', items=5 (2 queries, 3 gallery),
                      features=(5, 2) float32 on cpu)
        >>> evaluator.compute().ap  # the queries in the order they were added
        tensor([0.8333, 0.5000], dtype=torch.float64)
        >>> unified = ReIDEvaluator("unified")  # type 1 swaps the two features of each side
        >>> bank = torch.stack([torch.eye(2).repeat(2, 1), torch.eye(2).flip(0).repeat(2, 1)])
        >>> scores = torch.tensor([[0.1, 0.1, 0.1, 0.1], [0.9, 0.0, 0.0, 0.1]])  # types 0, 1
        >>> unified.update(bank[:, :2], [0, 1], [0, 0], [True, True], occlusion_scores=scores)
        >>> unified.update(bank[:, 2:], [0, 1], [1, 1], [False, False])  # gallery: no scores
        >>> unified.compute().ap  # query 1 and the gallery both under type 1
        tensor([1., 1.], dtype=torch.float64)
    """

    def __init__(
        self,
        mode: str = "plain",
        metric: str = "euclidean",
        max_rank: int = 50,
        ap: str = "step",
        *,
        junk_pids: Sequence[int] = (-1,),
        two_sided: bool = True,
        thresholds: tuple[float, float] = (0.5, 0.75),
        boundary: str = "paper",
        rerank_options: dict[str, float] | None = None,
        chunk_size: int = 256,
        sync: bool = True,
        process_group: object | None = None,
    ) -> None:
        self.mode = check_choice(mode, "mode", MODES)
        self.metric = check_choice(metric, "metric", METRICS)
        self.max_rank = check_positive_int(max_rank, "max_rank")
        self.ap = check_choice(ap, "ap", AP_KINDS)
        self.junk_pids = check_junk_pids(junk_pids)
        self.two_sided = check_flag(two_sided, "two_sided")
        self.thresholds = check_thresholds(thresholds)
        self.boundary = check_choice(boundary, "boundary", BOUNDARIES)
        self.rerank_options = _check_rerank_options(rerank_options)
        self.chunk_size = check_positive_int(chunk_size, "chunk_size")
        self.sync = check_flag(sync, "sync")
        self.process_group = process_group
        self.reset()

    def reset(self) -> None:
        """Forget every stored item, and the device, dtype and shapes the first batch fixed."""
        self._rows: list[_Rows] = []
        self._layout: tuple[torch.device, torch.dtype, int, int] | None = None  # T = 0: (B, D)
        self._score_layout: tuple[int, torch.dtype] | None = None

    def __len__(self) -> int:
        """The number of items (queries and gallery) stored on this process."""
        return sum(rows.labels.shape[0] for rows in self._rows)

    def __repr__(self) -> str:
        text = f"ReIDEvaluator(mode={self.mode!r}, metric={self.metric!r}, items={len(self)}"
        if self._layout is not None:
            device, dtype, dim, types = self._layout
            queries = sum(int(rows.labels[:, 2].sum()) for rows in self._rows)
            shape = (types, len(self), dim) if types else (len(self), dim)
            text += (
                f" ({queries} queries, {len(self) - queries} gallery), features={shape} "
                f"{str(dtype).removeprefix('torch.')} on {device}"
            )
        return text + ")"

    def update(
        self,
        features: ArrayLike,
        pids: ArrayLike,
        camids: ArrayLike,
        is_query: ArrayLike,
        occlusion_scores: ArrayLike | None = None,
    ) -> None:
        r"""Store one batch (a detached copy on its features' device, no autograd graph).

        The first batch fixes the device, the floating dtype, ``D`` and ``T`` (or no bank); every
        later batch must agree, until :meth:`reset`. A failed update stores nothing.

        Args:
            features: ``(B, D)`` floating features, or ``(T, B, D)``, the batch's occlusion bank
                (type 0 unoccluded, see :func:`~oamn.reid_eval.occlusion_bank`), required by
                the unified modes; the plain and re-ranked ones use type 0. A tensor on any
                device, a numpy array or a nested list; NaN and ``±inf`` rejected.
            pids: ``(B,)`` integer identities.
            camids: ``(B,)`` integer camera ids.
            is_query: ``(B,)`` bool, True for a query, False for a gallery item.
            occlusion_scores: ``(B, 4)`` grader scores (eq. 8 columns top, bottom, left, right)
                or ``(B, 9)`` type scores for ``"unified"``; ``(B, T)`` type probabilities for
                ``"soft_unified"``. Required for the query rows in the unified modes; gallery
                rows' scores are not used, but scores given must have one dtype and width in
                every batch.
        """
        with torch.no_grad():
            feats = to_tensor(features, "features")
            if feats.ndim not in (2, 3) or feats.shape[-1] == 0 or feats.shape[:-2] == (0,):
                raise ValueError(
                    "features must have shape (B, D), or (T, B, D) for the batch's occlusion "
                    f"bank, with D >= 1 and T >= 1, got {tuple(feats.shape)}"
                )
            check_floating(feats, "features", feats.ndim, "(B, D) or (T, B, D)")
            types = feats.shape[0] if feats.ndim == 3 else 0
            if types:
                check_bank_layout(feats, pids, "features", "pids")
            if types == 0 and self.mode in _UNIFIED:
                raise ValueError(
                    f"mode {self.mode!r} compares the items under every occlusion type: pass "
                    f"features as the batch's (T, B, D) bank, got (B, D) = {tuple(feats.shape)}"
                )
            layout = (feats.device, feats.dtype, feats.shape[-1], types)
            if self._layout is not None:
                batches = [("the first batch", self._layout), ("this batch", layout)]
                _check_same("features", batches, _LAYOUT)
            check_finite(feats, "features")
            size, device = feats.shape[-2], feats.device
            pid = to_labels(pids, "pids", size, device)
            camid = to_labels(camids, "camids", size, device)
            query = to_tensor(is_query, "is_query", device)
            if query.dtype != torch.bool:
                raise TypeError(
                    f"is_query must be bool (True: query, False: gallery), got {query.dtype}; "
                    "convert it with .bool() / .astype(bool)"
                )
            if query.shape != (size,):
                raise ValueError(f"is_query must have shape (B,) = ({size},), got {query.shape}")
            scores = occlusion_scores
            if scores is not None:
                scores = to_tensor(scores, "occlusion_scores", device)
                check_floating(scores, "occlusion_scores", 2, "(B, 4) or (B, S)")
                if scores.shape[0] != size:
                    raise ValueError(
                        f"occlusion_scores has {scores.shape[0]} rows, expected one per item "
                        f"(B = {size})"
                    )
                width = scores.shape[1]
                if self.mode == "soft_unified" and width != types:
                    raise ValueError(
                        f"occlusion_scores must be (B, T) = ({size}, {types}) type "
                        f"probabilities in mode 'soft_unified', got {tuple(scores.shape)}"
                    )
                score_layout = (width, scores.dtype)
                if self._score_layout is not None:
                    batches = [
                        ("the first batch", self._score_layout),
                        ("this batch", score_layout),
                    ]
                    _check_same("occlusion_scores", batches, _SCORES)
                check_finite(scores, "occlusion_scores")
                self._score_layout = score_layout
            elif self.mode in _UNIFIED and bool(query.any()):
                raise ValueError(
                    f"occlusion_scores is required for the query rows in mode {self.mode!r}: "
                    "pass the grader's scores of the batch to update()"
                )
            self._layout = layout
            labels = torch.stack([pid, camid, query.long()], dim=1)
            scores = None if scores is None else scores.detach().clone()
            self._rows.append(
                _Rows((feats if types else feats[None]).detach().clone(), labels, scores)
            )

    def compute(self, mode: str | None = None) -> RankMetrics:
        """The metrics of every item stored so far (on every rank, see the class docstring).

        Args:
            mode: one of :data:`MODES`; None: the constructor's. Modes can be mixed on one state.

        Returns:
            The metrics, see :class:`~oamn.reid_eval.RankMetrics`, per query in the order the
            queries were added; tensors on the features' device.

        Raises:
            ValueError: nothing stored, no query or no gallery item, no bank or no scores for
                a unified mode, and the errors of the functional API.
        """
        mode = self.mode if mode is None else check_choice(mode, "mode", MODES)
        with torch.no_grad():
            rows, types = self._gathered()
            pids, camids, query = rows.labels.unbind(1)
            query = query.bool()
            gallery = ~query
            for kind, flag in (("query", True), ("gallery item", False)):
                if not bool((query == flag).any()):
                    raise ValueError(
                        f"no {kind} among the {len(query)} items stored: add some with "
                        f"is_query={flag} in update()"
                    )
            labels = (pids[query], pids[gallery], camids[query], camids[gallery])
            options = {"metric": self.metric, "max_rank": self.max_rank, "ap": self.ap}
            options |= {"chunk_size": self.chunk_size, "junk_pids": self.junk_pids}
            feats = rows.features
            if mode == "plain":
                return evaluate_features(feats[0, query], feats[0, gallery], *labels, **options)
            if mode == "reranked":
                options = {"metric": self.metric, "chunk_size": self.chunk_size}
                options |= self.rerank_options
                distances = rerank(feats[0, query], feats[0, gallery], **options)
                return evaluate_rank(
                    distances, *labels, self.max_rank, self.ap, junk_pids=self.junk_pids
                )
            if types == 0:
                raise ValueError(
                    f"mode {mode!r} needs the occlusion banks, but the features were given as "
                    "(B, D): pass each batch's (T, B, D) bank to update()"
                )
            scores = None if rows.scores is None else rows.scores[query]
            if scores is None or bool(scores.isnan().any()):
                raise ValueError(
                    f"occlusion_scores are missing for some queries, needed in mode {mode!r}: "
                    "pass them to update() for every batch with queries"
                )
            q_feats = feats[:, query] if self.two_sided else feats[0, query]
            if mode == "unified":
                q_types = predict_occlusion_type(scores, self.thresholds, self.boundary)
                return evaluate_unified(q_feats, q_types, feats[:, gallery], *labels, **options)
            if scores.shape[1] != types:
                raise ValueError(
                    f"occlusion_scores must be (B, T) type probabilities with T = {types} for "
                    f"mode 'soft_unified', got {scores.shape[1]} columns"
                )
            return evaluate_soft_unified(q_feats, scores, feats[:, gallery], *labels, **options)

    def _merged(self) -> _Rows | None:
        """This process's rows as one (stored back: concatenated once), or None before any."""
        if len(self._rows) > 1:
            width, dtype = self._score_layout or (0, None)  # NaN: no scores given
            scores = [
                rows.features.new_full((len(rows.labels), width), torch.nan, dtype=dtype)
                if rows.scores is None
                else rows.scores
                for rows in self._rows
            ]
            feats = torch.cat([rows.features for rows in self._rows], dim=1)
            labels = torch.cat([rows.labels for rows in self._rows])
            self._rows = [_Rows(feats, labels, None if dtype is None else torch.cat(scores))]
        return self._rows[0] if self._rows else None

    def _gathered(self) -> tuple[_Rows, int]:
        """Every rank's rows (this process's alone without distributed sync), and ``T``."""
        local = self._merged()
        if not (self.sync and dist.is_available() and dist.is_initialized()):
            if local is None:
                raise ValueError("nothing to evaluate: call update() with some batches first")
            return local, self._layout[3]
        group, home = self.process_group, self._layout[0] if self._layout else None
        device = torch.device("cpu")  # gloo and mpi exchange CPU tensors, NCCL CUDA ones
        if "nccl" in str(dist.get_backend(group)):
            cuda = home is not None and home.type == "cuda"
            device = home if cuda else torch.device("cuda", torch.cuda.current_device())
        mine = (len(self), self._layout and self._layout[1:], self._score_layout)
        metas = [mine] * dist.get_world_size(group)
        dist.all_gather_object(metas, mine, group=group)
        fixed = [(f"rank {r}", layout) for r, (_, layout, _) in enumerate(metas) if layout]
        scored = [(f"rank {r}", layout) for r, (_, _, layout) in enumerate(metas) if layout]
        if not fixed or not max(count for count, _, _ in metas):
            raise ValueError("nothing to evaluate on any rank: call update() with some batches")
        _check_same("features", fixed, _LAYOUT[1:])
        _check_same("occlusion_scores", scored, _SCORES)
        counts = [count for count, _, _ in metas]
        (dtype, dim, types), most = fixed[0][1], max(counts)
        pads = {"features": ((max(types, 1), most, dim), dtype, 0), "labels": ((most, 3), None, 0)}
        if scored:
            pads["scores"] = ((most, scored[0][1][0]), scored[0][1][1], torch.nan)
        parts = {}
        for name, (shape, dtype, fill) in pads.items():
            padded = torch.full(shape, fill, dtype=dtype or torch.int64, device=device)
            if local is not None and getattr(local, name) is not None:
                padded[..., : counts[dist.get_rank(group)], :] = getattr(local, name)
            # gloo has no 16-bit all_gather: the ranks exchange bytes.
            pieces = [torch.empty_like(padded).view(torch.uint8) for _ in counts]
            dist.all_gather(pieces, padded.view(torch.uint8), group=group)
            rows = [
                piece.view(padded.dtype)[..., :n, :]
                for piece, n in zip(pieces, counts, strict=True)
            ]
            parts[name] = torch.cat(rows, dim=-2).to(home or device)
        return _Rows(parts["features"], parts["labels"], parts.get("scores")), types


def _check_same(name: str, layouts: Sequence[tuple[str, tuple]], what: Sequence[str]) -> None:
    """Raise unless every ``(whose, layout)`` of ``layouts`` (the values ``what``) has the
    layout of the first."""
    for whose, layout in layouts[1:]:
        for label, value, expected in zip(what, layout, layouts[0][1], strict=True):
            if value != expected:
                raise ValueError(
                    f"{name} has {label} {value} in {whose} but {expected} in {layouts[0][0]}; "
                    "every batch and every rank must agree (reset() starts over)"
                )


def _check_rerank_options(options: object) -> dict[str, float]:
    """``options`` as a dict of checked :func:`rerank` arguments."""
    if not isinstance(options, dict | None):
        raise TypeError(f"rerank_options must be a dict of k1/k2/lambda_value, got {options!r}")
    unknown = sorted(set(options or {}) - set(_RERANK_KEYS))
    if unknown:
        raise ValueError(f"rerank_options takes k1, k2 and lambda_value, got {unknown}")
    return {
        key: (check_fraction if key == "lambda_value" else check_positive_int)(value, key)
        for key, value in (options or {}).items()
    }
