"""The OAMN pipeline (Chen et al., ICCV 2021) built from ``occlusion_aug``, ``attention``,
``losses`` and ``reid_eval``: data, model, training and occlusion-unified evaluation.

Run from the repository root: ``python -m examples.oamn.train --help`` and
``python -m examples.oamn.evaluate --help``.
"""
