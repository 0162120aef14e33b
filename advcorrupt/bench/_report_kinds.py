"""Which report a task gets: an explicit mapping keyed by ``Task.name``.

A :class:`~advcorrupt.tasks.Task` knows its masks, loss, metrics and primary metric, but nothing
of the benchmark (the tasks never import :mod:`advcorrupt.bench`). Which report class holds a
task's results, how it is built from the benchmark's passes and which class reads a saved report
back are the benchmark's decisions, made here and nowhere else: :data:`REPORT_KINDS`. A new task
adds one entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..tasks import Task
from .report import METRIC_KEYS, RobustnessReport, SettingResult
from .scoring import dataset_attribute
from .semantic_report import (
    SemanticRobustnessReport,
    SemanticSettingResult,
    _class_names,
)

#: One benchmark pass per setting: ``(corruption, severity, the task's metric values)``.
Passes = list[tuple[str, int, dict[str, Any]]]


@dataclass(frozen=True)
class ReportKind:
    """The report of one task kind.

    Attributes:
        report: the report class (its ``from_dict`` reads a saved report of this kind back).
        build: ``build(clean, passes, *, task, threshold, dataset, **common)``: the report of a
            benchmark run from its clean pass's and its settings' metric values; ``common`` holds
            the fields every report has (``corruptions``, ``severities``, ``seed``,
            ``num_images``, ``model_name``, ``dataset_name``).
    """

    report: type[Any]
    build: Callable[..., Any]


def _safe_rce(rce: Callable[[float, float], float], clean: float, corrupted: float) -> float:
    """RCE, or NaN when it is undefined (clean IoU 0 or NaN) instead of failing a long run."""
    if not (math.isfinite(clean) and clean > 0 and math.isfinite(corrupted)):
        return math.nan
    return float(rce(clean, corrupted))


def _binary_report(
    clean: dict[str, Any], passes: Passes, *, task: Task, threshold: float, dataset: Any, **common: Any
) -> RobustnessReport:
    """The binary report: each setting's ISTD metrics and its RCE (paper Eq. 9) against the clean IoU."""
    from ..metrics import rce

    results = tuple(
        SettingResult(name, s, *(m[k] for k in METRIC_KEYS), rce=_safe_rce(rce, clean["iou"], m["iou"]))
        for name, s, m in passes
    )
    return RobustnessReport(clean=clean, results=results, threshold=float(threshold), **common)


def _semantic_report(
    clean: dict[str, Any], passes: Passes, *, task: Task, threshold: float, dataset: Any, **common: Any
) -> SemanticRobustnessReport:
    """The semantic report: each setting's mIoU / aAcc / mAcc / per-class IoU, with the task's classes
    (their names from the dataset's ``class_names``, if it has them)."""
    k = int(task.num_classes)  # type: ignore[attr-defined]
    return SemanticRobustnessReport(
        clean=clean, results=tuple(SemanticSettingResult.from_metrics(name, s, m) for name, s, m in passes),
        num_classes=k, ignore_index=getattr(task, "ignore_index", None),
        class_names=_class_names(dataset_attribute(dataset, "class_names"), k), **common,
    )


#: ``Task.name`` -> its report kind.
REPORT_KINDS: dict[str, ReportKind] = {
    "binary": ReportKind(RobustnessReport, _binary_report),
    "semantic": ReportKind(SemanticRobustnessReport, _semantic_report),
}


def report_kind(task_name: str) -> ReportKind:
    """The report kind of the task named ``task_name``.

    Raises:
        KeyError: no report kind is registered for it (the message lists those that are).

    Example:
        >>> report_kind("semantic").report.__name__
        'SemanticRobustnessReport'
        >>> report_kind("depth")
        Traceback (most recent call last):
        ...
        KeyError: "no benchmark report for the task 'depth'; tasks with a report: ['binary', 'semantic']"
    """
    try:
        return REPORT_KINDS[task_name]
    except KeyError:
        raise KeyError(
            f"no benchmark report for the task {task_name!r}; tasks with a report: {sorted(REPORT_KINDS)}"
        ) from None
