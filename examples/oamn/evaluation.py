r"""One trained model's whole evaluation: ranking rows and occlusion awareness, as one report.

:func:`evaluation_report` composes :mod:`examples.oamn.extraction` (features and banks),
:mod:`examples.oamn.awareness` (mask and grader against known occlusions) and
:mod:`examples.oamn.reporting` (the metric rows); the evaluation CLI, the demo, the awareness
study and the ablation (through :func:`evaluate_model`, the report alone) all call it. The
evaluation CLI writes its result with :func:`write_evaluation`.
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .awareness import awareness_report
from .config import TrainConfig
from .data import ReIDDataset, ReIDItem
from .extraction import EvaluationFeatures, extract_for_evaluation
from .model import BANK_STRATEGIES
from .reporting import library_versions, metrics_report
from .run_files import write_atomic
from .visualize import save_awareness_figure, save_figures

__all__ = ["evaluate_model", "evaluation_report", "write_evaluation"]


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
        amp: ``None``, ``"none"``, ``"bf16"`` or ``"fp16"`` (CUDA only).
        metric: distance of the rankings, ``"euclidean"`` or ``"cosine"``.
        max_rank: length of the reported CMC curve, ``>= 10``.
        ap: ``"step"`` or ``"trapezoid"``.
        thresholds: grader thresholds (paper eq. 8).
        boundary: their boundary convention.
        rerank: ``(k1, k2, lambda_value)``: add re-ranked rows, see
            :func:`~examples.oamn.reporting.metrics_report`; ``None``: none.
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
    features: EvaluationFeatures,
    model: nn.Module,
    config: TrainConfig,
    dataset: ReIDDataset,
    *,
    dataset_name: str,
    data_root: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str],
    device: torch.device,
    amp: str,
    command: str,
    figures: str | os.PathLike[str] | None = None,
    num_figures: int = 6,
) -> dict:
    r"""Write a checkpoint's evaluation as JSON, with what it was measured on, and its figures.

    Args:
        output: the JSON file to write (atomically; its folder is created).
        report: the model's :func:`evaluation_report`.
        features: the features it was computed from.
        model: the checkpoint's model, on ``device`` (for the attention maps).
        config: its training configuration (the input size; recorded whole).
        dataset: the test dataset the report was computed on.
        dataset_name: the dataset's name, as recorded.
        data_root: its folder, as recorded.
        checkpoint: the checkpoint's path, as recorded.
        device: where the forward passes ran.
        amp: the autocast mode they ran under, as recorded.
        command: the command line, as recorded.
        figures: a folder for the PNGs of ranked lists and attention maps
            (:func:`~examples.oamn.visualize.save_figures`) and, when the report has one, of
            the awareness; ``None``: no figure.
        num_figures: queries shown in the figures (their occlusion types with the report's
            grader thresholds and boundary convention).

    Returns:
        What the JSON holds: ``"command"``, ``"checkpoint"``, ``"dataset"`` (name, root, the
        numbers of query and gallery images and identities), ``"device"``, ``"amp"``,
        ``"config"``, ``"versions"`` (:func:`~examples.oamn.reporting.library_versions`), the
        report's keys and, with ``figures``, ``"figures"`` (the paths written).
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
    if figures is not None:
        folder = Path(figures)
        paths = save_figures(
            model,
            features,
            dataset.query,
            dataset.gallery,
            folder,
            height=config.height,
            width=config.width,
            device=device,
            num_queries=num_figures,
            thresholds=tuple(report["settings"]["thresholds"]),
            boundary=report["settings"]["boundary"],
        )
        if "awareness" in report:
            paths.append(save_awareness_figure(report["awareness"], folder / "awareness.png"))
        result["figures"] = [str(path) for path in paths]
    output = Path(output)
    if output.parent.exists() and not output.parent.is_dir():  # mkdir would say "File exists"
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(output.parent))
    output.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(output, json.dumps(result, indent=2) + "\n")
    return result
