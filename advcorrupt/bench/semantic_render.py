"""Writing a :class:`~advcorrupt.bench.SemanticRobustnessReport` out: Markdown, CSV, heatmap PNGs.

These are the bodies of the report's ``to_markdown``, ``to_csv``, ``plot_heatmap`` and
``plot_class_heatmap`` methods (call those; their docstrings are the reference). Tables show mIoU,
aAcc, mAcc, mPC and rPC in percent (Kamann & Rother, CVPR 2020; mmdetection's corruption
benchmark); the CSV and JSON files keep the raw fractions.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .render import _draw_heatmap
from .semantic_report import SEMANTIC_METRIC_KEYS, SemanticRobustnessReport, _nanmean
from .tables import _fmt_metric, summary_table

# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def markdown(report: SemanticRobustnessReport, *, digits: int = 2) -> str:
    """The text of :meth:`SemanticRobustnessReport.to_markdown`."""
    title = report.model_name or "model"
    ignore = f", ignore label {report.ignore_index}" if report.ignore_index is not None else ""
    lines = [
        f"## Robustness of {title}",
        "",
        f"{report.num_images} test images{f' ({report.dataset_name})' if report.dataset_name else ''}, "
        f"{report.num_classes} classes{ignore}, severities {', '.join(map(str, report.severities))}, seed "
        f"{report.seed}. mIoU, aAcc, mAcc in %; mPC: mIoU averaged over every corruption x severity; "
        "rPC = mPC / clean mIoU, in %.",
        "",
        "### Summary (mIoU per corruption, averaged over severities)",
        "",
        summary_table([report], digits=digits),
        "",
        "### Clean",
        "",
        "| mIoU | aAcc | mAcc |",
        "|---:|---:|---:|",
        "| " + " | ".join(_fmt_metric(k, report.clean.get(k, math.nan), digits) for k in SEMANTIC_METRIC_KEYS) + " |",
        "",
        "### Every corruption x severity",
        "",
        "| corruption | severity | mIoU | aAcc | mAcc |",
        "|---|---:|---:|---:|---:|",
        *(f"| {r.corruption} | {r.severity} | " + " | ".join(_fmt_metric(k, r.metric(k), digits)
                                                            for k in SEMANTIC_METRIC_KEYS) + " |"
          for r in report.results),
        "",
        "### Per-class IoU (clean; each corruption averaged over severities; drop = clean - mean corrupted)",
        "",
        "Classes sorted by drop, largest first: the first rows break first.",
        "",
        *_class_table(report, digits),
    ]
    return "\n".join(lines) + "\n"


def _class_table(report: SemanticRobustnessReport, digits: int) -> list[str]:
    """Markdown lines: one row per class, its clean IoU, its IoU under each corruption, mean and drop."""
    clean = report.class_iou()
    per = {name: report.class_iou(name) for name in report.corruptions}
    drop = report.class_iou_drop()["all corruptions"]
    order = sorted(report.names, key=lambda c: -drop[c] if math.isfinite(drop[c]) else math.inf)
    head = ["class", "clean", *report.corruptions, "mean corrupted", "drop"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for c in order:
        values = [clean[c], *(per[name][c] for name in report.corruptions),
                  _nanmean(per[name][c] for name in report.corruptions), drop[c]]
        lines.append(f"| {c} | " + " | ".join(_fmt_metric("iou", v, digits) for v in values) + " |")
    return lines


# --------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------


def write_csv(report: SemanticRobustnessReport, path: str | Path) -> Path:
    """The file of :meth:`SemanticRobustnessReport.to_csv`; returns the path."""
    path = Path(path)
    clean_miou = repr(float(report.clean.get("mIoU", math.nan)))
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "corruption", "severity", *SEMANTIC_METRIC_KEYS, "clean_mIoU",
                         *(f"IoU[{c}]" for c in report.names)])
        clean = [float(report.clean.get(k, math.nan)) for k in SEMANTIC_METRIC_KEYS]
        writer.writerow([report.model_name or "", "clean", 0, *map(repr, clean), clean_miou,
                         *(repr(float(v)) for v in report.clean["IoU"])])
        for r in report.results:
            writer.writerow([report.model_name or "", r.corruption, r.severity,
                             *(repr(float(r.metric(k))) for k in SEMANTIC_METRIC_KEYS), clean_miou,
                             *(repr(float(v)) for v in r.class_iou)])
    return path


# --------------------------------------------------------------------------------------------
# Heatmaps
# --------------------------------------------------------------------------------------------


def write_heatmap(report: SemanticRobustnessReport, path: str | Path, *, metric: str = "mIoU", dpi: int = 120) -> Path:
    """The PNG of :meth:`SemanticRobustnessReport.plot_heatmap`; returns the path."""
    if metric not in SEMANTIC_METRIC_KEYS:
        raise ValueError(f"metric must be one of {list(SEMANTIC_METRIC_KEYS)}; got {metric!r}")
    rows, cols = list(report.corruptions), list(report.severities)
    grid = [[math.nan] * len(cols) for _ in rows]
    for r in report.results:
        if r.corruption in rows and r.severity in cols:
            grid[rows.index(r.corruption)][cols.index(r.severity)] = r.metric(metric)
    values = torch.tensor(grid, dtype=torch.float64) * 100.0
    clean = float(report.clean.get(metric, math.nan))
    summary = [f"clean {100 * clean:.1f}" if math.isfinite(clean) else "clean n/a"]
    if metric == "mIoU":
        summary += [f"mPC {100 * report.mean_corrupted:.1f}", f"rPC {100 * report.relative_robustness:.1f}"]
    title = f"{report.model_name or 'model'}: {metric} (%)\n" + ", ".join(summary)
    fig = _draw_heatmap(values, rows, cols, metric=metric, title=title, dpi=dpi)
    path = Path(path)
    fig.savefig(path, format="png")
    return path


def write_class_heatmap(report: SemanticRobustnessReport, path: str | Path, *, dpi: int = 120) -> Path:
    """The PNG of :meth:`SemanticRobustnessReport.plot_class_heatmap`; returns the path."""
    drops = report.class_iou_drop()
    cols = [*report.corruptions, "all corruptions"]
    values = torch.tensor([[drops[col][c] for col in cols] for c in report.names], dtype=torch.float64) * 100.0
    clean = report.class_iou()
    labels = [f"{c} ({100 * clean[c]:.1f})" if math.isfinite(clean[c]) else f"{c} (n/a)" for c in report.names]
    title = f"{report.model_name or 'model'}: per-class IoU drop (points; clean IoU in brackets)"
    fig = _draw_diverging(values, labels, cols, title=title, dpi=dpi)
    path = Path(path)
    fig.savefig(path, format="png")
    return path


def _draw_diverging(values: Tensor, rows: list[str], cols: list[str], *, title: str, dpi: int) -> Any:
    """A matplotlib Figure (Agg canvas): ``values`` on a red (loss) / blue (gain) scale centred at 0."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    finite = values[values.isfinite()]
    span = max(float(finite.abs().max()), 1.0) if finite.numel() else 1.0
    fig = Figure(figsize=(2.2 + 0.8 * len(cols), 1.4 + 0.4 * len(rows)), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(values.numpy(), cmap="RdBu_r", vmin=-span, vmax=span, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for i in range(len(rows)):
        for j in range(len(cols)):
            v = float(values[i, j])
            if math.isfinite(v):
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=7,
                        color="white" if abs(v) > span / 2 else "black")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.05)
    fig.tight_layout()
    return fig
