"""Data for the OAMN pipeline: dataset layouts, an up-front check of the images, a validation
split, the P x K identity sampler, CPU transforms and loaders.

Images leave the loaders normalised on the CPU; the training code moves each batch to its
device, where ``oamn.occlusion_aug.OcclusionAugmentation`` makes the aligned occluded views.
"""

from .folders import IMAGE_EXTENSIONS, parse_folder
from .items import JUNK_PID, ReIDDataset, ReIDItem, relabel_ids, split_digest
from .layouts import (
    DATASETS,
    GALLERY_CAMID,
    QUERY_CAMID,
    dukemtmc,
    load_dataset,
    market1501,
    occluded_duke,
    occluded_reid,
    partial_ilids,
    partial_reid,
)
from .loaders import ImageDataset, SeededBatchSampler, build_test_loader, build_train_loader
from .sampler import IdentitySampler
from .splits import split_validation
from .transforms import IMAGENET_MEAN, IMAGENET_STD, test_transform, train_transform
from .verify import read_image, verify_images

__all__ = [
    "DATASETS",
    "GALLERY_CAMID",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "JUNK_PID",
    "QUERY_CAMID",
    "IdentitySampler",
    "ImageDataset",
    "ReIDDataset",
    "ReIDItem",
    "SeededBatchSampler",
    "build_test_loader",
    "build_train_loader",
    "dukemtmc",
    "load_dataset",
    "market1501",
    "occluded_duke",
    "occluded_reid",
    "parse_folder",
    "partial_ilids",
    "partial_reid",
    "read_image",
    "relabel_ids",
    "split_digest",
    "split_validation",
    "test_transform",
    "train_transform",
    "verify_images",
]
