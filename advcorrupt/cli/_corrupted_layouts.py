"""The two dataset layouts ``advcorrupt corrupt-dataset`` copies: finding a source's, writing and reading one setting.

- ``"istd"``: the standard ISTD layout (``images/``, ``masks/``, ``img_idx/{test,train}_<NAME>.txt``,
  :class:`advcorrupt.data.ISTDDataset`). Every image listed in a split file is written as an 8-bit
  gray PNG; ``masks/`` and ``img_idx/`` are copied. Test splits first: an image listed in a test and
  a train split keeps its test version.
- ``"segnet"``: CamVid in SegNet's layout (``<split>/`` images beside ``<split>annot/`` class-index
  label maps, for the splits ``test``, ``val``, ``train`` that are present; :class:`advcorrupt.data.CamVid`).
  Every image of every split is written as an 8-bit RGB PNG named ``<stem>.png`` (the source's name
  for PNG sources), test then val then train; the ``<split>annot/`` folders are copied.

In both, image ``i`` of a split is corrupted as the in-memory benchmark corrupts item ``i`` of that
split (:class:`advcorrupt.benchmark.CorruptedDataset` with the benchmark seed). A setting folder
``DST/<corruption>/<severity>/`` has its source's layout, so the same dataset classes read it back
(:func:`read_setting`). :mod:`advcorrupt.cli._corrupted_root` writes and evaluates whole folders.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["LAYOUTS", "SEGNET_SPLITS", "Source", "find_source", "read_setting", "write_setting"]

#: Layout name -> what its images are saved as (the manifest's ``format``).
LAYOUTS: dict[str, str] = {"istd": "8-bit gray PNG", "segnet": "8-bit RGB PNG"}
#: SegNet splits, in writing order.
SEGNET_SPLITS: tuple[str, ...] = ("test", "val", "train")
_ISTD_FOLDERS = ("images", "masks", "img_idx")
_ISTD_EXPECTED = "expected images/, masks/, img_idx/train_<NAME>.txt, img_idx/test_<NAME>.txt"

#: ``save(image (C, H, W) float in [0, 1], path)``: writes one image file.
Saver = Callable[[Any, Path], None]


@dataclass(frozen=True)
class Source:
    """A source dataset found on disk.

    Attributes:
        layout: ``"istd"`` or ``"segnet"``.
        splits: the manifest's ``splits``, in writing order (ISTD: ``"test_<NAME>"``; SegNet: ``"test"``, ...).
        datasets: one dataset per split (ISTD: :class:`~advcorrupt.data.ISTDDataset`; SegNet: :class:`~advcorrupt.data.CamVid`).
    """

    layout: str
    splits: tuple[str, ...]
    datasets: tuple[Any, ...]

    @property
    def num_images(self) -> int:
        """Images of all splits together (one setting writes at most this many)."""
        return sum(len(ds) for ds in self.datasets)


def find_source(src: Path) -> Source:
    """The layout of ``src`` (ISTD when ``images/``, ``masks/`` and ``img_idx/`` are there, else SegNet) and its splits.

    Raises:
        FileNotFoundError: ``src`` has neither layout (the message names what each one misses), an
            ISTD folder has no split file, or a SegNet split lacks its images or its labels.
    """
    if all((src / d).is_dir() for d in _ISTD_FOLDERS):
        return _istd_source(src)
    present = [s for s in SEGNET_SPLITS if (src / s).is_dir() or (src / f"{s}annot").is_dir()]
    if not present:
        missing_istd = ", ".join(d + "/" for d in _ISTD_FOLDERS if not (src / d).is_dir())
        raise FileNotFoundError(
            f"src {src} is neither an ISTD nor a CamVid / SegNet-layout dataset: it lacks the ISTD layout: missing "
            f"{missing_istd} ({_ISTD_EXPECTED}), and the SegNet layout: missing every split folder "
            f"({', '.join(f'{s}/ + {s}annot/' for s in SEGNET_SPLITS)}; at least one split with both is expected)"
        )
    for split in present:
        for sub in (split, f"{split}annot"):
            if not (src / sub).is_dir():
                raise FileNotFoundError(
                    f"src {src} has the SegNet layout but its {split!r} split lacks {sub}/ (expected {split}/ holding "
                    f"the images and {split}annot/ holding their class-index label maps)"
                )
    return _segnet_source(src, present)


def _istd_source(src: Path) -> Source:
    img_idx = src / "img_idx"
    splits = [(split, f.stem[len(split) + 1 :]) for split in ("test", "train") for f in sorted(img_idx.glob(f"{split}_*.txt"))]
    if not splits:
        raise FileNotFoundError(f"src {src} has no split file: expected img_idx/test_<NAME>.txt and/or img_idx/train_<NAME>.txt")
    from ..data import ISTDDataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # size mismatches etc. are the dataset's own business here
        datasets = tuple(ISTDDataset(src, split, name=name, cache=True) for split, name in splits)
    return Source("istd", tuple(f"{a}_{b}" for a, b in splits), datasets)


def _segnet_source(src: Path, splits: list[str]) -> Source:
    from ..data import CamVid

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a copy that is not SegNet's 367 / 101 / 233 images is still copied
        datasets = tuple(CamVid(src, split) for split in splits)  # type: ignore[arg-type]
    return Source("segnet", tuple(splits), datasets)


def write_setting(
    folder: Path, src: Path, source: Source, corruption: str, severity: int, *, seed: int, save: Saver, bar: Any
) -> None:
    """Write ``folder`` (one corruption x severity) in ``source``'s layout; ``bar`` (or None) counts images."""
    writer = _write_istd_setting if source.layout == "istd" else _write_segnet_setting
    writer(folder, src, source, corruption, severity, seed, save, bar)


