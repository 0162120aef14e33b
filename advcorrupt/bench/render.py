"""Writing a :class:`~advcorrupt.bench.RobustnessReport` out: Markdown, CSV, JSON, heatmap PNG.

These are the bodies of the report's ``to_markdown``, ``to_csv``, ``to_json`` and
``plot_heatmap`` methods (call those; their docstrings are the reference). Tables show IoU, nIoU,
Pd and RCE (BALISTD, AAAI 2024, Eq. 9) in percent and Fa in units of 1e-6; the CSV and JSON files
keep the raw fractions.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .report import METRIC_KEYS, RobustnessReport, SettingResult
from .tables import _fmt_metric, summary_table

# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def markdown(report: RobustnessReport, *, digits: int = 2) -> str:
    """The text of :meth:`RobustnessReport.to_markdown`."""
    title = report.model_name or "model"
    lines = [
        f"## Robustness of {title}",
        "",
        f"{report.num_images} test images{f' ({report.dataset_name})' if report.dataset_name else ''}, "
        f"severities {', '.join(map(str, report.severities))}, seed {report.seed}, threshold "
        f"{report.threshold:g}. IoU, nIoU, Pd, RCE in %; Fa in 1e-6.",
        "",
        "### Summary (IoU per corruption, averaged over severities)",
        "",
        summary_table([report], digits=digits),
        "",
        "### Clean",
        "",
        "| IoU | nIoU | Pd | Fa |",
        "|---:|---:|---:|---:|",
        "| " + " | ".join(_fmt_metric(k, report.clean.get(k, math.nan), digits) for k in METRIC_KEYS) + " |",
        "",
        "### Every corruption x severity",
        "",
        *_settings_table(report.results, digits),
    ]
    return "\n".join(lines) + "\n"


def _settings_table(results: Sequence[SettingResult], digits: int) -> list[str]:
    """Markdown lines of the corruption x severity table of a report."""
    lines = ["| corruption | severity | IoU | nIoU | Pd | Fa | RCE |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        cells = [_fmt_metric(k, getattr(r, k), digits) for k in (*METRIC_KEYS, "rce")]
        lines.append(f"| {r.corruption} | {r.severity} | " + " | ".join(cells) + " |")
    return lines


# --------------------------------------------------------------------------------------------
# CSV and JSON
# --------------------------------------------------------------------------------------------


def write_csv(report: RobustnessReport, path: str | Path) -> Path:
    """The file of :meth:`RobustnessReport.to_csv`; returns the path."""
    path = Path(path)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "corruption", "severity", *METRIC_KEYS, "rce", "clean_iou"])
        for r in report.results:
            writer.writerow(
                [report.model_name or "", r.corruption, r.severity,
                 *(repr(float(getattr(r, k))) for k in (*METRIC_KEYS, "rce")),
                 repr(float(report.clean.get("iou", math.nan)))]
            )
    return path


def write_json(report: RobustnessReport, path: str | Path) -> Path:
    """The file of :meth:`RobustnessReport.to_json` (NaN written as ``null``); returns the path."""
    path = Path(path)
    path.write_text(json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n")
    return path


# --------------------------------------------------------------------------------------------
# Heatmap PNG
# --------------------------------------------------------------------------------------------


def write_heatmap(report: RobustnessReport, path: str | Path, *, metric: str = "iou", dpi: int = 120) -> Path:
    """The PNG of :meth:`RobustnessReport.plot_heatmap`; returns the path."""
    if metric not in (*METRIC_KEYS, "rce"):
        raise ValueError(f"metric must be one of {[*METRIC_KEYS, 'rce']}; got {metric!r}")
    scale = 1.0 if metric == "fa" else 100.0
    values = _heatmap_grid(report, metric) * scale
    unit = " (1e-6)" if metric == "fa" else " (%)"
    clean = report.clean.get(metric)
    clean_txt = f", clean {clean * scale:.1f}" if clean is not None and metric != "rce" else ""
    title = f"{report.model_name or 'model'}: {metric}{unit}{clean_txt}"
    fig = _draw_heatmap(values, list(report.corruptions), list(report.severities), metric=metric, title=title, dpi=dpi)
    path = Path(path)
    fig.savefig(path, format="png")
    return path


def _heatmap_grid(report: RobustnessReport, metric: str) -> Tensor:
    """(corruptions, severities) float64 grid of ``metric``; NaN where a setting is missing."""
    rows, cols = list(report.corruptions), list(report.severities)
    grid = [[math.nan] * len(cols) for _ in rows]
    for r in report.results:
        if r.corruption in rows and r.severity in cols:
            grid[rows.index(r.corruption)][cols.index(r.severity)] = getattr(r, metric)
    return torch.tensor(grid, dtype=torch.float64)


#: Metrics drawn on a fixed 0-100 % scale, higher is better (the semantic ones too).
_PERCENT_METRICS: tuple[str, ...] = ("iou", "niou", "pd", "mIoU", "aAcc", "mAcc")


def _draw_heatmap(values: Tensor, rows: list[str], cols: list[int], *, metric: str, title: str, dpi: int) -> Any:
    """A matplotlib Figure (Agg canvas) of ``values`` with the numbers written in the cells."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    finite = values[values.isfinite()]
    vmin, vmax = (0.0, 100.0) if metric in _PERCENT_METRICS else (
        (float(finite.min()), float(finite.max())) if finite.numel() else (0.0, 1.0)
    )
    cmap = "viridis" if metric in _PERCENT_METRICS else "magma_r"
    fig = Figure(figsize=(1.2 + 0.9 * len(cols), 1.0 + 0.45 * len(rows)), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(values.numpy(), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(cols)), [str(c) for c in cols])
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("severity")
    mid = (vmin + vmax) / 2
    for i in range(len(rows)):
        for j in range(len(cols)):
            v = float(values[i, j])
            if math.isfinite(v):
                dark = (v < mid) if cmap == "viridis" else (v > mid)
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.05)
    fig.tight_layout()
    return fig
