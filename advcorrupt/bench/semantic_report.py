"""The robustness report of a semantic segmentation model: mIoU under corruption, mPC and rPC.

The summaries are those of the corruption benchmarks of mmdetection (``tools/analysis_tools/
test_robustness.py``) and of Kamann & Rother, *Benchmarking the Robustness of Semantic Segmentation
Models* (CVPR 2020):

* per corruption x severity, the mIoU, aAcc and mAcc (:class:`SemanticSettingResult`; the metrics
  of :class:`~advcorrupt.metrics.SegmentationMetrics`, mmsegmentation conventions);
* ``mPC``, the *mean performance under corruption*: the mIoU averaged over every corruption x
  severity (:attr:`SemanticRobustnessReport.mean_corrupted`);
* ``rPC = mPC / clean mIoU``, the *relative performance under corruption*
  (:attr:`SemanticRobustnessReport.relative_robustness`);
* per-class IoU of every setting, so a reader sees which classes break first
  (:meth:`SemanticRobustnessReport.class_iou`, :meth:`SemanticRobustnessReport.class_iou_drop`).

NaN conventions follow the metrics: a class absent from both target and prediction in a setting
has IoU NaN and is left out of that setting's mIoU; per-class averages over severities skip NaN
(NaN only when every severity is NaN); the mean over settings (mPC) does not skip NaN, as the
binary report's means do not. How the report is written out is
:mod:`advcorrupt.bench.semantic_render`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .report import _find_setting, _float, _mean, _nan_to_none, _ratio, _task_name, write_staged

if TYPE_CHECKING:
    from ..tasks import SemanticTask

__all__ = ["SEMANTIC_METRIC_KEYS", "SemanticRobustnessReport", "SemanticSettingResult"]

#: The dataset-level metrics reported for every setting, in table order (fractions in [0, 1]).
SEMANTIC_METRIC_KEYS: tuple[str, ...] = ("mIoU", "aAcc", "mAcc")


@dataclass(frozen=True)
class SemanticSettingResult:
    """Metrics of one (corruption, severity) setting of a semantic model.

    Attributes:
        corruption: corruption name.
        severity: 1-based level.
        miou: mean IoU over the classes that are not NaN, in [0, 1].
        aacc: pixel accuracy over every non-ignored pixel, in [0, 1].
        macc: mean per-class accuracy (recall) over the classes that are not NaN, in [0, 1].
        class_iou: IoU of each class, K values (NaN: the class is absent from target and prediction).

    Example:
        >>> r = SemanticSettingResult("contrast", 1, 0.5, 0.75, 0.5, (1.0, 0.0, math.nan))
        >>> r.metric("mIoU"), r.metric("aAcc")
        (0.5, 0.75)
    """

    corruption: str
    severity: int
    miou: float
    aacc: float
    macc: float
    class_iou: tuple[float, ...]

    def metric(self, key: str) -> float:
        """The value of ``key``, one of :data:`SEMANTIC_METRIC_KEYS` (``"mIoU"``, ``"aAcc"``, ``"mAcc"``)."""
        if key not in SEMANTIC_METRIC_KEYS:
            raise KeyError(f"metric must be one of {list(SEMANTIC_METRIC_KEYS)}; got {key!r}")
        return {"mIoU": self.miou, "aAcc": self.aacc, "mAcc": self.macc}[key]

    def to_dict(self) -> dict[str, Any]:
        """``{"corruption", "severity", "mIoU", "aAcc", "mAcc", "IoU"}`` (the metrics' own key names)."""
        return {"corruption": self.corruption, "severity": self.severity, "mIoU": self.miou, "aAcc": self.aacc,
                "mAcc": self.macc, "IoU": list(self.class_iou)}

    @classmethod
    def from_metrics(cls, corruption: str, severity: int, metrics: Mapping[str, Any]) -> SemanticSettingResult:
        """The row of a ``SegmentationMetrics.compute()`` result, or of a :meth:`to_dict` dict."""
        return cls(
            corruption=str(corruption), severity=int(severity), miou=_float(metrics["mIoU"]),
            aacc=_float(metrics["aAcc"]), macc=_float(metrics["mAcc"]),
            class_iou=tuple(_float(v) for v in metrics["IoU"]),
        )


def _nanmean(values: Iterable[float]) -> float:
    vals = [v for v in values if math.isfinite(v)]
    return sum(vals) / len(vals) if vals else math.nan


@dataclass(frozen=True)
class SemanticRobustnessReport:
    """Clean and corrupted mIoU / aAcc / mAcc and per-class IoU of one semantic segmentation model.

    What :func:`~advcorrupt.bench.evaluate_robustness` returns for a semantic task. It has the
    binary :class:`~advcorrupt.bench.RobustnessReport`'s bookkeeping fields and task-neutral
    summaries (:attr:`primary_metric`, :attr:`mean_corrupted`, :attr:`relative_robustness`,
    :attr:`per_corruption`, :meth:`result`, :meth:`save`), and adds its own: the classes, the
    per-class IoU of every setting and the per-class drop.

    Attributes:
        clean: clean-set metrics ``{"mIoU", "aAcc", "mAcc"}`` (fractions) and ``"IoU"`` (K per-class values).
        results: one :class:`SemanticSettingResult` per corruption x severity, corruption-major.
        corruptions: corruption names, in evaluation order.
        severities: levels evaluated.
        seed: benchmark seed (see :func:`~advcorrupt.bench.corruption_seed`).
        num_images: test-set size.
        num_classes: K.
        ignore_index: the label left out of every metric, or ``None``.
        class_names: K names (the dataset's ``class_names``), or ``None`` (then ``"class i"``).
        model_name: a label for tables.
        dataset_name: a label of the test set.
        extra: free-form JSON-serialisable metadata, kept by the JSON round trip.

    Example:
        >>> r = SemanticRobustnessReport(
        ...     clean={"mIoU": 0.8, "aAcc": 0.9, "mAcc": 0.85, "IoU": [0.9, 0.7]},
        ...     results=(SemanticSettingResult("contrast", 1, 0.6, 0.8, 0.7, (0.8, 0.4)),
        ...              SemanticSettingResult("contrast", 2, 0.4, 0.7, 0.5, (0.6, 0.2))),
        ...     corruptions=("contrast",), severities=(1, 2), seed=0, num_images=4, num_classes=2,
        ...     class_names=("road", "car"))
        >>> round(r.mean_corrupted, 4), round(r.relative_robustness, 4)  # mPC, rPC
        (0.5, 0.625)
        >>> {k: round(v, 4) for k, v in r.class_iou_drop()["contrast"].items()}
        {'road': 0.2, 'car': 0.4}
    """

    clean: dict[str, Any]
    results: tuple[SemanticSettingResult, ...]
    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    seed: int
    num_images: int
    num_classes: int
    ignore_index: int | None = None
    class_names: tuple[str, ...] | None = None
    model_name: str | None = None
    dataset_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(
                f"class_names must hold num_classes = {self.num_classes} names; got {len(self.class_names)}"
            )
        rows = [("clean", self.clean.get("IoU", ())), *((f"({r.corruption!r}, {r.severity})", r.class_iou)
                                                     for r in self.results)]
        for where, ious in rows:
            if len(ious) != self.num_classes:
                raise ValueError(
                    f"per-class IoU must hold num_classes = {self.num_classes} values; {where} has {len(ious)}"
                )

    # ---- the task and the summaries every report kind has ---------------------------------

    @property
    def task(self) -> SemanticTask:
        """The :class:`~advcorrupt.tasks.SemanticTask` the report scores (its classes and ignore label)."""
        from ..tasks import SemanticTask

        return SemanticTask(self.num_classes, ignore_index=self.ignore_index)

    @property
    def primary_metric(self) -> str:
        """The key of :attr:`clean` the summaries use: the task's primary metric, ``"mIoU"``."""
        return self.task.primary_metric

    @property
    def mean_corrupted(self) -> float:
        """mPC: the mIoU averaged over every corruption x severity."""
        return _mean(r.miou for r in self.results)

    @property
    def relative_robustness(self) -> float:
        """rPC = mPC / clean mIoU (NaN when the clean mIoU is 0 or NaN)."""
        return _ratio(self.mean_corrupted, _float(self.clean.get("mIoU")))

    @property
    def per_corruption(self) -> dict[str, dict[str, float]]:
        """For each corruption, mIoU / aAcc / mAcc averaged over the severities, and its own rPC."""
        out: dict[str, dict[str, float]] = {}
        for name in self.corruptions:
            rows = [r for r in self.results if r.corruption == name]
            means = {k: _mean(r.metric(k) for r in rows) for k in SEMANTIC_METRIC_KEYS}
            out[name] = {**means, "rPC": _ratio(means["mIoU"], _float(self.clean.get("mIoU")))}
        return out

    def result(self, corruption: str, severity: int) -> SemanticSettingResult:
        """The row of one setting; ``KeyError`` if it was not evaluated."""
        return _find_setting(self, corruption, severity)  # type: ignore[no-any-return]

    # ---- per class ---------------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        """The class labels of tables: :attr:`class_names`, else ``"class 0"``, ``"class 1"``, ..."""
        return self.class_names if self.class_names is not None else tuple(f"class {i}" for i in range(self.num_classes))

    def class_iou(self, corruption: str | None = None) -> dict[str, float]:
        """Per-class IoU: clean (``corruption=None``) or under ``corruption`` averaged over the severities.

        The average over severities skips NaN (a class absent in one setting); NaN when absent in all.
        """
        if corruption is None:
            return dict(zip(self.names, (_float(v) for v in self.clean["IoU"]), strict=True))
        rows = [r for r in self.results if r.corruption == corruption]
        if not rows:
            raise KeyError(f"corruption must be one of the evaluated {list(self.corruptions)}; got {corruption!r}")
        return {name: _nanmean(r.class_iou[c] for r in rows) for c, name in enumerate(self.names)}

    def class_iou_drop(self) -> dict[str, dict[str, float]]:
        """``{corruption: {class: clean IoU - IoU under it (mean over severities)}}``, and ``"all corruptions"``.

        A positive drop is IoU lost to the corruption (a fraction; 0.2 = 20 points); NaN where the
        class is NaN clean or under every severity. ``"all corruptions"`` averages each class's
        drops over the corruptions (skipping NaN): the classes that break first have the largest.
        """
        clean = self.class_iou()
        out = {
            name: {c: clean[c] - v if math.isfinite(clean[c]) and math.isfinite(v) else math.nan
                   for c, v in self.class_iou(name).items()}
            for name in self.corruptions
        }
        out["all corruptions"] = {c: _nanmean(out[name][c] for name in self.corruptions) for c in self.names}
        return out

    # ---- serialisation -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN written as ``None``), with the summaries for human readers.

        ``"task"`` (``{"name": "semantic", "num_classes", "ignore_index"}``) tells
        :meth:`RobustnessReport.from_dict <advcorrupt.bench.RobustnessReport.from_dict>` which kind to build.
        """
        return _nan_to_none(
            {
                "task": {"name": "semantic", "num_classes": self.num_classes, "ignore_index": self.ignore_index},
                "model_name": self.model_name,
                "dataset_name": self.dataset_name,
                "seed": self.seed,
                "num_images": self.num_images,
                "class_names": None if self.class_names is None else list(self.class_names),
                "corruptions": list(self.corruptions),
                "severities": list(self.severities),
                "primary_metric": self.primary_metric,
                "clean": {**{k: _float(self.clean.get(k)) for k in SEMANTIC_METRIC_KEYS},
                          "IoU": [_float(v) for v in self.clean["IoU"]]},
                "mean_corrupted": self.mean_corrupted,
                "relative_robustness": self.relative_robustness,
                "per_corruption": self.per_corruption,
                "class_iou_drop": self.class_iou_drop(),
                "results": [r.to_dict() for r in self.results],
                "extra": dict(self.extra),
                "units": {"mIoU": "fraction", "aAcc": "fraction", "mAcc": "fraction", "IoU": "fraction",
                          "mean_corrupted": "fraction (mPC)", "relative_robustness": "ratio (rPC)"},
            }
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SemanticRobustnessReport:
        """Inverse of :meth:`to_dict` (derived summaries are recomputed, not read)."""
        if not isinstance(data, Mapping) or _task_name(data) != "semantic":
            got = _task_name(data) if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(
                f"not a semantic RobustnessReport dict: its 'task' must be {{'name': 'semantic', ...}}; got {got!r} "
                "(read any kind with RobustnessReport.from_json)"
            )
        try:
            task = data["task"]
            names = data.get("class_names")
            ignore = task.get("ignore_index")
            return cls(
                clean={**{k: _float(data["clean"].get(k)) for k in SEMANTIC_METRIC_KEYS},
                       "IoU": [_float(v) for v in data["clean"]["IoU"]]},
                results=tuple(SemanticSettingResult.from_metrics(r["corruption"], r["severity"], r)
                              for r in data["results"]),
                corruptions=tuple(data["corruptions"]),
                severities=tuple(int(s) for s in data["severities"]),
                seed=int(data["seed"]),
                num_images=int(data["num_images"]),
                num_classes=int(task["num_classes"]),
                ignore_index=None if ignore is None else int(ignore),
                class_names=None if names is None else tuple(str(n) for n in names),
                model_name=data.get("model_name"),
                dataset_name=data.get("dataset_name"),
                extra=dict(data.get("extra", {})),
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"not a semantic RobustnessReport dict: {e!r}") from None

    def to_json(self, path: str | Path) -> Path:
        """Write the report as JSON (standard JSON: NaN becomes ``null``); returns the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> SemanticRobustnessReport:
        """Read a report written by :meth:`to_json`."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    # ---- outputs (written by advcorrupt.bench.semantic_render) ---------------------------------

    def to_csv(self, path: str | Path) -> Path:
        """Write one row per corruption x severity (raw fractions), clean first; returns the path.

        Columns: ``model, corruption, severity, mIoU, aAcc, mAcc, clean_mIoU``, then ``IoU[<class>]``
        per class. The clean row has corruption ``clean`` and severity 0.
        """
        from .semantic_render import write_csv

        return write_csv(self, path)

    def to_markdown(self, *, digits: int = 2) -> str:
        """Markdown: the summary row (clean mIoU, per-corruption mIoU, mPC, rPC), the clean metrics,
        every corruption x severity, and the per-class IoU table (clean, per corruption, drop).

        Values in percent (rPC too).
        """
        from .semantic_render import markdown

        return markdown(self, digits=digits)

    def plot_heatmap(self, path: str | Path, *, metric: str = "mIoU", dpi: int = 120) -> Path:
        """Draw a corruption x severity heatmap of ``metric`` (``mIoU``, ``aAcc`` or ``mAcc``, in %)."""
        from .semantic_render import write_heatmap

        return write_heatmap(self, path, metric=metric, dpi=dpi)

    def plot_class_heatmap(self, path: str | Path, *, dpi: int = 120) -> Path:
        """Draw the classes x corruptions heatmap of the per-class IoU drop (points, mean over severities).

        One row per class (its clean IoU in the label), one column per corruption and a last
        column averaging them (:meth:`class_iou_drop`): the classes that break first stand out.
        """
        from .semantic_render import write_class_heatmap

        return write_class_heatmap(self, path, dpi=dpi)

    def save(self, folder: str | Path, *, stem: str = "robustness") -> dict[str, Path]:
        """Write Markdown, CSV, JSON, the mIoU heatmap and the per-class heatmap into ``folder``.

        As :meth:`RobustnessReport.save <advcorrupt.bench.RobustnessReport.save>`: staged in a
        temporary folder beside ``folder`` and moved in when all five files are complete.

        Returns:
            ``{"markdown", "csv", "json", "heatmap", "class_heatmap"}`` -> paths.
        """
        return write_staged(folder, {
            "markdown": (f"{stem}.md", lambda path: path.write_text(self.to_markdown())),
            "csv": (f"{stem}.csv", self.to_csv),
            "json": (f"{stem}.json", self.to_json),
            "heatmap": (f"{stem}_miou.png", self.plot_heatmap),
            "class_heatmap": (f"{stem}_class_iou_drop.png", self.plot_class_heatmap),
        })


def _class_names(names: Sequence[str] | None, num_classes: int) -> tuple[str, ...] | None:
    """``names`` as a tuple when it holds one name per class, else ``None`` (tables then say ``class i``)."""
    if names is None or isinstance(names, str):
        return None
    try:
        out = tuple(str(n) for n in names)
    except TypeError:
        return None
    return out if len(out) == num_classes else None
