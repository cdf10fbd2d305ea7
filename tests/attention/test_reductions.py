"""The automatic reductions: hand-computed values, the paper's wherever they work, the largest
that work otherwise, explicit values kept, and the table of docs/PACKAGES.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from torch import nn

from oamn.attention import RGA, RGASpatial

PACKAGES = Path(__file__).resolve().parents[2] / "docs" / "PACKAGES.md"

#: The feature maps of the docs' table: 128x64, 256x128 (the paper) and 384x192 images at
#: stride 16, with ResNet-50's 1024 layer3 channels.
TABLE_SIZES = [(8, 4), (16, 8), (24, 12)]
TABLE_CHANNELS = 1024
TIMES = "\N{MULTIPLICATION SIGN}"  # the docs write sizes as 8 TIMES 4


def reductions(layer: nn.Module) -> tuple[int, int, int]:
    return layer.channel_reduction, layer.spatial_reduction, layer.down_ratio


def builds(layer_class: type, *args: object, **kwargs: object) -> bool:
    try:
        layer_class(*args, **kwargs)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(
    ("layer_class", "channels", "size", "given", "expected"),
    [
        # (channel_reduction, spatial_reduction, down_ratio) expected, worked out by hand:
        (RGASpatial, 1024, (16, 8), {}, (8, 8, 8)),  # 128 // 8 = 16 >= 7 relations: the paper's
        (RGASpatial, 1024, (8, 4), {}, (8, 4, 8)),  # 32 // 7 = 4: 8 relations, (1 + 8) // 8 = 1
        (RGASpatial, 1024, (2, 2), {}, (8, 1, 5)),  # 4 < 7 relations: s = 1, d = 1 + 4
        (RGASpatial, 4, (16, 8), {}, (4, 8, 8)),  # embeddings only: channel_reduction min(8, 4)
        (RGASpatial, 64, (8, 4), {"down_ratio": 4}, (8, 8, 4)),  # needs 3: 32 // 3 = 10 -> 8
        (RGASpatial, 64, (8, 4), {"spatial_reduction": 8}, (8, 8, 5)),  # d = 1 + 32 // 8
        (RGASpatial, 64, (8, 4), {"spatial_reduction": 2}, (8, 2, 8)),  # 16 relations: d = 8
        (RGA, 16, (8, 4), {}, (2, 4, 8)),  # the channel scorer: 16 // 7 = 2
        (RGA, 16, (8, 4), {"channel_reduction": 8}, (8, 4, 3)),  # d = 1 + 16 // 8
        (RGA, 64, (2, 2), {"use_spatial": False}, (8, 4, 8)),  # H*W embeds only: min(8, 4)
    ],
)
def test_automatic_values_by_hand(
    layer_class: type,
    channels: int,
    size: tuple[int, int],
    given: dict,
    expected: tuple[int, int, int],
) -> None:
    layer = layer_class(channels, size, **given)
    assert reductions(layer) == expected
    channel_reduction, spatial_reduction, down_ratio = expected
    assert (
        f"channel_reduction={channel_reduction}, spatial_reduction={spatial_reduction}, "
        f"down_ratio={down_ratio}" in repr(layer)
    )
    if getattr(layer, "use_spatial", True):
        relations = size[0] * size[1] // spatial_reduction
        assert layer.gg_spatial[0].out_channels == relations
        assert layer.W_spatial[0].out_channels == (1 + relations) // down_ratio


@pytest.mark.parametrize("channels", [7, 8, 56, 64])
def test_automatic_values_are_the_papers_wherever_those_work(channels: int) -> None:
    """Where ``(8, 8, 8)`` builds, ``None`` picks it (the same state-dict shapes); elsewhere not."""
    for positions in range(1, 80):
        size = (positions, 1)
        papers = builds(RGA, channels, size, channel_reduction=8, spatial_reduction=8, down_ratio=8)
        automatic = RGA(channels, size)
        assert (reductions(automatic) == (8, 8, 8)) == papers, (channels, size)
        if papers:
            explicit = RGA(channels, size, channel_reduction=8, spatial_reduction=8, down_ratio=8)
            assert {k: v.shape for k, v in automatic.state_dict().items()} == {
                k: v.shape for k, v in explicit.state_dict().items()
            }


def test_automatic_values_are_the_largest_that_work() -> None:
    for positions in range(1, 80):
        size = (positions, 1)
        _, spatial_reduction, down_ratio = reductions(RGASpatial(16, size))
        if spatial_reduction < 8:  # one more leaves too few relations for this down_ratio
            assert not builds(
                RGASpatial, 16, size, spatial_reduction=spatial_reduction + 1, down_ratio=down_ratio
            )
        if down_ratio < 8:  # only when even spatial_reduction = 1 is not enough for 8
            assert spatial_reduction == 1
            assert not builds(RGASpatial, 16, size, spatial_reduction=1, down_ratio=down_ratio + 1)
        for fixed in range(1, 9):  # a given down_ratio: the largest spatial_reduction for it
            if builds(RGASpatial, 16, size, spatial_reduction=1, down_ratio=fixed):
                chosen = RGASpatial(16, size, down_ratio=fixed).spatial_reduction
                assert chosen == 8 or not builds(
                    RGASpatial, 16, size, spatial_reduction=chosen + 1, down_ratio=fixed
                )


def test_explicit_values_are_kept() -> None:
    layer = RGA(64, (16, 8), channel_reduction=4, spatial_reduction=2, down_ratio=3)
    assert reductions(layer) == (4, 2, 3)
    assert layer.gg_spatial[0].out_channels == 64  # 128 // 2
    assert layer.W_channel[0].out_channels == 5  # (1 + 64 // 4) // 3


def table_row(size: tuple[int, int]) -> str:
    layer = RGASpatial(TABLE_CHANNELS, size)
    relations = layer.gg_spatial[0].out_channels
    hidden = layer.W_spatial[0].out_channels
    parameters = sum(p.numel() for p in layer.parameters())
    return (
        f"| {size[0]}{TIMES}{size[1]} | {size[0] * size[1]} | {layer.spatial_reduction} | "
        f"{layer.down_ratio} | {relations} | {hidden} | {parameters:,} |"
    )


def test_docs_table_of_automatic_values_is_the_layers() -> None:
    row_start = re.compile(rf"\| \d+{TIMES}\d+ \|")
    table = [line for line in PACKAGES.read_text().splitlines() if row_start.match(line)]
    assert table == [table_row(size) for size in TABLE_SIZES]
