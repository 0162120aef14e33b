"""The task spine: what a mask means, and what follows from it.

A :class:`Task` is the one place that knows the mask shapes, the default per-sample loss, the
metrics and the primary metric of a segmentation problem; the trainer, the training loop, the
benchmark and the CLI ask it instead of branching on mask shapes or on the task's kind themselves
(the methods a task implements: :class:`Task`).

* :class:`BinaryTask` (infrared small targets, any foreground / background problem): masks
  (B, 1, H, W) in {0, 1}; loss Soft-IoU (BALISTD's ``L``, Eq. 1), with an optional BCE term
  (the task's ``bce_weight`` / ``bce_pos_weight``); metrics IoU, nIoU, Pd, Fa
  (:class:`~advcorrupt.metrics.ISTDMetrics`); primary metric IoU.
* :class:`SemanticTask` (street scenes, medical, aerial: K classes): masks (B, H, W) or
  (B, 1, H, W) of int64 class indices, an optional ignore label; loss per-image cross-entropy
  (:class:`~advcorrupt.losses.PerSampleCrossEntropy`); metrics mIoU, aAcc, mAcc and per-class IoU
  (the mmsegmentation conventions); primary metric mIoU.

:func:`make_task` turns the user's arguments into a task, and :func:`infer_task` decides from the
first batch when they say nothing: integer masks with a model that returns K > 1 channels mean
semantic, float (B, 1, H, W) masks mean binary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

__all__ = ["BinaryTask", "SemanticTask", "Task", "TASKS", "default_strategy", "infer_task", "make_task"]

#: The task names ``task=`` accepts.
TASKS: tuple[str, ...] = ("binary", "semantic")


class Task:
    """Base class: mask checks, default loss, metrics and primary metric of one kind of problem.

    A new task subclasses this and implements :meth:`check_masks`, :meth:`check_logits`,
    :meth:`default_loss`, :meth:`make_metrics`, :meth:`metric_inputs` and :meth:`metric_values`;
    the other methods have defaults that suit a task whose masks and outputs need nothing more.

    Attributes:
        name: ``"binary"`` or ``"semantic"``.
        primary_metric: the key of :meth:`make_metrics`' ``compute()`` that summarises a model
            (what validation selects on and the benchmark's corruption tables report).
        accepts_loss_options: whether the default loss takes the training configuration's loss
            knobs (``TrainConfig.bce_weight`` / ``bce_pos_weight``); a run refuses them otherwise.
        checks_output: whether :meth:`check_output` constrains the model's output (a training
            run then probes its model once, before the run folder exists).
        default_strategy: the corruption strategy a trainer or run uses when none is named
            (``strategy=None``), chosen by measurement for the task (docs/results.md).

    Example:
        >>> import torch
        >>> images = torch.rand(1, 3, 4, 4)
        >>> for task, masks in ((BinaryTask(), torch.ones(1, 1, 4, 4)), (SemanticTask(3), torch.full((1, 4, 4), 2))):
        ...     logits = torch.zeros(1, task.model_kwargs().get("num_classes", 1), 4, 4)
        ...     logits[:, -1] = 5.0  # every pixel in the last channel: the target, or class 2
        ...     task.check_logits(logits, images)
        ...     metrics = task.make_metrics(threshold=0.5)
        ...     metrics.update(task.metric_inputs(logits), task.check_eval_masks(masks, images))
        ...     print(task.name, task.metric_values(metrics.compute())[task.primary_metric])
        binary 1.0
        semantic 1.0
    """

    name: ClassVar[str] = "task"
    primary_metric: ClassVar[str] = ""
    accepts_loss_options: ClassVar[bool] = False
    checks_output: ClassVar[bool] = False
    default_strategy: ClassVar[str] = "learned"

    @property
    def is_bound(self) -> bool:
        """Whether everything the task needs is known (a semantic task may wait for the model's K)."""
        return True

    def check_masks(self, masks: object, images: Tensor) -> Tensor:
        """Validate ``masks`` against the batch ``images`` and return them in the loss's form."""
        raise NotImplementedError

    def check_eval_masks(self, masks: Tensor, images: Tensor) -> Tensor:
        """The masks of an evaluation batch as the metrics take them (default: :meth:`check_masks`)."""
        return self.check_masks(masks, images)

    def check_output(self, logits: Tensor, masks: Tensor) -> None:
        """Validate one model output head against the checked masks (before any update)."""

    def check_logits(self, logits: Tensor, x: Tensor) -> None:
        """Validate the shape of the model's final ``logits`` for the input batch ``x`` (evaluation)."""
        raise NotImplementedError

    def model_kwargs(self) -> dict[str, Any]:
        """Arguments a model built for this task needs (e.g. its number of output classes)."""
        return {}

    def default_loss(self) -> nn.Module:
        """The per-sample loss (``reduction="none"``, (N,)) used when the user gives none."""
        raise NotImplementedError

    def make_metrics(self, *, threshold: float = 0.5, **kwargs: Any) -> Any:
        """A fresh metrics accumulator with ``update(outputs, masks)``, ``compute()`` and ``reset()``."""
        raise NotImplementedError

    def metric_inputs(self, logits: Tensor) -> Tensor:
        """What :meth:`make_metrics`' ``update`` takes from the model's float logits."""
        raise NotImplementedError

    def metric_values(self, computed: Mapping[str, Any]) -> dict[str, Any]:
        """The metrics' ``compute()`` as plain Python numbers (what reports and logs hold)."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """What identifies the task in a checkpoint or ``config.json``."""
        return {"name": self.name}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Task) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.to_dict().items())))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "name")
        return f"{type(self).__name__}({args})"


class BinaryTask(Task):
    """Foreground / background masks (B, 1, H, W) in {0, 1}: today's ISTD behaviour, unchanged.

    Args:
        bce_weight: weight of the per-sample binary cross-entropy the default Soft-IoU loss adds
            (0: Soft-IoU only; :class:`~advcorrupt.losses.SoftIoULoss`); >= 0.
        bce_pos_weight: weight of the target pixels inside that term (1: unweighted); > 0.

    The loss options are training settings, not part of what a mask means: :meth:`to_dict` (what
    checkpoints and ``config.json`` record) stays ``{"name": "binary"}``, and binary tasks that
    differ only in them compare equal.

    Example:
        >>> import torch
        >>> task = BinaryTask()
        >>> task.check_masks(torch.ones(2, 1, 8, 8, dtype=torch.uint8), torch.rand(2, 1, 8, 8)).dtype
        torch.float32
        >>> task.primary_metric
        'iou'
        >>> BinaryTask(bce_weight=1.0, bce_pos_weight=10.0).default_loss().bce_pos_weight
        10.0
        >>> task.metric_inputs(torch.zeros(1, 1, 2, 2))  # probabilities
        tensor([[[[0.5000, 0.5000],
                  [0.5000, 0.5000]]]])
    """

    name = "binary"
    primary_metric = "iou"
    accepts_loss_options = True
    #: The best one-line schedule (issue 20): levels 1-5 uniform, corruptions uniform, no policy
    #: network. On NUAA-SIRST (5 seeds) it is +0.81 +- 1.24 mean corrupted IoU over ``random@3``
    #: (4 of 5) and +1.88 over ``random``; the default adversary (``"learned"``) is +0.03 +- 0.83
    #: over it, short of the 1-point margin a policy network must buy to be the default
    #: (docs/results.md).
    default_strategy = "random@1-5"

    def __init__(self, *, bce_weight: float = 0.0, bce_pos_weight: float = 1.0) -> None:
        if isinstance(bce_weight, bool) or not isinstance(bce_weight, (int, float)) or not 0 <= bce_weight < math.inf:
            raise ValueError(f"bce_weight must be a finite number >= 0; got {bce_weight!r}")
        if (isinstance(bce_pos_weight, bool) or not isinstance(bce_pos_weight, (int, float))
                or not 0 < bce_pos_weight < math.inf):
            raise ValueError(f"bce_pos_weight must be a finite number > 0; got {bce_pos_weight!r}")
        self.bce_weight = float(bce_weight)
        self.bce_pos_weight = float(bce_pos_weight)

    def check_masks(self, masks: object, images: Tensor) -> Tensor:
        if not isinstance(masks, Tensor):
            raise TypeError(f"masks must be a torch.Tensor of shape (B, 1, H, W); got {type(masks).__name__}")
        if masks.ndim != 4 or masks.shape[0] != images.shape[0] or masks.shape[-2:] != images.shape[-2:]:
            raise ValueError(
                f"masks must have shape (B, 1, H, W) = ({images.shape[0]}, 1, {images.shape[2]}, "
                f"{images.shape[3]}) to match images; got {tuple(masks.shape)}"
            )
        masks = masks if masks.is_floating_point() else masks.float()
        _check_binary(masks)
        return masks

    def check_eval_masks(self, masks: Tensor, images: Tensor) -> Tensor:
        """Evaluation masks as given, unchecked: the benchmark's binary path since 0.1, bit for bit."""
        return masks

    def check_logits(self, logits: Tensor, x: Tensor) -> None:
        """One probability map per image: (B, 1, H, W) for the input ``x`` (B, C, H, W)."""
        if logits.ndim != 4 or logits.shape[0] != x.shape[0] or logits.shape[1] != 1:
            raise ValueError(
                f"model logits must have shape (B, 1, H, W) = ({x.shape[0]}, 1, {x.shape[-2]}, "
                f"{x.shape[-1]}); got {tuple(logits.shape)}"
            )

    def default_loss(self) -> nn.Module:
        """Soft-IoU per sample (BALISTD's loss), plus the BCE term of :attr:`bce_weight`."""
        from .losses import SoftIoULoss

        return SoftIoULoss(reduction="none", bce_weight=self.bce_weight, bce_pos_weight=self.bce_pos_weight)

    def make_metrics(self, *, threshold: float = 0.5, **kwargs: Any) -> Any:
        """:class:`~advcorrupt.metrics.ISTDMetrics` (IoU, nIoU, Pd, Fa) at the probability ``threshold``."""
        from .metrics import ISTDMetrics

        return ISTDMetrics(threshold=threshold, **kwargs)

    def metric_inputs(self, logits: Tensor) -> Tensor:
        """Probabilities: ``sigmoid(logits)``."""
        return logits.sigmoid()

    def metric_values(self, computed: Mapping[str, Any]) -> dict[str, Any]:
        """``{"iou", "niou", "pd", "fa"}`` as floats."""
        return {k: float(v) for k, v in computed.items()}

    def __repr__(self) -> str:
        args = {"bce_weight": (self.bce_weight, 0.0), "bce_pos_weight": (self.bce_pos_weight, 1.0)}
        return "BinaryTask(" + ", ".join(f"{k}={v!r}" for k, (v, default) in args.items() if v != default) + ")"


class SemanticTask(Task):
    """K classes of class-index masks, an optional ignore label.

    Args:
        num_classes: K (> 1); ``None``: taken from the model's output channels at the first batch.
        ignore_index: the label of pixels left out of the loss and the metrics (e.g. CamVid's void,
            11; Cityscapes' 255); ``None``: every pixel is labelled.
        class_weights: optional (K,) weights of the default cross-entropy.

    Masks are (B, H, W) or (B, 1, H, W) integer class indices (float masks holding whole numbers
    are accepted and cast). One-hot masks (B, K, H, W) are refused: pass ``masks.argmax(1)``.

    Example:
        >>> import torch
        >>> task = SemanticTask(num_classes=3, ignore_index=255)
        >>> masks = torch.tensor([[[0, 2], [255, 1]]])
        >>> task.check_masks(masks, torch.rand(1, 3, 2, 2)).shape
        torch.Size([1, 2, 2])
        >>> task.check_masks(torch.tensor([[[0, 7], [1, 1]]]), torch.rand(1, 3, 2, 2))
        Traceback (most recent call last):
        ...
        ValueError: masks must hold class indices in [0, 3) or the ignore label 255; got 7 at (sample 0, row 0, col 1)
        >>> task.check_logits(torch.zeros(1, 4, 2, 2), torch.rand(1, 3, 2, 2))
        Traceback (most recent call last):
        ...
        ValueError: num_classes = 3 disagrees with the model's output channels: it returns (1, 4, 2, 2) (K = 4); build the model with 3 classes or pass num_classes=4
        >>> task.model_kwargs(), task.is_bound, SemanticTask().is_bound
        ({'num_classes': 3}, True, False)
    """

    name = "semantic"
    primary_metric = "mIoU"
    checks_output = True
    #: A severity curriculum (levels 1, 2, 3 in turn over the run; issue 20): on CamVid (5 seeds) it
    #: is +0.52 +- 0.60 mPC (4 of 5) and +0.78 +- 0.36 clean mIoU (5 of 5) over ``random``, by a rule
    #: fixed before its last two seeds ran; the learned adversary measured -0.35 +- 0.67 against
    #: ``random`` (docs/results.md). It places its timetable on the trainer's ``total_steps``.
    default_strategy = "curriculum@1-3"

    def __init__(
        self, num_classes: int | None = None, *, ignore_index: int | None = None,
        class_weights: Tensor | list[float] | None = None,
    ) -> None:
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                        or num_classes < 2):
            raise ValueError(f"num_classes must be an int >= 2 (or None: the model's output channels); got {num_classes!r}")
        if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
            raise ValueError(f"ignore_index must be an int or None; got {ignore_index!r}")
        if ignore_index is not None and num_classes is not None and 0 <= ignore_index < num_classes:
            raise ValueError(
                f"ignore_index must not be one of the {num_classes} class labels [0, {num_classes}); got {ignore_index}"
            )
        weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        if weights is not None and num_classes is not None and weights.shape != (num_classes,):
            raise ValueError(f"class_weights must hold num_classes = {num_classes} weights; got shape {tuple(weights.shape)}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_weights = weights

    def check_masks(self, masks: object, images: Tensor) -> Tensor:
        if not isinstance(masks, Tensor):
            raise TypeError(f"masks must be a torch.Tensor of class indices, (B, H, W); got {type(masks).__name__}")
        b, h, w = images.shape[0], images.shape[2], images.shape[3]
        if masks.ndim == 4 and masks.shape[1] > 1 and masks.shape[0] == b and masks.shape[-2:] == (h, w):
            raise ValueError(
                f"masks must be class indices (B, H, W) = ({b}, {h}, {w}); got shape {tuple(masks.shape)}, which "
                "looks one-hot (B, K, H, W): pass masks.argmax(1)"
            )
        if masks.ndim == 4 and masks.shape[1] == 1:
            masks = masks[:, 0]
        if masks.shape != (b, h, w):
            raise ValueError(
                f"masks must have shape (B, H, W) = ({b}, {h}, {w}) or (B, 1, H, W) to match images; "
                f"got {tuple(masks.shape)}"
            )
        if masks.is_floating_point():
            _check_whole(masks)
        elif masks.dtype == torch.bool or masks.is_complex():
            raise ValueError(f"masks must be integer class indices; got dtype {masks.dtype}")
        masks = masks.long()
        if self.num_classes is not None:
            _check_labels(masks, self.num_classes, self.ignore_index)
        return masks

    @property
    def is_bound(self) -> bool:
        """Whether ``num_classes`` is known (given, or bound from the model's first output)."""
        return self.num_classes is not None

    def check_output(self, logits: Tensor, masks: Tensor) -> None:
        """K = ``num_classes`` output channels; an unknown K is bound to the model's and ``masks`` checked against it."""
        k = int(logits.shape[1])
        if self.num_classes is None:
            if k < 2:
                raise ValueError(
                    f"a semantic task needs a model that returns (B, K, H, W) logits with K >= 2 classes; got "
                    f"{tuple(logits.shape)} (for one foreground class use task='binary')"
                )
            self.bind(k)
            _check_labels(masks, k, self.ignore_index)
        else:
            self._check_channels(logits)

    def check_logits(self, logits: Tensor, x: Tensor) -> None:
        """(B, K, H, W) for the input ``x`` (B, C, H, W), with K = ``num_classes`` once that is known."""
        if logits.ndim != 4 or logits.shape[0] != x.shape[0]:
            raise ValueError(f"model logits must have shape (B, K, H, W) with B = {x.shape[0]}; got {tuple(logits.shape)}")
        if self.num_classes is not None:
            self._check_channels(logits)

    def _check_channels(self, logits: Tensor) -> None:
        k = int(logits.shape[1])
        if k != self.num_classes:
            raise ValueError(
                f"num_classes = {self.num_classes} disagrees with the model's output channels: it returns "
                f"{tuple(logits.shape)} (K = {k}); build the model with {self.num_classes} classes or pass "
                f"num_classes={k}"
            )

    def model_kwargs(self) -> dict[str, Any]:
        """``{"num_classes": K}`` once K is known, else nothing."""
        return {} if self.num_classes is None else {"num_classes": self.num_classes}

    def bind(self, num_classes: int) -> None:
        """Fix ``num_classes`` (from the model's output) if it was left to inference."""
        checked = SemanticTask(num_classes, ignore_index=self.ignore_index, class_weights=self.class_weights)
        self.num_classes = checked.num_classes

    def default_loss(self) -> nn.Module:
        from .losses import PerSampleCrossEntropy

        return PerSampleCrossEntropy(ignore_index=self.ignore_index, weight=self.class_weights)

    def make_metrics(self, *, threshold: float = 0.5, **kwargs: Any) -> Any:
        """:class:`~advcorrupt.metrics.SegmentationMetrics` over K classes; ``threshold`` is ignored
        (a semantic prediction is the argmax over classes; the argument exists so that every task
        takes the same call)."""
        from .metrics import SegmentationMetrics

        if self.num_classes is None:
            raise ValueError("num_classes is not known yet: pass num_classes= or run a batch through the model first")
        return SegmentationMetrics(self.num_classes, ignore_index=self.ignore_index, **kwargs)

    def metric_inputs(self, logits: Tensor) -> Tensor:
        """The logits themselves (the metrics take their argmax)."""
        return logits

    def metric_values(self, computed: Mapping[str, Any]) -> dict[str, Any]:
        """``{"mIoU", "aAcc", "mAcc"}`` as floats and ``"IoU"``, the K per-class values, as a list."""
        return {"mIoU": float(computed["mIoU"]), "aAcc": float(computed["aAcc"]), "mAcc": float(computed["mAcc"]),
                "IoU": [float(v) for v in computed["IoU"]]}

    def to_dict(self) -> dict[str, Any]:
        weights = None if self.class_weights is None else [float(v) for v in self.class_weights]
        return {"name": self.name, "num_classes": self.num_classes, "ignore_index": self.ignore_index,
                "class_weights": weights}


def make_task(
    task: str | Task | Mapping[str, Any] | None = None, *, num_classes: int | None = None,
    ignore_index: int | None = None, class_weights: Tensor | list[float] | None = None,
) -> Task | None:
    """The task the arguments ask for, or ``None`` to infer it from the first batch.

    Args:
        task: ``"binary"``, ``"semantic"``, a :class:`Task`, a :meth:`Task.to_dict` mapping, or
            ``None`` (semantic if ``num_classes`` > 1, ``ignore_index`` or ``class_weights`` is
            given, else inferred later).
        num_classes: :class:`SemanticTask`'s number of classes K.
        ignore_index: :class:`SemanticTask`'s label left out of the loss and the metrics.
        class_weights: :class:`SemanticTask`'s (K,) weights of the default cross-entropy.

    Raises:
        ValueError: an unknown task name, or semantic arguments given with ``task="binary"``.

    Example:
        >>> make_task(num_classes=11, ignore_index=11)
        SemanticTask(num_classes=11, ignore_index=11, class_weights=None)
        >>> make_task("binary")
        BinaryTask()
        >>> make_task() is None
        True
    """
    semantic_args = num_classes is not None or ignore_index is not None or class_weights is not None
    if isinstance(task, Task):
        if semantic_args:
            raise ValueError("num_classes / ignore_index / class_weights are given twice: set them on the Task object")
        return task
    if isinstance(task, Mapping):
        args = {k: v for k, v in task.items() if k != "name"}
        return make_task(task.get("name"), **args) if args else make_task(task.get("name"))
    if task is None:
        return SemanticTask(num_classes, ignore_index=ignore_index, class_weights=class_weights) if semantic_args else None
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)} or None (inferred from the first batch); got {task!r}")
    if task == "binary":
        if semantic_args:
            raise ValueError(
                f"num_classes / ignore_index / class_weights apply to task='semantic'; got them with task='binary' "
                f"(num_classes={num_classes!r}, ignore_index={ignore_index!r})"
            )
        return BinaryTask()
    return SemanticTask(num_classes, ignore_index=ignore_index, class_weights=class_weights)


