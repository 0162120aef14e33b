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

import copy
from collections.abc import Callable
from typing import Any

from torch import Tensor
from torch.utils.data import Subset

from ..tasks import Task, infer_task, make_task

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
        make_task(task, num_classes=num_classes, ignore_index=ignore_index)  # refuses arguments given twice
        return copy.copy(task)
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

    ``None`` is inferred (:func:`~advcorrupt.tasks.infer_task`); the task then checks the batch's
    masks (:meth:`~advcorrupt.tasks.Task.check_eval_masks`) and the output against them
    (:meth:`~advcorrupt.tasks.Task.check_output`): a semantic task's ``num_classes`` must equal
    the output's channels (bound to them if unknown), its labels lie in [0, K) or are the ignore
    label; a binary task checks neither, as the benchmark never has.

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
    task.check_output(logits, task.check_eval_masks(masks, images))
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
        >>> from advcorrupt.tasks import SemanticTask
        >>> s = Scoring(SemanticTask(2, ignore_index=255), threshold=0.5)
        >>> images, masks = torch.rand(1, 3, 2, 2), torch.tensor([[[[0, 1], [1, 255]]]])
        >>> masks = s.check_masks(masks, images, start=0)
        >>> logits = torch.tensor([[[[5.0, -5.0], [-5.0, 0.0]], [[-5.0, 5.0], [5.0, 0.0]]]])
        >>> s.check_logits(logits, images)
        >>> m = s.metrics()
        >>> s.update(m, logits, masks)
        >>> s.result(m)["mIoU"]
        1.0
    """

    def __init__(self, task: Task | None, *, threshold: float) -> None:
        if task is not None and not isinstance(task, Task):
            raise TypeError(f"task must be an advcorrupt.tasks.Task or None; got {type(task).__name__}")
        self.task = task
        self.threshold = threshold

    @property
    def settled(self) -> bool:
        """Whether the task is known in full (binary, or semantic with ``num_classes``)."""
        return self.task is not None and self.task.is_bound

    def settle(self, images: Tensor, masks: Tensor, logits: Tensor, *, start: int) -> Task:
        """Settle the task from a first batch whose first image is dataset item ``start`` (see :func:`settle_task`)."""
        task = _located(lambda: settle_task(self.task, images, masks, logits), start, images.shape[0])
        self.task = task
        return task  # type: ignore[no-any-return]

    def _settled_task(self) -> Task:
        if self.task is None or not self.task.is_bound:
            raise RuntimeError("the task is not settled yet: call settle() with the first batch")
        return self.task

    def metrics(self) -> Any:
        """A fresh accumulator of the task's metrics (a binary task's at :attr:`threshold`)."""
        return self._settled_task().make_metrics(threshold=self.threshold)

    def check_masks(self, masks: Tensor, images: Tensor, *, start: int) -> Tensor:
        """Masks of a batch whose first image is dataset item ``start``, as the task's
        :meth:`~advcorrupt.tasks.Task.check_eval_masks` gives them (semantic: checked; binary: as given)."""
        task = self._settled_task()
        return _located(lambda: task.check_eval_masks(masks, images), start, images.shape[0])  # type: ignore[no-any-return]

    def check_logits(self, logits: Tensor, x: Tensor) -> None:
        """Check the model's logits for the (padded) input ``x``: shape, batch and channels
        (:meth:`~advcorrupt.tasks.Task.check_logits`; the labels were checked when the task settled)."""
        self._settled_task().check_logits(logits, x)

    def update(self, metrics: Any, logits: Tensor, masks: Tensor) -> None:
        """Add cropped logits (native size) and their masks (on the logits' device)."""
        metrics.update(self._settled_task().metric_inputs(logits.float()), masks)

    def result(self, metrics: Any) -> dict[str, Any]:
        """The pass's metrics as plain numbers: floats, and for a semantic task the per-class ``"IoU"`` list."""
        return self._settled_task().metric_values(metrics.compute())
