r"""The summary figures: the occlusion awareness of a model and the demo's comparison.

* Awareness (:func:`save_awareness_figure`): the mask's band / visible ratio per occlusion type
  and the grader's confusion matrices.
* The demo's figure (:func:`save_demo_figure`): a baseline and OAMN side by side, their maps,
  their ranked lists and the R1/mAP bars of every row.

Drawn with the helpers of :mod:`~examples.oamn.visualize` (matplotlib imported only when a
figure is drawn; each PNG written atomically).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from oamn.occlusion_aug import OCCLUSION_TYPES
from oamn.reid_eval import predict_occlusion_type

from .data import ReIDDataset
from .extraction import EvaluationFeatures
from .visualize import (
    MATCH_COLOURS,
    attention_masks,
    denormalize,
    draw_heat,
    draw_image,
    evaluation_images,
    evenly_spaced,
    match_kinds,
    model_output,
    new_figure,
    ranked_indices,
    save_png,
)

__all__ = ["activation_maps", "save_awareness_figure", "save_demo_figure"]


def save_awareness_figure(awareness: dict, path: str | Path) -> Path:
    r"""Draw an :func:`~examples.oamn.awareness.awareness_report` as one PNG.

    Left: the mask's occluded-band / visible ratio per occlusion type (1: the mask ignores the
    occlusion, dashed; the target 0.5, dotted), for the augmentation's bands on the test images
    and, on a synthetic benchmark, for the queries' real occluders. Right: the grader's
    confusion matrix (rows: true type, columns: predicted; each row normalised) for each source.

    Args:
        awareness: the report dict (``"augmented"``, optionally ``"synthetic_queries"``).
        path: the PNG to write.

    Returns:
        ``path``.
    """
    sources = {"augmented": "augmentation bands", "synthetic_queries": "real occluders"}
    present = [key for key in sources if key in awareness]
    names = OCCLUSION_TYPES[1:]
    figure = new_figure(4.2 + 3.4 * len(present), 3.6)
    grid = figure.add_gridspec(1, 1 + len(present), width_ratios=[1.3] + [1.0] * len(present))
    bars = figure.add_subplot(grid[0, 0])
    width = 0.8 / len(present)
    for offset, key in enumerate(present):
        types = awareness[key]["mask"]["types"]
        ratios = [(types.get(name) or {}).get("band_to_visible") for name in names]
        positions = [i + (offset - (len(present) - 1) / 2) * width for i in range(len(names))]
        values = [float("nan") if r is None else r for r in ratios]
        bars.bar(positions, values, width=width, label=sources[key])
    bars.axhline(1.0, color="#555555", linestyle="--", linewidth=0.8)
    bars.axhline(0.5, color="#d73027", linestyle=":", linewidth=0.8)
    bars.set_xticks(range(len(names)), [n.replace("_", "\n") for n in names], fontsize=6)
    bars.set_ylabel("mask: band mean / visible mean", fontsize=7)
    bars.set_title("does the mask drop the occluded band?", fontsize=8)
    bars.legend(fontsize=6)
    all_names = OCCLUSION_TYPES
    for column, key in enumerate(present, start=1):
        grader = awareness[key]["grader"]
        counts = torch.tensor(grader["confusion"], dtype=torch.float32)
        shares = counts / counts.sum(1, keepdim=True).clamp_min(1)
        axes = figure.add_subplot(grid[0, column])
        axes.imshow(shares.numpy(), cmap="Blues", vmin=0, vmax=1)
        labels = [n.replace("half_", "h ").replace("quarter_", "q ") for n in all_names]
        axes.set_xticks(range(len(labels)), labels, fontsize=5, rotation=90)
        axes.set_yticks(range(len(labels)), labels, fontsize=5)
        axes.set_xlabel("predicted", fontsize=7)
        axes.set_ylabel("true", fontsize=7)
        accuracy = grader["location_accuracy"], grader["type_accuracy"]
        axes.set_title(
            f"grader, {sources[key]}\nlocation {_percent(accuracy[0])}, type "
            f"{_percent(accuracy[1])}",
            fontsize=7,
        )
    figure.subplots_adjust(left=0.07, right=0.99, bottom=0.2, top=0.88, wspace=0.35)
    return save_png(figure, path)


def save_demo_figure(
    path: str | Path,
    models: Mapping[str, nn.Module],
    features: Mapping[str, EvaluationFeatures],
    rows: Sequence[Mapping[str, Any]],
    dataset: ReIDDataset,
    *,
    height: int,
    width: int,
    device: str | torch.device,
    num_queries: int = 4,
    top_k: int = 5,
) -> Path:
    r"""The demo's PNG: occluded queries with OAMN's mask and the baseline's activation, each
    model's top-``k`` (OAMN unified with its first bank, if any), and R1/mAP bars of every row.

    The queries are ``num_queries`` evenly spaced ones (first and last included). The baseline
    has no mask; its map is the channel mean of its ``f`` (:func:`activation_maps`, after the
    same backbone stage). Each map is drawn scaled to its own range, which its caption gives.

    Args:
        path: the PNG file to write (parent folders are created).
        models: ``{"baseline": model, "oamn": model}`` on ``device``.
        features: each model's :class:`~examples.oamn.extraction.EvaluationFeatures` of
            ``dataset``'s queries and gallery (OAMN's banks give its unified top-``k``).
        rows: the bars, one per mapping: its ``"model"``, ``"queries"`` and ``"setting"``
            (the label) and its ``"R1"`` and ``"mAP"`` fractions (the demo's table rows).
        dataset: the test dataset the features came from, to load the images shown.
        height: the models' input height.
        width: the models' input width.
        device: where the forward passes of the maps run.
        num_queries: queries shown, ``>= 1``.
        top_k: gallery items per ranked list.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    oamn, baseline = features["oamn"], features["baseline"]
    chosen = evenly_spaced(num_queries, len(oamn.query))
    count = len(chosen)
    query_set = evaluation_images(dataset.query, height, width, "query")
    images = torch.stack([query_set[i][0] for i in chosen.tolist()])
    gallery_set = evaluation_images(dataset.gallery, height, width, "gallery")
    maps = {
        "OAMN m": attention_masks(models["oamn"], images, device),
        "baseline f": activation_maps(models["baseline"], images, device),
    }
    types = predict_occlusion_type(oamn.query.grader_scores[chosen])
    type_names = OCCLUSION_TYPES
    # The first bank's slice of each query's predicted type: the unified ranking (two-sided
    # when there is a query bank: each query under its own predicted type too).
    strategy = next(iter(oamn.banks), None)
    oamn_gallery = oamn.gallery.features if strategy is None else oamn.banks[strategy][types]
    oamn_queries = oamn.query.features[chosen]
    if strategy in oamn.query_banks:
        oamn_queries = oamn.query_banks[strategy][types, chosen]
    ranked = {
        "baseline top-5": ranked_indices(
            baseline.query.features[chosen], baseline.gallery.features, top_k
        ),
        "OAMN top-5 (unified)": ranked_indices(oamn_queries, oamn_gallery, top_k),
    }
    columns = 1 + len(maps) + len(ranked) * top_k
    figure = new_figure(0.85 * columns + 0.4, 1.9 * count + 3.2)
    grid = figure.add_gridspec(count + 2, columns, height_ratios=[1.9] * count + [0.25, 2.6])
    pictures = denormalize(images)
    for row, query in enumerate(chosen.tolist()):
        pid, camid = int(oamn.query.pids[query]), int(oamn.query.camids[query])
        predicted = type_names[int(types[row])].replace("_", " ")
        caption = f"query {pid}\nOAMN typed\n{predicted}"
        draw_image(figure.add_subplot(grid[row, 0]), pictures[row], "black", caption)
        for col, (title, heat) in enumerate(maps.items(), start=1):
            axes = figure.add_subplot(grid[row, col])
            # Each map is scaled to its own range (given in the caption): a mask of values
            # in [0.01, 0.03] still shows where it looks.
            low, high = float(heat[row].min()), float(heat[row].max())
            caption = (
                f"{title}\n[{low:.2g}, {high:.2g}]" if row == 0 else f"[{low:.2g}, {high:.2g}]"
            )
            draw_image(axes, pictures[row], "black", caption)
            draw_heat(axes, _min_max(heat[row]), height, width)
        for block, (title, indices) in enumerate(ranked.items()):
            gallery = features["baseline" if block == 0 else "oamn"].gallery
            kinds = match_kinds(
                pid, camid, gallery.pids[indices[row]], gallery.camids[indices[row]]
            )
            for rank, (index, kind) in enumerate(zip(indices[row].tolist(), kinds, strict=True)):
                axes = figure.add_subplot(grid[row, 1 + len(maps) + block * top_k + rank])
                image = denormalize(gallery_set[index][0])
                draw_image(axes, image, MATCH_COLOURS[kind], f"{rank + 1}", dashed=kind == "junk")
                if row == 0 and rank == 0:  # the block's title, above its rank captions
                    axes.text(0, 1.25, title, transform=axes.transAxes, fontsize=8, ha="left")
    # Horizontal bars: each row's label is one line on the y axis (the first columns' width is
    # left for it), where long settings cannot run into their neighbours.
    bars = figure.add_subplot(grid[count + 1, 1 + len(maps) + 1 :])
    labels = [f"{r['model']}, {r['queries']}: {r['setting']}" for r in rows]
    positions = torch.arange(len(rows)).float()
    for offset, metric, colour in ((-0.2, "R1", "#4575b4"), (0.2, "mAP", "#fdae61")):
        values = [100 * r[metric] for r in rows]
        drawn = bars.barh(
            (positions + offset).tolist(), values, height=0.4, color=colour, label=metric
        )
        bars.bar_label(drawn, fmt="%.0f", fontsize=6, padding=2)
    bars.set_yticks(positions.tolist(), labels, fontsize=7)
    bars.invert_yaxis()  # the rows top to bottom, in the table's order
    bars.set_xlabel("%")
    bars.set_xlim(0, 108)
    # Above the plot: inside it, the legend would cover the longest bars' labels.
    bars.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, frameon=False)
    # 0.6 inch above the first row for its three caption lines.
    top = 1 - 0.6 / figure.get_figheight()
    figure.subplots_adjust(left=0.05, right=0.99, bottom=0.05, top=top, wspace=0.08, hspace=0.35)
    return save_png(figure, path)


def activation_maps(model: nn.Module, images: Tensor, device: str | torch.device) -> Tensor:
    r"""The channel mean of each image's feature map ``f`` (its ``forward(images).f``): where a
    model without a mask looks.

    Args:
        model: an OAMN model (with or without the mask module) on ``device``; run like
            :func:`~examples.oamn.visualize.attention_masks`.
        images: ``(n, 3, H, W)`` normalised images.
        device: where the forward pass runs.

    Returns:
        ``(n, 1, h, w)`` float32 maps on the CPU, at the feature map's size.
    """
    return model_output(model, images, device).f.float().mean(1, keepdim=True).cpu()


def _min_max(heat: Tensor) -> Tensor:
    """``(1, h, w)`` map scaled to ``[0, 1]`` (a constant map becomes 0)."""
    return (heat - heat.min()) / (heat.max() - heat.min()).clamp_min(1e-12)


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.0f} %"
