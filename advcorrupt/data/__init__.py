"""Datasets: infrared small targets (the standard ISTD layout, synthetic scenes) and semantic
segmentation (CamVid, any folder of class-index masks), with their training transforms."""

from __future__ import annotations

from .camvid import CamVid
from .istd import DATASET_STATS, BadFileError, ISTDDataset, Problem, load_image, load_mask
from .joint import Compose, RandomHorizontalFlip, RandomScaleCrop
from .segmentation import SegmentationFolder, colorize, colors_to_labels
from .synthetic import SyntheticIRSTD, generate_scene
from .transforms import Normalize, TrainView, collate, pad_to_multiple

__all__ = [
    "DATASET_STATS",
    "BadFileError",
    "CamVid",
    "Compose",
    "ISTDDataset",
    "Normalize",
    "Problem",
    "RandomHorizontalFlip",
    "RandomScaleCrop",
    "SegmentationFolder",
    "SyntheticIRSTD",
    "TrainView",
    "collate",
    "colorize",
    "colors_to_labels",
    "generate_scene",
    "load_image",
    "load_mask",
    "pad_to_multiple",
]
