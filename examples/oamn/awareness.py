r"""How occlusion-aware a trained OAMN is: its mask against the occluded band, its grader's types.

OAMN's chain is: the mask marks what is visible, the grader says where the occlusion is, and
occlusion unification compares query and gallery under the same occlusion. This module measures
the first two links on images whose occlusion is known (docs/AWARENESS.md reads the numbers):

* **Mask** (:func:`mask_band_statistics`): for each occlusion type, the mean of the mask over the
  whole map, over the occluded band and over the rest (the visible part), and the ratio
  ``band / visible`` of those means (1: the mask ignores the occlusion; 0: it drops the band).
* **Grader** (:func:`grader_statistics`): the ``9 x 9`` confusion matrix of the grader's types
  (:func:`oamn.reid_eval.predict_occlusion_type`) against the true ones, with the location and
  exact-type accuracy on occluded images.

Two sources of known occlusions:

* :func:`augmented_awareness`: test images occluded by ``oamn.occlusion_aug``'s training
  augmentation (each image's four copies, top/bottom/left/right, a half or a quarter band filled
  with a patch of another image), so the band and its type are exact; works on any dataset.
* :func:`query_awareness` with :func:`synthetic_query_occlusions`: the synthetic benchmark's real
  occluders, from its ``manifest.json`` (location and thickness of each query's occluder; the
  true type is the nearest of the two band areas, half when the occluder covers ``>= 3/8``).

Types follow the project convention: 0 none, 1-4 half top/bottom/left/right, 5-8 quarter.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from oamn.occlusion_aug import (
    AREAS,
    LOCATIONS,
    NUM_OCCLUSION_TYPES,
    OCCLUSION_TYPES,
    OcclusionAugmentation,
    band_mask,
    location_and_area,
    occlusion_type,
)
from oamn.reid_eval import predict_occlusion_type

from .data import ReIDItem, build_test_loader
from .evaluation_settings import EvaluationSettings
from .extraction import evaluation_mode
from .occluder_labels import LABEL_FILES, labelled_grader_report, read_labels
from .reporting import location_scores

__all__ = [
    "HALF_FRACTION",
    "augmented_awareness",
    "awareness_report",
    "collect_masks",
    "grader_statistics",
    "mask_band_statistics",
    "nearest_types",
    "query_awareness",
    "synthetic_query_occlusions",
]

#: An occluder covering at least this fraction of its side is nearest to a half band (0.5),
#: below it to a quarter band (0.25): the midpoint of the two areas.
HALF_FRACTION = sum(AREAS) / len(AREAS)


def awareness_report(
    model: nn.Module,
    query_items: Sequence[ReIDItem],
    query_scores: Tensor,
    data_root: str | os.PathLike[str] | None,
    *,
    height: int,
    width: int,
    device: str | torch.device,
    settings: EvaluationSettings,
) -> tuple[dict, Tensor | None]:
    r"""Everything this module measures on a test split, and the queries' true types if known.

    Always :func:`augmented_awareness` on the query images (``"augmented"``); on the images
    that the repository's labelled sets name (Occluded-Duke's test queries and validation
    images), the grader on their hand-labelled real occluders (``"labelled_real_occluders"``,
    :func:`~examples.oamn.occluder_labels.labelled_grader_report`); on a synthetic benchmark
    (a ``manifest.json`` in ``data_root``) also :func:`query_awareness` of its occluders
    (``"synthetic_queries"``).

    Args:
        model: an OAMN model on ``device``.
        query_items: the query images.
        query_scores: ``(Q, 4)`` or ``(Q, 9)`` their grader scores (``FeatureSet.grader_scores``).
        data_root: the dataset folder (read for a synthetic manifest), or ``None`` (images that
            are not a synthetic benchmark's queries, e.g. held-out training identities).
        height: input height of the model.
        width: input width.
        device: where the forward passes run.
        settings: the evaluation's: ``awareness_seed`` (of the augmentation's bands), the
            grader ``thresholds`` and ``boundary`` of :func:`oamn.reid_eval.
            predict_occlusion_type`, ``batch_size`` (the augmented batches hold 5 times as
            many), ``loader_workers`` and ``progress``. The forward passes run in float32,
            whatever its ``amp``.

    Returns:
        ``(report, true_types)``: the JSON-ready report, and the ``(Q,)`` true types of the
        queries (``None`` without a synthetic manifest) for the true-type rows of
        :func:`~examples.oamn.reporting.metrics_report`.
    """
    loading = (settings.batch_size, settings.loader_workers)
    loader = build_test_loader(query_items, height, width, *loading, split="query")
    thresholds, boundary, progress = settings.thresholds, settings.boundary, settings.progress
    report = {
        "augmented": augmented_awareness(
            model,
            loader,
            device,
            seed=settings.awareness_seed,
            thresholds=thresholds,
            boundary=boundary,
            progress=progress,
        )
    }
    labels = {name: label for path in LABEL_FILES for name, label in read_labels(path).items()}
    names = [Path(item.path).name for item in query_items]
    labelled = labelled_grader_report(names, query_scores, labels, thresholds, boundary)
    if labelled is not None:
        report["labelled_real_occluders"] = labelled
    occlusions = None if data_root is None else synthetic_query_occlusions(data_root, query_items)
    if occlusions is None:
        return report, None
    location, fraction = occlusions
    masks = collect_masks(model, loader, device, progress)
    grader_types = predict_occlusion_type(query_scores, thresholds, boundary)
    report["synthetic_queries"] = query_awareness(
        masks, grader_types, location, fraction, query_scores
    )
    return report, nearest_types(location, fraction)


def mask_band_statistics(masks: Tensor, location: Tensor, area: Tensor) -> dict:
    r"""Mask means inside and outside the occluded band, per occlusion type.

    Args:
        masks: ``(N, 1, h, w)`` floating attention masks.
        location: ``(N,)`` int64 location codes (0 none, 1 top, 2 bottom, 3 left, 4 right).
        area: ``(N,)`` the band's share of its side, in ``[0, 1]`` (0 with location 0); the band
            is :func:`oamn.occlusion_aug.band_mask` at the masks' resolution.

    Returns:
        ``{"types": {type: row}, "occluded": row, "all": row}`` with the type given by
        ``location`` and the nearest band area (:data:`HALF_FRACTION`), each row ``{"count",
        "mask_mean", "band_mean", "visible_mean", "band_to_visible"}`` (means over the images
        of their per-image means; ``band_*`` ``None`` for unoccluded images). ``"occluded"``
        pools every occluded image; types without images are left out.

    Example:
        >>> masks = torch.ones(2, 1, 4, 2)
        >>> masks[1, :, :2] = 0.25  # image 1: its top half (the band) at a quarter
        >>> stats = mask_band_statistics(masks, torch.tensor([0, 1]), torch.tensor([0.0, 0.5]))
        >>> stats["types"]["half_top"]["band_to_visible"], stats["types"]["none"]["mask_mean"]
        (0.25, 1.0)
    """
    masks = masks.float()
    band = band_mask(location, area, masks.shape[2], masks.shape[3]).to(masks.device)
    band_count = band.sum((1, 2, 3))
    visible_count = (~band).sum((1, 2, 3))
    band_mean = (masks * band).sum((1, 2, 3)) / band_count.clamp_min(1)
    visible_mean = (masks * ~band).sum((1, 2, 3)) / visible_count.clamp_min(1)
    types = nearest_types(location, area)
    rows = {}
    for t in range(NUM_OCCLUSION_TYPES):
        chosen = types == t
        if bool(chosen.any()):
            rows[OCCLUSION_TYPES[t]] = _mask_row(
                masks[chosen], band_mean[chosen], visible_mean[chosen], t
            )
    occluded = types > 0
    summary = {"types": rows, "all": _mask_row(masks, band_mean, visible_mean, 0)}
    if bool(occluded.any()):
        summary["occluded"] = _mask_row(
            masks[occluded], band_mean[occluded], visible_mean[occluded], 1
        )
    return summary


def grader_statistics(predicted: Tensor, true: Tensor, scores: Tensor | None = None) -> dict:
    r"""The grader's confusion matrix against the true occlusion types, and its accuracies.

    Args:
        predicted: ``(N,)`` int64 predicted types in ``0..8``.
        true: ``(N,)`` int64 true types in ``0..8``.
        scores: ``(N, 4)`` (or a 9-way grader's ``(N, 9)``) the grader scores the types were
            read from, or ``None``; given, adds
            ``"argmax_location_accuracy"``: on occluded images, the share whose largest score
            is in the true location's column (no threshold, so never "none").

    Returns:
        ``{"confusion": 9 x 9 list (rows true, columns predicted), "types": the 9 names,
        "count", "occluded_count", "location_accuracy", "type_accuracy",
        "none_accuracy"}``: on occluded images, the share whose predicted type has the true
        location (any area; "none" counts as wrong) and the share of exact types; on unoccluded
        images the share predicted "none" (``None`` where there are no such images).

    Example:
        >>> stats = grader_statistics(torch.tensor([1, 5, 0, 0]), torch.tensor([1, 1, 2, 0]))
        >>> stats["location_accuracy"], stats["type_accuracy"], stats["none_accuracy"]
        (0.6667, 0.3333, 1.0)
    """
    predicted, true = predicted.long().cpu(), true.long().cpu()
    extra = {}
    if scores is not None:
        argmax_location = location_scores(scores.float().cpu()).argmax(1) + 1
        extra["argmax_location_accuracy"] = _share(
            argmax_location[true > 0] == location_and_area(true)[0][true > 0]
        )
    confusion = torch.bincount(
        true * NUM_OCCLUSION_TYPES + predicted, minlength=NUM_OCCLUSION_TYPES**2
    ).view(NUM_OCCLUSION_TYPES, NUM_OCCLUSION_TYPES)
    occluded = true > 0
    predicted_location = location_and_area(predicted)[0]
    true_location = location_and_area(true)[0]
    return {
        "types": list(OCCLUSION_TYPES),
        "confusion": confusion.tolist(),
        "count": len(true),
        "occluded_count": int(occluded.sum()),
        "location_accuracy": _share(predicted_location[occluded] == true_location[occluded]),
        "type_accuracy": _share(predicted[occluded] == true[occluded]),
        "none_accuracy": _share(predicted[~occluded] == 0),
        **extra,
    }


def augmented_awareness(
    model: nn.Module,
    loader: Iterable[Sequence[Tensor]],
    device: str | torch.device,
    *,
    seed: int = 0,
    thresholds: tuple[float, float] = (0.5, 0.75),
    boundary: str = "paper",
    max_images: int | None = None,
    progress: bool = True,
) -> dict:
    r"""Mask and grader statistics on test images occluded by the training augmentation.

    Each batch of ``loader`` becomes its holistic images and their four copies (top, bottom,
    left, right; a half or a quarter band, each with probability 1/2, filled with a patch of
    another image of the batch): the bands the model was trained on, on images it never saw. A
    batch of one image waits for the next one; a lone last image is left out.
    The model runs in eval mode under :func:`torch.inference_mode` (its mode is restored).

    Args:
        model: an OAMN model on ``device`` (its forward gives ``m`` and ``grader_scores``).
        loader: yields ``(images, pids, camids, ...)`` batches of at least 2 images.
        device: where the forward passes run.
        seed: seed of the augmentation's draws (the same seed gives the same bands).
        thresholds: the grader thresholds of :func:`oamn.reid_eval.predict_occlusion_type`.
        boundary: its boundary convention.
        max_images: stop after this many holistic images (``None``: all).
        progress: show a progress bar.

    Returns:
        ``{"images": count of holistic images, "seed", "mask": mask_band_statistics(...),
        "grader": grader_statistics(...)}`` over all holistic images and copies.
    """
    augmentation = OcclusionAugmentation()
    generator = torch.Generator().manual_seed(seed)
    masks, locations, areas, predicted, scores = [], [], [], [], []
    seen = 0
    pending = None  # a lone image waits for the next batch: its patch comes from another image
    with evaluation_mode(model):
        for batch in tqdm(loader, desc="awareness", disable=not progress, leave=False):
            images = batch[0] if pending is None else torch.cat([pending, batch[0]])
            if max_images is not None:
                images = images[: max_images - seen]
            if len(images) < 2:
                pending = images
                continue
            pending = None
            views = augmentation(images, generator=generator)
            output = model(views.images.to(device))
            masks.append(output.m.float().cpu())
            locations.append(views.location)
            areas.append(views.area)
            scores.append(output.grader_scores.float().cpu())
            predicted.append(predict_occlusion_type(scores[-1], thresholds, boundary))
            seen += len(images)
            if max_images is not None and seen >= max_images:
                break
    if not masks:
        raise ValueError(
            "augmented_awareness needs at least 2 images (each band is filled with a patch of "
            "another image); the loader gave fewer"
        )
    location, area = torch.cat(locations), torch.cat(areas)
    return {
        "images": seen,
        "seed": seed,
        "mask": mask_band_statistics(torch.cat(masks), location, area),
        "grader": grader_statistics(
            torch.cat(predicted), occlusion_type(location, area), torch.cat(scores)
        ),
    }


def collect_masks(
    model: nn.Module,
    loader: Iterable[Sequence[Tensor]],
    device: str | torch.device,
    progress: bool = True,
) -> Tensor:
    r"""The attention masks of every image of ``loader``, in its order.

    Args:
        model: an OAMN model on ``device``.
        loader: yields ``(images, pids, camids, ...)`` batches.
        device: where the forward passes run.
        progress: show a progress bar.

    Returns:
        ``(N, 1, h, w)`` float32 masks on the CPU.
    """
    masks = []
    with evaluation_mode(model):
        for batch in tqdm(loader, desc="masks", disable=not progress, leave=False):
            masks.append(model(batch[0].to(device)).m.float().cpu())
    return torch.cat(masks)


def query_awareness(
    masks: Tensor,
    grader_types: Tensor,
    location: Tensor,
    fraction: Tensor,
    grader_scores: Tensor | None = None,
) -> dict:
    r"""Mask and grader statistics of occluded queries whose occluder is known.

    Args:
        masks: ``(Q, 1, h, w)`` the queries' attention masks.
        grader_types: ``(Q,)`` their predicted types.
        location: ``(Q,)`` the occluders' location codes.
        fraction: ``(Q,)`` the share of the side each occluder covers (its band).
        grader_scores: ``(Q, 4)`` or ``(Q, 9)`` the scores ``grader_types`` were read from
            (adds the argmax location accuracy), or ``None``.

    Returns:
        ``{"mask": mask_band_statistics(...), "grader": grader_statistics(...)}`` against the
        true types of :func:`nearest_types`.
    """
    return {
        "mask": mask_band_statistics(masks, location, fraction),
        "grader": grader_statistics(grader_types, nearest_types(location, fraction), grader_scores),
    }


def synthetic_query_occlusions(
    dataset_root: str | os.PathLike[str], query_items: Sequence[ReIDItem]
) -> tuple[Tensor, Tensor] | None:
    r"""The true occluder of each query of a synthetic benchmark, from its ``manifest.json``.

    Args:
        dataset_root: the benchmark's folder (:func:`examples.oamn.synthetic.
            generate_synthetic_reid`'s result).
        query_items: the query items as loaded (matched to the manifest by file name).

    Returns:
        ``(location, fraction)``: ``(Q,)`` int64 location codes and ``(Q,)`` float32 shares of
        the side the occluder covers, in ``query_items``' order; ``None`` when the folder has no
        synthetic manifest (a real dataset).

    Raises:
        ValueError: the manifest lacks one of the queries.
    """
    path = Path(dataset_root) / "manifest.json"
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text())
    if manifest.get("generator") != "examples.oamn.synthetic":
        return None
    by_file = {query["file"]: query for query in manifest["queries"]}
    missing = [item.path.name for item in query_items if item.path.name not in by_file]
    if missing:
        raise ValueError(
            f"{path} describes no occluder for {len(missing)} queries (first: {missing[0]}); "
            "regenerate the synthetic benchmark"
        )
    queries = [by_file[item.path.name] for item in query_items]
    location = torch.tensor([LOCATIONS.index(query["location"]) for query in queries])
    fraction = torch.tensor([query["fraction"] for query in queries], dtype=torch.float32)
    return location, fraction


def nearest_types(location: Tensor, fraction: Tensor) -> Tensor:
    r"""``(N,)`` int64 occlusion types: the location with the nearer of the half and quarter
    bands (half from :data:`HALF_FRACTION` on), 0 where the location is 0.

    Example:
        >>> nearest_types(torch.tensor([0, 1, 4]), torch.tensor([0.0, 0.3, 0.4]))
        tensor([0, 5, 4])
    """
    location = location.long()
    half, quarter = AREAS
    area = torch.where(fraction >= HALF_FRACTION, half, quarter)
    return occlusion_type(location, torch.where(location > 0, area, 0.0))


def _mask_row(masks: Tensor, band_mean: Tensor, visible_mean: Tensor, occlusion: int) -> dict:
    row = {"count": len(masks), "mask_mean": _round(masks.mean())}
    if occlusion == 0:
        return {**row, "band_mean": None, "visible_mean": None, "band_to_visible": None}
    band, visible = band_mean.mean(), visible_mean.mean()
    return {
        **row,
        "band_mean": _round(band),
        "visible_mean": _round(visible),
        "band_to_visible": _round(band / visible.clamp_min(1e-12)),
    }


def _share(hits: Tensor) -> float | None:
    return None if hits.numel() == 0 else _round(hits.float().mean())


def _round(value: Tensor) -> float:
    return round(float(value), 4)
