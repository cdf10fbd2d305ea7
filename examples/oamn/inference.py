r"""Batched feature extraction and occlusion-unified evaluation of a trained OAMN model.

The model is anything with OAMN's inference interface (see :class:`examples.oamn.model.OAMN`):

* ``model.extract(images) -> (features (B, D), grader_scores (B, 4))``;
* ``model.gallery_bank(images, strategy, image_fill) -> (9, B, D)``, the features of each image
  under the 9 occlusion types (README convention: 0 none, 1-4 half top/bottom/left/right, 5-8
  quarter top/bottom/left/right).

A loader yields ``(images, pids, camids, ...)`` batches (:func:`examples.oamn.data.
build_test_loader` does), in the order of its items. Everything returned lives on the CPU in
float32, whatever the device and autocast dtype of the forward passes.

Evaluation (METHOD.md §5-6) has a row *no unification* (query features against the plain
gallery features), and per bank strategy the *unified* rows: query ``i`` gets the type
:func:`oamn.reid_eval.predict_occlusion_type` reads from its grader scores and is ranked against the
gallery features under that type (:func:`oamn.reid_eval.evaluate_unified`), with the plain query
feature (one-sided, the authors') or with the query's own feature under that type (two-sided, the
paper's §3.4: the band removed on both sides). Given the queries' true types (the synthetic
benchmark's manifest), each unified row is repeated with them, which separates the grader's
errors from the bank's quality. The query features are extracted once and shared by every row.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from oamn.occlusion_aug import LOCATIONS, NUM_OCCLUSION_TYPES, location_and_area
from oamn.reid_eval import (
    AP_KINDS,
    RankMetrics,
    evaluate_features,
    evaluate_rank,
    evaluate_unified,
)
from oamn.reid_eval import predict_occlusion_type as predict_types
from oamn.reid_eval import rerank as rerank_distances

from .data import IMAGENET_MEAN, IMAGENET_STD, ReIDItem, build_test_loader
from .intervals import bootstrap_interval
from .model import BANK_STRATEGIES
from .precision import autocast, check_amp

__all__ = [
    "EvaluationFeatures",
    "FeatureSet",
    "evaluate_model",
    "evaluation_mode",
    "extract_features",
    "extract_for_evaluation",
    "extract_gallery_bank",
    "metrics_report",
    "occlusion_type_names",
]


#: The ranks reported besides mAP and mINP (the CMC curve is kept whole in the report too).
REPORTED_RANKS: tuple[int, ...] = (1, 5, 10)


@dataclass(frozen=True)
class FeatureSet:
    """Features of a list of images, in the loader's order, on the CPU.

    Attributes:
        features: ``(N, D)`` float32, the model's test features (L2-normalised by OAMN).
        grader_scores: ``(N, 4)`` float32 occlusion-grader softmax, columns top, bottom, left,
            right.
        pids: ``(N,)`` int64 identities as the loader gave them.
        camids: ``(N,)`` int64 camera ids.
    """

    features: Tensor
    grader_scores: Tensor
    pids: Tensor
    camids: Tensor

    def __post_init__(self) -> None:
        lengths = [len(t) for t in (self.features, self.grader_scores, self.pids, self.camids)]
        if len(set(lengths)) != 1:
            raise ValueError(
                "features, grader_scores, pids and camids must have one row per image, got "
                f"lengths {lengths}"
            )

    def __len__(self) -> int:
        return len(self.pids)


def extract_features(
    model: nn.Module,
    loader: Iterable[Sequence[Tensor]],
    device: str | torch.device,
    amp: str | None = None,
    progress: bool = True,
) -> FeatureSet:
    r"""Features and grader scores of every image of ``loader``, batch by batch, in its order.

    Runs ``model.extract`` under :func:`torch.inference_mode` with the model in eval mode (its
    previous train/eval mode is restored afterwards, so a training loop can validate midway).

    Args:
        model: an OAMN model (the bare module, not a DDP wrapper), already on ``device``.
        loader: yields ``(images (B, 3, H, W) float, pids (B,), camids (B,), ...)`` batches;
            extra items (e.g. the dataset indices) are ignored.
        device: where the forward passes run; batches move there with ``non_blocking=True``
            (fast from a loader with ``pin_memory=True``).
        amp: ``None`` / ``"none"`` (default: no autocast), ``"bf16"`` or ``"fp16"``
            (:mod:`~examples.oamn.precision`) to run the forward passes under
            :func:`torch.autocast`; CUDA devices only.
        progress: show a tqdm progress bar.

    Returns:
        The :class:`FeatureSet`, float32 features and scores on the CPU.

    Raises:
        TypeError: ``model`` lacks ``extract`` or a batch is not a sequence of tensors.
        ValueError: an unknown ``amp``, ``amp`` on a non-CUDA device, or an empty loader.

    Example:
        >>> class Colour(nn.Module):  # a stand-in with OAMN's interface
        ...     def extract(self, images):
        ...         feats = images.mean((2, 3))
        ...         return feats, torch.full((len(images), 4), 0.25)
        >>> images = torch.rand(5, 3, 8, 4)
        >>> batches = [(images[:3], torch.tensor([1, 1, 2]), torch.tensor([0, 1, 0])),
        ...            (images[3:], torch.tensor([2, 3]), torch.tensor([1, 0]))]
        >>> fs = extract_features(Colour(), batches, "cpu", progress=False)
        >>> fs.features.shape, fs.pids.tolist(), torch.equal(fs.features, images.mean((2, 3)))
        (torch.Size([5, 3]), [1, 1, 2, 2, 3], True)
    """
    _check_method(model, "extract")
    outputs, pids, camids = _map_batches(
        model, loader, device, amp, progress, "features", model.extract
    )
    features, scores = (torch.cat(chunks) for chunks in outputs)
    return FeatureSet(features, scores, pids, camids)


def extract_gallery_bank(
    model: nn.Module,
    loader: Iterable[Sequence[Tensor]],
    strategy: str,
    device: str | torch.device,
    image_fill: float | Sequence[float] | Tensor,
    amp: str | None = None,
    progress: bool = True,
) -> Tensor:
    r"""The gallery bank: features of every image of ``loader`` under each occlusion type.

    Runs ``model.gallery_bank(images, strategy, image_fill)`` batch by batch, like
    :func:`extract_features` (inference mode, eval mode restored afterwards, optional autocast).

    Args:
        model: an OAMN model on ``device``.
        loader: yields ``(images, pids, camids, ...)`` batches; only the images are used.
        strategy: one of :data:`examples.oamn.model.BANK_STRATEGIES`: ``"mask_swap"`` (the
            authors' black-box images, 9 passes) or ``"feature"`` (the band zeroed on the
            feature map, one pass).
        device: where the forward passes run.
        image_fill: the value of the black box in *normalised* image space (``"mask_swap"``):
            a number or one per channel; black is ``-mean / std``.
        amp: ``None``, ``"none"``, ``"bf16"`` or ``"fp16"`` (CUDA only).
        progress: show a tqdm progress bar.

    Returns:
        ``(9, G, D)`` float32 on the CPU: ``bank[t, g]`` is gallery item ``g`` (loader order)
        under occlusion type ``t``.

    Raises:
        TypeError: ``model`` lacks ``gallery_bank`` or a batch is malformed.
        ValueError: an unknown ``strategy`` or ``amp``, or an empty loader.

    Example:
        >>> class Colour(nn.Module):
        ...     def gallery_bank(self, images, strategy, image_fill):
        ...         return images.mean((2, 3)).expand(9, -1, -1)
        >>> batches = [(torch.rand(3, 3, 8, 4), torch.arange(3), torch.zeros(3))] * 2
        >>> extract_gallery_bank(Colour(), batches, "feature", "cpu", 0.0, progress=False).shape
        torch.Size([9, 6, 3])
    """
    _check_method(model, "gallery_bank")
    _check_strategies([strategy])
    fill = torch.as_tensor(image_fill, dtype=torch.float32, device=device)

    def bank(images: Tensor) -> tuple[Tensor]:
        return (model.gallery_bank(images, strategy, fill),)

    (chunks,), _, _ = _map_batches(model, loader, device, amp, progress, f"bank ({strategy})", bank)
    return torch.cat(chunks, dim=1)


@dataclass(frozen=True)
class EvaluationFeatures:
    """Everything the metrics are computed from: query and gallery features and the banks.

    Attributes:
        query: the queries' :class:`FeatureSet`.
        gallery: the gallery's :class:`FeatureSet` (its features: the "no unification" row).
        banks: ``{strategy: (9, G, D) float32 bank}`` for each strategy evaluated, in order.
        seconds: wall-clock seconds of each extraction: ``"query"``, ``"gallery"``, each
            strategy name (the time to build that gallery bank, image loading included) and
            ``"<strategy>_query"`` for each query bank.
        query_banks: ``{strategy: (9, Q, D) float32 bank}`` of the queries, for the two-sided
            rows (empty: no two-sided rows).
    """

    query: FeatureSet
    gallery: FeatureSet
    banks: dict[str, Tensor] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    query_banks: dict[str, Tensor] = field(default_factory=dict)


def extract_for_evaluation(
    model: nn.Module,
    query_items: Sequence[ReIDItem],
    gallery_items: Sequence[ReIDItem],
    *,
    height: int,
    width: int,
    device: str | torch.device,
    batch_size: int,
    workers: int,
    strategies: Sequence[str] = BANK_STRATEGIES,
    unify: bool = True,
    two_sided: bool = True,
    amp: str | None = None,
    progress: bool = True,
) -> EvaluationFeatures:
    r"""Query features, gallery features and a gallery bank per strategy, from image items.

    The images go through :func:`examples.oamn.data.build_test_loader` (resize to
    ``height x width``, ImageNet normalisation), so the black box of the ``"mask_swap"`` bank
    is the normalised black ``-IMAGENET_MEAN / IMAGENET_STD``.

    Args:
        model: an OAMN model on ``device``.
        query_items: the query :class:`~examples.oamn.data.ReIDItem` list (non-empty).
        gallery_items: the gallery items (non-empty).
        height: input height the model was trained at.
        width: input width.
        device: where the forward passes run.
        batch_size: images per forward pass.
        workers: loader worker processes (0: in this process).
        strategies: bank strategies to build, names from
            :data:`examples.oamn.model.BANK_STRATEGIES`, without repeats.
        unify: ``False`` builds no bank (``strategies`` ignored).
        two_sided: also build each strategy's bank of the queries (the two-sided rows).
        amp: ``None``, ``"none"``, ``"bf16"`` or ``"fp16"`` (CUDA only).
        progress: show tqdm progress bars.

    Returns:
        The :class:`EvaluationFeatures`.

    Raises:
        ValueError: empty item lists, an unknown or repeated strategy, or an unknown ``amp``.
    """
    strategies = tuple(strategies) if unify else ()
    _check_strategies(strategies)
    check_amp(amp)
    for name, items in (("query_items", query_items), ("gallery_items", gallery_items)):
        if len(items) == 0:
            raise ValueError(f"{name} is empty; pass the dataset's {name.split('_')[0]} split")
    loaders = {
        name: build_test_loader(items, height, width, batch_size, workers, split=name)
        for name, items in (("query", query_items), ("gallery", gallery_items))
    }
    seconds: dict[str, float] = {}
    feature_sets = {}
    for name, loader in loaders.items():
        start = time.perf_counter()
        feature_sets[name] = extract_features(model, loader, device, amp, progress)
        seconds[name] = time.perf_counter() - start
    black = [-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    banks: dict[str, dict[str, Tensor]] = {"gallery": {}, "query": {}}
    for strategy in strategies:
        for split in ("gallery", "query") if two_sided else ("gallery",):
            start = time.perf_counter()
            banks[split][strategy] = extract_gallery_bank(
                model, loaders[split], strategy, device, black, amp, progress
            )
            key = strategy if split == "gallery" else f"{strategy}_query"
            seconds[key] = time.perf_counter() - start
    return EvaluationFeatures(
        feature_sets["query"], feature_sets["gallery"], banks["gallery"], seconds, banks["query"]
    )


def metrics_report(
    features: EvaluationFeatures,
    *,
    metric: str = "euclidean",
    max_rank: int = 50,
    ap: str = "step",
    thresholds: tuple[float, float] = (0.5, 0.75),
    boundary: str = "paper",
    true_types: Tensor | None = None,
    located: bool = True,
    rerank: tuple[int, int, float] | None = None,
) -> dict:
    r"""The metrics of each evaluation row as a JSON-ready dict.

    Args:
        features: from :func:`extract_for_evaluation`.
        metric: distance, see :func:`oamn.reid_eval.evaluate_features` (OAMN features are
            L2-normalised, so ``"euclidean"`` and ``"cosine"`` rank alike).
        max_rank: length of the reported CMC curve, ``>= 10``.
        ap: ``"step"`` (default) or ``"trapezoid"`` (the authors' lower number).
        thresholds: the grader thresholds of :func:`oamn.reid_eval.predict_occlusion_type`.
        boundary: ``"paper"`` or ``"official"``, see :func:`oamn.reid_eval.predict_occlusion_type`.
        true_types: ``(Q,)`` int64 true occlusion types of the queries (a synthetic benchmark's
            manifest), or ``None``: adds the unified rows under the true types.
        located: add the unified rows under the *located* types: every query a half band at
            the location of its largest grader score (thresholds ``(0, 0)``), for benchmarks
            whose queries are all occluded (Occluded-Duke's are).
        rerank: ``(k1, k2, lambda_value)`` of :func:`oamn.reid_eval.rerank` (k-reciprocal
            re-ranking; the usual ``(20, 6, 0.3)``) adds a re-ranked row after the plain row and
            after each unified row under the predicted types (re-ranked within each query's
            type); ``None``: no re-ranking.

    Returns:
        A dict with

        * ``"rows"``: ``{key: row}`` with key ``"plain"`` (no unification) then, per bank,
          ``"unified_<strategy>"`` (one-sided), ``"unified_<strategy>_two_sided"`` (with a query
          bank), the same keys ending in ``"_located"`` (with ``located``) and in ``"_true"``
          (with ``true_types``), and ``"_reranked"`` after ``"plain"`` and the
          predicted-type keys (with ``rerank``); each row holds
          ``"name"`` (for tables), ``"R1"``, ``"R5"``, ``"R10"``, ``"mAP"``, ``"mINP"``
          (fractions in ``[0, 1]``), ``"cmc"`` (``min(max_rank, G)`` fractions), ``"R1_ci95"``
          and ``"mAP_ci95"`` (95 % bootstrap intervals over the valid queries,
          :mod:`examples.oamn.intervals`), ``"first_match"`` and ``"ap"`` (per query, for
          paired comparisons), ``"num_valid_queries"`` and
          ``"bank_seconds"`` (``None`` for the plain row);
        * ``"query_types"``: ``{type name: count}`` of the queries' predicted types, all 9
          names (:func:`occlusion_type_names`) in type order;
        * ``"bank_type0_max_abs_diff"``: ``{strategy: float}``, the largest difference between
          the bank's type 0 and the plain gallery features, which should be ~0 (a check);
        * ``"num_query"``, ``"num_gallery"``, ``"seconds"`` (every extraction) and
          ``"settings"`` (the arguments above).

    Raises:
        ValueError: ``max_rank < 10``, an unknown ``ap``, or no query with a valid match.

    Example:
        >>> ids, cams = torch.tensor([1, 2]), torch.tensor([0, 0])
        >>> plain = torch.eye(2)
        >>> fs = FeatureSet(plain, torch.full((2, 4), 0.25), ids, cams)
        >>> gallery = FeatureSet(plain, torch.full((2, 4), 0.25), ids, cams + 1)
        >>> report = metrics_report(EvaluationFeatures(fs, gallery))
        >>> report["rows"]["plain"]["R1"], report["query_types"]["none"]
        (1.0, 2)
    """
    if not isinstance(max_rank, int) or max_rank < max(REPORTED_RANKS):
        raise ValueError(f"max_rank must be an int >= {max(REPORTED_RANKS)}, got {max_rank!r}")
    if ap not in AP_KINDS:
        raise ValueError(f"ap must be one of {AP_KINDS}, got {ap!r}")
    query, gallery = features.query, features.gallery
    labels = (query.pids, gallery.pids, query.camids, gallery.camids)
    options = {"metric": metric, "max_rank": max_rank, "ap": ap}
    query_types = predict_types(query.grader_scores, thresholds, boundary)
    rows = {
        "plain": _row(
            "no unification",
            None,
            evaluate_features(query.features, gallery.features, *labels, **options),
        )
    }

    def reranked(queries: Tensor, gallery_features: Tensor, types: Tensor | None) -> RankMetrics:
        k1, k2, lambda_value = rerank
        distances = rerank_distances(
            queries, gallery_features, k1, k2, lambda_value, metric, q_types=types
        )
        return evaluate_rank(distances, *labels, max_rank=max_rank, ap=ap)

    if rerank is not None:
        reranked_plain = reranked(query.features, gallery.features, None)
        rows["plain_reranked"] = _row("no unification, re-ranked", None, reranked_plain)
    type_sources = {"": (query_types, "")}
    if located:
        # Every query occluded, by a half band at the grader's most likely location: a half band
        # holds any band up to half the image, so a wrong area costs visible body, not the match.
        located_types = predict_types(query.grader_scores, (0.0, 0.0), boundary)
        type_sources["_located"] = (located_types, ", located types")
    if true_types is not None:
        type_sources["_true"] = (true_types, ", true types")
    for strategy, bank in features.banks.items():
        name = f"unified, {strategy.replace('_', ' ')} bank"
        sides = {"": query.features}
        if strategy in features.query_banks:
            sides["_two_sided"] = features.query_banks[strategy]
        for type_key, (types, type_name) in type_sources.items():
            for side_key, queries in sides.items():
                metrics = evaluate_unified(queries, types, bank, *labels, **options)
                side_name = ", two-sided" if side_key else ""
                seconds = features.seconds.get(strategy)
                if side_key and seconds is not None:  # the query bank's time too
                    seconds += features.seconds.get(f"{strategy}_query", 0.0)
                key = f"unified_{strategy}{side_key}{type_key}"
                rows[key] = _row(name + side_name + type_name, seconds, metrics)
                if rerank is not None and not type_key:
                    rows[f"{key}_reranked"] = _row(
                        f"{name}{side_name}, re-ranked", seconds, reranked(queries, bank, types)
                    )
    counts = torch.bincount(query_types, minlength=NUM_OCCLUSION_TYPES).tolist()
    return {
        "rows": rows,
        "query_types": dict(zip(occlusion_type_names(), counts, strict=True)),
        "bank_type0_max_abs_diff": {
            strategy: float((bank[0] - gallery.features).abs().max())
            for strategy, bank in features.banks.items()
        },
        "num_query": len(query),
        "num_gallery": len(gallery),
        "seconds": dict(features.seconds),
        "settings": {
            **options,
            "thresholds": list(thresholds),
            "boundary": boundary,
            "rerank": None if rerank is None else list(rerank),
        },
    }


def evaluate_model(
    model: nn.Module,
    query_items: Sequence[ReIDItem],
    gallery_items: Sequence[ReIDItem],
    *,
    height: int,
    width: int,
    device: str | torch.device,
    batch_size: int,
    workers: int,
    strategies: Sequence[str] = BANK_STRATEGIES,
    unify: bool = True,
    amp: str | None = None,
    progress: bool = True,
    metric: str = "euclidean",
    max_rank: int = 50,
    ap: str = "step",
    thresholds: tuple[float, float] = (0.5, 0.75),
    boundary: str = "paper",
) -> dict:
    r"""Metrics without unification and with unification for each bank strategy, with timings.

    :func:`extract_for_evaluation` then :func:`metrics_report`; see them for the arguments
    and the returned dict.

    Example (with a trained ``model`` and a loaded ``dataset``)::

        report = evaluate_model(model, dataset.query, dataset.gallery, height=256, width=128,
                                device="cuda", batch_size=128, workers=4)
        print(report["rows"]["unified_mask_swap"]["mAP"])
    """
    features = extract_for_evaluation(
        model,
        query_items,
        gallery_items,
        height=height,
        width=width,
        device=device,
        batch_size=batch_size,
        workers=workers,
        strategies=strategies,
        unify=unify,
        amp=amp,
        progress=progress,
    )
    return metrics_report(
        features,
        metric=metric,
        max_rank=max_rank,
        ap=ap,
        thresholds=thresholds,
        boundary=boundary,
    )


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode and :func:`torch.inference_mode` inside; the model's previous mode after.

    Example:
        >>> layer = nn.Dropout().train()
        >>> with evaluation_mode(layer):
        ...     layer.training
        False
        >>> layer.training
        True
    """
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def occlusion_type_names() -> tuple[str, ...]:
    """Names of the 9 occlusion types in type order: ``"none"``, ``"half_top"``, ...,
    ``"quarter_right"``.

    Example:
        >>> occlusion_type_names()[:3], occlusion_type_names()[-1]
        (('none', 'half_top', 'half_bottom'), 'quarter_right')
    """
    locations, areas = location_and_area(torch.arange(NUM_OCCLUSION_TYPES))
    sizes = {0.0: "", 0.5: "half_", 0.25: "quarter_"}
    return tuple(
        "none" if loc == 0 else sizes[area] + LOCATIONS[loc]
        for loc, area in zip(locations.tolist(), areas.tolist(), strict=True)
    )


def _row(name: str, bank_seconds: float | None, metrics: RankMetrics) -> dict:
    """One table row: the named ranks, mAP, mINP, their 95 % bootstrap intervals over the valid
    queries, the whole CMC and the per-query first-match ranks and APs (for paired tests)."""
    valid = metrics.first_match > 0
    per_query = metrics.to_dict(per_query=True)
    last_rank = metrics.cmc.numel()  # the gallery size, when it is below max_rank: CMC 1 there
    return {
        "name": name,
        **{f"R{k}": float(metrics.cmc[min(k, last_rank) - 1]) for k in REPORTED_RANKS},
        "mAP": metrics.mAP,
        "mINP": metrics.mINP,
        "R1_ci95": list(bootstrap_interval((metrics.first_match[valid] == 1).double())),
        "mAP_ci95": list(bootstrap_interval(metrics.ap[valid])),
        "num_valid_queries": metrics.num_valid_queries,
        "bank_seconds": bank_seconds,
        "cmc": metrics.cmc.tolist(),
        "first_match": per_query["first_match"],
        "ap": per_query["ap"],
    }


def _map_batches(
    model: nn.Module,
    loader: Iterable[Sequence[Tensor]],
    device: str | torch.device,
    amp: str | None,
    progress: bool,
    description: str,
    forward: Callable[[Tensor], Sequence[Tensor]],
) -> tuple[list[list[Tensor]], Tensor, Tensor]:
    """Run ``forward`` on each batch's images in inference and eval mode.

    Returns ``forward``'s outputs as lists of float32 CPU chunks (one list per output) and the
    concatenated int64 pids and camids of the batches.
    """
    device = torch.device(device)
    amp = check_amp(amp)
    if amp is not None and device.type != "cuda":
        # CPU bf16 autocast is unreliable: in torch 2.14 a torchvision ResNet's first bf16 call
        # after a float32 one returns NaN rows (oneDNN), so it is refused, not used silently.
        raise ValueError(f"amp={amp!r} is for CUDA devices; on {device} pass amp=None")
    outputs: list[list[Tensor]] = []
    pids, camids = [], []
    with evaluation_mode(model), autocast(device, amp):
        for batch in tqdm(loader, desc=description, disable=not progress, leave=False):
            images, batch_pids, batch_camids = _unpack(batch)
            results = forward(images.to(device, non_blocking=True))
            if not outputs:
                outputs = [[] for _ in results]
            for chunks, result in zip(outputs, results, strict=True):
                chunks.append(result.float().cpu())
            pids.append(torch.as_tensor(batch_pids).long())
            camids.append(torch.as_tensor(batch_camids).long())
    if not pids:
        raise ValueError("the loader yielded no batch; check that its item list is not empty")
    return outputs, torch.cat(pids), torch.cat(camids)


def _unpack(batch: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """``(images, pids, camids)`` of a loader batch, or a TypeError saying what was expected."""
    if not isinstance(batch, Sequence) or len(batch) < 3 or not isinstance(batch[0], Tensor):
        raise TypeError(
            "the loader must yield (images, pids, camids, ...) batches with images a (B, 3, H, W) "
            f"tensor, as build_test_loader does; got {type(batch).__name__}"
        )
    return batch[0], batch[1], batch[2]


def _check_method(model: nn.Module, name: str) -> None:
    if not callable(getattr(model, name, None)):
        raise TypeError(
            f"model must have OAMN's {name}() method (pass the bare OAMN, not a DDP wrapper: "
            f"model.module); got {type(model).__name__}"
        )


def _check_strategies(strategies: Sequence[str]) -> None:
    unknown = [s for s in strategies if s not in BANK_STRATEGIES]
    if unknown:
        raise ValueError(f"unknown bank strategies {unknown}; choose from {BANK_STRATEGIES}")
    if len(set(strategies)) != len(strategies):
        raise ValueError(f"strategies must not repeat, got {list(strategies)}")
