"""The data side of a run: datasets, the normalising ``preprocess`` and reproducible batches.

Per ``TrainConfig.dataset``: ``"istd"`` trains on ISTD training views (or synthetic scenes) and
evaluates on the test split, normalised with the dataset's own one-channel statistics;
``"camvid"`` and ``"folder"`` train on random scale (0.5-2) + crop (``crop_size``) + flip views of
the ``train`` split, validate on ``val`` and leave ``test`` to the bench, normalised with the
ImageNet per-channel statistics (fixed, the convention of every smp / torchvision encoder, so a
run with pretrained encoder weights needs no other).

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

from .config import TrainConfig, _folder_split, run_task

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "build_datasets"]

#: Per-channel normalisation of RGB segmentation datasets (ImageNet's mean and std, in [0, 1] units).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: Splits an evaluation set can be taken from.
_SPLITS = ("val", "test")


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


def build_datasets(
    config: TrainConfig, *, split: str = "val"
) -> tuple[Dataset[Any], Dataset[Any], nn.Module]:
    """Train set (training views), evaluation set (native size) and the normalising ``preprocess``.

    Args:
        config: the run's configuration.
        split: the evaluation set: ``"val"`` (validation during training) or ``"test"`` (the
            bench). ISTD data has no validation split: both give its test split.

    Raises:
        FileNotFoundError: ``data_root`` lacks its dataset's layout (names what is missing).
        ValueError: a bad label map (a colour-coded RGB mask, a mask of another size, ...).

    Example:
        >>> train, test, preprocess = build_datasets(TrainConfig(synthetic_train=4, synthetic_test=2,
        ...                                                      synthetic_size=32))  # synthetic scenes
        >>> len(train), len(test), tuple(train[0][0].shape), tuple(train[0][1].shape)
        (4, 2, (1, 32, 32), (1, 32, 32))
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {list(_SPLITS)}; got {split!r} (--split)")
    if config.dataset != "istd":
        return _segmentation_datasets(config, split)
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


def _segmentation_datasets(config: TrainConfig, split: str) -> tuple[Dataset[Any], Dataset[Any], nn.Module]:
    """CamVid or folder splits: random scale-crop-flip training views, the evaluation split as is."""
    from ..data import Compose, Normalize, RandomHorizontalFlip, RandomScaleCrop

    task = run_task(config)
    ignore = getattr(task, "ignore_index", None)
    assert ignore is not None  # run_task gives every segmentation dataset an ignore label
    views = Compose([RandomScaleCrop(config.crop_size, scale=(0.5, 2.0), ignore_index=ignore), RandomHorizontalFlip()])
    train = _segmentation_split(config, "train", views)
    evaluation = _segmentation_split(config, split, None)
    return train, evaluation, Normalize(IMAGENET_MEAN, IMAGENET_STD)


def _segmentation_split(config: TrainConfig, split: str, transform: Any) -> Dataset[Any]:
    from ..data import CamVid, SegmentationFolder

    assert config.data_root is not None
    root = Path(config.data_root)
    policy = config.on_bad_file
    if config.dataset == "camvid":
        return CamVid(root, split, transform=transform, on_bad_file=policy)  # type: ignore[arg-type]
    layout = _folder_split(root, split)
    if layout is None:
        raise FileNotFoundError(
            f"data_root {root} has no {split!r} split: expected {split}/images/ + {split}/masks/, or images/ + "
            f"masks/ with {split}.txt listing the names (dataset='folder')"
        )
    folder, names = layout
    return SegmentationFolder(folder, num_classes=config.num_classes, ignore_index=config.ignore_index,  # type: ignore[arg-type]
                              transform=transform, on_bad_file=policy, names=names)  # type: ignore[arg-type]


def _synthetic_stats(dataset: Dataset[Any], n: int = 16) -> tuple[float, float]:
    images = torch.stack([dataset[i][0] for i in range(min(n, len(dataset)))])  # type: ignore[arg-type]
    return float(images.mean()), float(images.std())


def _batches(sampler: DistributedSampler[Any], batch_size: int, limit: int | None) -> list[list[int]]:
    order = list(sampler)
    out = [order[i : i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
    return out[:limit] if limit is not None else out
