"""Robustness evaluation: a detector on clean and corrupted test sets -> a report.

This is the protocol behind the robustness tables of BALISTD (*Enhancing Infrared Small Target
Detection Robustness with Bi-Level Adversarial Framework*, AAAI 2024, Tables 2-4): the detector is
scored on the clean test set and on the same test set under every corruption x severity (the
ImageNet-C corruptions of :mod:`advcorrupt.corruptions`), with the ISTD metrics IoU, nIoU, Pd and Fa
(:mod:`advcorrupt.metrics`) and the relative corruption error of the paper's Eq. 9,
``RCE = (IoU_clean - IoU_corrupted) / IoU_clean``.

Corrupted test sets are *seeded*: image ``i`` under ``(corruption, severity)`` is corrupted with a
``torch.Generator`` seeded by :func:`corruption_seed` ``(seed, corruption, severity, i)``, on the
device the dataset returns it on (the CPU for the datasets of :mod:`advcorrupt.data`). Every model
evaluated with the same ``seed`` is therefore judged on identical corrupted images, whatever its
device, batch size or evaluation order.

Per image: corrupt (in [0, 1]) -> ``preprocess`` (e.g. normalisation) -> zero-pad to a multiple
of ``pad_to`` -> model -> crop back -> ``sigmoid`` -> metrics at the native size.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import statistics
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ._outputs import output_heads

__all__ = [
    "METRIC_KEYS",
    "CorruptedDataset",
    "RobustnessReport",
    "SettingResult",
    "comparison_table",
    "corruption_seed",
    "evaluate",
    "evaluate_robustness",
    "summary_table",
]

#: The metrics reported for every setting, in table order. ``fa`` is in units of 1e-6.
METRIC_KEYS: tuple[str, ...] = ("iou", "niou", "pd", "fa")

_SEED_MASK = (1 << 63) - 1


# --------------------------------------------------------------------------------------------
# Seeds and corrupted test sets
# --------------------------------------------------------------------------------------------


def corruption_seed(seed: int, corruption: str, severity: int, index: int) -> int:
    """The generator seed of image ``index`` under ``(corruption, severity)``.

    A 63-bit BLAKE2b hash of the four values: independent of evaluation order, batch grouping and
    device, and different for every setting and image, so two settings never share noise.

    Args:
        seed: the benchmark seed.
        corruption: corruption name.
        severity: 1-based level.
        index: image index in the dataset.

    Returns:
        An int in ``[0, 2**63)``, for ``torch.Generator().manual_seed``.

    Example:
        >>> corruption_seed(0, "gaussian_noise", 3, 7) == corruption_seed(0, "gaussian_noise", 3, 7)
        True
        >>> corruption_seed(0, "gaussian_noise", 3, 7) != corruption_seed(1, "gaussian_noise", 3, 7)
        True
    """
    key = f"advcorrupt.benchmark/{int(seed)}/{corruption}/{int(severity)}/{int(index)}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & _SEED_MASK


def _split_item(item: Any, index: int) -> tuple[Tensor, Tensor]:
    """``(image (C,H,W) float, mask (1,H,W))`` from a dataset item (tuple/list or mapping)."""
    if isinstance(item, Mapping):
        try:
            image, mask = item["image"], item["mask"]
        except KeyError:
            raise TypeError(
                f"dataset item {index} is a mapping without 'image' and 'mask' keys; got keys {list(item)}"
            ) from None
    elif isinstance(item, (tuple, list)) and len(item) >= 2:
        image, mask = item[0], item[1]
    else:
        raise TypeError(
            f"dataset items must be (image, mask, ...) tuples or dicts with 'image' and 'mask'; "
            f"item {index} is {type(item).__name__}"
        )
    if not isinstance(image, Tensor) or not isinstance(mask, Tensor):
        raise TypeError(
            f"dataset item {index} must hold tensors; got image {type(image).__name__}, "
            f"mask {type(mask).__name__}"
        )
    if image.ndim == 2:
        image = image.unsqueeze(0)
    if image.ndim != 3 or not image.is_floating_point():
        raise ValueError(
            f"dataset images must be float in [0, 1] with shape (C, H, W); item {index} is "
            f"{image.dtype} of shape {tuple(image.shape)}"
        )
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.shape != image.shape[-2:]:
        raise ValueError(
            f"dataset masks must be (1, H, W) or (H, W) matching the image; item {index} has image "
            f"{tuple(image.shape)} and mask {tuple(mask.shape)}"
        )
    return image, mask.unsqueeze(0)


def _check_severity(corruption: str, severity: int) -> None:
    from .corruptions import get

    spec = get(corruption)  # KeyError listing the valid names
    if isinstance(severity, bool) or not isinstance(severity, int):
        raise TypeError(f"severity must be an int; got {type(severity).__name__} {severity!r}")
    if not 1 <= severity <= spec.num_levels:
        raise ValueError(
            f"severity must be in [1, {spec.num_levels}] for {corruption!r}; got {severity}"
        )


class CorruptedDataset(Dataset[tuple[Tensor, Tensor]]):
    """A dataset seen through one corruption at one severity, seeded per image.

    Item ``i`` is ``(corrupt(image_i, corruption, severity, generator=g_i), mask_i)`` where ``g_i``
    is a generator on the image's device seeded with :func:`corruption_seed`; this is exactly what
    :func:`evaluate` feeds the model, so users can look at (or cache) the benchmark's inputs.

    Args:
        dataset: items ``(image, mask, ...)`` or dicts with ``"image"`` and ``"mask"``; image
            (C, H, W) float in [0, 1].
        corruption: a registered corruption name (``KeyError`` lists the valid ones).
        severity: 1-based level within the corruption's level table.
        seed: benchmark seed.

    Shape:
        - ``ds[i]``: ``(image, mask)``, (C, H, W) and (1, H, W), native size.

    Example:
        >>> from advcorrupt.data import SyntheticIRSTD
        >>> ds = CorruptedDataset(SyntheticIRSTD(2, size=32), "gaussian_noise", 3, seed=0)
        >>> bool((ds[0][0] == ds[0][0]).all())
        True
    """

    def __init__(self, dataset: Dataset[Any], corruption: str, severity: int, *, seed: int = 0) -> None:
        _check_severity(corruption, severity)
        self.dataset = dataset
        self.corruption = corruption
        self.severity = severity
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        from .corruptions import corrupt

        if index < 0:
            index += len(self)
        image, mask = _split_item(self.dataset[index], index)
        g = torch.Generator(device=image.device)
        g.manual_seed(corruption_seed(self.seed, self.corruption, self.severity, index))
        x = corrupt(image.unsqueeze(0), self.corruption, self.severity, generator=g)
        return x[0], mask

    def __repr__(self) -> str:
        return (
            f"CorruptedDataset({self.dataset!r}, {self.corruption!r}, severity={self.severity}, "
            f"seed={self.seed})"
        )


class _CleanView(Dataset[tuple[Tensor, Tensor]]):
    def __init__(self, dataset: Dataset[Any]) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return _split_item(self.dataset[index], index)


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


def _run(
    model: Callable[..., Any],
    dataset: Dataset[tuple[Tensor, Tensor]],
    *,
    preprocess: Callable[[Tensor], Tensor] | None,
    device: torch.device,
    dtype: torch.dtype,
    threshold: float,
    batch_size: int,
    pad_to: int | None,
    num_workers: int,
    on_batch: Callable[[int], None] | None,
) -> dict[str, float]:
    from .data import pad_to_multiple
    from .metrics import ISTDMetrics

    metrics = ISTDMetrics(threshold=threshold)
    loader = DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    for images, masks in _batches(loader, batch_size):
        h, w = images.shape[-2:]
        x = images.to(device=device, non_blocking=True)
        if preprocess is not None:
            x = preprocess(x)
        x = x.to(dtype)
        if pad_to is not None and pad_to > 1:
            x, _ = pad_to_multiple(x, pad_to)
        logits = _to_logits(model(x))
        if logits.ndim != 4 or logits.shape[0] != x.shape[0] or logits.shape[1] != 1:
            raise ValueError(
                f"model logits must have shape (B, 1, H, W) = ({x.shape[0]}, 1, {x.shape[-2]}, "
                f"{x.shape[-1]}); got {tuple(logits.shape)}"
            )
        if logits.shape[-2:] != x.shape[-2:]:
            raise ValueError(
                f"model logits must have the input's spatial size {tuple(x.shape[-2:])}; got "
                f"{tuple(logits.shape[-2:])}"
            )
        probs = logits[..., :h, :w].float().sigmoid()
        metrics.update(probs, masks.to(device=device, non_blocking=True))
        if on_batch is not None:
            on_batch(images.shape[0])
    return {k: float(v) for k, v in metrics.compute().items()}


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
    from ._progress import progress_bar

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
) -> dict[str, float]:
    """ISTD metrics of ``model`` on ``dataset``, clean or under one corruption setting.

    The model runs in eval mode under ``torch.inference_mode`` (every submodule's train/eval
    flag is restored afterwards). Images are used at their native size; consecutive images of
    equal size are batched (at most ``batch_size``), so datasets of mixed sizes work.

    Args:
        model: an ``nn.Module`` or any callable mapping (B, C, H, W) to logits: a tensor, a
            list/tuple of deep-supervision heads (the last is evaluated) or a dict with ``"out"``.
        dataset: items ``(image, mask, ...)`` or dicts with ``"image"``/``"mask"``; image (C, H, W)
            float in [0, 1], mask (1, H, W) or (H, W) binary.
        corruption: a registered corruption name, or ``None`` for the clean set.
        severity: the level of ``corruption`` (required with it).
        seed: benchmark seed (see :func:`corruption_seed`).
        preprocess: applied to the batch on ``device`` after corruption (e.g. mean/std
            normalisation), before padding.
        device: where the model runs; by default the device of its first parameter (CPU for a
            parameter-free callable). Corruption happens on the dataset's device.
        threshold: probability threshold of the metrics (probabilities = ``sigmoid(logits)``).
        batch_size: most images per forward pass.
        pad_to: zero-pad the bottom/right of each (preprocessed) batch to a multiple of this, as
            BasicIRSTD does for models with down-sampling stages; outputs are cropped back. ``None``
            feeds the native size.
        num_workers: DataLoader workers that load and corrupt images.
        progress: show a tqdm bar.

    Returns:
        ``{"iou", "niou", "pd", "fa"}`` as returned by :class:`advcorrupt.metrics.ISTDMetrics`
        (``fa`` in units of 1e-6).

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
    bar = _progress_bar(n, "clean" if corruption is None else f"{corruption}@{severity}", progress)
    try:
        with _eval_mode(model), torch.inference_mode():
            return _evaluate(
                model, dataset, corruption=corruption, severity=severity, seed=seed,
                preprocess=preprocess, device=dev, dtype=dtype, threshold=threshold,
                batch_size=batch_size, pad_to=pad_to, num_workers=num_workers, bar=bar,
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
) -> dict[str, float]:
    """One pass (arguments already validated; the caller sets eval and inference mode)."""
    view: Dataset[tuple[Tensor, Tensor]] = (
        _CleanView(dataset) if corruption is None
        else CorruptedDataset(dataset, corruption, severity, seed=seed)  # type: ignore[arg-type]
    )
    return _run(model, view, on_batch=bar.update if bar is not None else None, **kw)


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettingResult:
    """Metrics of one (corruption, severity) setting.

    Attributes:
        corruption: corruption name.
        severity: 1-based level.
        iou: dataset IoU (total intersection / total union), in [0, 1].
        niou: mean per-image IoU, in [0, 1].
        pd: probability of detection, in [0, 1].
        fa: false-alarm rate, in units of 1e-6.
        rce: relative corruption error ``(IoU_clean - iou) / IoU_clean`` (paper Eq. 9).
    """

    corruption: str
    severity: int
    iou: float
    niou: float
    pd: float
    fa: float
    rce: float


