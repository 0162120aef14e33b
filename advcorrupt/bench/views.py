"""Seeded corrupted views of a test set: what the benchmark feeds the model.

Image ``i`` under ``(corruption, severity)`` is corrupted with a ``torch.Generator`` seeded by
:func:`corruption_seed` ``(seed, corruption, severity, i)``, on the device the dataset returns it
on. Every model evaluated with the same ``seed`` therefore sees identical corrupted images,
whatever its device, batch size or evaluation order (BALISTD, AAAI 2024, Tables 2-4 protocol; the
corruptions are the ImageNet-C ones of :mod:`advcorrupt.corruptions`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

_SEED_MASK = (1 << 63) - 1


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
    # The key names the old module path on purpose: changing it would change every seeded image.
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
    from ..corruptions import get

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
    :func:`~advcorrupt.bench.evaluate` feeds the model, so users can look at (or cache) the
    benchmark's inputs.

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
        from ..corruptions import corrupt

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
    """The clean counterpart of :class:`CorruptedDataset`: items checked and split, unchanged."""

    def __init__(self, dataset: Dataset[Any]) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return _split_item(self.dataset[index], index)
