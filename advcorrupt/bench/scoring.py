"""How the benchmark scores a model's outputs: which task, which metrics, which checks.

The benchmark never looks at mask shapes itself: it asks a :class:`~advcorrupt.tasks.Task`
(:mod:`advcorrupt.tasks`). The task is

1. given: ``task="binary"`` / ``"semantic"`` / a :class:`~advcorrupt.tasks.Task`, or
   ``num_classes=`` / ``ignore_index=`` (which mean semantic), completed by the dataset's own
   ``num_classes`` / ``ignore_index`` attributes (:class:`advcorrupt.data.CamVid`,
   :class:`advcorrupt.data.SegmentationFolder`, also through a ``torch.utils.data.Subset``) where
   the arguments are ``None``;
2. else inferred from the first batch (the dataset's first items) and the model's output for it
   (:func:`advcorrupt.tasks.infer_task`: integer masks and K > 1 output channels mean semantic).

Either way the task is settled at the first batch (no extra forward pass): a semantic task is
checked against the model's first output, so a ``num_classes`` that disagrees with the model, or
a label >= K, fails at once, before any corrupted setting runs.

A :class:`Scoring` feeds the passes' outputs to the task's metrics: binary models as they always
were (``sigmoid`` probabilities into :class:`~advcorrupt.metrics.ISTDMetrics`, masks unchecked,
bit for bit the 0.1 benchmark), semantic ones as logits into
:class:`~advcorrupt.metrics.SegmentationMetrics` (argmax; the ignore label never counted), with
each batch's labels checked where the dataset returns them (the CPU for the datasets of
:mod:`advcorrupt.data`), so the message names the dataset item.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor
from torch.utils.data import Subset

from ..tasks import BinaryTask, SemanticTask, Task, infer_task, make_task

__all__ = ["Scoring", "dataset_attribute", "given_task", "settle_task"]


def dataset_attribute(dataset: Any, name: str) -> Any:
    """The dataset's attribute ``name`` (``None`` if absent), looking through ``torch.utils.data.Subset`` wrappers.

    Example:
        >>> from torch.utils.data import Subset
        >>> class Labelled(list):
        ...     num_classes = 11
        >>> dataset_attribute(Subset(Labelled([1, 2, 3]), [0, 2]), "num_classes")
        11
    """
    while not hasattr(dataset, name) and isinstance(dataset, Subset):
        dataset = dataset.dataset
    return getattr(dataset, name, None)


def _declared_classes(dataset: Any) -> int | None:
    """The dataset's ``num_classes`` attribute when it declares a multi-class problem, else ``None``."""
    k = dataset_attribute(dataset, "num_classes")
    return k if isinstance(k, int) and not isinstance(k, bool) and k >= 2 else None


def given_task(
    task: str | Task | None, *, num_classes: int | None, ignore_index: int | None, dataset: Any
) -> Task | None:
    """The task the arguments (and the dataset's attributes) ask for; ``None``: infer it later.

    A :class:`~advcorrupt.tasks.Task` object is copied, so binding ``num_classes`` from the model
    never changes the caller's object. Unless the task is binary, a dataset that declares
    ``num_classes`` >= 2 supplies ``num_classes`` and ``ignore_index`` where the arguments are
    ``None`` (``task="semantic"`` takes its ``ignore_index`` whatever it declares).

    Example:
        >>> class Labelled:
        ...     num_classes, ignore_index = 11, 11
        >>> given_task(None, num_classes=None, ignore_index=None, dataset=Labelled())
        SemanticTask(num_classes=11, ignore_index=11, class_weights=None)
        >>> given_task("binary", num_classes=None, ignore_index=None, dataset=Labelled())
        BinaryTask()
        >>> given_task(None, num_classes=None, ignore_index=None, dataset=[]) is None
        True
    """
    if isinstance(task, Task):
        checked = make_task(task, num_classes=num_classes, ignore_index=ignore_index)  # refuses arguments given twice
        assert checked is not None
        return make_task(checked.to_dict())
    declared = _declared_classes(dataset)
    if task != "binary" and (declared is not None or task == "semantic"):
        if num_classes is None:
            num_classes = declared
        if ignore_index is None:
            ignore = dataset_attribute(dataset, "ignore_index")
            ignore_index = ignore if isinstance(ignore, int) and not isinstance(ignore, bool) else None
    return make_task(task, num_classes=num_classes, ignore_index=ignore_index)


def settle_task(task: Task | None, images: Tensor, masks: Tensor, logits: Tensor) -> Task:
    """The final task, from a first batch (``images``, ``masks``) and the model's ``logits`` for it.

    ``None`` is inferred (:func:`~advcorrupt.tasks.infer_task`); a semantic task is checked
    against the output (``num_classes`` equal to its channels, bound to them if unknown) and the
    batch's labels (in [0, K) or the ignore label).

    Raises:
        ValueError: the model's output disagrees with ``num_classes``, or the batch holds a label
            outside [0, K) that is not the ignore label.

    Example:
        >>> import torch
        >>> settle_task(None, torch.rand(1, 3, 4, 4), torch.zeros(1, 1, 4, 4, dtype=torch.long), torch.rand(1, 5, 4, 4))
        SemanticTask(num_classes=5, ignore_index=None, class_weights=None)
    """
    if logits.ndim != 4 or logits.shape[0] != images.shape[0]:
        raise ValueError(
            f"model logits must have shape (B, K, H, W) with B = {images.shape[0]}; got {tuple(logits.shape)}"
        )
    if task is None:
        task = infer_task(masks, int(logits.shape[1]))
    if isinstance(task, SemanticTask):
        task.check_output(logits, task.check_masks(masks, images))
    return task


