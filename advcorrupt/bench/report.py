"""The robustness report: one model's clean and corrupted ISTD metrics (BALISTD's Tables 2-4 rows).

:class:`SettingResult` holds one (corruption, severity) row with the relative corruption error of
the paper's Eq. 9, ``RCE = (IoU_clean - IoU_corrupted) / IoU_clean``; :class:`RobustnessReport`
holds the clean metrics and every row, the summaries over them, the dict/JSON round trip and
:meth:`RobustnessReport.save`. How the report is written out as Markdown, CSV, JSON and a heatmap
PNG is :mod:`advcorrupt.bench.render`.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..tasks import Task
    from .semantic_report import SemanticRobustnessReport

#: The metrics reported for every setting, in table order. ``fa`` is in units of 1e-6.
METRIC_KEYS: tuple[str, ...] = ("iou", "niou", "pd", "fa")


@dataclass(frozen=True)
class SettingResult:
    """Metrics of one (corruption, severity) setting.

    Attributes:
        corruption: corruption name.
        severity: 1-based level.
        iou: dataset IoU (total intersection / total union), in [0, 1].
        niou: mean per-image IoU, in [0, 1].
        pd: probability of detection, in [0, 1].
        fa: false-alarm rate, in units of 1e-6.
        rce: relative corruption error ``(IoU_clean - iou) / IoU_clean`` (paper Eq. 9).
    """

    corruption: str
    severity: int
    iou: float
    niou: float
    pd: float
    fa: float
    rce: float


def _mean(values: Iterable[float]) -> float:
    vals = list(values)
    return statistics.fmean(vals) if vals else math.nan


@dataclass(frozen=True)
class RobustnessReport:
    """Clean and corrupted ISTD metrics of one model: the rows of BALISTD's Tables 2-4.

    Attributes:
        clean: clean-set metrics ``{"iou", "niou", "pd", "fa"}`` (``fa`` in units of 1e-6).
        results: one :class:`SettingResult` per corruption x severity, corruption-major.
        corruptions: corruption names, in evaluation order.
        severities: levels evaluated.
        seed: benchmark seed (see :func:`~advcorrupt.bench.corruption_seed`).
        num_images: test-set size.
        model_name: a label for tables (e.g. the model's class name).
        dataset_name: a label of the test set.
        threshold: probability threshold of the metrics.
        extra: free-form JSON-serialisable metadata (e.g. the training configuration); kept
            by the JSON round trip.

    Example:
        >>> r = RobustnessReport(
        ...     clean={"iou": 0.8, "niou": 0.8, "pd": 1.0, "fa": 0.0},
        ...     results=(SettingResult("gaussian_noise", 1, 0.6, 0.6, 0.9, 5.0, 0.25),),
        ...     corruptions=("gaussian_noise",), severities=(1,), seed=0, num_images=1)
        >>> r.mean_corrupted_iou, r.mean_rce
        (0.6, 0.25)
    """

    clean: dict[str, float]
    results: tuple[SettingResult, ...]
    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    seed: int
    num_images: int
    model_name: str | None = None
    dataset_name: str | None = None
    threshold: float = 0.5
    extra: dict[str, Any] = field(default_factory=dict)

    # ---- the task (binary masks), and the summaries every report kind has ---------------------

    @property
    def task(self) -> Task:
        """The task the report scores: :class:`~advcorrupt.tasks.BinaryTask` (foreground masks)."""
        from ..tasks import BinaryTask

        return BinaryTask()

    @property
    def primary_metric(self) -> str:
        """The key of :attr:`clean` the summaries use: the task's primary metric, ``"iou"``."""
        return self.task.primary_metric

    @property
    def mean_corrupted(self) -> float:
        """The primary metric averaged over every corruption x severity (here :attr:`mean_corrupted_iou`)."""
        return self.mean_corrupted_iou

    @property
    def relative_robustness(self) -> float:
        """:attr:`mean_corrupted` / clean IoU (NaN when the clean IoU is 0 or NaN); ``1 - mean RCE``."""
        return _ratio(self.mean_corrupted, self.clean.get(self.primary_metric, math.nan))

    # ---- summaries -----------------------------------------------------------------------

    @property
    def mean_corrupted_iou(self) -> float:
        """IoU averaged over every corruption x severity (the paper's "mean" column)."""
        return _mean(r.iou for r in self.results)

    @property
    def mean_rce(self) -> float:
        """RCE averaged over every corruption x severity."""
        return _mean(r.rce for r in self.results)

    @property
    def per_corruption(self) -> dict[str, dict[str, float]]:
        """For each corruption, its metrics and RCE averaged over the severities."""
        out: dict[str, dict[str, float]] = {}
        for name in self.corruptions:
            rows = [r for r in self.results if r.corruption == name]
            out[name] = {k: _mean(getattr(r, k) for r in rows) for k in (*METRIC_KEYS, "rce")}
        return out

    def result(self, corruption: str, severity: int) -> SettingResult:
        """The row of one setting; ``KeyError`` if it was not evaluated."""
        return _find_setting(self, corruption, severity)

    # ---- serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN written as ``None``), with the summaries for human readers."""
        return _nan_to_none(
            {
                "model_name": self.model_name,
                "dataset_name": self.dataset_name,
                "seed": self.seed,
                "num_images": self.num_images,
                "threshold": self.threshold,
                "corruptions": list(self.corruptions),
                "severities": list(self.severities),
                "clean": dict(self.clean),
                "mean_corrupted_iou": self.mean_corrupted_iou,
                "mean_rce": self.mean_rce,
                "per_corruption": self.per_corruption,
                "results": [
                    {k: getattr(r, k) for k in SettingResult.__dataclass_fields__} for r in self.results
                ],
                "extra": dict(self.extra),
                "units": {"iou": "fraction", "niou": "fraction", "pd": "fraction", "fa": "1e-6",
                          "rce": "fraction"},
            }
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RobustnessReport | SemanticRobustnessReport:
        """Inverse of :meth:`to_dict` (derived summaries are recomputed, not read).

        A dict reads back as the report class its task's kind registers: a semantic report's
        dict (``"task": {"name": "semantic", ...}``, written by
        :meth:`SemanticRobustnessReport.to_dict <advcorrupt.bench.SemanticRobustnessReport.to_dict>`)
        gives a :class:`~advcorrupt.bench.SemanticRobustnessReport`; a binary report's dict (no
        ``"task"`` key, as since version 0.1) gives a :class:`RobustnessReport`.
        """
        from ._report_kinds import REPORT_KINDS

        kind = REPORT_KINDS.get(_task_name(data)) if isinstance(data, Mapping) else None
        if kind is not None and not issubclass(cls, kind.report):
            return kind.report.from_dict(data)  # type: ignore[no-any-return]
        try:
            results = tuple(
                SettingResult(
                    corruption=str(r["corruption"]),
                    severity=int(r["severity"]),
                    **{k: _float(r[k]) for k in (*METRIC_KEYS, "rce")},
                )
                for r in data["results"]
            )
            return cls(
                clean={k: _float(v) for k, v in data["clean"].items()},
                results=results,
                corruptions=tuple(data["corruptions"]),
                severities=tuple(int(s) for s in data["severities"]),
                seed=int(data["seed"]),
                num_images=int(data["num_images"]),
                model_name=data.get("model_name"),
                dataset_name=data.get("dataset_name"),
                threshold=float(data.get("threshold", 0.5)),
                extra=dict(data.get("extra", {})),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a RobustnessReport dict: {e!r}") from None

    def to_json(self, path: str | Path) -> Path:
        """Write the report as JSON (standard JSON: NaN becomes ``null``); returns the path."""
        from .render import write_json

        return write_json(self, path)

    @classmethod
    def from_json(cls, path: str | Path) -> RobustnessReport | SemanticRobustnessReport:
        """Read a report written by :meth:`to_json`, binary or semantic (see :meth:`from_dict`)."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    # ---- outputs (written by advcorrupt.bench.render) ---------------------------------------

    def to_csv(self, path: str | Path) -> Path:
        """Write one row per corruption x severity (raw fractions; ``fa`` in 1e-6); returns the path.

        Columns: ``model, corruption, severity, iou, niou, pd, fa, rce, clean_iou``.
        """
        from .render import write_csv

        return write_csv(self, path)

    def to_markdown(self, *, digits: int = 2) -> str:
        """Markdown: the paper-style summary row, then the full corruption x severity table.

        IoU, nIoU, Pd and RCE are shown in percent, Fa in units of 1e-6.
        """
        from .render import markdown

        return markdown(self, digits=digits)

    def plot_heatmap(self, path: str | Path, *, metric: str = "iou", dpi: int = 120) -> Path:
        """Draw a corruption x severity heatmap of ``metric`` (default IoU) with values in the cells.

        Uses matplotlib's Agg canvas directly (no pyplot state, no display needed).

        Args:
            path: output PNG path.
            metric: one of ``iou``, ``niou``, ``pd``, ``fa``, ``rce``.
            dpi: resolution.

        Returns:
            The path written.
        """
        from .render import write_heatmap

        return write_heatmap(self, path, metric=metric, dpi=dpi)

    def save(self, folder: str | Path, *, stem: str = "robustness") -> dict[str, Path]:
        """Write Markdown, CSV, JSON and the IoU heatmap PNG into ``folder`` (created if needed).

        The files are written to a temporary folder beside ``folder`` and moved in when all four
        are complete, so an interrupted call leaves no half-written report.

        Returns:
            ``{"markdown", "csv", "json", "heatmap"}`` -> paths.
        """
        return write_staged(folder, {
            "markdown": (f"{stem}.md", lambda path: path.write_text(self.to_markdown())),
            "csv": (f"{stem}.csv", self.to_csv),
            "json": (f"{stem}.json", self.to_json),
            "heatmap": (f"{stem}_iou.png", self.plot_heatmap),
        })


def write_staged(folder: str | Path, files: Mapping[str, tuple[str, Callable[[Path], object]]]) -> dict[str, Path]:
    """Write a report's files into a hidden sibling folder, then move each into ``folder``.

    A failure while writing leaves ``folder`` as it was (no half-written report).

    Args:
        folder: the destination, created if missing.
        files: key -> (file name, writer called with the staged path).

    Returns:
        key -> the file's final path.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}.") as tmp:
        staged = Path(tmp)
        for name, write in files.values():
            write(staged / name)
        folder.mkdir(exist_ok=True)
        for name, _ in files.values():
            os.replace(staged / name, folder / name)
    return {key: folder / name for key, (name, _) in files.items()}


def _task_name(data: Mapping[str, Any]) -> str:
    """The task a report dict was written for: ``"binary"`` when it names none (every 0.1 report)."""
    task = data.get("task")
    return str(task.get("name", "binary")) if isinstance(task, Mapping) else "binary"


def _ratio(num: float, den: float) -> float:
    """``num / den``, NaN when ``den`` is 0 or either is NaN (a relative score of a dead model)."""
    if not (math.isfinite(num) and math.isfinite(den) and den > 0):
        return math.nan
    return num / den


def _float(v: Any) -> float:
    return math.nan if v is None else float(v)


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_none(v) for v in obj]
    return obj


def _find_setting(report: Any, corruption: str, severity: int) -> Any:
    """The row of ``report.results`` for one setting (either report kind); ``KeyError`` naming what was evaluated."""
    for r in report.results:
        if r.corruption == corruption and r.severity == severity:
            return r
    raise KeyError(
        f"no result for ({corruption!r}, {severity}); evaluated corruptions {list(report.corruptions)} "
        f"at severities {list(report.severities)}"
    )
