"""Datasets for infrared small-target detection: the standard ISTD layout and synthetic scenes."""

from __future__ import annotations

from .istd import DATASET_STATS, BadFileError, ISTDDataset, Problem, load_image, load_mask
from .synthetic import SyntheticIRSTD, generate_scene
from .transforms import Normalize, TrainView, collate, pad_to_multiple

__all__ = [
    "DATASET_STATS",
    "BadFileError",
    "ISTDDataset",
    "Normalize",
    "Problem",
    "SyntheticIRSTD",
    "TrainView",
    "collate",
    "generate_scene",
    "load_image",
    "load_mask",
    "pad_to_multiple",
]
