r"""PNG figures of an evaluation: ranked lists, attention heat maps, the awareness, the demo.

matplotlib is imported only when a figure is drawn, and through its object-oriented API with
the Agg canvas (no ``pyplot``, no change to the process-wide backend), so the rest of the
pipeline works without it.

* Ranked lists: one row per query, the query then its top-``k`` gallery items, each framed
  green (same identity, another camera: a true match), red (another identity) or grey and
  dashed (junk: same identity and camera, or a junk identity; the protocol ignores them).
* Attention maps: each query above its mask ``m`` (bilinearly upsampled to the image) laid over
  it as a heat map on a fixed 0-1 scale.
* Awareness (:func:`save_awareness_figure`): the mask's band / visible ratio per occlusion type
  and the grader's confusion matrices.
* The demo's figure (:func:`save_demo_figure`): a baseline and OAMN side by side, their maps,
  their ranked lists and the R1/mAP bars of every row.

The maps come from forward passes in eval and inference mode
(:func:`~examples.oamn.extraction.evaluation_mode`, the model's mode restored).

Images come normalised from the test transform and are de-normalised for display. Each PNG is
written atomically: an error (a full disk) leaves the previous file or none, never a part.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from oamn.reid_eval import predict_occlusion_type

from .data import IMAGENET_MEAN, IMAGENET_STD, ImageDataset, ReIDDataset, ReIDItem, test_transform
from .extraction import EvaluationFeatures, evaluation_mode
from .reporting import occlusion_type_names
from .run_files import write_atomic

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from torch.utils.data import Dataset

    from .model import OAMNOutput

__all__ = [
    "MATCH_COLOURS",
    "activation_maps",
    "attention_masks",
    "denormalize",
    "draw_image",
    "match_kinds",
    "ranked_indices",
    "save_attention_maps",
    "save_awareness_figure",
    "save_demo_figure",
    "save_figures",
    "save_ranked_lists",
]

#: Frame colour of a gallery item by its kind (see :func:`match_kinds`).
MATCH_COLOURS: dict[str, str] = {"match": "#1a9850", "wrong": "#d73027", "junk": "#9e9e9e"}

_CELL_INCHES = (0.9, 1.9)  # width, height of one image cell
_CAPTION_INCHES = 0.3
_DPI = 100


def denormalize(
    images: Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Tensor:
    r"""Undo the test transform's normalisation, for display.

    Args:
        images: ``(..., 3, H, W)`` floating images normalised as ``(x - mean) / std``.
        mean: the per-channel means of the normalisation.
        std: the per-channel standard deviations.

    Returns:
        ``images * std + mean`` clamped to ``[0, 1]``, same shape, dtype and device.

    Example:
        >>> x = torch.tensor([-0.485 / 0.229, 0.0, 10.0]).view(3, 1, 1)
        >>> denormalize(x).flatten()
        tensor([0.0000, 0.4560, 1.0000])
    """
    view = (3, 1, 1)
    mean_t = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(view)
    std_t = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(view)
    return (images * std_t + mean_t).clamp(0, 1)


def match_kinds(
    query_pid: int,
    query_camid: int,
    gallery_pids: Tensor,
    gallery_camids: Tensor,
    junk_pids: Sequence[int] = (-1,),
) -> list[str]:
    r"""Kind of each gallery item for one query under the Market-1501 protocol.

    Args:
        query_pid: the query's identity.
        query_camid: the query's camera.
        gallery_pids: ``(k,)`` integer identities of the gallery items shown.
        gallery_camids: ``(k,)`` integer cameras.
        junk_pids: identities that are always junk (as in :func:`oamn.reid_eval.evaluate_rank`).

    Returns:
        ``k`` strings: ``"junk"`` (same identity and camera, or a junk identity), ``"match"``
        (same identity, another camera) or ``"wrong"``.

    Example:
        >>> match_kinds(3, 0, torch.tensor([3, 3, 5, -1]), torch.tensor([0, 1, 1, 1]))
        ['junk', 'match', 'wrong', 'junk']
    """
    same_id = gallery_pids == query_pid
    junk = (same_id & (gallery_camids == query_camid)) | torch.isin(
        gallery_pids, torch.as_tensor(list(junk_pids), dtype=gallery_pids.dtype)
    )
    kinds = torch.where(junk, 0, torch.where(same_id, 1, 2))
    return [("junk", "match", "wrong")[k] for k in kinds.tolist()]


def ranked_indices(query_features: Tensor, gallery_features: Tensor, k: int) -> Tensor:
    r"""The ``k`` nearest gallery items of each query, by Euclidean distance, ties in gallery
    order (a stable sort, as :mod:`oamn.reid_eval` ranks).

    Args:
        query_features: ``(n, D)`` floating features.
        gallery_features: ``(G, D)`` shared by every query, or ``(n, G, D)``: one gallery per
            query (e.g. ``bank[query_types]`` for the unified ranking).
        k: items kept, at most ``G``.

    Returns:
        ``(n, k)`` int64 gallery indices, nearest first.

    Example:
        >>> g = torch.tensor([[0.0], [2.0], [1.0], [1.0]])
        >>> ranked_indices(torch.tensor([[0.9], [2.0]]), g, 3)
        tensor([[2, 3, 0],
                [1, 2, 3]])
    """
    gallery = gallery_features.expand(len(query_features), -1, -1)
    distances = torch.cdist(query_features[:, None].to(gallery.dtype), gallery).squeeze(1)
    return torch.sort(distances, dim=1, stable=True).indices[:, :k]


def attention_masks(model: nn.Module, images: Tensor, device: str | torch.device) -> Tensor:
    r"""The model's attention mask ``m`` of each image (its ``forward(images).m``).

    Args:
        model: an OAMN model on ``device``; run in eval and inference mode (its mode restored,
            :func:`~examples.oamn.extraction.evaluation_mode`).
        images: ``(n, 3, H, W)`` normalised images.
        device: where the forward pass runs.

    Returns:
        ``(n, 1, h, w)`` float32 masks in ``(0, 1)`` on the CPU, at the feature map's size.
    """
    return _forward(model, images, device).m.float().cpu()


def activation_maps(model: nn.Module, images: Tensor, device: str | torch.device) -> Tensor:
    r"""The channel mean of each image's feature map ``f`` (its ``forward(images).f``): where a
    model without a mask looks.

    Args:
        model: an OAMN model (with or without the mask module) on ``device``; run like
            :func:`attention_masks`.
        images: ``(n, 3, H, W)`` normalised images.
        device: where the forward pass runs.

    Returns:
        ``(n, 1, h, w)`` float32 maps on the CPU, at the feature map's size.
    """
    return _forward(model, images, device).f.float().mean(1, keepdim=True).cpu()


def _forward(model: nn.Module, images: Tensor, device: str | torch.device) -> OAMNOutput:
    """The model's output for ``images``, in eval and inference mode
    (:func:`~examples.oamn.extraction.evaluation_mode`)."""
    with evaluation_mode(model):
        return model(images.to(device))


def save_ranked_lists(
    query_images: Tensor,
    gallery_images: Tensor,
    kinds: Sequence[Sequence[str]],
    path: str | Path,
    *,
    query_titles: Sequence[str] | None = None,
    gallery_titles: Sequence[Sequence[str]] | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Path:
    r"""Save a PNG of ranked lists: one row per query, then its ranked gallery images.

    Args:
        query_images: ``(n, 3, H, W)`` normalised query images.
        gallery_images: ``(n, k, 3, H, W)`` normalised gallery images, nearest first.
        kinds: ``n`` lists of ``k`` kinds, ``"match"``, ``"wrong"`` or ``"junk"``
            (:func:`match_kinds`), giving each frame's colour (:data:`MATCH_COLOURS`).
        path: the PNG file to write (parent folders are created).
        query_titles: ``n`` captions of the queries (default: none).
        gallery_titles: ``n`` lists of ``k`` captions (default: the rank).
        mean: normalisation means, see :func:`denormalize`.
        std: normalisation standard deviations.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: shapes or lengths that do not agree, or an unknown kind.
    """
    n, k = gallery_images.shape[:2]
    if query_images.shape[0] != n or len(kinds) != n or any(len(row) != k for row in kinds):
        raise ValueError(
            f"query_images, gallery_images and kinds must describe the same {n} queries x {k} "
            f"items, got {query_images.shape[0]} queries and kinds of lengths "
            f"{[len(row) for row in kinds]}"
        )
    unknown = {kind for row in kinds for kind in row} - MATCH_COLOURS.keys()
    if unknown:
        raise ValueError(f"unknown kinds {sorted(unknown)}; use {tuple(MATCH_COLOURS)}")
    figure, axes = _grid(n, k + 1)
    queries, gallery = denormalize(query_images, mean, std), denormalize(gallery_images, mean, std)
    for row in range(n):
        draw_image(axes[row][0], queries[row], "black", query_titles[row] if query_titles else "")
        for col in range(k):
            kind = kinds[row][col]
            title = gallery_titles[row][col] if gallery_titles else f"{col + 1}"
            draw_image(
                axes[row][col + 1],
                gallery[row, col],
                MATCH_COLOURS[kind],
                f"{title}\njunk" if kind == "junk" else title,
                dashed=kind == "junk",
            )
    return _save(figure, path)


def save_attention_maps(
    images: Tensor,
    masks: Tensor,
    path: str | Path,
    *,
    titles: Sequence[str] | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Path:
    r"""Save a PNG of attention heat maps: each image above its mask laid over it.

    Args:
        images: ``(n, 3, H, W)`` normalised images.
        masks: ``(n, 1, h, w)`` masks in ``[0, 1]`` (any ``h, w``: upsampled bilinearly).
        path: the PNG file to write.
        titles: ``n`` captions (default: none); the mask's range is added below each.
        mean: normalisation means, see :func:`denormalize`.
        std: normalisation standard deviations.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``masks`` not ``(n, 1, h, w)`` for the ``n`` images.
    """
    n, _, height, width = images.shape
    if masks.ndim != 4 or masks.shape[:2] != (n, 1):
        raise ValueError(
            f"masks must have shape ({n}, 1, h, w), one per image, got {tuple(masks.shape)}"
        )
    pictures = denormalize(images, mean, std)
    figure, axes = _grid(2, n)
    for col in range(n):
        low, high = float(masks[col].min()), float(masks[col].max())
        title = titles[col] if titles else ""
        draw_image(axes[0][col], pictures[col], "black", title)
        draw_image(axes[1][col], pictures[col], "black", f"m in [{low:.2f}, {high:.2f}]")
        _draw_heat(axes[1][col], masks[col], height, width)
    return _save(figure, path)


def save_figures(
    model: nn.Module,
    features: EvaluationFeatures,
    query_items: Sequence[ReIDItem],
    gallery_items: Sequence[ReIDItem],
    folder: str | Path,
    *,
    height: int,
    width: int,
    device: str | torch.device,
    num_queries: int = 6,
    top_k: int = 8,
    thresholds: tuple[float, float] = (0.5, 0.75),
    boundary: str = "paper",
) -> list[Path]:
    r"""Ranked lists for every evaluation row and attention maps, for a few queries.

    The queries are ``num_queries`` evenly spaced ones (the first and the last included), the
    same in every figure. Writes ``ranked_plain.png`` (no unification),
    ``ranked_unified_<strategy>.png`` per bank of ``features`` (each query against the bank
    slice of its predicted type, named in its caption) and ``attention.png``.

    Args:
        model: the evaluated model (for the attention masks), on ``device``.
        features: the features the metrics came from (:func:`~examples.oamn.extraction.
            extract_for_evaluation`), in the order of the items.
        query_items: the query items, to load the images shown.
        gallery_items: the gallery items.
        folder: the output folder (created).
        height: the model's input height.
        width: the model's input width.
        device: where the attention forward pass runs.
        num_queries: queries shown, ``>= 1``.
        top_k: gallery items per ranked list, ``>= 1`` (at most the gallery size).
        thresholds: grader thresholds for the query types, as in the metrics.
        boundary: threshold boundary convention, as in the metrics.

    Returns:
        The paths written.
    """
    for name, value in (("num_queries", num_queries), ("top_k", top_k)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    query, gallery = features.query, features.gallery
    if len(query) != len(query_items) or len(gallery) != len(gallery_items):
        raise ValueError(
            f"features hold {len(query)} queries and {len(gallery)} gallery items but the item "
            f"lists have {len(query_items)} and {len(gallery_items)}: pass the evaluated items"
        )
    chosen = _evenly_spaced(num_queries, len(query))
    query_set = _test_set(query_items, height, width, "query")
    query_images = torch.stack([query_set[i][0] for i in chosen.tolist()])
    gallery_set = _test_set(gallery_items, height, width, "gallery")
    types = predict_occlusion_type(query.grader_scores[chosen], thresholds, boundary)
    type_names = occlusion_type_names()
    captions = [
        f"query {pid}\n{type_names[t].replace('_', ' ')}"
        for pid, t in zip(query.pids[chosen].tolist(), types.tolist(), strict=True)
    ]
    galleries = {"plain": gallery.features}
    galleries.update({f"unified_{s}": bank[types] for s, bank in features.banks.items()})
    folder = Path(folder)
    written = []
    for key, gallery_features in galleries.items():
        ranked = ranked_indices(query.features[chosen], gallery_features, min(top_k, len(gallery)))
        kinds = [
            match_kinds(
                int(query.pids[q]), int(query.camids[q]), gallery.pids[row], gallery.camids[row]
            )
            for q, row in zip(chosen.tolist(), ranked, strict=True)
        ]
        images = torch.stack(
            [torch.stack([gallery_set[i][0] for i in row.tolist()]) for row in ranked]
        )
        titles = [
            [f"{rank + 1}: {int(gallery.pids[i])}" for rank, i in enumerate(row.tolist())]
            for row in ranked
        ]
        written.append(
            save_ranked_lists(
                query_images,
                images,
                kinds,
                folder / f"ranked_{key}.png",
                query_titles=captions,
                gallery_titles=titles,
            )
        )
    masks = attention_masks(model, query_images, device)
    written.append(
        save_attention_maps(query_images, masks, folder / "attention.png", titles=captions)
    )
    return written


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
    names = occlusion_type_names()[1:]
    figure = _figure(4.2 + 3.4 * len(present), 3.6)
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
    all_names = occlusion_type_names()
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
    return _save(figure, path)


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
    chosen = _evenly_spaced(num_queries, len(oamn.query))
    count = len(chosen)
    query_set = _test_set(dataset.query, height, width, "query")
    images = torch.stack([query_set[i][0] for i in chosen.tolist()])
    gallery_set = _test_set(dataset.gallery, height, width, "gallery")
    maps = {
        "OAMN m": attention_masks(models["oamn"], images, device),
        "baseline f": activation_maps(models["baseline"], images, device),
    }
    types = predict_occlusion_type(oamn.query.grader_scores[chosen])
    type_names = occlusion_type_names()
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
    figure = _figure(0.85 * columns + 0.4, 1.9 * count + 3.2)
    grid = figure.add_gridspec(count + 2, columns, height_ratios=[1.9] * count + [0.25, 2.6])
    pictures = denormalize(images)
    for row, query in enumerate(chosen.tolist()):
        pid, camid = int(oamn.query.pids[query]), int(oamn.query.camids[query])
        predicted = type_names[int(types[row])].replace("_", " ")
        caption = f"query {pid}\nOAMN: {predicted}"
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
            _draw_heat(axes, _min_max(heat[row]), height, width)
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
    bars = figure.add_subplot(grid[count + 1, :])
    labels = [
        f"{r['model']}\n{r['queries']}\n{r['setting'].replace('unified, ', 'unified ')}"
        for r in rows
    ]
    positions = torch.arange(len(rows)).float()
    for offset, metric, colour in ((-0.2, "R1", "#4575b4"), (0.2, "mAP", "#fdae61")):
        values = [100 * r[metric] for r in rows]
        drawn = bars.bar(
            (positions + offset).tolist(), values, width=0.4, color=colour, label=metric
        )
        bars.bar_label(drawn, fmt="%.0f", fontsize=6)
    bars.set_xticks(positions.tolist(), labels, fontsize=6)
    bars.set_ylabel("%")
    bars.set_ylim(0, 105)
    bars.legend(fontsize=7, loc="upper left")
    figure.subplots_adjust(left=0.05, right=0.99, bottom=0.08, top=0.96, wspace=0.08, hspace=0.35)
    return _save(figure, path)


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.0f} %"


def _grid(rows: int, cols: int) -> tuple[Figure, list[list[Axes]]]:
    """A figure of ``rows x cols`` image cells on the Agg canvas (matplotlib imported here)."""
    figure = _figure(cols * _CELL_INCHES[0], rows * _CELL_INCHES[1])
    axes = figure.subplots(rows, cols, squeeze=False)
    height = rows * _CELL_INCHES[1]
    # Room for the two-line captions above the first row, whatever the number of rows.
    top = 1 - _CAPTION_INCHES / height
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=top, wspace=0.08, hspace=0.3)
    return figure, [list(row) for row in axes]


def draw_image(axes: Axes, image: Tensor, colour: str, title: str, dashed: bool = False) -> None:
    """Draw a ``(3, H, W)`` image in ``[0, 1]`` framed in ``colour``, ticks hidden."""
    axes.imshow(image.permute(1, 2, 0).float().numpy(), interpolation="bilinear")
    axes.set_xticks([])
    axes.set_yticks([])
    for spine in axes.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(3)
        spine.set_linestyle("--" if dashed else "-")
    axes.set_title(title, fontsize=7, color=colour if colour != "black" else "#333333")


def _save(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` as a PNG atomically: drawn in memory, then written whole or not at all
    (:func:`~examples.oamn.run_files.write_atomic`; an error names ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    png = io.BytesIO()
    figure.savefig(png, format="png", facecolor="white")
    write_atomic(path, png.getvalue())
    return path


def _figure(width_inches: float, height_inches: float) -> Figure:
    """An empty figure of that size on the Agg canvas (matplotlib imported here)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_inches, height_inches), dpi=_DPI)
    FigureCanvasAgg(figure)
    return figure


def _test_set(items: Sequence[ReIDItem], height: int, width: int, split: str) -> Dataset:
    """The images of ``items`` exactly as the model saw them (the test loader's transform):
    item ``i`` starts with image ``i``, normalised, ``(3, height, width)``."""
    return ImageDataset(items, test_transform(height, width), split=split)


def _evenly_spaced(count: int, total: int) -> Tensor:
    """``min(count, total)`` int64 indices evenly spaced over ``range(total)``, the first and the
    last included (``total >= 1``)."""
    return torch.linspace(0, total - 1, min(count, total)).round().long()


def _draw_heat(axes: Axes, heat: Tensor, height: int, width: int) -> None:
    """Lay a ``(1, h, w)`` map in ``[0, 1]`` over the image of ``axes``, bilinearly upsampled to
    ``height x width``, as a heat map on a fixed 0-1 scale."""
    upsampled = F.interpolate(heat[None].float(), size=(height, width), mode="bilinear")
    axes.imshow(upsampled[0, 0].numpy(), cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)


def _min_max(heat: Tensor) -> Tensor:
    """``(1, h, w)`` map scaled to ``[0, 1]`` (a constant map becomes 0)."""
    return (heat - heat.min()) / (heat.max() - heat.min()).clamp_min(1e-12)
