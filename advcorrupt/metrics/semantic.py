"""Semantic segmentation metrics: mIoU, aAcc, mAcc and per-class IoU / accuracy.

The conventions are mmsegmentation's (``mmseg.evaluation.metrics.IoUMetric`` and
``mmseg.evaluation.metrics.iou_metric.intersect_and_union`` / ``total_area_to_metrics``), computed
from one (K, K) confusion matrix accumulated over the whole dataset (rows: target class, columns:
predicted class):

* pixels whose target is ``ignore_index`` are dropped, whatever was predicted there;
* ``IoU_c = TP_c / (TP_c + FP_c + FN_c)`` and ``Acc_c = TP_c / (TP_c + FN_c)`` (the recall of
  class c), from dataset totals, not per-image averages;
* a class with no target pixel has ``Acc`` NaN; a class absent from both target and prediction
  has ``IoU`` NaN (a class predicted but never present has IoU 0);
* ``mIoU`` and ``mAcc`` are the means over the classes that are not NaN (``nanmean``);
  ``aAcc = trace / total`` is the pixel accuracy over every non-ignored pixel;
* values are fractions in [0, 1] (mmsegmentation's logs multiply them by 100).

Accumulation never reads a device value on the host: the counts are one ``scatter_add_`` into a
K*K + 1 buffer whose last bin receives the dropped pixels (``torch.bincount`` would give the same
counts, but on CUDA it reads the input's maximum on the host to size its output). Bad labels are
found with device-side reductions: on CPU they raise at once in :meth:`SegmentationMetrics.update`;
on an accelerator they are kept as a device flag and raise in :meth:`SegmentationMetrics.compute`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..corruptions.functional import _host_reads_ok

__all__ = ["SegmentationMetrics"]

# Slots of the bad-label flag: 0 means "none seen"; low labels are stored negated (so all are max-reduced).
_FLAG_NAMES = (("target", "high"), ("target", "low"), ("logits_or_labels", "high"), ("logits_or_labels", "low"))


class SegmentationMetrics:
    """Accumulates a confusion matrix and computes mIoU, aAcc, mAcc and per-class IoU / Acc.

    The matrix lives on the inputs' device (or ``device``) and :meth:`update` never synchronises
    with the host. Under ``torch.distributed``, call :meth:`sync` on every rank before
    :meth:`compute` to sum the matrices of all ranks.

    Args:
        num_classes: K, the number of classes (>= 2); labels are 0 .. K-1.
        ignore_index: target label whose pixels are dropped (e.g. 255, or -100 as in
            ``torch.nn.CrossEntropyLoss``); ``None``: every pixel counts.
        device: where to keep the matrix; inputs on another device are moved there. ``None``:
            the device of the first :meth:`update` (later inputs must stay on it).

    Shape:
        - logits_or_labels: scores (B, K, H, W) (logits or probabilities; argmax over dim 1), or integer
          predicted labels (B, H, W) or (B, 1, H, W).
        - target: integer class indices (B, H, W) or (B, 1, H, W), in 0 .. K-1 or ``ignore_index``.

    Example:
        >>> m = SegmentationMetrics(3, ignore_index=255)
        >>> target = torch.tensor([[[0, 0, 1, 255]]])  # (B, H, W); the last pixel is ignored
        >>> m.update(torch.tensor([[[0, 1, 1, 2]]]), target)  # predicted labels
        >>> out = m.compute()
        >>> out["IoU"], out["Acc"]  # class 2 is only predicted on the ignored pixel: NaN
        ([0.5, 0.5, nan], [0.5, 1.0, nan])
        >>> out["mIoU"], out["mAcc"], round(out["aAcc"], 4)
        (0.5, 0.75, 0.6667)
        >>> out["confusion_matrix"]
        tensor([[1, 1, 0],
                [0, 1, 0],
                [0, 0, 0]])
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None, *, device: torch.device | str | None = None) -> None:
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2; got {num_classes!r}")
        if ignore_index is not None and (not isinstance(ignore_index, int) or isinstance(ignore_index, bool)):
            raise TypeError(f"ignore_index must be an int or None; got {type(ignore_index).__name__}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.device = torch.device(device) if device is not None else None
        self.reset()

    # ------------------------------------------------------------------------------ state
    def reset(self) -> None:
        """Clear the confusion matrix and the bad-label flag (and any synchronised copy)."""
        self._counts: Tensor | None = None  # (K*K + 1,) int64; the last bin holds dropped pixels
        self._bad: Tensor | None = None  # (4,) int64, see _FLAG_NAMES
        self._synced: tuple[Tensor, Tensor] | None = None  # (counts, bad) summed over ranks by sync()
        if self.device is not None:
            self._allocate(self.device)

    def _allocate(self, device: torch.device) -> None:
        k2 = self.num_classes * self.num_classes
        self._counts = torch.zeros(k2 + 1, dtype=torch.int64, device=device)
        self._bad = torch.zeros(len(_FLAG_NAMES), dtype=torch.int64, device=device)

    def _local(self) -> tuple[Tensor, Tensor]:
        """This process's (counts, flag), allocated on the CPU if nothing was added yet."""
        if self._counts is None or self._bad is None:
            self._allocate(torch.device("cpu"))
        assert self._counts is not None and self._bad is not None
        return self._counts, self._bad

    @property
    def confusion_matrix(self) -> Tensor:
        """The (K, K) int64 matrix :meth:`compute` uses (rows: target, columns: prediction); a view."""
        counts, _ = self._synced if self._synced is not None else self._local()
        return counts[: self.num_classes**2].view(self.num_classes, self.num_classes)

    # ------------------------------------------------------------------------------ update
    def update(self, logits_or_labels: Tensor, target: Tensor) -> None:
        """Add a batch of predictions and their target labels to the confusion matrix.

        Args:
            logits_or_labels: floating-point scores (B, K, H, W), logits or probabilities (the
                argmax over dim 1 is the prediction), or integer predicted labels (B, H, W) or
                (B, 1, H, W).
            target: integer class indices (B, H, W) or (B, 1, H, W), in 0 .. K-1 or ``ignore_index``.

        Raises:
            TypeError: an argument is not a tensor, or ``target`` is floating point.
            ValueError: shapes that do not match each other or ``num_classes``; inputs on another
                device than the matrix; on CPU, a target label outside 0 .. K-1 that is not
                ``ignore_index``, or a predicted label outside 0 .. K-1, named with its position
                (nothing of the batch is counted). On an accelerator these raise in :meth:`compute`.
        """
        labels, from_scores, tgt = self._labels(logits_or_labels, target)
        if tgt.numel() == 0:
            return
        device = self._device_for(tgt.device)
        labels, tgt = labels.to(device), tgt.to(device)
        k = self.num_classes
        kept = tgt != self.ignore_index if self.ignore_index is not None else torch.ones_like(tgt, dtype=torch.bool)
        counted = kept & (tgt >= 0) & (tgt < k)
        flags = [_out_of_range(tgt, k, kept)]
        if from_scores:  # an argmax is always in range
            flags.append(tgt.new_zeros(2))
        else:
            flags.append(_out_of_range(labels, k, None))
            counted &= (labels >= 0) & (labels < k)
        flag = torch.cat(flags)
        if _host_reads_ok(device) and bool(flag.any()):  # CPU: refuse before counting anything
            raise ValueError(self._bad_label(*_locate(labels, tgt, k, kept)))
        counts, bad = self._counts, self._bad
        assert counts is not None and bad is not None
        idx = torch.where(counted, tgt * k + labels, k * k).reshape(-1)  # k * k: the dropped pixels' bin
        counts.scatter_add_(0, idx, torch.ones((), dtype=torch.int64, device=device).expand(idx.numel()))
        torch.maximum(bad, flag, out=bad)
        self._synced = None

    def _labels(self, preds: Tensor, target: Tensor) -> tuple[Tensor, bool, Tensor]:
        """Predicted labels (B, H, W) int64, whether they came from scores, and target (B, H, W) int64."""
        k = self.num_classes
        for name, t in (("logits_or_labels", preds), ("target", target)):
            if not isinstance(t, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor; got {type(t).__name__}")
        if target.is_floating_point() or target.is_complex():
            raise TypeError(
                f"target must hold integer class indices (B, H, W) or (B, 1, H, W), e.g. int64 or uint8; got {target.dtype}"
            )
        if target.ndim == 4 and target.shape[1] == 1:
            target = target[:, 0]
        if target.ndim != 3:
            raise ValueError(f"target must have shape (B, H, W) or (B, 1, H, W); got {tuple(target.shape)}")
        preds = preds.detach()
        from_scores = preds.is_floating_point()
        if from_scores:
            if preds.ndim != 4 or preds.shape[1] != k:
                raise ValueError(
                    f"floating-point logits_or_labels must be scores of shape (B, K, H, W) with K = num_classes = {k} "
                    f"(integer ones are labels); got {tuple(preds.shape)}"
                )
            labels = preds.argmax(1)
        else:
            if preds.is_complex():
                raise TypeError(f"logits_or_labels must be float scores or integer labels; got {preds.dtype}")
            if preds.ndim == 4 and preds.shape[1] == 1:
                preds = preds[:, 0]
            if preds.ndim != 3:
                raise ValueError(
                    f"integer logits_or_labels must be labels of shape (B, H, W) or (B, 1, H, W) (scores: floating point "
                    f"(B, K, H, W)); got {tuple(preds.shape)}"
                )
            labels = preds
        if labels.shape != target.shape:
            raise ValueError(
                f"logits_or_labels and target must cover the same pixels (B, H, W); got logits_or_labels {tuple(preds.shape)} "
                f"(pixels {tuple(labels.shape)}) and target {tuple(target.shape)}"
            )
        if labels.device != target.device:
            raise ValueError(f"logits_or_labels and target must be on one device; got {labels.device} and {target.device}")
        return labels.long(), from_scores, target.long()

    def _device_for(self, device: torch.device) -> torch.device:
        """The matrix's device, allocating it on ``device`` at the first update."""
        if self.device is not None:
            return self.device
        if self._counts is None:
            self._allocate(device)
            return device
        if self._counts.device != device:
            raise ValueError(
                f"logits_or_labels and target must stay on the device of the earlier updates ({self._counts.device}); got {device}. "
                "Pass device=... to SegmentationMetrics to accumulate inputs from several devices in one place"
            )
        return device

    def _bad_label(self, name: str, label: int, where: str) -> str:
        """The message for a label outside 0 .. K-1 found in ``name`` ("target" or "logits_or_labels")."""
        k, ign = self.num_classes, self.ignore_index
        if name == "target":
            also = f"that is not ignore_index ({ign})" if ign is not None else "(ignore_index is None)"
            return f"target must hold labels in 0..{k - 1} (num_classes = {k}) or ignore_index; got label {label} {also}{where}"
        return f"predicted labels (logits_or_labels) must be in 0..{k - 1} (num_classes = {k}); got label {label}{where}"

    # ------------------------------------------------------------------------------ results
    def compute(self) -> dict[str, Any]:
        """The metrics of everything added since the last :meth:`reset` (all ranks after :meth:`sync`).

        Returns:
            ``{"mIoU", "aAcc", "mAcc"}`` floats (NaN when nothing was counted), ``"IoU"`` and
            ``"Acc"`` lists of K floats (NaN as described in the module docstring), and
            ``"confusion_matrix"``: a (K, K) int64 CPU tensor (rows: target, columns: prediction).

        Raises:
            ValueError: a bad label was added on an accelerator (see :meth:`update`); its pixels
                are not in the matrix. Call :meth:`reset` after fixing the labels.
        """
        counts, bad = self._synced if self._synced is not None else self._local()
        if bool(bad.any()):
            slot = int(bad.ne(0).int().argmax())
            name, side = _FLAG_NAMES[slot]
            value = int(bad[slot]) * (1 if side == "high" else -1)
            raise ValueError(self._bad_label(name, value, " (found on the device; run the batch on CPU to locate it)"))
        cm = counts[: self.num_classes**2].view(self.num_classes, self.num_classes).cpu()
        c = cm.double()
        tp, n_target, n_pred = c.diagonal(), c.sum(1), c.sum(0)
        iou = tp / (n_target + n_pred - tp)  # 0 / 0 = NaN: absent from target and prediction
        acc = tp / n_target  # NaN: no target pixel
        total = c.sum()
        return {
            "mIoU": float(iou.nanmean()),
            "aAcc": float(tp.sum() / total) if total > 0 else math.nan,
            "mAcc": float(acc.nanmean()),
            "IoU": iou.tolist(),
            "Acc": acc.tolist(),
            "confusion_matrix": cm.clone(),
        }

    # ------------------------------------------------------------------------------ combining
    def merge(self, other: SegmentationMetrics) -> SegmentationMetrics:
        """Add ``other``'s counts (its local ones, not a :meth:`sync` result) to this object; returns ``self``.

        Raises:
            TypeError: ``other`` is not a :class:`SegmentationMetrics`.
            ValueError: ``num_classes`` or ``ignore_index`` differ.
        """
        if not isinstance(other, SegmentationMetrics):
            raise TypeError(f"other must be a SegmentationMetrics; got {type(other).__name__}")
        self._check_same(other.num_classes, other.ignore_index, "other")
        if other._counts is None or other._bad is None:
            return self
        device = self._device_for(other._counts.device) if self._counts is None else self._counts.device
        counts, bad = self._local()
        counts.add_(other._counts.to(device))
        torch.maximum(bad, other._bad.to(device), out=bad)
        self._synced = None
        return self

    def __add__(self, other: SegmentationMetrics) -> SegmentationMetrics:
        """A new object holding the counts of both (see :meth:`merge`)."""
        if not isinstance(other, SegmentationMetrics):
            return NotImplemented
        out = SegmentationMetrics(self.num_classes, self.ignore_index, device=self.device)
        return out.merge(self).merge(other)

    def _check_same(self, num_classes: object, ignore_index: object, name: str) -> None:
        if num_classes != self.num_classes or ignore_index != self.ignore_index:
            raise ValueError(
                f"{name} must have num_classes = {self.num_classes} and ignore_index = {self.ignore_index}; "
                f"got num_classes = {num_classes} and ignore_index = {ignore_index}"
            )

    def sync(self, group: Any = None) -> SegmentationMetrics:
        """Sum the confusion matrices of every rank (``torch.distributed.all_reduce``); returns ``self``.

        Every rank of ``group`` must call it. The sum is kept beside this rank's own counts, which
        stay as they were: calling ``sync`` twice does not count other ranks twice, and the next
        :meth:`update`, :meth:`merge` or :meth:`reset` drops the sum. Without an initialised
        process group it does nothing.

        Args:
            group: the process group (``None``: the default group).
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            self._synced = None
            return self
        if self._counts is None and self.device is None and dist.get_backend(group) == "nccl":
            self._allocate(torch.device("cuda", torch.cuda.current_device()))
        counts, bad = (t.clone() for t in self._local())
        dist.all_reduce(counts, op=dist.ReduceOp.SUM, group=group)
        dist.all_reduce(bad, op=dist.ReduceOp.MAX, group=group)
        self._synced = (counts, bad)
        return self

    # ------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """This rank's own counts (not a :meth:`sync` result), with the settings they belong to."""
        counts, bad = self._local()
        k = self.num_classes
        return {
            "num_classes": k,
            "ignore_index": self.ignore_index,
            "confusion_matrix": counts[: k * k].view(k, k).clone(),
            "bad_labels": bad.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore counts saved by :meth:`state_dict` (on ``device``, else where they were saved).

        Raises:
            ValueError: the saved ``num_classes`` / ``ignore_index`` differ from this object's,
                or the saved matrix is not a (K, K) integer tensor.
        """
        self._check_same(state.get("num_classes"), state.get("ignore_index"), "state")
        k = self.num_classes
        cm, bad = state.get("confusion_matrix"), state.get("bad_labels")
        if not isinstance(cm, Tensor) or cm.shape != (k, k) or cm.is_floating_point():
            got = f"{cm.dtype} of shape {tuple(cm.shape)}" if isinstance(cm, Tensor) else type(cm).__name__
            raise ValueError(f"state['confusion_matrix'] must be an integer tensor of shape ({k}, {k}); got {got}")
        if not isinstance(bad, Tensor) or bad.shape != (len(_FLAG_NAMES),):
            raise ValueError(f"state['bad_labels'] must be a tensor of shape ({len(_FLAG_NAMES)},); got {bad!r}")
        device = self.device if self.device is not None else cm.device
        self._allocate(device)
        assert self._counts is not None and self._bad is not None
        self._counts[: k * k].copy_(cm.reshape(-1))
        self._bad.copy_(bad)
        self._synced = None

    def __repr__(self) -> str:
        where = self._counts.device if self._counts is not None else self.device
        return f"SegmentationMetrics(num_classes={self.num_classes}, ignore_index={self.ignore_index}, device={where})"


def _out_of_range(labels: Tensor, k: int, kept: Tensor | None) -> Tensor:
    """(largest label >= k, minus the most negative label) among ``kept`` pixels, 0 for none: a (2,) device tensor."""
    high, low = labels >= k, labels < 0
    if kept is not None:
        high, low = high & kept, low & kept
    return torch.stack([torch.where(high, labels, 0).amax(), torch.where(low, -labels, 0).amax()])


def _locate(labels: Tensor, target: Tensor, k: int, kept: Tensor) -> tuple[str, int, str]:
    """(name, label, " at name[b, y, x]") of the first bad label, target first: the CPU error path only."""
    for name, t, where in (("target", target, kept), ("logits_or_labels", labels, torch.ones_like(kept))):
        pos = (((t < 0) | (t >= k)) & where).nonzero()
        if len(pos):
            b, y, x = (int(i) for i in pos[0])
            return name, int(t[b, y, x]), f" at {name}[{b}, {y}, {x}]"
    raise AssertionError("a bad-label flag was set but no bad label was found")
