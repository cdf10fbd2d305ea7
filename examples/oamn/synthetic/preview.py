"""A contact sheet of a generated benchmark, for documentation and a quick visual check."""

from __future__ import annotations

import json
import os
from pathlib import Path

from PIL import Image

from .dataset import FOLDERS, MANIFEST


def contact_sheet(
    dataset: str | os.PathLike[str],
    *,
    num_queries: int = 6,
    gallery_per_query: int = 3,
    zoom: int = 2,
) -> Image.Image:
    r"""One row per query: its holistic shot, the occluded query, then gallery shots of the same
    identity from other cameras.

    Args:
        dataset: a folder returned by
            :func:`~examples.oamn.synthetic.generate_synthetic_reid`.
        num_queries: rows, the first queries of the manifest, ``>= 1``.
        gallery_per_query: gallery shots per row, ``>= 0``.
        zoom: integer magnification (nearest neighbour, so pixels stay visible), ``>= 1``.

    Returns:
        An RGB image, ``(2 + gallery_per_query)`` tiles wide, a 4-pixel white gap between tiles.

    Example:
        >>> import tempfile
        >>> from examples.oamn.synthetic import generate_synthetic_reid
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = generate_synthetic_reid(tmp, num_train_ids=2, num_test_ids=3, cameras=2,
        ...                                    images_per_id_per_camera=2)
        ...     contact_sheet(path, num_queries=2, gallery_per_query=1, zoom=1).size
        (200, 260)
    """
    for name, value, low in (
        ("num_queries", num_queries, 1),
        ("gallery_per_query", gallery_per_query, 0),
        ("zoom", zoom, 1),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    dataset = Path(dataset)
    manifest_path = dataset / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"no {MANIFEST} in {dataset}: pass a folder made by generate_synthetic_reid"
        )
    manifest = json.loads(manifest_path.read_text())
    height, width = manifest["parameters"]["height"], manifest["parameters"]["width"]
    gallery = sorted((dataset / FOLDERS["gallery"]).glob("*.jpg"))
    rows = []
    for query in manifest["queries"][:num_queries]:
        prefix, camera = f"{query['pid']:04d}_", f"_c{query['camera']}s"
        matches = [path for path in gallery if path.name.startswith(prefix)]
        matches = [path for path in matches if camera not in path.name][:gallery_per_query]
        rows.append(
            [
                dataset / FOLDERS["query_holistic"] / query["file"],
                dataset / FOLDERS["query"] / query["file"],
                *matches,
            ]
        )
    gap = 4
    tile_w, tile_h = width * zoom, height * zoom
    columns = 2 + gallery_per_query
    sheet = Image.new(
        "RGB",
        (columns * (tile_w + gap) - gap, len(rows) * (tile_h + gap) - gap),
        "white",
    )
    for row_index, row in enumerate(rows):
        for column_index, path in enumerate(row):
            with Image.open(path) as tile:
                tile = tile.convert("RGB").resize((tile_w, tile_h), Image.Resampling.NEAREST)
            sheet.paste(tile, (column_index * (tile_w + gap), row_index * (tile_h + gap)))
    return sheet
