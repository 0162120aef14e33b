"""The data side of a run: datasets, the normalising ``preprocess`` and reproducible batches.

The epoch's sample order comes from ``(seed, epoch)`` (a ``DistributedSampler``, one split per
process), each item's augmentation from ``(seed, epoch, index)`` (:class:`_SeededItems`), so a
resumed run replays the uninterrupted one exactly, whatever the number of DataLoader workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, DistributedSampler

from .config import TrainConfig

__all__ = ["build_datasets"]


def _mix(*values: int) -> int:
    """A 63-bit seed from integers (SplitMix64 finaliser over a running combination)."""
    z = 0x243F6A8885A308D3
    for v in values:
        z = (z ^ (v & 0xFFFFFFFFFFFFFFFF)) * 0x9E3779B97F4A7C15 & 0xFFFFFFFFFFFFFFFF
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        z ^= z >> 31
    return z & 0x7FFFFFFFFFFFFFFF


class _SeededItems(Dataset[tuple[Tensor, Tensor]]):
    """Each item's randomness seeded from ``(seed, epoch, index)``: order- and worker-independent."""

    def __init__(self, dataset: Dataset[Any], seed: int, epoch: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_mix(self.seed, self.epoch, index))
            return self.dataset[index]


def build_datasets(config: TrainConfig) -> tuple[Dataset[Any], Dataset[Any], nn.Module]:
    """Train set (training views), test set (native size) and the normalising ``preprocess``.

    Raises:
        FileNotFoundError: ``data_root`` lacks the ISTD layout (names what is missing).

    Example:
        >>> train, test, preprocess = build_datasets(TrainConfig(synthetic_train=4, synthetic_test=2,
        ...                                                      synthetic_size=32))  # synthetic scenes
        >>> len(train), len(test), tuple(train[0][0].shape), tuple(train[0][1].shape)
        (4, 2, (1, 32, 32), (1, 32, 32))
    """
    from ..data import ISTDDataset, Normalize, SyntheticIRSTD

    if config.data_root is None:
        train = SyntheticIRSTD(config.synthetic_train, size=config.synthetic_size, seed=config.seed)
        test = SyntheticIRSTD(config.synthetic_test, size=config.synthetic_size, seed=config.seed + 1_000_003)
        mean, std = _synthetic_stats(train)
    else:
        root = Path(config.data_root)
        if not root.is_dir():
            raise FileNotFoundError(
                f"data_root {root} does not exist; pass the folder holding images/, masks/ and img_idx/ "
                f"(e.g. ../shared/data/NUAA-SIRST), or leave it out to train on synthetic scenes"
            )
        policy = config.on_bad_file
        train = ISTDDataset(root, "train", name=config.dataset_name, transform="train", patch_size=config.patch_size,
                            cache=True, on_bad_file=policy)  # type: ignore[arg-type]
        test = ISTDDataset(root, "test", name=config.dataset_name, transform="test", cache=True,
                           on_bad_file=policy)  # type: ignore[arg-type]
        mean, std = train.mean, train.std
    return train, test, Normalize(mean, std)


def _synthetic_stats(dataset: Dataset[Any], n: int = 16) -> tuple[float, float]:
    images = torch.stack([dataset[i][0] for i in range(min(n, len(dataset)))])  # type: ignore[arg-type]
    return float(images.mean()), float(images.std())


def _batches(sampler: DistributedSampler[Any], batch_size: int, limit: int | None) -> list[list[int]]:
    order = list(sampler)
    out = [order[i : i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
    return out[:limit] if limit is not None else out
