"""The synthetic occluded-pedestrian benchmark, written in the Market-1501 layout and cached.

Layout of the returned folder (Market-1501's, so the same parser reads it)::

    <dataset>/bounding_box_train/   holistic training images
    <dataset>/query/                occluded queries
    <dataset>/bounding_box_test/    holistic gallery (+ ``0000`` distractors, ``-1`` junk)
    <dataset>/query_holistic/       the same queries without their occluder (for analysis)
    <dataset>/manifest.json         parameters, counts, identities, per-query occlusion
    <dataset>/COMPLETE              written last: the cache is valid only when it exists

File names are ``{pid:04d}_c{camera}s1_{frame:06d}_{n:02d}.jpg`` (``-1_c...`` for junk), with
cameras ``1..cameras``; frames increase per camera, so every name is unique.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from oamn.occlusion_aug import BAND_LOCATIONS, LOCATIONS

from .identities import ATTRIBUTES, REGIONS, draw_identities, random_identities
from .occluders import OCCLUDER_KINDS, draw_occluders
from .parameters import check_parameters, thickness_bounds
from .people import draw_people
from .scenes import BACKGROUNDS, Cameras, draw_backgrounds, draw_cameras, finish

#: Bumped whenever the same parameters would give different images, so old caches are ignored.
GENERATOR_VERSION = 1
#: Written last into a dataset folder; a folder without it is incomplete and is regenerated.
COMPLETE_MARKER = "COMPLETE"
MANIFEST = "manifest.json"
#: Split name -> Market-1501 folder name.
FOLDERS = {
    "train": "bounding_box_train",
    "query": "query",
    "gallery": "bounding_box_test",
    "query_holistic": "query_holistic",
}
_SPLITS = ("train", "gallery", "query")  # split codes of the shot plan
_CHUNK = 256  # images rendered at once: bounds the memory to about 50 MB at 128x64
_NOISE_STD = 0.02


def generate_synthetic_reid(
    root: str | os.PathLike[str],
    *,
    seed: int = 0,
    num_train_ids: int = 120,
    num_test_ids: int = 100,
    cameras: int = 6,
    images_per_id_per_camera: int = 3,
    queries_per_id: int = 2,
    height: int = 128,
    width: int = 64,
    occlusion_range: tuple[float, float] = (0.25, 0.5),
    occluder_kinds: Sequence[str] = OCCLUDER_KINDS,
    locations: Sequence[str] = BAND_LOCATIONS,
    min_share: int = 3,
    num_distractors: int = 20,
    num_junk: int = 10,
    jpeg_quality: int = 90,
) -> Path:
    r"""Generate (or find in the cache) a synthetic occluded ReID benchmark in Market-1501 layout.

    Identities are procedurally drawn pedestrians whose appearance is a combination of five
    region variants (head, upper body, lower body, shoes, bag), each variant shared by about
    ``min_share`` identities or more of a split, so no single region identifies a person (see
    :mod:`~examples.oamn.synthetic.identities`). Every identity appears in 2 to ``cameras``
    cameras, each with its own background, illumination, person scale and blur; every image
    jitters the position, size, stance, exposure and sensor noise.

    * train: ``num_train_ids`` identities (pids ``1..num_train_ids``),
      ``images_per_id_per_camera`` holistic images in each of their cameras;
    * gallery: ``num_test_ids`` other identities, the same way, plus ``num_distractors``
      strangers (pid ``0000``) and ``num_junk`` off-centre fragments (pid ``-1``);
    * query: ``min(queries_per_id, cameras of the id)`` images of each test identity, one per
      camera, each hidden by an occluder (a passer-by, a pole, a vehicle, foliage or a wall,
      drawn from ``occluder_kinds``) over a band at one of ``locations``, whose thickness is
      drawn uniformly among the whole lines inside ``occlusion_range`` of that side. Every
      query's identity has gallery images from at least one other camera. ``query_holistic/``
      holds the same shots without the occluder.

    The dataset goes to ``root/synthetic_reid_<hash>``, the hash covering every parameter and
    :data:`GENERATOR_VERSION`. It is built in a temporary sibling folder, the ``COMPLETE``
    marker written last, then renamed into place, so an interrupted run never leaves a folder
    that looks valid; a folder without the marker is deleted and generated again. Files are
    byte-identical for the same parameters (with the same Pillow/libjpeg).

    Args:
        root: parent folder of the cached datasets (created if missing).
        seed: random seed, any int ``>= 0``.
        num_train_ids: training identities, ``>= 1``.
        num_test_ids: test identities (query and gallery), ``>= 1``. Together with
            ``num_train_ids`` at most 9999 (four-digit pids).
        cameras: number of cameras, ``2..9`` (one digit in the file names).
        images_per_id_per_camera: holistic images of an identity in each of its cameras, ``>= 1``.
        queries_per_id: occluded queries per test identity (at most one per camera), ``>= 1``.
        height: image height in pixels, ``>= 32``.
        width: image width in pixels, ``>= 16``.
        occlusion_range: ``(low, high)`` fraction of the image side hidden, ``0 < low <= high
            < 1``, containing at least one whole line of both the height and the width.
        occluder_kinds: non-empty subset of :data:`OCCLUDER_KINDS`.
        locations: non-empty subset of ``oamn.occlusion_aug.BAND_LOCATIONS`` (top, bottom,
            left, right).
        min_share: wanted number of identities of a split sharing each region variant, ``>= 1``.
        num_distractors: gallery images of strangers, pid ``0000``, ``>= 0``.
        num_junk: gallery images of off-centre fragments, pid ``-1``, ``>= 0``.
        jpeg_quality: JPEG quality ``1..95`` (chroma is not subsampled).

    Returns:
        The dataset folder (see the module docstring for its layout and ``manifest.json``).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = generate_synthetic_reid(tmp, num_train_ids=4, num_test_ids=3, cameras=3,
        ...                                    images_per_id_per_camera=1, num_distractors=1,
        ...                                    num_junk=1)
        ...     manifest = json.loads((path / "manifest.json").read_text())
        ...     sorted(p.name for p in path.iterdir())  # doctest: +NORMALIZE_WHITESPACE
        ['COMPLETE', 'bounding_box_test', 'bounding_box_train', 'manifest.json', 'query',
         'query_holistic']
        >>> manifest["counts"]["query_ids"], manifest["queries"][0]["location"] in LOCATIONS
        (3, True)
    """
    parameters = check_parameters(
        seed=seed,
        num_train_ids=num_train_ids,
        num_test_ids=num_test_ids,
        cameras=cameras,
        images_per_id_per_camera=images_per_id_per_camera,
        queries_per_id=queries_per_id,
        height=height,
        width=width,
        occlusion_range=occlusion_range,
        occluder_kinds=occluder_kinds,
        locations=locations,
        min_share=min_share,
        num_distractors=num_distractors,
        num_junk=num_junk,
        jpeg_quality=jpeg_quality,
    )
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path (str or os.PathLike), got {type(root).__name__}")
    root = Path(root)
    key = json.dumps({"version": GENERATOR_VERSION, **parameters}, sort_keys=True)
    target = root / f"synthetic_reid_{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    if (target / COMPLETE_MARKER).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=root))
    try:
        _write_dataset(staging, parameters)
        (staging / COMPLETE_MARKER).write_text(key + "\n")
        if target.exists() and not (target / COMPLETE_MARKER).is_file():
            shutil.rmtree(target)  # left incomplete by something else: never trust it
        try:
            staging.rename(target)
        except OSError:
            # Another process renamed its complete copy into place first: keep that one.
            if not (target / COMPLETE_MARKER).is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target


def _cameras_of_ids(
    rng: np.random.Generator, num_ids: int, cameras: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each identity's cameras: 2 to ``cameras`` of them in a random order.

    Returns ``(id_index, camera, slot)`` flat arrays: identity ``id_index`` is seen by camera
    ``camera`` (0-based), its ``slot``-th camera in that random order.
    """
    order = np.argsort(rng.random((num_ids, cameras)), axis=1)
    count = rng.integers(2, cameras + 1, num_ids)
    id_index, slot = np.nonzero(np.arange(cameras)[None, :] < count[:, None])
    return id_index, order[id_index, slot], slot


