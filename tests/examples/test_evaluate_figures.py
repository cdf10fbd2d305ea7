"""visualize: ranked lists and attention maps written as PNGs, and the helpers behind them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from examples.oamn.awareness import grader_statistics, mask_band_statistics
from examples.oamn.data import IMAGENET_MEAN, IMAGENET_STD, load_dataset
from examples.oamn.extraction import extract_for_evaluation
from examples.oamn.summary_figures import save_awareness_figure
from examples.oamn.visualize import (
    denormalize,
    match_kinds,
    ranked_indices,
    save_attention_maps,
    save_figures,
    save_ranked_lists,
)
from tests.examples.helpers_eval import (
    COLOUR_INPUT,
    HEIGHT,
    WIDTH,
    ColourModel,
    colour_settings,
    write_colour_market,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DPI = 100


def read_png(path: Path) -> tuple[int, int]:
    """``(width, height)`` of a PNG file, after checking that it is one and decodes."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        return image.size


def normalised(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (images - mean) / std


def test_denormalize_inverts_the_normalisation() -> None:
    pixels = torch.rand(2, 3, 8, 4)
    torch.testing.assert_close(denormalize(normalised(pixels)), pixels)
    assert float(denormalize(torch.full((3, 2, 2), 50.0)).max()) == 1.0


def test_match_kinds_follow_the_protocol() -> None:
    pids = torch.tensor([4, 4, 4, 9, -1, 0])
    cams = torch.tensor([0, 1, 2, 0, 1, 1])
    assert match_kinds(4, 0, pids, cams) == ["junk", "match", "match", "wrong", "junk", "wrong"]
    assert match_kinds(4, 0, pids, cams, junk_pids=())[4] == "wrong"


def test_ranked_indices_shared_and_per_query_galleries() -> None:
    gallery = torch.tensor([[3.0], [0.0], [1.0], [1.0]])
    queries = torch.tensor([[0.2], [1.1]])
    assert ranked_indices(queries, gallery, 4).tolist() == [[1, 2, 3, 0], [2, 3, 1, 0]]
    per_query = torch.stack([gallery, -gallery])  # query 1 sees the gallery negated
    assert ranked_indices(queries, per_query, 2).tolist() == [[1, 2], [1, 2]]


def test_ranked_list_png(tmp_path) -> None:
    queries, gallery = torch.randn(3, 3, 32, 16), torch.randn(3, 5, 3, 32, 16)
    kinds = [["match", "wrong", "junk", "wrong", "match"]] * 3
    path = save_ranked_lists(
        queries, gallery, kinds, tmp_path / "deep" / "ranked.png", query_titles=["a", "b", "c"]
    )
    assert path == tmp_path / "deep" / "ranked.png"
    width, height = read_png(path)
    assert width == pytest.approx(6 * 0.9 * DPI, abs=2)  # query + 5 items
    assert height == pytest.approx(3 * 1.9 * DPI, abs=2)


def test_frames_are_coloured_by_kind(tmp_path) -> None:
    grey = torch.zeros(1, 1, 3, 64, 32)  # normalised 0: a mid-grey image, no red or green
    path = save_ranked_lists(grey[0], grey, [["match"]], tmp_path / "m.png")
    pixels = torch.tensor(np.array(Image.open(path).convert("RGB")))
    green = ((pixels[..., 1] > 120) & (pixels[..., 0] < 60)).sum()
    red = ((pixels[..., 0] > 180) & (pixels[..., 1] < 80)).sum()
    assert green > 50
    assert red == 0


def test_attention_png(tmp_path) -> None:
    images, masks = torch.randn(4, 3, 32, 16), torch.rand(4, 1, 8, 4)
    width, height = read_png(save_attention_maps(images, masks, tmp_path / "a.png"))
    assert width == pytest.approx(4 * 0.9 * DPI, abs=2)
    assert height == pytest.approx(2 * 1.9 * DPI, abs=2)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda p: save_ranked_lists(
                torch.randn(2, 3, 8, 4), torch.randn(2, 2, 3, 8, 4), [["match", "wrong"]], p
            ),
            "same 2 queries x 2 items",
        ),
        (
            lambda p: save_ranked_lists(
                torch.randn(1, 3, 8, 4), torch.randn(1, 1, 3, 8, 4), [["right"]], p
            ),
            r"unknown kinds \['right'\]",
        ),
        (
            lambda p: save_attention_maps(torch.randn(2, 3, 8, 4), torch.rand(2, 8, 4), p),
            r"masks must have shape \(2, 1, h, w\)",
        ),
    ],
)
def test_bad_figure_input(tmp_path, call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call(tmp_path / "x.png")


def test_save_figures_for_each_row(tmp_path) -> None:
    dataset = load_dataset("market1501", write_colour_market(tmp_path / "colour"))
    model = ColourModel()
    features = extract_for_evaluation(
        model,
        dataset.query,
        dataset.gallery,
        **COLOUR_INPUT,
        settings=colour_settings(batch_size=8),
    )
    paths = save_figures(
        model,
        features,
        dataset.query,
        dataset.gallery,
        tmp_path / "figs",
        height=HEIGHT,
        width=WIDTH,
        device="cpu",
        num_queries=2,
        top_k=4,
    )
    assert [p.name for p in paths] == [
        "ranked_plain.png",
        "ranked_unified_mask_swap.png",
        "ranked_unified_feature.png",
        "ranked_unified_band.png",
        "attention.png",
    ]
    for path in paths[:4]:
        assert read_png(path) == pytest.approx((5 * 0.9 * DPI, 2 * 1.9 * DPI), abs=2)
    assert read_png(paths[4]) == pytest.approx((2 * 0.9 * DPI, 2 * 1.9 * DPI), abs=2)
    with pytest.raises(ValueError, match="pass the evaluated items"):
        save_figures(
            model,
            features,
            dataset.query[:2],
            dataset.gallery,
            tmp_path,
            height=HEIGHT,
            width=WIDTH,
            device="cpu",
        )


def awareness_part(band_value: float, predicted: list[int]) -> dict:
    """One source of an awareness report, built by hand: a none, a half-top and a quarter-left
    image whose masks are ``band_value`` in their band and 1 elsewhere (the other 6 types
    absent), and the grader's ``predicted`` types for them."""
    masks = torch.ones(3, 1, 8, 4)
    masks[1, :, :4] = band_value
    masks[2, :, :, :1] = band_value
    location, area = torch.tensor([0, 1, 3]), torch.tensor([0.0, 0.5, 0.25])
    return {
        "mask": mask_band_statistics(masks, location, area),
        "grader": grader_statistics(torch.tensor(predicted), torch.tensor([0, 1, 7])),
    }


def test_awareness_figure_of_the_augmented_bands(tmp_path) -> None:
    report = {"augmented": {"images": 1, "seed": 0, **awareness_part(0.25, [0, 1, 3])}}
    assert report["augmented"]["mask"]["types"]["half_top"]["band_to_visible"] == 0.25
    path = save_awareness_figure(report, tmp_path / "sub" / "awareness.png")
    assert path == tmp_path / "sub" / "awareness.png"
    # One bar chart and one confusion matrix: (4.2 + 3.4) x 3.6 inches.
    assert read_png(path) == pytest.approx((7.6 * DPI, 3.6 * DPI), abs=2)


def test_awareness_figure_with_the_real_occluders(tmp_path) -> None:
    # A grader without occluded images has no location accuracy ("-" in the title).
    no_occluded = {
        "mask": awareness_part(1.0, [0, 0, 0])["mask"],
        "grader": grader_statistics(torch.tensor([0, 2]), torch.tensor([0, 0])),
    }
    assert no_occluded["grader"]["location_accuracy"] is None
    report = {
        "augmented": {"images": 1, "seed": 0, **awareness_part(0.5, [1, 5, 7])},
        "synthetic_queries": no_occluded,
    }
    path = save_awareness_figure(report, tmp_path / "awareness.png")
    # A second confusion matrix: 3.4 inches wider.
    assert read_png(path) == pytest.approx(((4.2 + 2 * 3.4) * DPI, 3.6 * DPI), abs=2)
