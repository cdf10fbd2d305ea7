"""The OAMN network: a torchvision backbone split around an RGA-S attention mask.

:class:`OAMN` (forward to an :class:`OAMNOutput`, ``extract`` for test features, ``gallery_bank``
for occlusion unification), the backbone split (:mod:`.backbones`), local ImageNet weights
(:func:`load_backbone_weights`, never a download) and the gallery-bank strategies (:mod:`.bank`).
"""

from .backbones import BACKBONES, STAGES, BackboneSplit, build_torchvision_model, split_backbone
from .bank import BANK_STRATEGIES, occlusion_bank
from .oamn import OAMN, POOLINGS, OAMNOutput
from .weights import CLASSIFIER_PREFIXES, load_backbone_weights

__all__ = [
    "BACKBONES",
    "BANK_STRATEGIES",
    "CLASSIFIER_PREFIXES",
    "OAMN",
    "POOLINGS",
    "STAGES",
    "BackboneSplit",
    "OAMNOutput",
    "build_torchvision_model",
    "load_backbone_weights",
    "occlusion_bank",
    "split_backbone",
]
