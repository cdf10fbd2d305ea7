"""Occluders: textured bands over the top, bottom, left or right of an image.

Each occluder fills a band that spans the whole other side, like the test-time occlusion of
``oamn.occlusion_aug`` (location codes ``1`` top, ``2`` bottom, ``3`` left, ``4`` right). The band
of a side ``L`` pixels long is ``thickness`` whole lines. The textures imitate what hides
pedestrians in surveillance footage: a passer-by close to the camera, a pole or beam, the side
of a vehicle, foliage, a flat wall.
"""

from __future__ import annotations

import numpy as np

from .identities import PALETTE, random_identities
from .people import draw_people
from .scenes import value_noise

#: Occluder kinds, indexed by their code in the manifest.
OCCLUDER_KINDS = ("person", "pole", "vehicle", "foliage", "wall")


def band_coordinates(
    location: np.ndarray, thickness: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Where each pixel lies relative to its image's band.

    Args:
        location: ``(N,)`` int codes ``1..4`` (top, bottom, left, right).
        thickness: ``(N,)`` band thickness in lines, ``>= 1``.
        height: image height ``H``.
        width: image width ``W``.

    Returns:
        ``across``: ``(N, H, W)`` float32, ``(k + 0.5) / thickness`` for the ``k``-th line from
        the image edge, so the band is ``across < 1``; ``along``: ``(N, H, W)`` float32 pixel
        position along the band (the column of a top/bottom band, the row of a side band).
    """
    rows = np.arange(height, dtype=np.float32)[None, :, None] + 0.5
    cols = np.arange(width, dtype=np.float32)[None, None, :] + 0.5
    loc = location[:, None, None]
    distance = np.select(
        [loc == 1, loc == 2, loc == 3], [rows, height - rows, cols], width - cols
    ).astype(np.float32)
    along = np.where(loc <= 2, cols, rows).astype(np.float32)
    return distance / thickness.astype(np.float32)[:, None, None], along


def draw_occluders(
    rng: np.random.Generator,
    kind: np.ndarray,
    location: np.ndarray,
    thickness: np.ndarray,
    height: int,
    width: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Occluder textures and their band masks.

    Args:
        rng: the random generator (consumed deterministically).
        kind: ``(N,)`` int indices into :data:`OCCLUDER_KINDS`.
        location: ``(N,)`` int codes ``1..4`` into ``oamn.occlusion_aug.LOCATIONS``.
        thickness: ``(N,)`` band thickness in lines, ``>= 1``.
        height: image height ``H``.
        width: image width ``W``.

    Returns:
        ``(N, H, W, 3)`` float32 RGB textures in ``[0, 1]`` and the ``(N, H, W)`` bool band
        masks (``True`` where the occluder hides the scene).
    """
    n = len(kind)
    across, along = band_coordinates(location, thickness, height, width)
    textures = np.zeros((n, height, width, 3), dtype=np.float32)
    for index, name in enumerate(OCCLUDER_KINDS):
        chosen = np.flatnonzero(kind == index)
        if len(chosen) == 0:
            continue
        draw = _TEXTURES[name]
        textures[chosen] = draw(
            rng, across[chosen], along[chosen], location[chosen], thickness[chosen]
        )
    return textures, across < 1


def _person(rng, across, along, location, thickness) -> np.ndarray:
    """A passer-by right in front of the camera: a magnified torso centred on the band."""
    n, height, width = across.shape
    canvas = np.empty((n, height, width, 3), dtype=np.float32)
    canvas[:] = rng.uniform(0.1, 0.35, (n, 1, 1, 1)).astype(np.float32)
    half = thickness / 2
    centre_y = np.select([location == 1, location == 2], [half, height - half], height / 2)
    centre_x = np.select([location == 3, location == 4], [half, width - half], width / 2)
    person_height = width * rng.uniform(5.0, 6.0, n)
    draw_people(
        canvas,
        random_identities(rng, n),
        centre_x=centre_x + rng.uniform(-0.1, 0.1, n) * width,
        top=centre_y - rng.uniform(0.28, 0.38, n) * person_height,
        person_height=person_height,
        stance=rng.uniform(0.0, 0.05, n),
        arm_swing=rng.uniform(0.0, 0.03, n),
    )
    return canvas


def _pole(rng, across, along, location, thickness) -> np.ndarray:
    """A metal pole (side bands) or beam (top and bottom bands) with a painted ring."""
    n = len(across)
    metal = rng.uniform(0.35, 0.75, (n, 1, 1, 1)).astype(np.float32)
    shading = 0.45 + 0.55 * np.sin(np.pi * np.clip(across, 0, 1))[..., None]
    highlight = np.exp(-(((across - 0.35) / 0.08) ** 2))[..., None]
    pole = metal * shading + 0.35 * highlight
    ring_start = rng.uniform(0, 80, (n, 1, 1))
    ring = (along >= ring_start) & (along < ring_start + 10)
    paint = PALETTE[rng.integers(len(PALETTE), size=n)][:, None, None, :]
    return np.where(ring[..., None], paint * shading, pole).astype(np.float32)


def _vehicle(rng, across, along, location, thickness) -> np.ndarray:
    """The side of a car or van: painted body, a window strip with pillars, a dark wheel."""
    n = len(across)
    body = PALETTE[rng.integers(len(PALETTE), size=n)][:, None, None, :]
    shine = 0.8 + 0.3 * np.cos(np.pi * across)[..., None]
    pillar_period = rng.uniform(22, 34, (n, 1, 1))
    window = (across > 0.45) & (across < 0.8) & ((along % pillar_period) > 4)
    wheel_at = rng.uniform(10, 40, (n, 1, 1))
    wheel = np.hypot((along - wheel_at) / thickness[:, None, None], across - 0.05) < 0.3
    glass = np.array([0.15, 0.2, 0.28], dtype=np.float32)
    tyre = np.array([0.06, 0.06, 0.07], dtype=np.float32)
    texture = np.where(window[..., None], glass + 0.15 * across[..., None], body * shine)
    return np.where(wheel[..., None], tyre, texture).astype(np.float32)


def _foliage(rng, across, along, location, thickness) -> np.ndarray:
    """Leaves: two octaves of noise mapped to greens, with dark gaps between the leaves."""
    n, height, width = across.shape
    coarse = value_noise(rng, n, height, width, 8)
    fine = value_noise(rng, n, height, width, 3)
    leaves = 0.6 * coarse + 0.4 * fine
    green = np.array([0.18, 0.45, 0.12], dtype=np.float32)
    yellow = np.array([0.55, 0.6, 0.2], dtype=np.float32)
    colour = green + (yellow - green) * fine[..., None]
    shade = np.where(leaves < 0.4, 0.3, 0.6 + 0.6 * leaves)[..., None]
    return (colour * shade).astype(np.float32)


def _wall(rng, across, along, location, thickness) -> np.ndarray:
    """A flat painted wall or door, lit with a gentle gradient."""
    n = len(across)
    paint = rng.uniform(0.3, 0.85, (n, 1, 1, 3)).astype(np.float32)
    gradient = 0.85 + 0.25 * across[..., None]
    return (paint * gradient).astype(np.float32)


_TEXTURES = {
    "person": _person,
    "pole": _pole,
    "vehicle": _vehicle,
    "foliage": _foliage,
    "wall": _wall,
}
