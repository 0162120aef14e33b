"""Evaluation metrics for infrared small-target detection (IoU, nIoU, Pd, Fa) and RCE (BALISTD Eq. 9)."""

from __future__ import annotations

from .istd import ISTDMetrics, iou, niou, pd_fa, rce

__all__ = ["ISTDMetrics", "iou", "niou", "pd_fa", "rce"]