def _mean(values: Iterable[float]) -> float:
    vals = list(values)
    return statistics.fmean(vals) if vals else math.nan


@dataclass(frozen=True)
class RobustnessReport:
    """Clean and corrupted ISTD metrics of one model: the rows of BALISTD's Tables 2-4.

    Attributes:
        clean: clean-set metrics ``{"iou", "niou", "pd", "fa"}`` (``fa`` in units of 1e-6).
        results: one :class:`SettingResult` per corruption x severity, corruption-major.
        corruptions: corruption names, in evaluation order.
        severities: levels evaluated.
        seed: benchmark seed (see :func:`corruption_seed`).
        num_images: test-set size.
        model_name: a label for tables (e.g. the model's class name).
        dataset_name: a label of the test set.
        threshold: probability threshold of the metrics.
        extra: free-form JSON-serialisable metadata (e.g. the training configuration); kept
            by the JSON round trip.

    Example:
        >>> r = RobustnessReport(
        ...     clean={"iou": 0.8, "niou": 0.8, "pd": 1.0, "fa": 0.0},
        ...     results=(SettingResult("gaussian_noise", 1, 0.6, 0.6, 0.9, 5.0, 0.25),),
        ...     corruptions=("gaussian_noise",), severities=(1,), seed=0, num_images=1)
        >>> r.mean_corrupted_iou, r.mean_rce
        (0.6, 0.25)
    """

    clean: dict[str, float]
    results: tuple[SettingResult, ...]
    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    seed: int
    num_images: int
    model_name: str | None = None
    dataset_name: str | None = None
    threshold: float = 0.5
    extra: dict[str, Any] = field(default_factory=dict)

    # ---- summaries -----------------------------------------------------------------------

    @property
    def mean_corrupted_iou(self) -> float:
        """IoU averaged over every corruption x severity (the paper's "mean" column)."""
        return _mean(r.iou for r in self.results)

    @property
    def mean_rce(self) -> float:
        """RCE averaged over every corruption x severity."""
        return _mean(r.rce for r in self.results)

    @property
    def per_corruption(self) -> dict[str, dict[str, float]]:
        """For each corruption, its metrics and RCE averaged over the severities."""
        out: dict[str, dict[str, float]] = {}
        for name in self.corruptions:
            rows = [r for r in self.results if r.corruption == name]
            out[name] = {k: _mean(getattr(r, k) for r in rows) for k in (*METRIC_KEYS, "rce")}
        return out

    def result(self, corruption: str, severity: int) -> SettingResult:
        """The row of one setting; ``KeyError`` if it was not evaluated."""
        for r in self.results:
            if r.corruption == corruption and r.severity == severity:
                return r
        raise KeyError(
            f"no result for ({corruption!r}, {severity}); evaluated corruptions {list(self.corruptions)} "
            f"at severities {list(self.severities)}"
        )

    # ---- serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN written as ``None``), with the summaries for human readers."""
        return _nan_to_none(
            {
                "model_name": self.model_name,
                "dataset_name": self.dataset_name,
                "seed": self.seed,
                "num_images": self.num_images,
                "threshold": self.threshold,
                "corruptions": list(self.corruptions),
                "severities": list(self.severities),
                "clean": dict(self.clean),
                "mean_corrupted_iou": self.mean_corrupted_iou,
                "mean_rce": self.mean_rce,
                "per_corruption": self.per_corruption,
                "results": [
                    {k: getattr(r, k) for k in SettingResult.__dataclass_fields__} for r in self.results
                ],
                "extra": dict(self.extra),
                "units": {"iou": "fraction", "niou": "fraction", "pd": "fraction", "fa": "1e-6",
                          "rce": "fraction"},
            }
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RobustnessReport:
        """Inverse of :meth:`to_dict` (derived summaries are recomputed, not read)."""
        try:
            results = tuple(
                SettingResult(
                    corruption=str(r["corruption"]),
                    severity=int(r["severity"]),
                    **{k: _float(r[k]) for k in (*METRIC_KEYS, "rce")},
                )
                for r in data["results"]
            )
            return cls(
                clean={k: _float(v) for k, v in data["clean"].items()},
                results=results,
                corruptions=tuple(data["corruptions"]),
                severities=tuple(int(s) for s in data["severities"]),
                seed=int(data["seed"]),
                num_images=int(data["num_images"]),
                model_name=data.get("model_name"),
                dataset_name=data.get("dataset_name"),
                threshold=float(data.get("threshold", 0.5)),
                extra=dict(data.get("extra", {})),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a RobustnessReport dict: {e!r}") from None

    def to_json(self, path: str | Path) -> Path:
        """Write the report as JSON (standard JSON: NaN becomes ``null``); returns the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> RobustnessReport:
        """Read a report written by :meth:`to_json`."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_csv(self, path: str | Path) -> Path:
        """Write one row per corruption x severity (raw fractions; ``fa`` in 1e-6); returns the path.

        Columns: ``model, corruption, severity, iou, niou, pd, fa, rce, clean_iou``.
        """
        path = Path(path)
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["model", "corruption", "severity", *METRIC_KEYS, "rce", "clean_iou"])
            for r in self.results:
                writer.writerow(
                    [self.model_name or "", r.corruption, r.severity,
                     *(repr(float(getattr(r, k))) for k in (*METRIC_KEYS, "rce")),
                     repr(float(self.clean.get("iou", math.nan)))]
                )
        return path

    def to_markdown(self, *, digits: int = 2) -> str:
        """Markdown: the paper-style summary row, then the full corruption x severity table.

        IoU, nIoU, Pd and RCE are shown in percent, Fa in units of 1e-6.
        """
        title = self.model_name or "model"
        lines = [
            f"## Robustness of {title}",
            "",
            f"{self.num_images} test images{f' ({self.dataset_name})' if self.dataset_name else ''}, "
            f"severities {', '.join(map(str, self.severities))}, seed {self.seed}, threshold "
            f"{self.threshold:g}. IoU, nIoU, Pd, RCE in %; Fa in 1e-6.",
            "",
            "### Summary (IoU per corruption, averaged over severities)",
            "",
            summary_table([self], digits=digits),
            "",
            "### Clean",
            "",
            "| IoU | nIoU | Pd | Fa |",
            "|---:|---:|---:|---:|",
            "| " + " | ".join(_fmt_metric(k, self.clean.get(k, math.nan), digits) for k in METRIC_KEYS) + " |",
            "",
            "### Every corruption x severity",
            "",
            *_settings_table(self.results, digits),
        ]
        return "\n".join(lines) + "\n"

    def plot_heatmap(self, path: str | Path, *, metric: str = "iou", dpi: int = 120) -> Path:
        """Draw a corruption x severity heatmap of ``metric`` (default IoU) with values in the cells.

        Uses matplotlib's Agg canvas directly (no pyplot state, no display needed).

        Args:
            path: output PNG path.
            metric: one of ``iou``, ``niou``, ``pd``, ``fa``, ``rce``.
            dpi: resolution.

        Returns:
            The path written.
        """
        if metric not in (*METRIC_KEYS, "rce"):
            raise ValueError(f"metric must be one of {[*METRIC_KEYS, 'rce']}; got {metric!r}")
        scale = 1.0 if metric == "fa" else 100.0
        values = _heatmap_grid(self, metric) * scale
        unit = " (1e-6)" if metric == "fa" else " (%)"
        clean = self.clean.get(metric)
        clean_txt = f", clean {clean * scale:.1f}" if clean is not None and metric != "rce" else ""
        title = f"{self.model_name or 'model'}: {metric}{unit}{clean_txt}"
        fig = _draw_heatmap(values, list(self.corruptions), list(self.severities), metric=metric, title=title, dpi=dpi)
        path = Path(path)
        fig.savefig(path, format="png")
        return path

    def save(self, folder: str | Path, *, stem: str = "robustness") -> dict[str, Path]:
        """Write Markdown, CSV, JSON and the IoU heatmap PNG into ``folder`` (created if needed).

        The files are written to a temporary folder beside ``folder`` and moved in when all four
        are complete, so an interrupted call leaves no half-written report.

        Returns:
            ``{"markdown", "csv", "json", "heatmap"}`` -> paths.
        """
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        names = {"markdown": f"{stem}.md", "csv": f"{stem}.csv", "json": f"{stem}.json", "heatmap": f"{stem}_iou.png"}
        with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}.") as tmp:
            staged = Path(tmp)
            (staged / names["markdown"]).write_text(self.to_markdown())
            self.to_csv(staged / names["csv"])
            self.to_json(staged / names["json"])
            self.plot_heatmap(staged / names["heatmap"])
            folder.mkdir(exist_ok=True)
            for name in names.values():
                os.replace(staged / name, folder / name)
        return {key: folder / name for key, name in names.items()}


