"""The old import path of :mod:`advcorrupt.bench`, kept for users: ``advcorrupt.benchmark``.

The robustness benchmark (BALISTD, AAAI 2024, Tables 2-4: seeded corrupted views -> evaluation ->
report -> tables) now lives in the package :mod:`advcorrupt.bench`, one file per job. This module
re-exports the very same objects, so ``from advcorrupt.benchmark import evaluate_robustness`` and
every other name it offered keep working; new code can import from ``advcorrupt.bench``.
"""

from .bench import (
    METRIC_KEYS,
    CorruptedDataset,
    RobustnessReport,
    SettingResult,
    comparison_table,
    corruption_seed,
    evaluate,
    evaluate_robustness,
    summary_table,
)
from .bench.evaluation import _safe_rce  # imported from here by the `advcorrupt bench` CLI code

__all__ = [
    "METRIC_KEYS",
    "CorruptedDataset",
    "RobustnessReport",
    "SettingResult",
    "comparison_table",
    "corruption_seed",
    "evaluate",
    "evaluate_robustness",
    "summary_table",
]
