"""Evaluation: a segmentation model on the clean test set and under every corruption x severity.

This is the protocol behind the robustness tables of BALISTD (*Enhancing Infrared Small Target
Detection Robustness with Bi-Level Adversarial Framework*, AAAI 2024, Tables 2-4), scored with the
ISTD metrics IoU, nIoU, Pd and Fa (:mod:`advcorrupt.metrics`) and the paper's Eq. 9,
``RCE = (IoU_clean - IoU_corrupted) / IoU_clean``; and, for semantic segmentation models (K
classes), the corruption benchmark of Kamann & Rother (*Benchmarking the Robustness of Semantic
Segmentation Models*, CVPR 2020) and mmdetection: mIoU, aAcc, mAcc and per-class IoU per setting,
mPC (the mean mIoU over every setting) and rPC = mPC / clean mIoU.

Per image: corrupt (in [0, 1], seeded: :mod:`advcorrupt.bench.views`) -> ``preprocess`` (e.g.
normalisation) -> zero-pad to a multiple of ``pad_to`` -> model -> crop back -> the task's metrics
at the native size (binary: ``sigmoid`` then IoU/nIoU/Pd/Fa; semantic: argmax then the confusion
matrix; :mod:`advcorrupt.bench.scoring`). :func:`evaluate` makes one such pass;
:func:`evaluate_robustness` makes the clean pass and one per setting and returns a
:class:`~advcorrupt.bench.RobustnessReport` (binary) or a
:class:`~advcorrupt.bench.SemanticRobustnessReport` (semantic), built by :func:`robustness_report`
(which also serves the corrupted copies on disk of ``advcorrupt corrupt-dataset``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from .._outputs import output_heads
from ..tasks import Task
from ._report_kinds import (
    _safe_rce,  # noqa: F401  (its old home: advcorrupt.benchmark re-exports it)
    report_kind,
)
from .report import RobustnessReport
from .scoring import Scoring, given_task
from .semantic_report import SemanticRobustnessReport
from .views import CorruptedDataset, _check_severity, _CleanView

# --------------------------------------------------------------------------------------------
# Running a model
# --------------------------------------------------------------------------------------------


def _to_logits(output: Any) -> Tensor:
    """Logits from a model output: a tensor, deep-supervision heads (the last) or ``{"out": ...}``.

    The trainer accepts the same three forms (it averages the loss over the heads); at inference
    the final head is the prediction, as in DNANet.
    """
    return output_heads(output)[-1]


def _model_device_dtype(model: Callable[..., Any]) -> tuple[torch.device, torch.dtype]:
    device, dtype = torch.device("cpu"), torch.float32
    if isinstance(model, nn.Module):
        tensors = list(model.parameters()) + list(model.buffers())
        if tensors:
            device = tensors[0].device
        floats = [t for t in tensors if t.is_floating_point()]
        if floats:
            dtype = floats[0].dtype
    return device, dtype


@contextmanager
def _eval_mode(model: Callable[..., Any]) -> Iterator[None]:
    """Put every submodule in eval mode; restore each one's own flag afterwards."""
    if not isinstance(model, nn.Module):
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def _batches(loader: Iterable[tuple[Tensor, Tensor]], batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Stack consecutive items of equal shape into batches of at most ``batch_size``."""
    images: list[Tensor] = []
    masks: list[Tensor] = []
    for image, mask in loader:
        if images and (image.shape != images[0].shape or len(images) == batch_size):
            yield torch.stack(images), torch.stack(masks)
            images, masks = [], []
        images.append(image)
        masks.append(mask)
    if images:
        yield torch.stack(images), torch.stack(masks)


def _forward(
    model: Callable[..., Any], images: Tensor, *, preprocess: Callable[[Tensor], Tensor] | None,
    device: torch.device, dtype: torch.dtype, pad_to: int | None,
) -> tuple[Tensor, Tensor]:
    """``(x, logits)``: the batch moved, preprocessed, cast and zero-padded, and the model's final head on it."""
    from ..data import pad_to_multiple

    x = images.to(device=device, non_blocking=True)
    if preprocess is not None:
        x = preprocess(x)
    x = x.to(dtype)
    if pad_to is not None and pad_to > 1:
        x, _ = pad_to_multiple(x, pad_to)
    return x, _to_logits(model(x))


def _run(
    model: Callable[..., Any],
    dataset: Dataset[tuple[Tensor, Tensor]],
    *,
    scoring: Scoring,
    preprocess: Callable[[Tensor], Tensor] | None,
    device: torch.device,
    dtype: torch.dtype,
    batch_size: int,
    pad_to: int | None,
    num_workers: int,
    on_batch: Callable[[int], None] | None,
) -> dict[str, Any]:
    metrics = scoring.metrics() if scoring.settled else None
    start = 0
    loader = DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    for images, masks in _batches(loader, batch_size):
        h, w = images.shape[-2:]
        settled = scoring.settled
        if settled:  # labels checked on the dataset's device, before the model sees them
            masks = scoring.check_masks(masks, images, start=start)
        x, logits = _forward(model, images, preprocess=preprocess, device=device, dtype=dtype, pad_to=pad_to)
        if not settled:  # the first batch settles the task (inferred, or K bound from the model)
            scoring.settle(images, masks, logits, start=start)
            masks, metrics = scoring.check_masks(masks, images, start=start), scoring.metrics()
        scoring.check_logits(logits, x)
        if logits.shape[-2:] != x.shape[-2:]:
            raise ValueError(
                f"model logits must have the input's spatial size {tuple(x.shape[-2:])}; got "
                f"{tuple(logits.shape[-2:])}"
            )
        scoring.update(metrics, logits[..., :h, :w], masks.to(device=device, non_blocking=True))
        start += images.shape[0]
        if on_batch is not None:
            on_batch(images.shape[0])
    assert metrics is not None  # the dataset holds at least one image (_check_common)
    return scoring.result(metrics)


def _check_common(
    model: Callable[..., Any],
    dataset: Dataset[Any],
    *,
    threshold: float,
    batch_size: int,
    pad_to: int | None,
    num_workers: int,
    preprocess: Callable[[Tensor], Tensor] | None,
) -> int:
    if not callable(model):
        raise TypeError(f"model must be callable (an nn.Module or a function); got {type(model).__name__}")
    try:
        n = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"dataset must be a map-style dataset with __len__; got {type(dataset).__name__}"
        ) from None
    if n == 0:
        raise ValueError(f"dataset must hold at least one image; got an empty {type(dataset).__name__}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be a probability in (0, 1); got {threshold}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    if pad_to is not None and (isinstance(pad_to, bool) or not isinstance(pad_to, int) or pad_to < 1):
        raise ValueError(f"pad_to must be a positive int or None; got {pad_to!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be a non-negative int; got {num_workers!r}")
    if preprocess is not None and not callable(preprocess):
        raise TypeError(f"preprocess must be callable or None; got {type(preprocess).__name__}")
    return n


def _progress_bar(total: int, desc: str, enabled: bool) -> Any:
    # A tqdm bar on a terminal; one line per setting when piped (see advcorrupt._progress).
    from .._progress import progress_bar

    return progress_bar(total=total, desc=desc, unit="img", enabled=enabled)


def evaluate(
    model: Callable[..., Any],
    dataset: Dataset[Any],
    *,
    corruption: str | None = None,
    severity: int | None = None,
    seed: int = 0,
    preprocess: Callable[[Tensor], Tensor] | None = None,
    device: torch.device | str | None = None,
    threshold: float = 0.5,
    batch_size: int = 8,
    pad_to: int | None = 32,
    num_workers: int = 0,
    progress: bool = False,
    task: str | Task | None = None,
    num_classes: int | None = None,
    ignore_index: int | None = None,
) -> dict[str, Any]:
    """The task's metrics of ``model`` on ``dataset``, clean or under one corruption setting.

    The model runs in eval mode under ``torch.inference_mode`` (every submodule's train/eval
    flag is restored afterwards). Images are used at their native size; consecutive images of
    equal size are batched (at most ``batch_size``), so datasets of mixed sizes work.

    The task (binary ISTD masks, or K-class semantic masks) is given or inferred as
    :func:`evaluate_robustness` says.

    Args:
        model: an ``nn.Module`` or any callable mapping (B, C, H, W) to logits: a tensor, a
            list/tuple of deep-supervision heads (the last is evaluated) or a dict with ``"out"``.
        dataset: items ``(image, mask, ...)`` or dicts with ``"image"``/``"mask"``; image (C, H, W)
            float in [0, 1], mask (1, H, W) or (H, W): binary, or integer class indices.
        corruption: a registered corruption name, or ``None`` for the clean set.
        severity: the level of ``corruption`` (required with it).
        seed: benchmark seed (see :func:`~advcorrupt.bench.corruption_seed`).
        preprocess: applied to the batch on ``device`` after corruption (e.g. mean/std
            normalisation), before padding.
        device: where the model runs; by default the device of its first parameter (CPU for a
            parameter-free callable). Corruption happens on the dataset's device.
        threshold: probability threshold of the binary metrics (probabilities = ``sigmoid(logits)``);
            semantic predictions are the argmax over classes.
        batch_size: most images per forward pass.
        pad_to: zero-pad the bottom/right of each (preprocessed) batch to a multiple of this, as
            BasicIRSTD does for models with down-sampling stages; outputs are cropped back. ``None``
            feeds the native size. The default 32 (the ISTD default since 0.1) serves semantic
            models too: segmentation-models-pytorch encoders have five stride-2 stages and its
            models (all but ``Unet``, which resizes inside) refuse sizes not divisible by 32, so
            CamVid's 180 x 240 runs as 192 x 256 and is scored at 180 x 240.
        num_workers: DataLoader workers that load and corrupt images.
        progress: show a tqdm bar.
        task: ``"binary"``, ``"semantic"``, a :class:`~advcorrupt.tasks.Task`, or ``None``.
        num_classes: K of a semantic task (``None``: the dataset's ``num_classes``, else the
            model's output channels).
        ignore_index: the label never counted (``None``: the dataset's ``ignore_index``, else none).

    Returns:
        Binary: ``{"iou", "niou", "pd", "fa"}`` as returned by
        :class:`advcorrupt.metrics.ISTDMetrics` (``fa`` in units of 1e-6). Semantic:
        ``{"mIoU", "aAcc", "mAcc"}`` fractions and ``"IoU"``, the K per-class values
        (:class:`advcorrupt.metrics.SegmentationMetrics`).

    Example:
        >>> import torch
        >>> from advcorrupt.data import SyntheticIRSTD
        >>> model = torch.nn.Conv2d(1, 1, 3, padding=1)
        >>> m = evaluate(model, SyntheticIRSTD(4, size=32), corruption="gaussian_noise", severity=2)
        >>> sorted(m)
        ['fa', 'iou', 'niou', 'pd']
    """
    n = _check_common(
        model, dataset, threshold=threshold, batch_size=batch_size, pad_to=pad_to,
        num_workers=num_workers, preprocess=preprocess,
    )
    if (corruption is None) != (severity is None):
        raise ValueError(
            "corruption and severity go together: give both or neither; got "
            f"corruption={corruption!r}, severity={severity!r}"
        )
    dev, dtype = _model_device_dtype(model)
    dev = torch.device(device) if device is not None else dev
    if corruption is not None:
        assert severity is not None
        _check_severity(corruption, severity)
    given = given_task(task, num_classes=num_classes, ignore_index=ignore_index, dataset=dataset)
    bar = _progress_bar(n, "clean" if corruption is None else f"{corruption}@{severity}", progress)
    try:
        with _eval_mode(model), torch.inference_mode():
            return _evaluate(
                model, dataset, corruption=corruption, severity=severity, seed=seed,
                scoring=Scoring(given, threshold=threshold), preprocess=preprocess, device=dev,
                dtype=dtype, batch_size=batch_size, pad_to=pad_to, num_workers=num_workers, bar=bar,
            )
    finally:
        if bar is not None:
            bar.close()


def _evaluate(
    model: Callable[..., Any],
    dataset: Dataset[Any],
    *,
    corruption: str | None,
    severity: int | None,
    seed: int,
    bar: Any,
    **kw: Any,
) -> dict[str, Any]:
    """One pass (arguments already validated, ``scoring`` among them; the caller sets eval and inference mode)."""
    view: Dataset[tuple[Tensor, Tensor]] = (
        _CleanView(dataset) if corruption is None
        else CorruptedDataset(dataset, corruption, severity, seed=seed)  # type: ignore[arg-type]
    )
    return _run(model, view, on_batch=bar.update if bar is not None else None, **kw)


# --------------------------------------------------------------------------------------------
# The benchmark: the clean pass, then one pass per corruption x severity
# --------------------------------------------------------------------------------------------


def _model_label(model: Callable[..., Any]) -> str:
    if isinstance(model, nn.Module):
        return type(model).__name__
    return getattr(model, "__name__", type(model).__name__)


def evaluate_robustness(
    model: Callable[..., Any],
    dataset: Dataset[Any],
    *,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    seed: int = 0,
    preprocess: Callable[[Tensor], Tensor] | None = None,
    device: torch.device | str | None = None,
    threshold: float = 0.5,
    batch_size: int = 8,
    pad_to: int | None = 32,
    num_workers: int = 0,
    progress: bool = True,
    model_name: str | None = None,
    dataset_name: str | None = None,
    task: str | Task | None = None,
    num_classes: int | None = None,
    ignore_index: int | None = None,
) -> RobustnessReport | SemanticRobustnessReport:
    """Evaluate ``model`` on the clean ``dataset`` and under every corruption x severity.

    Runs :func:`evaluate` once clean and once per setting (``1 + K * S`` passes over the
    dataset), all with the same seeded corrupted images for every model (see
    :func:`~advcorrupt.bench.corruption_seed`), whatever the task.

    The task decides the metrics (:mod:`advcorrupt.bench.scoring`): given by ``task``, or by
    ``num_classes`` / ``ignore_index`` (semantic), completed by the dataset's own
    ``num_classes`` / ``ignore_index`` attributes (:class:`advcorrupt.data.CamVid`, also inside a
    ``torch.utils.data.Subset``); else
    inferred from the first batch of the clean pass and the model's output for it (integer masks
    and K > 1 output channels: semantic, see :func:`advcorrupt.tasks.infer_task`).

    - binary (ISTD): IoU, nIoU, Pd, Fa per setting and RCE (BALISTD Eq. 9) against the clean
      IoU, in a :class:`RobustnessReport`;
    - semantic (K classes): mIoU, aAcc, mAcc and per-class IoU per setting (the ignore label
      never counted), mPC (mean mIoU over every setting) and rPC = mPC / clean mIoU, in a
      :class:`~advcorrupt.bench.SemanticRobustnessReport`. A semantic task is checked against the
      model's output at every batch (from the first batch of the clean pass on) and every batch's
      labels before the model sees it, so bad input fails before any corrupted setting runs.

    Args:
        model: an ``nn.Module`` or callable returning logits (tensor, list of heads, ``{"out"}``):
            (B, 1, H, W) for a binary task, (B, K, H, W) for a semantic one.
        dataset: items ``(image, mask, ...)``; images (C, H, W) float in [0, 1] (1 or 3 channels),
            any sizes; masks (1, H, W) or (H, W): binary, or integer class indices.
        corruptions: names to evaluate; ``None`` takes every registered corruption.
        severities: levels (each within every chosen corruption's level table).
        seed: benchmark seed.
        preprocess: applied after corruption, on the model's device (e.g. normalisation).
        device: where the model runs (default: its parameters' device).
        threshold: probability threshold of the binary metrics (semantic: argmax).
        batch_size: most equal-sized images per forward pass.
        pad_to: pad inputs to a multiple of this (``None``: native size); outputs cropped back.
            The default 32 serves both tasks: segmentation-models-pytorch models (all but
            ``Unet``) refuse sizes not divisible by 32, so CamVid's 180 x 240 runs as 192 x 256
            and is scored at 180 x 240.
        num_workers: DataLoader workers that load and corrupt images.
        progress: show a tqdm bar over all passes.
        model_name: label for the report (default: the model's class or function name).
        dataset_name: label of the test set (default: the dataset's class name).
        task: ``"binary"``, ``"semantic"``, a :class:`~advcorrupt.tasks.Task` (not modified), or
            ``None``.
        num_classes: K of a semantic task (``None``: the dataset's, else the model's channels).
        ignore_index: the label never counted (``None``: the dataset's ``ignore_index``, else none).

    Returns:
        A :class:`RobustnessReport` (binary) or a :class:`~advcorrupt.bench.SemanticRobustnessReport`.

    Raises:
        ValueError: bad settings; a semantic ``num_classes`` that disagrees with the model's output
            channels, or a label >= K that is not the ignore label (named with its dataset item
            and position), before any corrupted setting runs.

    Example:
        >>> import torch
        >>> from advcorrupt.data import SyntheticIRSTD
        >>> model = torch.nn.Conv2d(1, 1, 3, padding=1)
        >>> report = evaluate_robustness(model, SyntheticIRSTD(2, size=32),
        ...     corruptions=["gaussian_noise", "contrast"], severities=(1, 3), progress=False)
        >>> len(report.results)
        4
        >>> rgb = [(torch.rand(3, 20, 30), torch.randint(0, 4, (20, 30)))]  # a 4-class RGB test set
        >>> report = evaluate_robustness(torch.nn.Conv2d(3, 4, 1), rgb, corruptions=["contrast"],
        ...     severities=(1,), progress=False)
        >>> type(report).__name__, report.primary_metric, len(report.clean["IoU"])
        ('SemanticRobustnessReport', 'mIoU', 4)
    """
    n = _check_common(
        model, dataset, threshold=threshold, batch_size=batch_size, pad_to=pad_to,
        num_workers=num_workers, preprocess=preprocess,
    )
    names, sevs = _check_settings(corruptions, severities)
    dev, dtype = _model_device_dtype(model)
    dev = torch.device(device) if device is not None else dev
    scoring = Scoring(given_task(task, num_classes=num_classes, ignore_index=ignore_index, dataset=dataset),
                      threshold=threshold)
    if scoring.task is not None:
        report_kind(scoring.task.name)  # a task without a report fails before the first pass
    kw: dict[str, Any] = dict(
        seed=seed, scoring=scoring, preprocess=preprocess, device=dev, dtype=dtype, batch_size=batch_size,
        pad_to=pad_to, num_workers=num_workers,
    )
    bar = _progress_bar(n * (1 + len(names) * len(sevs)), "clean", progress)
    passes: list[tuple[str, int, dict[str, Any]]] = []
    try:
        with _eval_mode(model), torch.inference_mode():
            clean = _evaluate(model, dataset, corruption=None, severity=None, bar=bar, **kw)
            for name in names:
                for s in sevs:
                    if bar is not None:
                        bar.set_description(f"{name}@{s}")
                    passes.append((name, int(s), _evaluate(model, dataset, corruption=name, severity=s, bar=bar, **kw)))
    finally:
        if bar is not None:
            bar.close()
    assert scoring.task is not None  # settled by the clean pass
    return robustness_report(
        clean, passes, task=scoring.task, threshold=threshold, dataset=dataset, corruptions=names, severities=sevs,
        seed=seed, model=model, model_name=model_name, dataset_name=dataset_name,
    )


def robustness_report(
    clean: dict[str, Any],
    passes: Sequence[tuple[str, int, dict[str, Any]]],
    *,
    task: Task,
    threshold: float,
    dataset: Dataset[Any],
    corruptions: Sequence[str],
    severities: Sequence[int],
    seed: int,
    model: Callable[..., Any],
    model_name: str | None = None,
    dataset_name: str | None = None,
) -> RobustnessReport | SemanticRobustnessReport:
    """The report of a benchmark run from its passes: what :func:`evaluate_robustness` returns.

    Shared by every way of running the passes (in memory here; from corrupted copies on disk in
    :func:`advcorrupt.cli.corrupt_dataset.evaluate_corrupted_root`), so both give the same fields.

    Args:
        clean: the clean pass's metrics (:func:`evaluate`'s result).
        passes: ``(corruption, severity, metrics)`` per setting, corruption-major.
        task: the settled task; its name picks the report kind (binary: RCE per setting; semantic:
            the classes, their names from ``dataset``'s ``class_names``).
        threshold: the binary metrics' threshold, recorded in a binary report.
        dataset: the clean test set (its size; its ``class_names`` if any).
        corruptions: names, in evaluation order.
        severities: levels evaluated.
        seed: the benchmark seed.
        model: the model (its label when ``model_name`` is None).
        model_name: label of the report (default: the model's class or function name).
        dataset_name: label of the test set (default: the dataset's class name).

    Returns:
        A :class:`RobustnessReport` (binary) or a :class:`~advcorrupt.bench.SemanticRobustnessReport`.

    Example:
        >>> from advcorrupt.tasks import BinaryTask
        >>> m = {"iou": 0.5, "niou": 0.5, "pd": 1.0, "fa": 0.0}
        >>> r = robustness_report(m, [("contrast", 1, {**m, "iou": 0.25})], task=BinaryTask(), threshold=0.5,
        ...     dataset=[None] * 3, corruptions=["contrast"], severities=[1], seed=0, model=len)
        >>> type(r).__name__, r.results[0].rce, r.num_images, r.model_name
        ('RobustnessReport', 0.5, 3, 'len')
    """
    common: dict[str, Any] = dict(
        corruptions=tuple(corruptions), severities=tuple(int(s) for s in severities), seed=int(seed),
        num_images=len(dataset),  # type: ignore[arg-type]
        model_name=model_name if model_name is not None else _model_label(model),
        dataset_name=dataset_name if dataset_name is not None else type(dataset).__name__,
    )
    kind = report_kind(task.name)  # the benchmark's registry: which report each task gets
    return kind.build(clean, list(passes), task=task, threshold=threshold, dataset=dataset, **common)


def _check_settings(corruptions: Sequence[str] | None, severities: Sequence[int]) -> tuple[list[str], list[int]]:
    """The corruption names and severities of the benchmark, checked (``KeyError`` for an unknown name)."""
    from ..corruptions import available

    if isinstance(corruptions, str):
        raise TypeError(f"corruptions must be a sequence of names; got the str {corruptions!r}")
    names = list(available() if corruptions is None else corruptions)
    if not names:
        raise ValueError("corruptions must name at least one corruption; got an empty list")
    if len(set(names)) != len(names):
        raise ValueError(f"corruptions must not repeat a name; got {names}")
    if isinstance(severities, (str, bytes)) or not isinstance(severities, Sequence):
        raise TypeError(f"severities must be a sequence of ints; got {type(severities).__name__}")
    sevs = list(severities)
    if not sevs or len(set(sevs)) != len(sevs):
        raise ValueError(f"severities must be distinct levels, at least one; got {sevs}")
    for name in names:
        for s in sevs:
            _check_severity(name, s)  # KeyError for unknown names, ValueError out of table
    return names, sevs