def _plan_shots(
    rng: np.random.Generator, parameters: dict, identities: np.ndarray, cameras: Cameras
) -> dict[str, np.ndarray]:
    """Every image to render: split, pid, camera, attributes, pose, exposure and occluder.

    Returns a dict of arrays with one entry per image, in the order train, gallery (test
    identities, distractors, junk), query.
    """
    num_train, num_test = parameters["num_train_ids"], parameters["num_test_ids"]
    num_cameras, height, width = parameters["cameras"], parameters["height"], parameters["width"]
    repeats = parameters["images_per_id_per_camera"]
    id_index, camera, slot = _cameras_of_ids(rng, num_train + num_test, num_cameras)
    is_train = id_index < num_train
    queried = ~is_train & (slot < parameters["queries_per_id"])
    num_strangers = parameters["num_distractors"] + parameters["num_junk"]
    strangers = random_identities(rng, num_strangers)
    split = np.concatenate(
        [
            np.repeat(np.where(is_train, 0, 1), repeats),
            np.ones(num_strangers, dtype=np.int64),
            np.full(int(queried.sum()), 2),
        ]
    )
    order = np.argsort(split, kind="stable")  # train, gallery, query
    pid = np.concatenate(
        [
            np.repeat(id_index + 1, repeats),
            np.repeat([0, -1], [parameters["num_distractors"], parameters["num_junk"]]),
            id_index[queried] + 1,
        ]
    )[order]
    attributes = np.concatenate(
        [identities[np.repeat(id_index, repeats)], strangers, identities[id_index[queried]]]
    )[order]
    camera = np.concatenate(
        [np.repeat(camera, repeats), rng.integers(num_cameras, size=num_strangers), camera[queried]]
    )[order]
    split = split[order]
    n = len(split)

    person_height = cameras.scale[camera] * height * rng.uniform(0.93, 1.07, n)
    soles = height * rng.uniform(0.95, 0.995, n)
    offset = rng.uniform(-0.08, 0.08, n)
    # Junk: a detector's miss, the person mostly outside the box.
    junk_offset = rng.choice([-1.0, 1.0], n) * rng.uniform(0.55, 0.7, n)
    offset = np.where(pid == -1, junk_offset, offset)
    shots = {
        "split": split,
        "pid": pid,
        "camera": camera,
        "attributes": attributes,
        "centre_x": width * (0.5 + offset),
        "top": soles - person_height,
        "person_height": person_height,
        "stance": rng.uniform(0.0, 0.06, n),
        "arm_swing": rng.uniform(0.0, 0.04, n),
        "breadth": rng.uniform(1.1, 1.3, n),
        "shade": rng.uniform(0.92, 1.08, (n, 7, 1)),
        "gain": cameras.gain[camera] * rng.uniform(0.9, 1.1, n),
        "cast": cameras.cast[camera] * rng.uniform(0.96, 1.04, (n, 3)),
        "blur": cameras.blur[camera],
    }
    kinds = [OCCLUDER_KINDS.index(kind) for kind in parameters["occluder_kinds"]]
    location = np.array([LOCATIONS.index(name) for name in parameters["locations"]])
    location = np.where(split == 2, rng.choice(location, n), 0)
    low, high = parameters["occlusion_range"]
    row_bounds = thickness_bounds(height, low, high)  # top and bottom bands
    column_bounds = thickness_bounds(width, low, high)  # left and right bands
    across_rows = location <= 2
    thinnest = np.where(across_rows, row_bounds[0], column_bounds[0])
    thickest = np.where(across_rows, row_bounds[1], column_bounds[1])
    shots["occluder"] = np.where(split == 2, rng.choice(kinds, n), -1)
    shots["location"] = location
    shots["thickness"] = np.where(split == 2, rng.integers(thinnest, thickest + 1), 0)
    frame_step = rng.integers(1, 40, n)
    shots["frame"] = np.zeros(n, dtype=np.int64)
    for index in range(num_cameras):
        seen = camera == index
        shots["frame"][seen] = np.cumsum(frame_step[seen])
    shots["detection"] = rng.integers(1, 4, n)
    return shots