def default_strategy(
    task: Task | None = None, *, output_channels: int | None = None, wants_policy: bool = False,
) -> str | None:
    """The strategy ``strategy=None`` stands for (what a trainer, a config or the CLI use).

    ``"learned"`` where policy arguments ask for a policy; else the task's
    :attr:`Task.default_strategy`; with no task, the one its output channels imply (K > 1:
    semantic, as :func:`infer_task` decides); ``None`` while neither is known.

    Example:
        >>> default_strategy(SemanticTask(3)), default_strategy(output_channels=1), default_strategy()
        ('curriculum@1-3', 'random@1-5', None)
    """
    if wants_policy:
        return "learned"
    if task is not None:
        return task.default_strategy
    if output_channels is not None:
        return (SemanticTask if output_channels > 1 else BinaryTask).default_strategy
    return None


#: Every task's default strategy (a saved state of an undecided trainer may name any of them).
DEFAULT_STRATEGIES: frozenset[str] = frozenset({BinaryTask.default_strategy, SemanticTask.default_strategy})


def infer_task(masks: Tensor, output_channels: int) -> Task:
    """The task a first batch means when nothing was said (zero-config).

    Integer or (B, H, W) masks with a model that returns K > 1 channels: semantic with K classes
    and no ignore label; anything else: binary (masks (B, 1, H, W) in {0, 1}).

    Example:
        >>> import torch
        >>> infer_task(torch.zeros(2, 8, 8, dtype=torch.long), 11)
        SemanticTask(num_classes=11, ignore_index=None, class_weights=None)
        >>> infer_task(torch.zeros(2, 1, 8, 8), 1)
        BinaryTask()
    """
    indices = masks.ndim == 3 or not masks.is_floating_point()
    if indices and output_channels > 1:
        return SemanticTask(int(output_channels))
    return BinaryTask()


