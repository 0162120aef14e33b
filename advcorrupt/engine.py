"""The old import path of :mod:`advcorrupt.training`, kept for users: ``advcorrupt.engine``.

The training loop behind ``advcorrupt train`` (configuration, the loop, validation, checkpoints,
resume and ``torchrun`` glue) now lives in the package :mod:`advcorrupt.training`, one file per
job. This module re-exports the very same objects, so ``from advcorrupt.engine import fit`` and
every other name it offered keep working; new code can import from ``advcorrupt.training``.
"""

# COLLAPSE_IOU, WarmupCosine and is_collapsed were public here too, outside the old list below
# (tests and examples imported them from this path): they are re-exported as well.
from .training import (  # noqa: F401
    COLLAPSE_IOU,
    TrainConfig,
    TrainingStopped,
    WarmupCosine,
    build_datasets,
    check_config,
    fit,
    is_collapsed,
    load_model,
    restore_training_state,
)

__all__ = [
    "TrainConfig",
    "TrainingStopped",
    "build_datasets",
    "check_config",
    "fit",
    "load_model",
    "restore_training_state",
]
