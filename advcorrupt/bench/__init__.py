"""Robustness evaluation: a segmentation model on clean and corrupted test sets -> a report.

This is the protocol behind the robustness tables of BALISTD (*Enhancing Infrared Small Target
Detection Robustness with Bi-Level Adversarial Framework*, AAAI 2024, Tables 2-4): the detector is
scored on the clean test set and on the same test set under every corruption x severity (the
ImageNet-C corruptions of :mod:`advcorrupt.corruptions`), with the ISTD metrics IoU, nIoU, Pd and Fa
(:mod:`advcorrupt.metrics`) and the relative corruption error of the paper's Eq. 9,
``RCE = (IoU_clean - IoU_corrupted) / IoU_clean``.

Corrupted test sets are *seeded*: image ``i`` under ``(corruption, severity)`` is corrupted with a
``torch.Generator`` seeded by :func:`corruption_seed` ``(seed, corruption, severity, i)``, on the
device the dataset returns it on (the CPU for the datasets of :mod:`advcorrupt.data`). Every model
evaluated with the same ``seed`` is therefore judged on identical corrupted images, whatever its
device, batch size or evaluation order.

Semantic segmentation models (K classes, an optional ignore label: street scenes, medical,
aerial) are scored the way Kamann & Rother (*Benchmarking the Robustness of Semantic Segmentation
Models*, CVPR 2020) and mmdetection's corruption benchmark do: mIoU, aAcc, mAcc and per-class IoU
per setting, mPC (the mIoU averaged over every corruption x severity) and rPC = mPC / clean mIoU.
Which of the two a model gets is the task's decision (:mod:`advcorrupt.tasks`), given or inferred.

Per image: corrupt (in [0, 1]) -> ``preprocess`` (e.g. normalisation) -> zero-pad to a multiple
of ``pad_to`` -> model -> crop back -> the task's metrics at the native size (binary: ``sigmoid``,
IoU/nIoU/Pd/Fa; semantic: argmax, confusion matrix).

The package reads in the order of that pipeline:

- :mod:`~advcorrupt.bench.views`: seeded corrupted views of a test set (:func:`corruption_seed`,
  :class:`CorruptedDataset`).
- :mod:`~advcorrupt.bench.scoring`: which task, which metrics, which checks.
- :mod:`~advcorrupt.bench._report_kinds`: which report each task gets (keyed by the task's name).
- :mod:`~advcorrupt.bench.evaluation`: running a model over a view (:func:`evaluate`) and over
  the clean set plus every setting (:func:`evaluate_robustness`).
- :mod:`~advcorrupt.bench.report`: what comes out for a binary task (:class:`SettingResult`,
  :class:`RobustnessReport`: summaries, dict/JSON round trip of both kinds, ``save``).
- :mod:`~advcorrupt.bench.semantic_report`: what comes out for a semantic task
  (:class:`SemanticSettingResult`, :class:`SemanticRobustnessReport`: mPC, rPC, per-class IoU).
- :mod:`~advcorrupt.bench.render` and :mod:`~advcorrupt.bench.semantic_render`: the reports as
  Markdown, CSV, JSON and heatmap PNGs (a per-class IoU-drop heatmap for semantic models).
- :mod:`~advcorrupt.bench.tables`: tables over several reports (:func:`summary_table`, and
  :func:`comparison_table`, mean ± std over seeds: the paper's Table 2), for either kind.

Nothing here imports the training code. ``advcorrupt.benchmark`` is the old path of this package
and re-exports the same objects.
"""

from .evaluation import evaluate, evaluate_robustness
from .report import METRIC_KEYS, RobustnessReport, SettingResult
from .semantic_report import (
    SEMANTIC_METRIC_KEYS,
    SemanticRobustnessReport,
    SemanticSettingResult,
)
from .tables import comparison_table, summary_table
from .views import CorruptedDataset, corruption_seed

__all__ = [
    "METRIC_KEYS",
    "SEMANTIC_METRIC_KEYS",
    "CorruptedDataset",
    "RobustnessReport",
    "SemanticRobustnessReport",
    "SemanticSettingResult",
    "SettingResult",
    "comparison_table",
    "corruption_seed",
    "evaluate",
    "evaluate_robustness",
    "summary_table",
]
