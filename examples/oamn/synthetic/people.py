"""Vectorised drawing of pedestrians on a batch of canvases.

Each person is drawn in body coordinates ``u = (x - centre_x) / person_height`` (right
positive) and ``v = (y - top) / person_height`` (``0`` at the top of the head, ``1`` at the
soles), so one set of boolean masks over the ``(N, H, W)`` pixel grid draws the whole batch at
once, whatever each person's position, size and pose.
"""

from __future__ import annotations

import numpy as np

from .identities import ATTRIBUTES, HAIR, PALETTE, SKIN

_COLUMN = {name: index for index, name in enumerate(ATTRIBUTES)}


def _segment_distance2(
    u: np.ndarray, v: np.ndarray, start: tuple[np.ndarray, ...], end: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Squared distance of each pixel to the segment ``start -> end``, and its position ``t``
    in ``[0, 1]`` along the segment."""
    du, dv = end[0] - start[0], end[1] - start[1]
    pu, pv = u - start[0], v - start[1]
    t = np.clip((pu * du + pv * dv) / (du * du + dv * dv), 0.0, 1.0)
    pu = pu - t * du
    pv = pv - t * dv
    return pu * pu + pv * pv, t


# Colour slots of the part map: 0 is the background, then one slot per colour of a person.
_BACKGROUND, _SKIN, _HAIR, _UPPER, _SECOND, _LOWER, _SHOES, _BAG = range(8)


def draw_people(
    canvas: np.ndarray,
    attributes: np.ndarray,
    centre_x: np.ndarray,
    top: np.ndarray,
    person_height: np.ndarray,
    stance: np.ndarray,
    arm_swing: np.ndarray,
    breadth: np.ndarray | None = None,
    shade: np.ndarray | None = None,
) -> None:
    r"""Draw one person on each canvas, in place.

    Args:
        canvas: ``(N, H, W, 3)`` float32 RGB in ``[0, 1]``, the backgrounds; painted in place.
        attributes: ``(N, len(ATTRIBUTES))`` int attribute indices (see
            :mod:`~examples.oamn.synthetic.identities`).
        centre_x: ``(N,)`` body axis, in pixels from the left edge.
        top: ``(N,)`` top of the head, in pixels from the top edge (may be negative).
        person_height: ``(N,)`` head-to-soles height in pixels, ``> 0``.
        stance: ``(N,)`` how far each ankle moves outwards, in person heights (``0`` feet
            together, ``0.06`` a wide step).
        arm_swing: ``(N,)`` how far each hand moves outwards, in person heights.
        breadth: ``(N,)`` horizontal stretch of the body (``1`` as designed; below ``1`` a
            person seen more from the side). ``None``: ``1``.
        shade: ``(N, 7, 3)`` multipliers of the colours of the skin, hair, shirt, pattern,
            lower garment, shoes and bag (fabric and light varying from shot to shot).
            ``None``: ``1``.
    """
    n, height, width, _ = canvas.shape
    rows = np.arange(height, dtype=np.float32)[None, :, None] + 0.5
    cols = np.arange(width, dtype=np.float32)[None, None, :] + 0.5
    scale = person_height.astype(np.float32)[:, None, None]
    stretch = 1 if breadth is None else breadth.astype(np.float32)[:, None, None]
    u = (cols - centre_x.astype(np.float32)[:, None, None]) / (scale * stretch)
    v = (rows - top.astype(np.float32)[:, None, None]) / scale
    au = np.abs(u)

    def per_image(values: np.ndarray) -> np.ndarray:
        return values.astype(np.float32)[:, None, None]

    def column(name: str) -> np.ndarray:
        return attributes[:, _COLUMN[name]]

    colours = np.stack(
        [
            SKIN[column("skin")],
            HAIR[column("hair_colour")],
            *(PALETTE[column(name)] for name in ("upper_colour", "pattern_colour")),
            *(PALETTE[column(name)] for name in ("lower_colour", "shoe_colour", "bag_colour")),
        ],
        axis=1,
    )
    if shade is not None:
        colours = np.clip(colours * shade, 0, 1).astype(np.float32)
    # Each part writes its colour slot into one byte per pixel; colours are looked up once.
    parts = np.zeros((n, height, width), dtype=np.uint8)

    def paint(mask: np.ndarray, slot: int) -> None:
        np.copyto(parts, slot, where=mask)

    hair_style = per_image(attributes[:, _COLUMN["hair_style"]])
    pattern = per_image(attributes[:, _COLUMN["pattern"]])
    short_sleeves = per_image(attributes[:, _COLUMN["sleeves"]]) == 1
    garment = per_image(attributes[:, _COLUMN["garment"]])
    bag_side = per_image(attributes[:, _COLUMN["bag_side"]])
    stance, swing = per_image(stance), per_image(arm_swing)

    # Long hair falls behind the head and shoulders, so it is drawn first.
    paint((hair_style == 1) & (au < 0.058) & (v > 0.01) & (v < 0.2), _HAIR)

    # Legs: one segment per side from the hip to the ankle; the garment decides their colour.
    # Trousers reach the ankles; below a skirt or shorts the legs are bare.
    bare_from = np.select([garment == 0, garment == 1], [1.0, 0.72], 0.66)
    for side in (-1.0, 1.0):
        hip = (np.float32(side * 0.042), np.float32(0.5))
        ankle = (side * (0.042 + stance), np.full_like(stance, 0.93))
        distance2, _ = _segment_distance2(u, v, hip, ankle)
        leg = distance2 < 0.034**2
        paint(leg & (v >= bare_from), _SKIN)
        paint(leg & (v < bare_from), _LOWER)
        foot = ((u - ankle[0] - side * 0.008) / 0.042) ** 2 + ((v - 0.955) / 0.028) ** 2 < 1
        paint(foot, _SHOES)
    hips = (au < 0.078) & (v >= 0.49) & (v < 0.58) & (garment != 1)
    skirt = (garment == 1) & (v >= 0.49) & (v < 0.72) & (au < 0.075 + 0.3 * (v - 0.49))
    paint(hips | skirt, _LOWER)

    # Torso, narrowing from the shoulders to the waist, with the shirt's pattern.
    torso = (v >= 0.15) & (v < 0.51) & (au < 0.106 - 0.07 * (v - 0.15))
    stripes = np.floor(v / 0.048) % 2 == 1
    checks = stripes ^ (np.floor((u + 0.5) / 0.048) % 2 == 1)
    logo = (u / 0.045) ** 2 + ((v - 0.28) / 0.045) ** 2 < 1
    patterned = np.select(
        [pattern == 1, pattern == 2, pattern == 3], [stripes, checks, logo], False
    )
    paint(torso & ~patterned, _UPPER)
    paint(torso & patterned, _SECOND)
    paint((au < 0.022) & (v >= 0.125) & (v < 0.16), _SKIN)  # neck

    # Arms from the shoulders to the hands; short sleeves end above the elbow.
    for side in (-1.0, 1.0):
        shoulder = (np.float32(side * 0.112), np.float32(0.175))
        hand = (side * (0.128 + swing), np.full_like(swing, 0.47))
        distance2, along = _segment_distance2(u, v, shoulder, hand)
        arm = distance2 < 0.026**2
        bare = short_sleeves & (along > 0.4)
        paint(arm & ~bare, _UPPER)
        paint(arm & bare, _SKIN)
        paint((u - hand[0]) ** 2 + (v - 0.485) ** 2 < 0.026**2, _SKIN)

    # A shoulder bag on one side, its strap across the chest from the other shoulder.
    side = np.where(bag_side == 1, np.float32(-1), np.float32(1))
    bag_u = side * u
    body = (bag_side != 0) & (bag_u > 0.105) & (bag_u < 0.19) & (v > 0.37) & (v < 0.55)
    strap_distance2, _ = _segment_distance2(
        bag_u, v, (np.float32(-0.09), np.float32(0.16)), (np.float32(0.15), np.float32(0.38))
    )
    strap = (bag_side != 0) & (strap_distance2 < 0.009**2)
    paint(body | strap, _BAG)

    # Head, then the hair style on top of it.
    head = (u / 0.048) ** 2 + ((v - 0.075) / 0.068) ** 2 < 1
    paint(head, _SKIN)
    crown = head & (v < 0.04)
    short = crown | (head & (au > 0.036) & (v < 0.085))
    hat = ((au < 0.052) & (v > -0.012) & (v < 0.04)) | ((au < 0.075) & (v >= 0.03) & (v < 0.048))
    shaved = head & (v < 0.018)
    hair_mask = np.select(
        [hair_style == 0, hair_style == 1, hair_style == 2], [short, short, hat], shaved
    )
    paint(hair_mask, _HAIR)

    person = parts != _BACKGROUND
    palette = np.concatenate([np.zeros((n, 1, 3), dtype=np.float32), colours], axis=1)
    drawn = palette[np.arange(n)[:, None, None], parts]
    np.copyto(canvas, drawn, where=person[..., None])
