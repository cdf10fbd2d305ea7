"""The OAMN pipeline (Chen et al., ICCV 2021) built from ``oamn.occlusion_aug``, ``oamn.attention``,
``oamn.losses`` and ``oamn.reid_eval``: data, model, training and occlusion-unified evaluation.

Run from the repository root: ``python -m examples.oamn.train --help`` and
``python -m examples.oamn.evaluate --help``.
"""
