"""Infrared small-target datasets in the standard ISTD layout (NUAA-SIRST, NUDT-SIRST, IRSTD-1K).

Layout (as published by the BasicIRSTD / DNANet releases)::

    <root>/images/<name>.png|.bmp|...
    <root>/masks/<name>.png|.bmp|...            (or <name>_pixels0.png, the original SIRST naming)
    <root>/img_idx/train_<NAME>.txt             one name per line, no extension
    <root>/img_idx/test_<NAME>.txt

Conversions (see ``docs/data.md``):

* images become one channel in [0, 1]: gray as is; RGB (and palette images, via RGB) by
  ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` in float; alpha is dropped (not
  composited); 16-bit images are divided by 65535;
* masks become {0, 1}: a pixel is a target when any colour channel exceeds half the full
  scale (> 127 of 255, > 32767 of 65535); alpha is dropped.

Every image/mask pair is checked when the dataset is built (files exist and decode, sizes agree,
mask values), and what was found is kept in :attr:`ISTDDataset.problems`. A file that cannot be
read (zero bytes, truncated or corrupt, no read permission, a symbolic-link loop) raises
:class:`BadFileError` naming it, or is skipped and reported with ``on_bad_file="skip"``.
"""

from __future__ import annotations

import errno
import os
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from .transforms import TrainView

__all__ = ["DATASET_STATS", "BadFileError", "ISTDDataset", "Problem", "load_image", "load_mask"]

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")

#: Image mean/std in [0, 1] units over the *train* split, measured with this module's
#: loader (``ISTDDataset(root, "train").compute_stats()``).
DATASET_STATS: dict[str, tuple[float, float]] = {
    "NUAA-SIRST": (0.444546, 0.232909),
}

_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class BadFileError(ValueError):
    """An image or mask file that exists but cannot be read: empty, truncated or corrupt,
    unreadable (permissions), or a symbolic-link loop. ``path`` is the file."""

    def __init__(self, path: str | Path, cause: str) -> None:
        super().__init__(f"cannot read {path}: {cause}")
        self.path = Path(path)
        self.cause = cause


# What PIL and the OS raise for a file that cannot be decoded or opened.
_DECODE_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError, EOFError, zlib.error, Image.DecompressionBombError)


