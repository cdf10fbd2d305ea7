"""oamn: building blocks for occluded person re-identification (ICCV 2021 "Occlude Them All").

The four subpackages are independent: each imports only torch and its own requirements, never a
sibling, so import just the one you need:

* :mod:`oamn.occlusion_aug`: batched occlusion augmentation on tensors (kornia-compatible);
* :mod:`oamn.attention`: the RGA-S spatial relation-aware attention mask layer;
* :mod:`oamn.losses`: grouped triplet, mask-consistency and grader score losses;
* :mod:`oamn.reid_eval`: CMC / mAP / mINP and occlusion-unified evaluation.

This file is the ``oamn`` package itself. The subpackages' sources sit at the repository's top
level and are mapped under ``oamn`` by ``[tool.setuptools.package-dir]`` in ``pyproject.toml``;
importing this package imports none of them.
"""

from importlib import metadata

try:
    __version__: str = metadata.version("oamn")
except metadata.PackageNotFoundError:  # the sources used without installing the distribution
    __version__ = "0+unknown"

__all__ = ["__version__"]
