"""The OAMN network: a torchvision backbone split around an RGA-S attention mask.

:class:`OAMN` (forward to an :class:`OAMNOutput`, ``extract`` for test features, ``gallery_bank``
for occlusion unification), the backbone split (:mod:`.backbones`), ImageNet weights from a
local file or a torchvision weight enum (:func:`resolve_backbone_weights`,
:func:`load_backbone_weights`), the occlusion graders (:mod:`.grader`; the bank strategies are
``oamn.reid_eval.occlusion_bank``'s), and the model of a training configuration
(:func:`build_model`).
"""

from .backbones import BACKBONES, STAGES, BackboneSplit, build_torchvision_model, split_backbone
from .factory import build_model
from .grader import GRADER_HEADS, GRADERS, build_grader
from .oamn import OAMN, POOLINGS, OAMNOutput
from .weights import CLASSIFIER_PREFIXES, load_backbone_weights, resolve_backbone_weights

__all__ = [
    "BACKBONES",
    "BANK_STRATEGIES",
    "CLASSIFIER_PREFIXES",
    "GRADERS",
    "GRADER_HEADS",
    "OAMN",
    "POOLINGS",
    "STAGES",
    "BackboneSplit",
    "OAMNOutput",
    "build_grader",
    "build_model",
    "build_torchvision_model",
    "load_backbone_weights",
    "occlusion_bank",
    "resolve_backbone_weights",
    "split_backbone",
]
