"""Evaluation during training, and detecting a collapsed detector.

At the end of an evaluated epoch rank 0 scores the model on the test set with
:func:`advcorrupt.bench.evaluate`. A validation IoU below :data:`COLLAPSE_IOU` means the detector
collapsed (typically to all-background logits): the run warns loudly, records the epoch, and its
summary says ``failed`` so that no one averages it with working runs (docs/results.md).
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .distributed import _unwrap
from .run import _Position, _Run

__all__ = ["COLLAPSE_IOU", "is_collapsed"]


def _validate(run: _Run, pos: _Position, epoch: int) -> dict[str, Any]:
    """Validation metrics as ``val_*`` log entries; a collapsed detector is warned about and recorded."""
    from ..bench import evaluate

    val = evaluate(_unwrap(run.ddp_model), run.test_ds, preprocess=run.preprocess.to(run.device), device=run.device)
    pos.val = val
    collapsed = is_collapsed(val)
    if collapsed:
        pos.collapsed_epochs.append(epoch + 1)
        _warn_collapse(epoch + 1, val, run.out)
    return {**{f"val_{k}": v for k, v in val.items()}, "collapsed": collapsed}


# A validation IoU below this (1 point) means the detector has collapsed, typically to all-background.
COLLAPSE_IOU = 0.01


def is_collapsed(val: Mapping[str, float]) -> bool:
    """Whether validation metrics show a collapsed detector (IoU ~0: no or almost no target pixel found).

    Example:
        >>> is_collapsed({"iou": 0.004, "pd": 0.0}), is_collapsed({"iou": 0.62}), is_collapsed({"iou": float("nan")})
        (True, False, True)
    """
    iou = val.get("iou", float("nan"))
    return not math.isfinite(iou) or iou < COLLAPSE_IOU


def _collapse_message(epoch: int, val: Mapping[str, float]) -> str:
    return (
        f"the detector collapsed: validation IoU {100 * val.get('iou', float('nan')):.2f}% at epoch {epoch} "
        f"(below {100 * COLLAPSE_IOU:.0f}%: it finds no or almost no target pixel, typically all-background "
        "logits). Add --bce-weight 1 --bce-pos-weight 10 (the quick profile's loss), lower --lr or raise "
        "--warmup-epochs; do not average this run with working ones."
    )


def _warn_collapse(epoch: int, val: Mapping[str, float], out: Path) -> None:
    msg = f"{out}: " + _collapse_message(epoch, val)
    warnings.warn(msg, RuntimeWarning, stacklevel=5)  # fit's caller (fit > _finish_epoch > _validate > here)
    print(f"WARNING: {msg}", file=sys.stderr, flush=True)