def _settings_table(results: Sequence[SettingResult], digits: int) -> list[str]:
    """Markdown lines of the corruption x severity table of a report."""
    lines = ["| corruption | severity | IoU | nIoU | Pd | Fa | RCE |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        cells = [_fmt_metric(k, getattr(r, k), digits) for k in (*METRIC_KEYS, "rce")]
        lines.append(f"| {r.corruption} | {r.severity} | " + " | ".join(cells) + " |")
    return lines


def _heatmap_grid(report: RobustnessReport, metric: str) -> Tensor:
    """(corruptions, severities) float64 grid of ``metric``; NaN where a setting is missing."""
    rows, cols = list(report.corruptions), list(report.severities)
    grid = [[math.nan] * len(cols) for _ in rows]
    for r in report.results:
        if r.corruption in rows and r.severity in cols:
            grid[rows.index(r.corruption)][cols.index(r.severity)] = getattr(r, metric)
    return torch.tensor(grid, dtype=torch.float64)


def _draw_heatmap(values: Tensor, rows: list[str], cols: list[int], *, metric: str, title: str, dpi: int) -> Any:
    """A matplotlib Figure (Agg canvas) of ``values`` with the numbers written in the cells."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    finite = values[values.isfinite()]
    vmin, vmax = (0.0, 100.0) if metric in ("iou", "niou", "pd") else (
        (float(finite.min()), float(finite.max())) if finite.numel() else (0.0, 1.0)
    )
    cmap = "viridis" if metric in ("iou", "niou", "pd") else "magma_r"
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


def _float(v: Any) -> float:
    return math.nan if v is None else float(v)


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_none(v) for v in obj]
    return obj


def _fmt_metric(key: str, value: float, digits: int) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}" if key == "fa" else f"{100 * value:.{digits}f}"


def summary_table(reports: Sequence[RobustnessReport], *, digits: int = 2) -> str:
    """The paper-style Markdown table: one row per model, IoU per corruption and the means.

    Columns: model, clean IoU, each corruption's IoU averaged over the severities, the mean
    corrupted IoU and the mean RCE (all in %). Corruptions are the union, in first-seen order;
    a model that lacks one shows ``n/a``.

    Args:
        reports: one report per model (or per training setting).
        digits: decimals.

    Example:
        >>> r = RobustnessReport(clean={"iou": 0.8}, corruptions=("contrast",), severities=(1,),
        ...     results=(SettingResult("contrast", 1, 0.4, 0.4, 0.5, 1.0, 0.5),), seed=0, num_images=1,
        ...     model_name="net")
        >>> print(summary_table([r]).splitlines()[2])
        | net | 80.00 | 40.00 | 40.00 | 50.00 |
    """
    if not reports:
        raise ValueError("reports must hold at least one RobustnessReport; got none")
    names: list[str] = []
    for rep in reports:
        names.extend(n for n in rep.corruptions if n not in names)
    head = ["model", "clean IoU", *names, "mean IoU", "mean RCE"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for i, rep in enumerate(reports):
        per = rep.per_corruption
        cells = [rep.model_name or f"model {i}", _fmt_metric("iou", rep.clean.get("iou", math.nan), digits)]
        cells += [_fmt_metric("iou", per[n]["iou"], digits) if n in per else "n/a" for n in names]
        cells += [_fmt_metric("iou", rep.mean_corrupted_iou, digits), _fmt_metric("rce", rep.mean_rce, digits)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Comparing models (several seeds each): BALISTD's Table 2
# --------------------------------------------------------------------------------------------

#: Rows of :func:`comparison_table` before the per-corruption ones: (label, getter, higher is better).
_SUMMARY_ROWS: tuple[tuple[str, str, Callable[[RobustnessReport], float], bool], ...] = (
    ("clean IoU", "iou", lambda r: r.clean.get("iou", math.nan), True),
    ("clean nIoU", "niou", lambda r: r.clean.get("niou", math.nan), True),
    ("clean Pd", "pd", lambda r: r.clean.get("pd", math.nan), True),
    ("clean Fa (1e-6)", "fa", lambda r: r.clean.get("fa", math.nan), False),
    ("mean corrupted IoU", "iou", lambda r: r.mean_corrupted_iou, True),
    ("mean RCE", "rce", lambda r: r.mean_rce, False),
)


def _check_comparison_input(
    reports: Mapping[str, RobustnessReport | Sequence[RobustnessReport]],
) -> dict[str, list[RobustnessReport]]:
    """``{label: [report, ...]}``, every group non-empty and evaluated on one benchmark."""
    if not isinstance(reports, Mapping) or not reports:
        raise ValueError(
            "reports must be a non-empty mapping {model label: report or list of reports (one per seed)}; "
            f"got {type(reports).__name__ if not isinstance(reports, Mapping) else 'an empty mapping'}"
        )
    groups: dict[str, list[RobustnessReport]] = {}
    for label, value in reports.items():
        group = [value] if isinstance(value, RobustnessReport) else list(value)
        bad = [type(r).__name__ for r in group if not isinstance(r, RobustnessReport)]
        if not group or bad:
            raise TypeError(
                f"reports[{label!r}] must be a RobustnessReport or a non-empty list of them; "
                f"got {bad or 'an empty list'}"
            )
        groups[str(label)] = group
    setups = {(r.dataset_name, r.num_images, r.seed) for g in groups.values() for r in g}
    if len(setups) > 1:
        raise ValueError(
            "every report must come from the same test set and benchmark seed (else the models saw "
            f"different images); got (dataset_name, num_images, seed) = {sorted(setups, key=repr)}"
        )
    return groups


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN for one value); NaN values count as missing."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else math.nan)


def _fmt_mean_std(key: str, mean: float, std: float, digits: int, bold: bool) -> str:
    if not math.isfinite(mean):
        return "n/a"
    cell = _fmt_metric(key, mean, digits)
    if math.isfinite(std):
        cell += f" ± {_fmt_metric(key, std, digits)}"
    return f"**{cell}**" if bold else cell


def _per_corruption_getter(name: str, key: str) -> Callable[[RobustnessReport], float]:
    """``report -> its `key` for corruption `name` averaged over severities`` (NaN if absent)."""
    return lambda r: r.per_corruption.get(name, {}).get(key, math.nan)


def _comparison_row(
    title: str, key: str, stats: list[tuple[float, float]], higher_is_better: bool, digits: int
) -> str:
    means = [m for m, _ in stats if math.isfinite(m)]
    best = (max if higher_is_better else min)(means) if len(means) > 1 else math.nan
    cells = [_fmt_mean_std(key, m, s, digits, m == best) for m, s in stats]
    return f"| {title} | " + " | ".join(cells) + " |"


def comparison_table(
    reports: Mapping[str, RobustnessReport | Sequence[RobustnessReport]], *, digits: int = 2
) -> str:
    """Several models side by side, mean ± std over seeds: BALISTD's Table 2 as Markdown.

    One column per model label; rows: clean IoU, nIoU, Pd, Fa; the mean corrupted IoU and mean
    RCE; then, per corruption (union over the reports, first-seen order), its IoU and RCE averaged
    over the severities. A cell is the mean over the label's reports (one per training seed) and,
    with two or more, ``± the sample standard deviation``; ``n/a`` where a model lacks the value.
    The best mean of each row is bold (highest IoU/nIoU/Pd, lowest Fa/RCE). IoU, nIoU, Pd and RCE
    are in %, Fa in units of 1e-6.

    Args:
        reports: ``{label: report or [report per seed]}``, e.g. ``{"ACM": [r0, r1, r2],
            "ACM + SFIM": [s0, s1, s2]}``; all evaluated on the same test set with the same
            benchmark seed (else ``ValueError``).
        digits: decimals.

    Returns:
        The Markdown table (a header line naming the seeds per model, then the table).

    Raises:
        ValueError: empty input or reports from different test sets / benchmark seeds.
        TypeError: a value that is not a report or a list of reports.

    Example:
        >>> a = RobustnessReport(clean={"iou": 0.8, "niou": 0.7, "pd": 1.0, "fa": 2.0},
        ...     results=(SettingResult("contrast", 1, 0.4, 0.4, 0.5, 1.0, 0.5),),
        ...     corruptions=("contrast",), severities=(1,), seed=0, num_images=1)
        >>> b = RobustnessReport(clean={"iou": 0.6, "niou": 0.6, "pd": 1.0, "fa": 2.0},
        ...     results=(SettingResult("contrast", 1, 0.3, 0.3, 0.5, 1.0, 0.5),),
        ...     corruptions=("contrast",), severities=(1,), seed=0, num_images=1)
        >>> print(comparison_table({"net": [a, b]}).splitlines()[4])
        | clean IoU | 70.00 ± 14.14 |
    """
    groups = _check_comparison_input(reports)
    names: list[str] = []
    for group in groups.values():
        for rep in group:
            names.extend(n for n in rep.corruptions if n not in names)
    rows: list[tuple[str, str, Callable[[RobustnessReport], float], bool]] = list(_SUMMARY_ROWS)
    for name in names:
        rows.append((f"{name} IoU", "iou", _per_corruption_getter(name, "iou"), True))
        rows.append((f"{name} RCE", "rce", _per_corruption_getter(name, "rce"), False))
    seeds = ", ".join(f"{label}: {len(g)}" for label, g in groups.items())
    lines = [
        f"Reports per model (seeds): {seeds}. Mean ± sample std over seeds; IoU, nIoU, Pd, RCE in %, "
        "Fa in 1e-6; per-corruption values averaged over severities; best mean in bold.",
        "",
        "| metric | " + " | ".join(groups) + " |",
        "|---|" + "---:|" * len(groups),
    ]
    for title, key, getter, better in rows:
        stats = [_mean_std([getter(r) for r in group]) for group in groups.values()]
        lines.append(_comparison_row(title, key, stats, better, digits))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------


def _safe_rce(rce: Callable[[float, float], float], clean: float, corrupted: float) -> float:
    """RCE, or NaN when it is undefined (clean IoU 0 or NaN) instead of failing a long run."""
    if not (math.isfinite(clean) and clean > 0 and math.isfinite(corrupted)):
        return math.nan
    return float(rce(clean, corrupted))


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
) -> RobustnessReport:
    """Evaluate ``model`` on the clean ``dataset`` and under every corruption x severity.

    Runs :func:`evaluate` once clean and once per setting (``1 + K * S`` passes over the
    dataset), all with the same seeded corrupted images for every model (see
    :func:`corruption_seed`), and computes RCE (paper Eq. 9) against the clean IoU.

    Args:
        model: an ``nn.Module`` or callable returning logits (tensor, list of heads, ``{"out"}``).
        dataset: items ``(image, mask, ...)``; images (C, H, W) float in [0, 1], any sizes.
        corruptions: names to evaluate; ``None`` takes every registered corruption.
        severities: levels (each within every chosen corruption's level table).
        seed: benchmark seed.
        preprocess: applied after corruption, on the model's device (e.g. normalisation).
        device: where the model runs (default: its parameters' device).
        threshold: probability threshold of the metrics.
        batch_size: most equal-sized images per forward pass.
        pad_to: pad inputs to a multiple of this (``None``: native size); outputs cropped back.
        num_workers: DataLoader workers that load and corrupt images.
        progress: show a tqdm bar over all passes.
        model_name: label for the report (default: the model's class or function name).
        dataset_name: label of the test set (default: the dataset's class name).

    Returns:
        A :class:`RobustnessReport`.

    Example:
        >>> import torch
        >>> from advcorrupt.data import SyntheticIRSTD
        >>> model = torch.nn.Conv2d(1, 1, 3, padding=1)
        >>> report = evaluate_robustness(model, SyntheticIRSTD(2, size=32),
        ...     corruptions=["gaussian_noise", "contrast"], severities=(1, 3), progress=False)
        >>> len(report.results)
        4
    """
    n = _check_common(
        model, dataset, threshold=threshold, batch_size=batch_size, pad_to=pad_to,
        num_workers=num_workers, preprocess=preprocess,
    )
    from .corruptions import available
    from .metrics import rce

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

    dev, dtype = _model_device_dtype(model)
    dev = torch.device(device) if device is not None else dev
    kw: dict[str, Any] = dict(
        seed=seed, preprocess=preprocess, device=dev, dtype=dtype, threshold=threshold,
        batch_size=batch_size, pad_to=pad_to, num_workers=num_workers,
    )
    bar = _progress_bar(n * (1 + len(names) * len(sevs)), "clean", progress)
    results: list[SettingResult] = []
    try:
        with _eval_mode(model), torch.inference_mode():
            clean = _evaluate(model, dataset, corruption=None, severity=None, bar=bar, **kw)
            for name in names:
                for s in sevs:
                    if bar is not None:
                        bar.set_description(f"{name}@{s}")
                    m = _evaluate(model, dataset, corruption=name, severity=s, bar=bar, **kw)
                    results.append(
                        SettingResult(
                            name, int(s), *(m[k] for k in METRIC_KEYS),
                            rce=_safe_rce(rce, clean["iou"], m["iou"]),
                        )
                    )
    finally:
        if bar is not None:
            bar.close()
    return RobustnessReport(
        clean=clean,
        results=tuple(results),
        corruptions=tuple(names),
        severities=tuple(int(s) for s in sevs),
        seed=int(seed),
        num_images=n,
        model_name=model_name if model_name is not None else _model_label(model),
        dataset_name=dataset_name if dataset_name is not None else type(dataset).__name__,
        threshold=float(threshold),
    )

