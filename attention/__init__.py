"""Relation-aware attention layers: OAMN's RGA-S attention mask module (paper §3.2).

:class:`RGASpatial` gives the spatial attention map ``m`` of a feature map, :class:`AttentionMask`
returns ``(m * f, m)`` with the paper's or the authors' gradient flow, and :class:`RGA` is the
full spatial-then-channel layer (CVPR 2020). Parameter names follow the authors' ``RGA_Module``,
so its state dicts load with ``strict=True``. :class:`OcclusionGrader` is OAMN's other head on
the same features: where, and how much, the image is occluded.
"""

from .grader import GRADER_SUMMARIES, GlobalAveragePool, OcclusionGrader, ScaleFreeProfiles
from .mask import AttentionMask
from .rga import RGA, RGASpatial

__all__ = [
    "GRADER_SUMMARIES",
    "RGA",
    "AttentionMask",
    "GlobalAveragePool",
    "OcclusionGrader",
    "RGASpatial",
    "ScaleFreeProfiles",
]
