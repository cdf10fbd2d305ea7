"""Identities as combinations of shared body-region variants.

A person is five regions, each with its own attributes (indices into the palettes below):

* ``head``: skin tone, hair colour, hair style (short, long, hat, shaved);
* ``upper``: shirt colour, pattern (plain, stripes, checks, logo), pattern colour, sleeves;
* ``lower``: colour, garment (trousers, skirt, shorts);
* ``shoes``: colour;
* ``bag``: side (none, left, right), colour.

Each region of a split draws a small catalogue of distinct variants and deals them out evenly,
so every variant is worn by several identities (at least ``min_share`` when the split has
``2 * min_share`` identities or more): no region alone identifies a person, only the
combination does, and the combinations of all identities are distinct. That is what makes an
occluder that hides a region hurt a holistic descriptor while region-aware matching still works.
"""

from __future__ import annotations

import itertools

import numpy as np

#: Colours of clothes, hair, shoes and bags, RGB in ``[0, 1]``.
PALETTE = (
    np.array(
        [
            [200, 30, 35],  # red
            [230, 120, 30],  # orange
            [235, 205, 50],  # yellow
            [60, 150, 60],  # green
            [30, 90, 45],  # dark green
            [40, 70, 170],  # blue
            [20, 30, 70],  # navy
            [110, 190, 220],  # light blue
            [130, 60, 150],  # purple
            [225, 130, 170],  # pink
            [240, 240, 235],  # white
            [150, 150, 150],  # grey
            [30, 30, 32],  # black
            [110, 70, 40],  # brown
            [205, 180, 135],  # beige
        ],
        dtype=np.float32,
    )
    / 255
)
#: Hair colours, RGB in ``[0, 1]``.
HAIR = (
    np.array(
        [
            [20, 15, 12],
            [70, 45, 25],
            [140, 95, 50],
            [215, 180, 110],
            [150, 150, 150],
            [160, 50, 25],
        ],
        dtype=np.float32,
    )
    / 255
)
#: Skin tones, RGB in ``[0, 1]``.
SKIN = (
    np.array([[245, 210, 180], [225, 180, 140], [175, 125, 85], [110, 75, 50]], dtype=np.float32)
    / 255
)

HAIR_STYLES = ("short", "long", "hat", "shaved")
PATTERNS = ("plain", "stripes", "checks", "logo")
SLEEVES = ("long", "short")
GARMENTS = ("trousers", "skirt", "shorts")

#: Attribute names of each region, in the order of :func:`region_space`'s columns.
REGIONS: dict[str, tuple[str, ...]] = {
    "head": ("skin", "hair_colour", "hair_style"),
    "upper": ("upper_colour", "pattern", "pattern_colour", "sleeves"),
    "lower": ("lower_colour", "garment"),
    "shoes": ("shoe_colour",),
    "bag": ("bag_side", "bag_colour"),
}
#: Every attribute, in the column order of an identity table.
ATTRIBUTES: tuple[str, ...] = tuple(itertools.chain.from_iterable(REGIONS.values()))


def region_space(region: str) -> np.ndarray:
    """All distinct variants of a region, ``(V, len(REGIONS[region]))`` int64 attribute indices.

    Variants that would look identical are listed once (a plain shirt has no pattern colour, a
    missing bag no colour), so that drawing distinct variants gives visibly distinct ones.
    """
    num_colours = len(PALETTE)
    if region == "head":
        rows = itertools.product(range(len(SKIN)), range(len(HAIR)), range(len(HAIR_STYLES)))
    elif region == "upper":
        rows = (
            (colour, pattern, 0 if pattern == 0 else second, sleeves)
            for colour, pattern, second, sleeves in itertools.product(
                range(num_colours), range(len(PATTERNS)), range(num_colours), range(len(SLEEVES))
            )
            if second != colour
        )
        rows = dict.fromkeys(rows)  # the plain shirts repeat: keep the first of each
    elif region == "lower":
        rows = itertools.product(range(num_colours), range(len(GARMENTS)))
    elif region == "shoes":
        rows = ((colour,) for colour in range(num_colours))
    elif region == "bag":
        # Bag sides: 0 none, 1 left, 2 right (a missing bag has no colour).
        rows = [(0, 0)] + [(side, colour) for side in (1, 2) for colour in range(num_colours)]
    else:
        raise ValueError(f"region must be one of {tuple(REGIONS)}, got {region!r}")
    return np.array(list(rows), dtype=np.int64)


def deal_variants(rng: np.random.Generator, num_ids: int, min_share: int) -> np.ndarray:
    """Attributes of ``num_ids`` identities whose region variants are each worn by several ids.

    Args:
        rng: the random generator (consumed deterministically).
        num_ids: number of identities ``>= 1``.
        min_share: wanted number of identities per region variant ``>= 1``.

    Returns:
        ``(num_ids, len(ATTRIBUTES))`` int64 attribute indices, columns in :data:`ATTRIBUTES`
        order. Each region uses ``min(space, max(2, num_ids // min_share))`` variants dealt out
        evenly, so each variant is worn by ``floor(num_ids / variants)`` identities or one more.
    """
    columns = []
    for region in REGIONS:
        space = region_space(region)
        num_variants = min(len(space), max(2, num_ids // min_share))
        catalogue = space[rng.choice(len(space), size=num_variants, replace=False)]
        columns.append(catalogue[rng.permutation(np.arange(num_ids) % num_variants)])
    return np.concatenate(columns, axis=1)


def draw_identities(
    rng: np.random.Generator, split_sizes: tuple[int, ...], min_share: int
) -> np.ndarray:
    """Distinct identities for consecutive splits, each split dealt by :func:`deal_variants`.

    Args:
        rng: the random generator (consumed deterministically).
        split_sizes: number of identities of each split (e.g. train, test), each ``>= 1``.
        min_share: wanted number of identities of a split wearing each region variant.

    Returns:
        ``(sum(split_sizes), len(ATTRIBUTES))`` int64 attributes, splits in order; no two rows
        are equal. A split whose deal repeats a row (of its own or of an earlier split) is dealt
        again.

    Example:
        >>> table = draw_identities(np.random.default_rng(0), (12, 6), min_share=3)
        >>> table.shape, len(np.unique(table, axis=0))
        ((18, 12), 18)
    """
    splits: list[np.ndarray] = []
    seen: set[bytes] = set()
    for size in split_sizes:
        # A repeat is rare (the variant products are large) but possible with tiny splits.
        for _ in range(1000):
            table = deal_variants(rng, size, min_share)
            keys = {row.tobytes() for row in table}
            if len(keys) == size and seen.isdisjoint(keys):
                break
        else:
            raise ValueError(
                f"could not draw {size} distinct identities with min_share={min_share}; "
                "lower min_share"
            )
        seen |= keys
        splits.append(table)
    return np.concatenate(splits, axis=0)


def random_identities(rng: np.random.Generator, num: int) -> np.ndarray:
    """``(num, len(ATTRIBUTES))`` identities drawn uniformly from each region's whole space.

    For the people who are not identities of the benchmark: distractors and occluding passers-by.
    """
    columns = []
    for region in REGIONS:
        space = region_space(region)
        columns.append(space[rng.integers(len(space), size=num)])
    return np.concatenate(columns, axis=1)