def _write_istd_setting(folder: Path, src: Path, source: Source, corruption: str, severity: int, seed: int,
                        save: Saver, bar: Any) -> None:
    from ..benchmark import CorruptedDataset

    (folder / "images").mkdir(parents=True)
    shutil.copytree(src / "masks", folder / "masks")
    shutil.copytree(src / "img_idx", folder / "img_idx")
    written: set[str] = set()
    for ds in source.datasets:
        view = CorruptedDataset(ds, corruption, severity, seed=seed)
        for i, stem in enumerate(ds.names):
            if stem not in written:
                save(view[i][0], folder / "images" / f"{stem}.png")
                written.add(stem)
            if bar is not None:
                bar.update(1)


def _write_segnet_setting(folder: Path, src: Path, source: Source, corruption: str, severity: int, seed: int,
                          save: Saver, bar: Any) -> None:
    from ..benchmark import CorruptedDataset

    for split, ds in zip(source.splits, source.datasets):
        (folder / split).mkdir(parents=True)
        shutil.copytree(src / f"{split}annot", folder / f"{split}annot")
        view = CorruptedDataset(ds, corruption, severity, seed=seed)
        for i, (image_path, _) in enumerate(ds.files):
            save(view[i][0], folder / split / f"{image_path.stem}.png")
            if bar is not None:
                bar.update(1)


def read_setting(folder: Path, layout: str, *, split: str, dataset_name: str | None, task: Any, clean: Any) -> Any:
    """The evaluated split of one setting folder.

    ISTD: its test split (``img_idx/test_<dataset_name>.txt``). SegNet: ``split`` as a
    :class:`~advcorrupt.data.SegmentationFolder` of the semantic ``task``'s classes, which must hold
    the ``clean`` set's images (their number and, where ``clean`` has ``names``, their names).

    Raises:
        ValueError: a SegNet split whose images are not the clean set's.
    """
    if layout == "istd":
        from ..data import ISTDDataset

        return ISTDDataset(folder, "test", name=dataset_name)
    from ..data import SegmentationFolder

    ds = SegmentationFolder(folder, images=split, masks=f"{split}annot", num_classes=task.num_classes,
                            ignore_index=task.ignore_index)
    names = getattr(clean, "names", None)
    if len(ds) != len(clean) or (names is not None and list(ds.names) != list(names)):
        shown = "" if names is None else f" ({', '.join(list(names)[:3])}, ...)"
        raise ValueError(
            f"{folder / split} holds {len(ds)} image(s) ({', '.join(ds.names[:3])}, ...) but the clean dataset "
            f"{len(clean)}{shown}: the corrupted root was written from another dataset; corrupt the clean dataset's "
            f"folder with `advcorrupt corrupt-dataset`"
        )
    return ds
