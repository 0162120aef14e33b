"""Evaluation during training, and detecting a collapsed model.

At the end of an evaluated epoch rank 0 scores the model on the validation set with
:func:`advcorrupt.bench.evaluate`, with the run's task (:mod:`advcorrupt.tasks`): binary runs get
IoU / nIoU / Pd / Fa, semantic runs mIoU / aAcc / mAcc and the per-class IoU, logged as ``val_*``
entries. A collapsed model (:func:`is_collapsed`) makes the run warn loudly and record the epoch,
and its summary says ``failed`` so that no one averages it with working runs (docs/results.md):

- binary: a validation IoU below :data:`COLLAPSE_IOU` (typically all-background logits);
- semantic: no more than one class with a non-zero validation IoU (typically one class predicted
  for every pixel).
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .distributed import _unwrap
from .run import _Position, _Run

__all__ = ["COLLAPSE_IOU", "is_collapsed"]


def _validate(run: _Run, pos: _Position, epoch: int) -> dict[str, Any]:
    """Validation metrics as ``val_*`` log entries; a collapsed model is warned about and recorded."""
    from ..bench import evaluate

    val = evaluate(
        _unwrap(run.ddp_model), run.test_ds, preprocess=run.preprocess.to(run.device), device=run.device,
        task=run.task,
    )
    pos.val = val
    collapsed = is_collapsed(val)
    if collapsed:
        pos.collapsed_epochs.append(epoch + 1)
        _warn_collapse(epoch + 1, val, run.out)
    return {**{f"val_{k}": v for k, v in val.items()}, "collapsed": collapsed}


# A validation IoU below this (1 point) means the detector has collapsed, typically to all-background.
COLLAPSE_IOU = 0.01


def is_collapsed(val: Mapping[str, Any]) -> bool:
    """Whether validation metrics show a collapsed model.

    Binary metrics (``"iou"``): IoU ~0, no or almost no target pixel found. Semantic metrics
    (``"mIoU"`` and the per-class ``"IoU"``): at most one class has a non-zero IoU. A model that
    predicts one class for every pixel always falls here (every other class has no true positive),
    and so does one whose other predictions are all wrong; the test needs only the logged metrics.

    Example:
        >>> is_collapsed({"iou": 0.004, "pd": 0.0}), is_collapsed({"iou": 0.62}), is_collapsed({"iou": float("nan")})
        (True, False, True)
        >>> nan = float("nan")
        >>> is_collapsed({"mIoU": 0.21, "IoU": [0.0, 0.63, 0.0, nan]})  # one class predicted everywhere
        True
        >>> is_collapsed({"mIoU": 0.3, "IoU": [0.1, 0.63, 0.0, nan]})
        False
    """
    if "mIoU" in val:
        per_class: Sequence[float] = val.get("IoU") or []
        right = [v for v in per_class if math.isfinite(v) and v > 0]
        return not math.isfinite(val["mIoU"]) or len(right) <= 1
    iou = val.get("iou", float("nan"))
    return not math.isfinite(iou) or iou < COLLAPSE_IOU


def _collapse_message(epoch: int, val: Mapping[str, Any]) -> str:
    if "mIoU" in val:
        right = sum(1 for v in val.get("IoU") or [] if math.isfinite(v) and v > 0)
        return (
            f"the model collapsed: validation mIoU {100 * val['mIoU']:.2f}% at epoch {epoch}, with {right} class(es) "
            "of non-zero IoU (it predicts a single class, or gets at most one right). Lower --lr, raise "
            "--warmup-epochs or train longer; do not average this run with working ones."
        )
    return (
        f"the detector collapsed: validation IoU {100 * val.get('iou', float('nan')):.2f}% at epoch {epoch} "
        f"(below {100 * COLLAPSE_IOU:.0f}%: it finds no or almost no target pixel, typically all-background "
        "logits). Add --bce-weight 1 --bce-pos-weight 10 (the quick profile's loss), lower --lr or raise "
        "--warmup-epochs; do not average this run with working ones."
    )


def _warn_collapse(epoch: int, val: Mapping[str, Any], out: Path) -> None:
    msg = f"{out}: " + _collapse_message(epoch, val)
    warnings.warn(msg, RuntimeWarning, stacklevel=5)  # fit's caller (fit > _finish_epoch > _validate > here)
    print(f"WARNING: {msg}", file=sys.stderr, flush=True)