def _open_image(path: str | Path) -> Image.Image:
    """``Image.open`` + full decode, every failure turned into :class:`BadFileError` naming the file."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise BadFileError(path, "the file is empty (0 bytes)")
        img = Image.open(path)
        try:
            img.load()
        except BaseException:
            img.close()
            raise
        return img
    except BadFileError:
        raise
    except FileNotFoundError:
        raise
    except PermissionError as e:
        raise BadFileError(path, f"permission denied ({e.strerror}); check the file's read permission") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise BadFileError(path, "it is a symbolic-link loop") from None
        raise BadFileError(path, f"the file is truncated or corrupt ({type(e).__name__}: {e})") from None
    except _DECODE_ERRORS as e:
        raise BadFileError(path, f"the file is truncated or corrupt ({type(e).__name__}: {e})") from None


@dataclass(frozen=True)
class Problem:
    """One defect found while validating a dataset.

    Attributes:
        name: the sample name (as in the split file).
        kind: ``"size_mismatch"``, ``"nonbinary_mask"``, ``"mask_channels"``,
            ``"empty_mask"``, ``"duplicate_name"``, ``"in_both_splits"``, ``"missing_file"`` or
            ``"bad_file"`` (the last two only with ``on_bad_file="skip"``).
        detail: what was found, human readable.
        action: what the dataset does about it (``"resized mask"``, ``"skipped"``, ...).
    """

    name: str
    kind: str
    detail: str
    action: str


def _pil_channels(img: Image.Image) -> tuple[np.ndarray, float]:
    """Colour channels of ``img`` as an (H, W, C) array (alpha dropped) and its full scale."""
    mode = img.mode
    if mode in _SIXTEEN_BIT:
        return np.asarray(img, dtype=np.float32)[..., None], 65535.0
    if mode == "F":
        return np.asarray(img, dtype=np.float32)[..., None], 1.0
    if mode == "1":
        return np.asarray(img.convert("L"), dtype=np.float32)[..., None], 255.0
    if mode == "L":
        return np.asarray(img, dtype=np.float32)[..., None], 255.0
    if mode == "LA":
        return np.asarray(img, dtype=np.float32)[..., :1], 255.0
    if mode in ("P", "PA"):  # via RGBA so a transparency index is honoured and then dropped
        return np.asarray(img.convert("RGBA"), dtype=np.float32)[..., :3], 255.0
    if mode == "RGBA":
        return np.asarray(img, dtype=np.float32)[..., :3], 255.0
    return np.asarray(img.convert("RGB"), dtype=np.float32), 255.0


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as one channel float32 in [0, 1].

    Gray stays gray; RGB, palette and RGBA become ITU-R BT.601 luma (alpha dropped);
    16-bit data is divided by 65535.

    Args:
        path: image file.

    Shape:
        - output: (H, W).

    Returns:
        The image.

    Raises:
        FileNotFoundError: no such file.
        BadFileError: the file is empty, truncated, corrupt, unreadable or a link loop.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "x.png")
        >>> Image.new("RGB", (5, 4), (255, 0, 0)).save(p)
        >>> round(float(load_image(p)[0, 0]), 3)
        0.299
    """
    with _open_image(path) as img:
        arr, scale = _pil_channels(img)
    if arr.shape[-1] == 3:
        gray = arr[..., 0] * 0.299 + arr[..., 1] * 0.587 + arr[..., 2] * 0.114
    else:
        gray = arr[..., 0]
    return np.clip(gray / scale, 0.0, 1.0).astype(np.float32, copy=False)


def _mask_info(path: Path) -> tuple[np.ndarray, int, int]:
    """Binary mask, number of colour channels, number of pixels strictly between 0 and full."""
    with _open_image(path) as img:
        arr, scale = _pil_channels(img)
    binary = (arr > scale / 2).any(axis=-1)
    intermediate = int(((arr > 0) & (arr < scale)).any(axis=-1).sum())
    return binary, arr.shape[-1], intermediate


def load_mask(path: str | Path) -> np.ndarray:
    """Read a mask file as a boolean target map.

    A pixel is a target when any colour channel exceeds half the full scale (> 127 of 255,
    > 32767 of 65535); alpha is ignored.

    Args:
        path: mask file.

    Shape:
        - output: (H, W) bool.

    Returns:
        The mask.

    Raises:
        FileNotFoundError: no such file.
        BadFileError: the file is empty, truncated, corrupt, unreadable or a link loop.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "m.png")
        >>> Image.fromarray(np.array([[0, 100, 200]], np.uint8)).save(p)
        >>> load_mask(p).tolist()
        [[False, False, True]]
    """
    return _mask_info(Path(path))[0]


def _find_file(folder: Path, stem: str, suffixes: Sequence[str] = ("",)) -> Path | None:
    for suffix in suffixes:
        for ext in IMAGE_EXTENSIONS:
            for cand in (folder / f"{stem}{suffix}{ext}", folder / f"{stem}{suffix}{ext.upper()}"):
                if cand.is_file():
                    return cand
                if cand.is_symlink():  # is_file() is False for a dangling link or a link loop
                    try:
                        os.stat(cand)
                    except OSError as e:
                        why = "a symbolic-link loop" if e.errno == errno.ELOOP else f"a broken symbolic link ({e.strerror})"
                        raise BadFileError(cand, f"it is {why}") from None
    return None


def _read_split(path: Path) -> list[str]:
    """Names in a split file: any line ending, surrounding whitespace and blank lines ignored;
    a name given with an image extension is reduced to its stem."""
    text = path.read_bytes().decode("utf-8-sig")
    names = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if Path(line).suffix.lower() in IMAGE_EXTENSIONS:
            line = line[: -len(Path(line).suffix)]
        names.append(line)
    return names


class ISTDDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """A split of an infrared small-target dataset in the standard layout.

    Items are ``(image, mask)``: image (1, H, W) float32 in [0, 1] (no normalisation: use
    :class:`advcorrupt.data.Normalize` with :attr:`mean` / :attr:`std` as the trainer's
    ``preprocess``), mask (1, H, W) float32 in {0, 1}. With ``transform="train"`` both are
    ``patch_size`` squares (see :class:`advcorrupt.data.TrainView`); with ``"test"`` (or
    ``None``) they are the whole image at native size, so batch them with batch size 1 or
    :func:`advcorrupt.data.collate`.

    Training randomness comes from torch's global generator (one draw per item, turned into
    a numpy generator), so ``torch.manual_seed`` makes an epoch reproducible and DataLoader
    workers, which torch seeds differently, draw different crops.

    Args:
        root: dataset folder (holding ``images/``, ``masks/``, ``img_idx/``).
        split: ``"train"`` or ``"test"``.
        name: dataset name in ``img_idx/<split>_<name>.txt``; inferred when that folder has
            exactly one such file.
        transform: ``"train"``, ``"test"``, ``None`` (same as ``"test"``) or a callable with
            the albumentations convention ``transform(image=HxW float32, mask=HxW uint8) ->
            {"image": ..., "mask": ...}`` (e.g. an ``albumentations.Compose``).
        patch_size: training patch side.
        target_prob: probability that a training crop is centred on a target pixel.
        on_mismatch: what to do with a pair whose image and mask sizes differ: ``"resize"``
            (nearest-neighbour resize of the mask to the image, with a warning), ``"skip"``
            (drop the pair, with a warning) or ``"error"`` (raise ``ValueError``).
        on_bad_file: what to do with a name of the split whose image or mask is missing or cannot
            be read (empty, truncated, corrupt, no permission, a link loop): ``"error"`` (raise,
            naming the file) or ``"skip"`` (drop the pair, with a warning; each one is listed in
            :attr:`problems` as ``"missing_file"`` or ``"bad_file"``).
        cache: keep decoded images and masks in memory after the first read.

    Attributes:
        names: sample names in split order (after skipping).
        problems: list of :class:`Problem` found at construction.
        mean, std: image statistics for normalisation (from :data:`DATASET_STATS` when the
            dataset is known, otherwise computed over its train split on first access).

    Raises:
        FileNotFoundError: a folder or split file is missing; an image or mask named in the
            split is missing (with ``on_bad_file="error"``).
        BadFileError: an image or mask cannot be read (with ``on_bad_file="error"``); a
            ``ValueError``.
        ValueError: bad arguments, or a size mismatch with ``on_mismatch="error"``.

    Example:
        >>> ds = ISTDDataset("../shared/data/NUAA-SIRST", "test")  # doctest: +SKIP
        >>> image, mask = ds[0]  # doctest: +SKIP
    """

    def __init__(
        self,
        root: str | Path,
        split: Literal["train", "test"] = "train",
        *,
        name: str | None = None,
        transform: Literal["train", "test"] | Callable[..., dict[str, Any]] | None = None,
        patch_size: int = 256,
        target_prob: float = 0.5,
        on_mismatch: Literal["resize", "skip", "error"] = "resize",
        on_bad_file: Literal["error", "skip"] = "error",
        cache: bool = False,
    ) -> None:
        self.root = Path(root)
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
        if on_mismatch not in ("resize", "skip", "error"):
            raise ValueError(f"on_mismatch must be 'resize', 'skip' or 'error'; got {on_mismatch!r}")
        if on_bad_file not in ("error", "skip"):
            raise ValueError(f"on_bad_file must be 'error' or 'skip'; got {on_bad_file!r}")
        self.on_bad_file = on_bad_file
        for sub in ("images", "masks", "img_idx"):
            if not (self.root / sub).is_dir():
                raise FileNotFoundError(f"{self.root} is not an ISTD dataset folder: missing {sub}/ (expected images/, masks/, img_idx/)")
        self.split = split
        self.name = name if name is not None else self._infer_name(split)
        self.split_file = self.root / "img_idx" / f"{split}_{self.name}.txt"
        if not self.split_file.is_file():
            raise FileNotFoundError(f"split file not found: {self.split_file}")
        if isinstance(transform, str) and transform not in ("train", "test"):
            raise ValueError(f"transform must be 'train', 'test', None or a callable; got {transform!r}")
        if transform is not None and not isinstance(transform, str) and not callable(transform):
            raise TypeError(f"transform must be 'train', 'test', None or a callable; got {type(transform).__name__}")
        self.transform = TrainView(patch_size, target_prob=target_prob) if transform == "train" else transform
        if self.transform == "test":
            self.transform = None
        self.patch_size = patch_size
        self.on_mismatch = on_mismatch
        self.cache = cache
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._stats: tuple[float, float] | None = DATASET_STATS.get(self.name)
        self.problems: list[Problem] = []
        self.names: list[str] = []
        self._files: list[tuple[Path, Path]] = []
        self._resize: set[int] = set()
        self._validate()

    # ----------------------------------------------------------------- construction
    def _infer_name(self, split: str) -> str:
        files = sorted((self.root / "img_idx").glob(f"{split}_*.txt"))
        if len(files) != 1:
            found = [f.name for f in files]
            raise ValueError(f"cannot infer the dataset name: expected exactly one img_idx/{split}_<NAME>.txt in {self.root}; found {found}; pass name=")
        return files[0].stem[len(split) + 1 :]

    def _validate(self) -> None:
        names = _read_split(self.split_file)
        seen: set[str] = set()
        other = self.root / "img_idx" / f"{'test' if self.split == 'train' else 'train'}_{self.name}.txt"
        other_names = set(_read_split(other)) if other.is_file() else set()
        mismatched: list[str] = []
        unreadable: list[str] = []
        for stem in names:
            if stem in seen:
                self.problems.append(Problem(stem, "duplicate_name", f"listed more than once in {self.split_file.name}", "kept the first"))
                continue
            seen.add(stem)
            if stem in other_names:
                self.problems.append(Problem(stem, "in_both_splits", f"also listed in {other.name}", "kept (train/test leakage)"))
            try:
                image, mask, image_size, (binary, channels, intermediate) = self._read_pair(stem)
            except (FileNotFoundError, BadFileError) as e:
                if self.on_bad_file == "error":
                    raise
                kind = "missing_file" if isinstance(e, FileNotFoundError) else "bad_file"
                self.problems.append(Problem(stem, kind, str(e), "skipped"))
                unreadable.append(stem)
                continue
            if channels > 1:
                self.problems.append(Problem(stem, "mask_channels", f"mask has {channels} colour channels", "target where any channel > half scale"))
            if intermediate:
                self.problems.append(Problem(stem, "nonbinary_mask", f"{intermediate} mask pixels strictly between 0 and full scale", "thresholded at half scale"))
            if not binary.any():
                self.problems.append(Problem(stem, "empty_mask", "mask has no target pixel", "kept (image without targets)"))
            mask_size = (binary.shape[1], binary.shape[0])
            if mask_size != image_size:
                detail = f"image {image.name} is {image_size[0]}x{image_size[1]} (WxH), mask {mask.name} is {mask_size[0]}x{mask_size[1]}"
                if self.on_mismatch == "error":
                    raise ValueError(f"image/mask size mismatch for {stem!r}: {detail}; pass on_mismatch='resize' or 'skip'")
                mismatched.append(stem)
                if self.on_mismatch == "skip":
                    self.problems.append(Problem(stem, "size_mismatch", detail, "skipped"))
                    continue
                self.problems.append(Problem(stem, "size_mismatch", detail, "resized mask to image (nearest)"))
                self._resize.add(len(self.names))
            self.names.append(stem)
            self._files.append((image, mask))
        if mismatched:
            action = "skipped" if self.on_mismatch == "skip" else "masks resized to their images (nearest neighbour)"
            warnings.warn(f"{self.root.name}/{self.split}: image/mask size mismatch for {mismatched}; {action}. See .problems.", stacklevel=3)
        if unreadable:
            warnings.warn(
                f"{self.root.name}/{self.split}: skipped {len(unreadable)} sample(s) whose image or mask is missing or "
                f"unreadable: {unreadable} (on_bad_file='skip'). See .problems.", stacklevel=3,
            )

    def _read_pair(self, stem: str) -> tuple[Path, Path, tuple[int, int], tuple[np.ndarray, int, int]]:
        """Find and fully decode one pair: ``(image path, mask path, image (W, H), mask info)``."""
        image = _find_file(self.root / "images", stem)
        if image is None:
            raise FileNotFoundError(f"image for {stem!r} (listed in {self.split_file}) not found in {self.root / 'images'} with extensions {IMAGE_EXTENSIONS}")
        mask = _find_file(self.root / "masks", stem, ("", "_pixels0"))
        if mask is None:
            raise FileNotFoundError(f"mask for {stem!r} (listed in {self.split_file}) not found in {self.root / 'masks'} as {stem}[_pixels0]<ext>")
        h, w = load_image(image).shape  # a full decode: a truncated file fails here, not mid-training
        return image, mask, (w, h), _mask_info(mask)

    # ----------------------------------------------------------------- loading
    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Decode item ``index`` at native size: ``(image (H, W) float32, mask (H, W) uint8)``."""
        if index in self._cache:
            return self._cache[index]
        image_path, mask_path = self._files[index]
        image = load_image(image_path)
        mask = load_mask(mask_path)
        if mask.shape != image.shape and index in self._resize:
            pil = Image.fromarray(mask.astype(np.uint8) * 255).resize((image.shape[1], image.shape[0]), Image.NEAREST)
            mask = np.asarray(pil) > 127
        out = (image, mask.astype(np.uint8))
        if self.cache:
            self._cache[index] = out
        return out

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {self!r}")
        image, mask = self.load(index)
        if self.transform is not None:
            if isinstance(self.transform, TrainView):
                seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
                out = self.transform(image=image, mask=mask, rng=np.random.default_rng(seed))
            else:
                out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        image_t = torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32)
        mask_t = torch.as_tensor(np.ascontiguousarray(mask) > 0, dtype=torch.float32)
        if image_t.ndim == 2:
            image_t = image_t.unsqueeze(0)
        if mask_t.ndim == 2:
            mask_t = mask_t.unsqueeze(0)
        return image_t, mask_t

    # ----------------------------------------------------------------- statistics
    def compute_stats(self) -> tuple[float, float]:
        """Pixel-weighted mean and std of this split's images at native size (in [0, 1] units)."""
        total = total_sq = count = 0.0
        for i in range(len(self)):
            image = load_image(self._files[i][0]).astype(np.float64)
            total += image.sum()
            total_sq += (image * image).sum()
            count += image.size
        mean = total / count
        return float(mean), float(np.sqrt(max(total_sq / count - mean * mean, 0.0)))

    def _train_stats(self) -> tuple[float, float]:
        if self._stats is None:
            if self.split == "train":
                train = self
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    train = ISTDDataset(self.root, "train", name=self.name, on_mismatch="skip")
            self._stats = train.compute_stats()
        return self._stats

    @property
    def mean(self) -> float:
        """Train-split image mean in [0, 1] units."""
        return self._train_stats()[0]

    @property
    def std(self) -> float:
        """Train-split image standard deviation in [0, 1] units."""
        return self._train_stats()[1]

    def __repr__(self) -> str:
        return f"ISTDDataset(root={str(self.root)!r}, split={self.split!r}, name={self.name!r}, n={len(self)}, problems={len(self.problems)})"