# ----------------------------------------------------------------------------------- value checks
def _check_binary(masks: Tensor) -> None:
    """Masks must be {0, 1}: a 0-255 or soft mask would silently give a wrong loss and reward."""
    from ._checks import value_checks_enabled

    if not value_checks_enabled() or masks.numel() == 0:
        return
    with torch.no_grad():
        binary = ((masks == 0) | (masks == 1)).all()
        if masks.device.type == "cpu":
            if not bool(binary):
                values = torch.unique(masks.detach())[:6].tolist()
                raise ValueError(
                    f"masks must be binary, 0 for background and 1 for target pixels; got values such as {values} "
                    "(a 0-255 mask? divide by 255 and threshold; class indices of a multi-class model? pass them "
                    "as an integer tensor, or task='semantic')"
                )
        elif masks.device.type == "cuda":
            torch._assert_async(binary, "masks must be binary (0 / 1)")


def _check_whole(masks: Tensor) -> None:
    """Float class-index masks must hold whole numbers (a resized label map would not)."""
    from ._checks import value_checks_enabled

    if not value_checks_enabled() or masks.numel() == 0:
        return
    with torch.no_grad():
        whole = (masks == masks.round()).all()
        if masks.device.type == "cpu":
            if not bool(whole):
                bad = masks[masks != masks.round()][:4].tolist()
                raise ValueError(
                    f"masks must be class indices; got a float mask with non-integer values such as {bad} "
                    "(resized with bilinear interpolation? resample labels with mode='nearest')"
                )
        elif masks.device.type == "cuda":
            torch._assert_async(whole, "masks must hold whole-number class indices")


def _check_labels(masks: Tensor, num_classes: int, ignore_index: int | None) -> None:
    """Every label in [0, K) or the ignore label; on CPU the message names the first bad one and where."""
    from ._checks import value_checks_enabled

    if not value_checks_enabled() or masks.numel() == 0:
        return
    with torch.no_grad():
        bad = (masks < 0) | (masks >= num_classes)
        if ignore_index is not None:
            bad &= masks != ignore_index
        if masks.device.type == "cpu":
            if bool(bad.any()):
                where = tuple(int(i) for i in bad.nonzero()[0])
                ignore = f" or the ignore label {ignore_index}" if ignore_index is not None else " (no ignore label set)"
                raise ValueError(
                    f"masks must hold class indices in [0, {num_classes}){ignore}; got {int(masks[where])} at "
                    f"(sample {where[0]}, row {where[1]}, col {where[2]})"
                )
        elif masks.device.type == "cuda":
            torch._assert_async(~bad.any(), f"masks must hold class indices in [0, {num_classes}) or the ignore label")