def _located(check: Callable[[], Any], start: int, count: int) -> Any:
    """Run ``check()``; a ``ValueError`` gains the dataset items it is about (batch positions are relative)."""
    try:
        return check()
    except ValueError as e:
        items = (f"dataset item {start}" if count == 1
                 else f"dataset items {start}..{start + count - 1} (sample i is item {start} + i)")
        raise ValueError(f"{items}: {e}") from None


class Scoring:
    """Feeds a benchmark's batches to its task's metrics; the task is settled at the first batch.

    Binary: (B, 1, H, W) logits, ``sigmoid``, :class:`~advcorrupt.metrics.ISTDMetrics` at
    ``threshold``, masks as given (the 0.1 benchmark, bit for bit). Semantic: (B, K, H, W) logits
    into :class:`~advcorrupt.metrics.SegmentationMetrics` (argmax; the ignore label never
    counted), every batch's labels checked by the task on the dataset's device before the model
    sees it, errors naming the dataset items.

    Args:
        task: from :func:`given_task`; ``None`` (infer) or a semantic task without
            ``num_classes`` is settled by :meth:`settle` at the first batch.
        threshold: the binary task's probability threshold (semantic predictions are the argmax).

    Example:
        >>> import torch
        >>> s = Scoring(SemanticTask(2, ignore_index=255), threshold=0.5)
        >>> images, masks = torch.rand(1, 3, 2, 2), torch.tensor([[[[0, 1], [1, 255]]]])
        >>> masks = s.check_masks(masks, images, start=0)
        >>> logits = torch.tensor([[[[5.0, -5.0], [-5.0, 0.0]], [[-5.0, 5.0], [5.0, 0.0]]]])
        >>> s.check_logits(logits, images, masks, start=0)
        >>> m = s.metrics()
        >>> s.update(m, logits, masks)
        >>> s.result(m)["mIoU"]
        1.0
    """

    def __init__(self, task: Task | None, *, threshold: float) -> None:
        if task is not None and not isinstance(task, (BinaryTask, SemanticTask)):
            raise TypeError(f"task must be a BinaryTask, a SemanticTask or None; got {type(task).__name__}")
        self.task = task
        self.threshold = threshold

    @property
    def settled(self) -> bool:
        """Whether the task is known in full (binary, or semantic with ``num_classes``)."""
        return self.task is not None and getattr(self.task, "num_classes", 0) is not None

    @property
    def semantic(self) -> bool:
        """Whether the (settled) task is semantic."""
        return isinstance(self.task, SemanticTask)

    def settle(self, images: Tensor, masks: Tensor, logits: Tensor, *, start: int) -> Task:
        """Settle the task from a first batch whose first image is dataset item ``start`` (see :func:`settle_task`)."""
        task = _located(lambda: settle_task(self.task, images, masks, logits), start, images.shape[0])
        self.task = task
        return task  # type: ignore[no-any-return]

    def metrics(self) -> Any:
        """A fresh accumulator of the task's metrics."""
        if not self.settled:
            raise RuntimeError("the task is not settled yet: call settle() with the first batch")
        assert self.task is not None
        return self.task.make_metrics() if self.semantic else self.task.make_metrics(threshold=self.threshold)

    def check_masks(self, masks: Tensor, images: Tensor, *, start: int) -> Tensor:
        """Masks of a batch whose first image is dataset item ``start``: checked by a semantic task, else as given."""
        if not self.semantic:
            return masks
        assert self.task is not None
        return _located(lambda: self.task.check_masks(masks, images), start, images.shape[0])  # type: ignore[union-attr]

    def check_logits(self, logits: Tensor, x: Tensor, masks: Tensor, *, start: int) -> None:
        """Check the model's logits for the (padded) input ``x``: shape, batch and channels."""
        if not self.semantic:
            if logits.ndim != 4 or logits.shape[0] != x.shape[0] or logits.shape[1] != 1:
                raise ValueError(
                    f"model logits must have shape (B, 1, H, W) = ({x.shape[0]}, 1, {x.shape[-2]}, "
                    f"{x.shape[-1]}); got {tuple(logits.shape)}"
                )
            return
        if logits.ndim != 4 or logits.shape[0] != x.shape[0]:
            raise ValueError(f"model logits must have shape (B, K, H, W) with B = {x.shape[0]}; got {tuple(logits.shape)}")
        assert self.task is not None
        _located(lambda: self.task.check_output(logits, masks), start, x.shape[0])  # type: ignore[union-attr]

    def update(self, metrics: Any, logits: Tensor, masks: Tensor) -> None:
        """Add cropped logits (native size) and their masks (on the logits' device)."""
        metrics.update(logits.float() if self.semantic else logits.float().sigmoid(), masks)

    def result(self, metrics: Any) -> dict[str, Any]:
        """The pass's metrics: floats, and for a semantic task the per-class ``"IoU"`` list."""
        out = metrics.compute()
        if not self.semantic:
            return {k: float(v) for k, v in out.items()}
        return {"mIoU": float(out["mIoU"]), "aAcc": float(out["aAcc"]), "mAcc": float(out["mAcc"]),
                "IoU": [float(v) for v in out["IoU"]]}
