r"""The metrics report of an evaluation and its text tables.

Evaluation (docs/METHOD.md §5-6) has a row *no unification* (query features against the plain
gallery features), and per bank strategy the *unified* rows: query ``i`` gets the type
:func:`oamn.reid_eval.predict_occlusion_type` reads from its grader scores and is ranked against the
gallery features under that type (:func:`oamn.reid_eval.evaluate_unified`), with the plain query
feature (one-sided, the authors') or with the query's own feature under that type (two-sided, the
paper's §3.4: the band removed on both sides). Given the queries' true types (the synthetic
benchmark's manifest), each unified row is repeated with them, which separates the grader's
errors from the bank's quality. :func:`metrics_report` computes every row from the features of
:func:`examples.oamn.extraction.extract_for_evaluation` (the query features, extracted once, are
shared by every row).

Each row reports the columns :data:`TABLE_COLUMNS` (fractions in ``[0, 1]``): the CMC at the
:data:`oamn.reid_eval.REPORTED_RANKS` (read by :func:`rank_accuracies`, as validation reads
them too), mAP and mINP, which :func:`format_table` prints in %, for the evaluation command
(:func:`format_report`) and the demo alike. :func:`library_versions` records what the numbers
depend on.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any

import torch
from torch import Tensor

from oamn.occlusion_aug import NUM_OCCLUSION_TYPES, OCCLUSION_TYPES
from oamn.reid_eval import (
    AP_KINDS,
    REPORTED_RANKS,
    RankMetrics,
    evaluate_features,
    evaluate_rank,
    evaluate_soft_unified,
    evaluate_unified,
)
from oamn.reid_eval import predict_occlusion_type as predict_types
from oamn.reid_eval import rerank as rerank_distances

from .extraction import EvaluationFeatures
from .intervals import bootstrap_interval

__all__ = [
    "TABLE_COLUMNS",
    "format_report",
    "format_table",
    "library_versions",
    "location_scores",
    "metrics_report",
    "rank_accuracies",
]


#: The metric columns of every table, in order: the reported ranks, mAP and mINP.
TABLE_COLUMNS: tuple[str, ...] = (*(f"R{k}" for k in REPORTED_RANKS), "mAP", "mINP")


def rank_accuracies(cmc: Tensor, ranks: Sequence[int] = REPORTED_RANKS) -> dict[str, float]:
    """``{"R<k>": accuracy}`` at each of ``ranks``, read from a CMC curve; where the curve is
    shorter than ``k`` (a gallery smaller than ``k``), its last rank, where every valid query
    has matched.

    Args:
        cmc: ``(max_rank,)`` the CMC curve, ``cmc[k - 1]`` the rank-``k`` accuracy
            (:attr:`oamn.reid_eval.RankMetrics.cmc`).
        ranks: the ranks ``k >= 1`` to read.

    Example:
        >>> rank_accuracies(torch.tensor([0.5, 0.75, 1.0, 1.0, 1.0, 1.0]))
        {'R1': 0.5, 'R5': 1.0, 'R10': 1.0}
    """
    last_rank = len(cmc)
    return {f"R{k}": float(cmc[min(k, last_rank) - 1]) for k in ranks}


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
        features: from :func:`~examples.oamn.extraction.extract_for_evaluation`.
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
          ``"name"`` (for tables), the :data:`TABLE_COLUMNS` ``"R1"``, ``"R5"``, ``"R10"``,
          ``"mAP"``, ``"mINP"`` (fractions in ``[0, 1]``), ``"cmc"`` (``min(max_rank, G)``
          fractions), ``"R1_ci95"`` and ``"mAP_ci95"`` (95 % bootstrap intervals over the
          valid queries, :mod:`examples.oamn.intervals`), ``"first_match"`` and ``"ap"`` (per
          query, for paired comparisons), ``"num_valid_queries"`` and ``"bank_seconds"``
          (``None`` for the plain row);
        * ``"query_types"``: ``{type name: count}`` of the queries' predicted types, all 9
          names (:data:`oamn.occlusion_aug.OCCLUSION_TYPES`) in type order;
        * ``"bank_type0_max_abs_diff"``: ``{strategy: float}``, the largest difference between
          the bank's type 0 and the plain gallery features, which should be ~0 (a check);
        * ``"num_query"``, ``"num_gallery"``, ``"seconds"`` (every extraction) and
          ``"settings"`` (the arguments above).

    Raises:
        ValueError: ``max_rank < 10``, an unknown ``ap``, or no query with a valid match.

    Example:
        >>> from examples.oamn.extraction import FeatureSet
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
        located_types = _located_types(query.grader_scores, boundary)
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
        if query.grader_scores.shape[1] == NUM_OCCLUSION_TYPES:
            # A 9-way grader's probabilities weight the types' distances (the soft rule).
            for side_key, queries in sides.items():
                metrics = evaluate_soft_unified(
                    queries, query.grader_scores, bank, *labels, **options
                )
                side_name = ", two-sided" if side_key else ""
                rows[f"unified_{strategy}{side_key}_soft"] = _row(
                    f"{name}{side_name}, soft types", features.seconds.get(strategy), metrics
                )

    counts = torch.bincount(query_types, minlength=NUM_OCCLUSION_TYPES).tolist()
    return {
        "rows": rows,
        "query_types": dict(zip(OCCLUSION_TYPES, counts, strict=True)),
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


def location_scores(scores: Tensor) -> Tensor:
    """``(N, 4)`` scores of the locations top, bottom, left, right: the grader's 4 columns, or
    a 9-way grader's half and quarter columns of each location added.

    Example:
        >>> location_scores(torch.tensor([[0.1, 0.2, 0.0, 0.0, 0.1, 0.3, 0.1, 0.1, 0.1]]))
        tensor([[0.5000, 0.1000, 0.1000, 0.2000]])
    """
    if scores.shape[1] == NUM_OCCLUSION_TYPES:
        return scores[:, 1:5] + scores[:, 5:9]
    return scores


def _located_types(scores: Tensor, boundary: str) -> Tensor:
    """Every query a half band at its most likely location (:func:`location_scores`)."""
    if scores.shape[1] == NUM_OCCLUSION_TYPES:
        return 1 + location_scores(scores).argmax(dim=1)
    return predict_types(scores, (0.0, 0.0), boundary)


def _row(name: str, bank_seconds: float | None, metrics: RankMetrics) -> dict:
    """One table row: the named ranks, mAP, mINP, their 95 % bootstrap intervals over the valid
    queries, the whole CMC and the per-query first-match ranks and APs (for paired tests)."""
    valid = metrics.first_match > 0
    per_query = metrics.to_dict(per_query=True)
    return {
        "name": name,
        **rank_accuracies(metrics.cmc),
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


def format_table(
    rows: Sequence[Mapping[str, Any]],
    labels: Sequence[str] = ("setting",),
    *,
    bank_seconds: bool = False,
) -> str:
    """Rows of metrics as a text table: their label columns, then :data:`TABLE_COLUMNS` in %.

    Args:
        rows: one mapping per line, holding each of ``labels`` and each of
            :data:`TABLE_COLUMNS` (a fraction in ``[0, 1]``).
        labels: the keys of the text columns, in order; each is as wide as its longest entry
            (its name, the header, included), two spaces apart (the metrics are right-aligned
            in 7 characters).
        bank_seconds: end each line with the row's ``"bank_seconds"`` (``None``: ``-``), the
            time its gallery bank took to build.

    Returns:
        The header line, then a line per row.

    Example:
        >>> row = {"model": "OAMN", "setting": "no unification", "R1": 0.5, "R5": 1.0,
        ...        "R10": 1.0, "mAP": 0.625, "mINP": 0.25, "bank_seconds": 2.5}
        >>> print(format_table([row], ("model", "setting"), bank_seconds=True))
        model  setting            R1     R5    R10    mAP   mINP  bank (s)
        OAMN   no unification   50.0  100.0  100.0   62.5   25.0       2.5
    """
    widths = [max([len(label), *(len(str(row[label])) for row in rows)]) for label in labels]
    # Two spaces after each text column but the last; the first metric cell has its own.
    widths = [width + 2 for width in widths[:-1]] + widths[-1:]
    header = "".join(f"{label:<{width}}" for label, width in zip(labels, widths, strict=True))
    header += "".join(f"{column:>7}" for column in TABLE_COLUMNS)
    lines = [header + ("  bank (s)" if bank_seconds else "")]
    for row in rows:
        line = "".join(
            f"{row[label]:<{width}}" for label, width in zip(labels, widths, strict=True)
        )
        line += "".join(f"{100 * row[column]:7.1f}" for column in TABLE_COLUMNS)
        if bank_seconds:
            seconds = row["bank_seconds"]
            line += f"{'-' if seconds is None else f'{seconds:.1f}':>10}"
        lines.append(line)
    return "\n".join(lines)


def format_report(report: Mapping[str, Any]) -> str:
    """A :func:`metrics_report` as text: its rows (:func:`format_table`, with the bank build
    times), the queries' predicted types and, when the report has one, the occlusion awareness
    (:func:`~examples.oamn.awareness.awareness_report`) in a line per source.

    Example:
        >>> row = {"name": "no unification", "R1": 0.5, "R5": 1.0, "R10": 1.0, "mAP": 0.625,
        ...        "mINP": 0.25, "bank_seconds": None}
        >>> print(format_report({"rows": {"plain": row}, "query_types": {"none": 2}}))
        setting                 R1     R5    R10    mAP   mINP  bank (s)
        no unification        50.0  100.0  100.0   62.5   25.0         -
        query types: none 2
    """
    rows = [{"setting": row["name"], **row} for row in report["rows"].values()]
    lines = [format_table(rows, bank_seconds=True)]
    types = ", ".join(
        f"{name.replace('_', ' ')} {count}"
        for name, count in report["query_types"].items()
        if count
    )
    lines.append(f"query types: {types}")
    for source, awareness in report.get("awareness", {}).items():
        mask, grader = awareness["mask"], awareness["grader"]
        ratio = mask.get("occluded", {}).get("band_to_visible")
        lines.append(
            f"awareness ({source.replace('_', ' ')}): mask mean {mask['all']['mask_mean']:.3f}, "
            f"band / visible {_fraction(ratio)}; grader location "
            f"{_percent(grader['location_accuracy'])}, type {_percent(grader['type_accuracy'])}, "
            f"none {_percent(grader['none_accuracy'])}"
        )
    return "\n".join(lines)


def _fraction(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.1f} %"


def library_versions() -> dict[str, str]:
    """Versions of Python, the platform and the libraries the numbers depend on."""
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("oamn", "torch", "torchvision", "kornia", "einops", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    versions["cuda"] = torch.version.cuda or "none"
    return versions
