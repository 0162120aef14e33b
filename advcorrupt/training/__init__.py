"""The training loop behind ``advcorrupt train`` and ``examples/istd_dnanet.py``.

:func:`fit` trains a segmentation model with :class:`~advcorrupt.AdversarialCorruptionTrainer`
(BALISTD, Alg. 1): an ISTD detector on an ISTD-layout dataset or the built-in
:class:`~advcorrupt.data.SyntheticIRSTD` (binary masks), or a multi-class model (any
``smp:<Arch>:<encoder>``, from scratch) on :class:`~advcorrupt.data.CamVid` or a
:class:`~advcorrupt.data.SegmentationFolder` layout (K classes, an ignore label). The run's task
(:func:`run_task`) decides the loss, the validation metrics and what a collapsed model is. With:

- checkpoints that hold everything needed to continue (model, optimizer, LR scheduler, the
  trainer's policy/baseline/step counts, the trainer's generator, every RNG state, the position in
  the epoch and the config), written atomically, the last ``keep_last`` kept; ``resume=True``
  continues from the newest one;
- determinism: the epoch's sample order comes from ``(seed, epoch)``, each item's augmentation from
  ``(seed, epoch, index)``, so a resumed run replays the uninterrupted one exactly on CPU;
- a metrics log (JSONL or CSV, one row per epoch, with validation IoU/nIoU/Pd/Fa, or mIoU/aAcc/mAcc
  and per-class IoU), per-step losses
  (``steps.jsonl``), and the policy's action distribution per epoch (``policy_actions.json`` and a
  plot ``policy_actions.png``);
- ``torchrun``: a ``DistributedSampler`` split, detector in ``DistributedDataParallel``, training
  statistics reduced across ranks, only rank 0 writes files and shows progress.

The package reads in the order a run goes:

- :mod:`~advcorrupt.training.config`: what defines a run (:class:`TrainConfig`), its task
  (:func:`run_task`) and :func:`check_config`, which refuses a configuration before anything is
  built.
- :mod:`~advcorrupt.training.data`: datasets and normalisation (:func:`build_datasets`), seeded
  per-item augmentation and the epoch's batches.
- :mod:`~advcorrupt.training.distributed`: the ``torchrun`` process group and each process's device.
- :mod:`~advcorrupt.training.schedule`: the learning-rate schedule (:class:`WarmupCosine`).
- :mod:`~advcorrupt.training.run`: what a run is made of and building it.
- :mod:`~advcorrupt.training.loop`: :func:`fit` and the epoch loop.
- :mod:`~advcorrupt.training.validation`: evaluation during training and collapse detection
  (:func:`is_collapsed`).
- :mod:`~advcorrupt.training.checkpoints`: writing, checking and restoring training checkpoints
  (:func:`restore_training_state`, :func:`load_model`); the file format itself is
  :mod:`advcorrupt.checkpoint`'s.
- :mod:`~advcorrupt.training.logs`: ``config.json``, the metrics and step logs, the policy's
  action shares, TensorBoard.
- :mod:`~advcorrupt.training.provenance`: which code trained a run (:func:`source_revision`, the
  git commit recorded in ``config.json``).

Experiment grids (one run per strategy x seed, then tables over seeds) are built on :func:`fit`:

- :mod:`~advcorrupt.training.grid`: training and benchmarking each run of a grid, reading finished
  runs back, and the recipe one table holds.
- :mod:`~advcorrupt.training.grid_report`: tables over seeds, paired differences, the policy's shares.
- :mod:`~advcorrupt.training.harness`: the command line of a grid script (``examples/istd_dnanet.py``,
  ``examples/camvid_smp.py``).

``advcorrupt.engine``, the module this package replaces, re-exports the same objects.
"""

from .checkpoints import load_model, restore_training_state
from .config import TrainConfig, check_config, run_task
from .data import build_datasets
from .loop import TrainingStopped, fit
from .provenance import source_revision
from .schedule import WarmupCosine
from .validation import COLLAPSE_IOU, is_collapsed

__all__ = [
    "COLLAPSE_IOU",
    "TrainConfig",
    "TrainingStopped",
    "WarmupCosine",
    "build_datasets",
    "check_config",
    "fit",
    "is_collapsed",
    "load_model",
    "restore_training_state",
    "run_task",
    "source_revision",
]