def _render(
    rng: np.random.Generator,
    shots: dict[str, np.ndarray],
    cameras: Cameras,
    height: int,
    width: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``(N, H, W, 3)`` uint8 photographs of ``shots`` and ``(Q, H, W, 3)`` occluded copies of
    its ``Q`` queries (same sensor noise, so they differ from the holistic shot only in the band).
    """
    scenes = draw_backgrounds(rng, cameras, shots["camera"], height, width)
    draw_people(
        scenes,
        shots["attributes"],
        centre_x=shots["centre_x"],
        top=shots["top"],
        person_height=shots["person_height"],
        stance=shots["stance"],
        arm_swing=shots["arm_swing"],
        breadth=shots["breadth"],
        shade=shots["shade"],
    )
    noise = rng.standard_normal(scenes.shape, dtype=np.float32)
    noise *= _NOISE_STD
    exposure = (shots["gain"], shots["cast"], shots["blur"])
    holistic = finish(scenes, *exposure, noise)
    query = np.flatnonzero(shots["split"] == 2)
    textures, band = draw_occluders(
        rng,
        shots["occluder"][query],
        shots["location"][query],
        shots["thickness"][query],
        height,
        width,
    )
    occluded = np.where(band[..., None], textures, scenes[query])
    return holistic, finish(occluded, *(values[query] for values in exposure), noise[query])


def _file_name(pid: int, camera: int, frame: int, detection: int) -> str:
    person = "-1" if pid == -1 else f"{pid:04d}"
    return f"{person}_c{camera + 1}s1_{frame:06d}_{detection:02d}.jpg"


def _write_dataset(folder: Path, parameters: dict) -> None:
    """Render every image of ``parameters`` into ``folder`` and write the manifest."""
    identity_seed, scene_seed, plan_seed, pixel_seed = np.random.SeedSequence(
        parameters["seed"]
    ).spawn(4)
    height, width = parameters["height"], parameters["width"]
    identities = draw_identities(
        np.random.default_rng(identity_seed),
        (parameters["num_train_ids"], parameters["num_test_ids"]),
        parameters["min_share"],
    )
    cameras = draw_cameras(np.random.default_rng(scene_seed), parameters["cameras"])
    shots = _plan_shots(np.random.default_rng(plan_seed), parameters, identities, cameras)
    names = [
        _file_name(*values)
        for values in zip(
            shots["pid"].tolist(),
            shots["camera"].tolist(),
            shots["frame"].tolist(),
            shots["detection"].tolist(),
            strict=True,
        )
    ]
    for name in FOLDERS.values():
        (folder / name).mkdir()
    split_folders = [FOLDERS[split] for split in _SPLITS]
    rng = np.random.default_rng(pixel_seed)
    save = {"quality": parameters["jpeg_quality"], "subsampling": 0}
    for start in range(0, len(names), _CHUNK):
        chunk = slice(start, start + _CHUNK)
        holistic, occluded = _render(
            rng, {key: values[chunk] for key, values in shots.items()}, cameras, height, width
        )
        splits = shots["split"][chunk]
        chunk_names = names[chunk]
        for image, split, name in zip(holistic, splits, chunk_names, strict=True):
            subfolder = FOLDERS["query_holistic"] if split == 2 else split_folders[split]
            Image.fromarray(image).save(folder / subfolder / name, **save)
        query_names = [name for name, split in zip(chunk_names, splits, strict=True) if split == 2]
        for image, name in zip(occluded, query_names, strict=True):
            Image.fromarray(image).save(folder / FOLDERS["query"] / name, **save)
    manifest = _manifest(parameters, identities, cameras, shots, names)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, allow_nan=False) + "\n")


def _manifest(
    parameters: dict,
    identities: np.ndarray,
    cameras: Cameras,
    shots: dict[str, np.ndarray],
    names: list[str],
) -> dict:
    split, pid = shots["split"], shots["pid"]
    query = np.flatnonzero(split == 2)
    gallery_people = pid[(split == 1) & (pid > 0)]
    side_length = np.where(shots["location"] <= 2, parameters["height"], parameters["width"])
    return {
        "generator": "examples.oamn.synthetic",
        "version": GENERATOR_VERSION,
        "layout": "market1501",
        "parameters": parameters,
        "folders": FOLDERS,
        "counts": {
            "train_images": int((split == 0).sum()),
            "train_ids": len(np.unique(pid[split == 0])),
            "gallery_images": int((split == 1).sum()),
            "gallery_ids": len(np.unique(gallery_people)),
            "distractor_images": int(((split == 1) & (pid == 0)).sum()),
            "junk_images": int(((split == 1) & (pid == -1)).sum()),
            "query_images": len(query),
            "query_ids": len(np.unique(pid[query])),
        },
        "regions": REGIONS,
        "attributes": ATTRIBUTES,
        "identities": {str(index + 1): row for index, row in enumerate(identities.tolist())},
        "cameras": [
            {
                "camera": index + 1,
                "background": BACKGROUNDS[cameras.background[index]],
                "person_scale": round(float(cameras.scale[index]), 4),
                "gain": round(float(cameras.gain[index]), 4),
            }
            for index in range(parameters["cameras"])
        ],
        "queries": [
            {
                "file": names[index],
                "pid": int(pid[index]),
                "camera": int(shots["camera"][index]) + 1,
                "location": LOCATIONS[shots["location"][index]],
                "lines": int(shots["thickness"][index]),
                "fraction": float(shots["thickness"][index] / side_length[index]),
                "occluder": OCCLUDER_KINDS[shots["occluder"][index]],
            }
            for index in query
        ],
    }
