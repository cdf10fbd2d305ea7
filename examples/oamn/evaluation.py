r"""One trained model's whole evaluation: ranking rows and occlusion awareness, as one report.

:func:`evaluation_report` composes :mod:`examples.oamn.extraction` (features and banks),
:mod:`examples.oamn.awareness` (mask and grader against known occlusions) and
:mod:`examples.oamn.reporting` (the metric rows); the evaluation CLI, the demo, the awareness
study and the ablation (through :func:`evaluate_model`, the report alone) all call it. The
evaluation CLI writes its result with :func:`write_evaluation`, then its figures with
:func:`write_evaluation_figures`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from oamn.reid_eval import BANK_STRATEGIES

from .awareness import awareness_report
from .config import TrainConfig
from .data import ReIDDataset, ReIDItem
from .extraction import EvaluationFeatures, extract_for_evaluation
from .occluder_labels import reweight_none
from .reporting import library_versions, metrics_report
from .run_files import make_parent, write_json
from .summary_figures import save_awareness_figure
from .visualize import save_figures

__all__ = ["evaluate_model", "evaluation_report", "write_evaluation", "write_evaluation_figures"]


def evaluation_report(
    model: nn.Module,
    query_items: Sequence[ReIDItem],
    gallery_items: Sequence[ReIDItem],
    data_root: str | os.PathLike[str] | None = None,
    *,
    height: int,
    width: int,
    device: str | torch.device,
    batch_size: int,
    workers: int,
    strategies: Sequence[str] = BANK_STRATEGIES,
    two_sided: bool = True,
    awareness: bool = False,
    awareness_seed: int = 0,
    amp: str | None = None,
    metric: str = "euclidean",
    max_rank: int = 50,
    ap: str = "step",
    thresholds: tuple[float, float] = (0.5, 0.75),
    boundary: str = "paper",
    rerank: tuple[int, int, float] | None = None,
    none_weight: float = 1.0,
    progress: bool = True,
) -> tuple[dict, EvaluationFeatures]:
    r"""Extract features and banks, measure awareness if asked, and compute every metric row.

    Args:
        model: an OAMN model on ``device``.
        query_items: the query images.
        gallery_items: the gallery images.
        data_root: the dataset folder (with ``awareness``, a synthetic benchmark's manifest
            there adds the true-type rows and the real-occluder awareness), or ``None``.
        height: input height of the model.
        width: input width.
        device: where the forward passes run.
        batch_size: images per forward pass.
        workers: loader worker processes.
        strategies: bank strategies of the unified rows, names from
            :data:`examples.oamn.model.BANK_STRATEGIES` (empty: no unification).
        two_sided: add the two-sided rows (a query bank per strategy).
        awareness: measure the mask and the grader (:func:`~examples.oamn.awareness.
            awareness_report`); ``False`` (default) also drops the true-type rows.
        awareness_seed: seed of the augmentation bands of the awareness measurement.
        amp: ``None``, ``"none"``, ``"bf16"``, ``"fp16"`` (CUDA only) or ``"auto"`` (bf16 where
            the device has bfloat16 arithmetic, see :func:`~examples.oamn.precision.resolve_amp`).
        metric: distance of the rankings, ``"euclidean"`` or ``"cosine"``.
        max_rank: length of the reported CMC curve, ``>= 10``.
        ap: ``"step"`` or ``"trapezoid"``.
        thresholds: grader thresholds (paper eq. 8).
        boundary: their boundary convention.
        rerank: ``(k1, k2, lambda_value)``: add re-ranked rows, see
            :func:`~examples.oamn.reporting.metrics_report`; ``None``: none.
        none_weight: a 9-way grader's "none" probability is multiplied by it and the queries'
            scores renormalised before anything reads them
            (:func:`~examples.oamn.occluder_labels.reweight_none`); 1 leaves them.
        progress: show progress bars.

    Returns:
        ``(report, features)``: :func:`~examples.oamn.reporting.metrics_report`'s dict (with
        ``awareness``, ``"awareness"`` added and ``"seconds"["awareness"]``), and the features
        of :func:`~examples.oamn.extraction.extract_for_evaluation` it was computed from.

    Raises:
        ValueError: empty item lists, an unknown or repeated strategy, or an unknown ``amp``
            (before any extraction); see the functions above for the others.
    """
    size = {"height": height, "width": width, "device": device}
    loading = {"batch_size": batch_size, "workers": workers, "progress": progress}
    features = extract_for_evaluation(
        model,
        query_items,
        gallery_items,
        **size,
        **loading,
        strategies=strategies,
        two_sided=two_sided,
        amp=amp,
    )
    if none_weight != 1:
        scores = reweight_none(features.query.grader_scores, none_weight)
        features = dataclasses.replace(
            features, query=dataclasses.replace(features.query, grader_scores=scores)
        )
    awareness_part, true_types = None, None
    if awareness:
        started = time.perf_counter()
        awareness_part, true_types = awareness_report(
            model,
            query_items,
            features.query.grader_scores,
            data_root,
            **size,
            **loading,
            seed=awareness_seed,
            thresholds=thresholds,
            boundary=boundary,
        )
        features.seconds["awareness"] = time.perf_counter() - started
    report = metrics_report(
        features,
        metric=metric,
        max_rank=max_rank,
        ap=ap,
        thresholds=thresholds,
        boundary=boundary,
        true_types=true_types,
        rerank=rerank,
    )
    if awareness_part is not None:
        report["awareness"] = awareness_part
    return report, features


def evaluate_model(
    model: nn.Module,
    query_items: Sequence[ReIDItem],
    gallery_items: Sequence[ReIDItem],
    **options: Any,
) -> dict:
    r"""The report of :func:`evaluation_report` alone (its keyword ``options``), for callers
    that draw nothing from the features.

    Example (with a trained ``model`` and a loaded ``dataset``)::

        report = evaluate_model(model, dataset.query, dataset.gallery, height=256, width=128,
                                device="cuda", batch_size=128, workers=4)
        print(report["rows"]["unified_mask_swap"]["mAP"])
    """
    report, _ = evaluation_report(model, query_items, gallery_items, **options)
    return report


def write_evaluation(
    output: str | os.PathLike[str],
    report: dict,
    config: TrainConfig,
    dataset: ReIDDataset,
    *,
    dataset_name: str,
    data_root: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str],
    device: torch.device,
    amp: str,
    command: str,
) -> dict:
    r"""Write a checkpoint's evaluation as strict JSON, with what it was measured on.

    Args:
        output: the JSON file to write (atomically, :func:`~examples.oamn.run_files.
            write_json`; its folder is created).
        report: the model's :func:`evaluation_report`.
        config: its training configuration (recorded whole).
        dataset: the test dataset the report was computed on.
        dataset_name: the dataset's name, as recorded.
        data_root: its folder, as recorded.
        checkpoint: the checkpoint's path, as recorded.
        device: where the forward passes ran.
        amp: the autocast mode they ran under, as recorded.
        command: the command line, as recorded.

    Returns:
        What the JSON holds: ``"command"``, ``"checkpoint"``, ``"dataset"`` (name, root, the
        numbers of query and gallery images and identities), ``"device"``, ``"amp"``,
        ``"config"``, ``"versions"`` (:func:`~examples.oamn.reporting.library_versions`) and
        the report's keys.

    Raises:
        OSError: ``output`` cannot be written (the error names it); ``NotADirectoryError``
            when a file stands where its folder should be.
    """
    result = {
        "command": command,
        "checkpoint": str(checkpoint),
        "dataset": {
            "name": dataset_name,
            "root": str(data_root),
            "num_query": len(dataset.query),
            "num_gallery": len(dataset.gallery),
            "num_query_ids": len({item.pid for item in dataset.query}),
            "num_gallery_ids": len({item.pid for item in dataset.gallery}),
        },
        "device": str(device),
        "amp": amp,
        "config": config.to_dict(),
        "versions": library_versions(),
        **report,
    }
    make_parent(output)
    write_json(output, result)
    return result


def write_evaluation_figures(
    output: str | os.PathLike[str],
    result: dict,
    features: EvaluationFeatures,
    model: nn.Module,
    dataset: ReIDDataset,
    folder: str | os.PathLike[str],
    *,
    device: torch.device,
    num_figures: int = 6,
) -> dict:
    r"""Draw the figures of an evaluation :func:`write_evaluation` wrote, then add their paths
    to its JSON.

    The metrics are written first so that a figure that cannot be written (a full disk) loses
    none of them; each PNG is written atomically.

    Args:
        output: the evaluation's JSON file.
        result: what it holds (:func:`write_evaluation`'s return).
        features: the features its report was computed from.
        model: the checkpoint's model, on ``device`` (for the attention maps).
        dataset: the test dataset.
        folder: the folder of the PNGs (created): ranked lists and attention maps
            (:func:`~examples.oamn.visualize.save_figures`) and, when the report has one,
            the awareness.
        device: where the attention maps' forward passes run.
        num_figures: queries shown (their occlusion types with the report's grader
            thresholds and boundary convention).

    Returns:
        ``result`` with ``"figures"``, the paths written.

    Raises:
        OSError: a figure (or the JSON) cannot be written; the error names the file, and the
            JSON keeps the metrics.
    """
    folder = Path(folder)
    paths = save_figures(
        model,
        features,
        dataset.query,
        dataset.gallery,
        folder,
        height=result["config"]["height"],
        width=result["config"]["width"],
        device=device,
        num_queries=num_figures,
        thresholds=tuple(result["settings"]["thresholds"]),
        boundary=result["settings"]["boundary"],
    )
    if "awareness" in result:
        paths.append(save_awareness_figure(result["awareness"], folder / "awareness.png"))
    result = {**result, "figures": [str(path) for path in paths]}
    write_json(output, result)
    return result
