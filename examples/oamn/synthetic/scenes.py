"""Cameras: textured backgrounds, illumination, blur and sensor noise.

Every camera has its own background texture and colours, horizon, person scale, exposure gain,
colour cast and blur, so the same person looks different from one camera to the next, and a
holistic descriptor is tempted to match backgrounds rather than people.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Background textures, one per camera in turn.
BACKGROUNDS = ("bricks", "fence", "gravel", "tiles", "facade", "hedge")


@dataclass(frozen=True)
class Cameras:
    """Per-camera scene parameters, each array indexed by the 0-based camera index."""

    background: np.ndarray  # (C,) int index into BACKGROUNDS
    wall: np.ndarray  # (C, 3) background base colour
    accent: np.ndarray  # (C, 3) background texture colour
    ground: np.ndarray  # (C, 3) ground colour
    horizon: np.ndarray  # (C,) ground line, fraction of the height
    scale: np.ndarray  # (C,) person height, fraction of the image height
    gain: np.ndarray  # (C,) exposure gain
    cast: np.ndarray  # (C, 3) per-channel colour cast
    blur: np.ndarray  # (C,) blend weight of the [1, 2, 1] blur


def draw_cameras(rng: np.random.Generator, num_cameras: int) -> Cameras:
    """Scene parameters of ``num_cameras`` cameras; the textures are dealt in a random order."""
    c = num_cameras
    order = rng.permutation(len(BACKGROUNDS))
    # Urban scenes are mostly greyish: a grey level with a mild tint, a texture of modest contrast.
    grey = rng.uniform(0.35, 0.7, (c, 1))
    wall = grey * rng.uniform(0.85, 1.15, (c, 3))
    accent = wall * rng.uniform(0.6, 1.3, (c, 1)) * rng.uniform(0.9, 1.1, (c, 3))
    ground = rng.uniform(0.3, 0.55, (c, 1)) * rng.uniform(0.9, 1.1, (c, 3))
    return Cameras(
        background=order[np.arange(c) % len(BACKGROUNDS)],
        wall=np.clip(wall, 0, 1).astype(np.float32),
        accent=np.clip(accent, 0, 1).astype(np.float32),
        ground=np.clip(ground, 0, 1).astype(np.float32),
        horizon=rng.uniform(0.62, 0.8, c),
        scale=rng.uniform(0.82, 0.94, c),
        gain=rng.uniform(0.8, 1.15, c),
        cast=rng.uniform(0.9, 1.1, (c, 3)),
        blur=rng.uniform(0.2, 0.7, c),
    )


def value_noise(rng: np.random.Generator, n: int, height: int, width: int, cell: int) -> np.ndarray:
    """``(n, height, width)`` float32 smooth noise in ``[0, 1]``: a random grid with one value
    every ``cell`` pixels, bilinearly interpolated."""
    grid = rng.random((n, height // cell + 2, width // cell + 2), dtype=np.float32)
    y = (np.arange(height, dtype=np.float32) + 0.5) / cell
    x = (np.arange(width, dtype=np.float32) + 0.5) / cell
    y0, x0 = y.astype(np.int64), x.astype(np.int64)
    fy, fx = (y - y0)[None, :, None], (x - x0)[None, None, :]
    rows0, rows1 = grid[:, y0], grid[:, y0 + 1]
    top = rows0[:, :, x0] * (1 - fx) + rows0[:, :, x0 + 1] * fx
    bottom = rows1[:, :, x0] * (1 - fx) + rows1[:, :, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def draw_backgrounds(
    rng: np.random.Generator, cameras: Cameras, camera: np.ndarray, height: int, width: int
) -> np.ndarray:
    """``(N, H, W, 3)`` float32 backgrounds of images taken by ``camera`` (``(N,)`` 0-based),
    each with its own texture offset and horizon jitter."""
    n = len(camera)
    offsets = rng.integers(0, 64, (2, n, 1, 1), dtype=np.int32)
    rows = np.arange(height, dtype=np.int32)[None, :, None] + offsets[0]
    cols = np.arange(width, dtype=np.int32)[None, None, :] + offsets[1]
    kind = cameras.background[camera]
    texture = np.zeros((n, height, width), dtype=np.float32)
    for index, name in enumerate(BACKGROUNDS):
        chosen = np.flatnonzero(kind == index)
        if len(chosen) == 0:
            continue
        y, x = rows[chosen], cols[chosen]
        if name == "bricks":
            joints = (x + 6 * ((y // 6) % 2)) % 12 == 0
            pattern = (y % 6 == 0) | joints
        elif name == "fence":
            pattern = ((x % 7) < 3) | ((y % 24) < 2)
        elif name == "tiles":
            pattern = 0.6 * (((x // 10) + (y // 10)) % 2)
        elif name == "facade":
            pattern = ((x % 20) >= 5) & ((x % 20) < 15) & ((y % 26) >= 6) & ((y % 26) < 20)
        else:  # gravel and hedge: noise at a fine or a coarse scale
            cell = 3 if name == "gravel" else 8
            pattern = value_noise(rng, len(chosen), height, width, cell)
        texture[chosen] = np.broadcast_to(pattern, (len(chosen), height, width))
    t = texture[..., None]
    # Each shot sees another stretch of the camera's scene: its own brightness and tint.
    tint = rng.uniform(0.8, 1.2, (n, 1, 1, 1)) * rng.uniform(0.92, 1.08, (n, 1, 1, 3))
    wall = (cameras.wall[camera][:, None, None] * tint).astype(np.float32)
    images = wall + (cameras.accent[camera][:, None, None] * tint - wall).astype(np.float32) * t
    horizon = (cameras.horizon[camera] + rng.uniform(-0.04, 0.04, n)) * height
    below = np.arange(height)[None, :] >= horizon[:, None]
    depth = np.clip((np.arange(height)[None, :] - horizon[:, None]) / height, 0, 1)
    ground = cameras.ground[camera][:, None, :] * (0.85 + 0.6 * depth[..., None])
    return np.where(below[:, :, None, None], ground[:, :, None, :], images).astype(np.float32)


def finish(
    images: np.ndarray, gain: np.ndarray, cast: np.ndarray, blur: np.ndarray, noise: np.ndarray
) -> np.ndarray:
    """Camera response: ``(N, H, W, 3)`` float scenes to uint8 photographs.

    Multiplies by ``gain`` (``(N,)``) and ``cast`` (``(N, 3)``), adds ``noise`` (the
    ``(N, H, W, 3)`` sensor noise, drawn by the caller so that two renderings of one shot can
    share it), then blends in a separable ``[1, 2, 1] / 4`` blur with weight ``blur`` (``(N,)``).
    """
    lit = images * (gain[:, None] * cast)[:, None, None, :].astype(np.float32)
    lit += noise
    # [1, 2, 1] along rows then columns, replicating the edge lines.
    vertical = 2 * lit
    vertical[:, 1:] += lit[:, :-1]
    vertical[:, :-1] += lit[:, 1:]
    vertical[:, 0] += lit[:, 0]
    vertical[:, -1] += lit[:, -1]
    blurred = 2 * vertical
    blurred[:, :, 1:] += vertical[:, :, :-1]
    blurred[:, :, :-1] += vertical[:, :, 1:]
    blurred[:, :, 0] += vertical[:, :, 0]
    blurred[:, :, -1] += vertical[:, :, -1]
    blurred /= 16
    blurred -= lit
    blurred *= blur.astype(np.float32)[:, None, None, None]
    lit += blurred
    np.clip(lit, 0, 1, out=lit)
    lit *= 255
    return np.rint(lit, out=lit).astype(np.uint8)
