"""Evaluation metrics: infrared small-target detection (IoU, nIoU, Pd, Fa), RCE (BALISTD Eq. 9),
and semantic segmentation (mIoU, aAcc, mAcc, per-class IoU; mmsegmentation conventions)."""

from __future__ import annotations

from .istd import ISTDMetrics, iou, niou, pd_fa, rce
from .semantic import SegmentationMetrics

__all__ = ["ISTDMetrics", "SegmentationMetrics", "iou", "niou", "pd_fa", "rce"]
