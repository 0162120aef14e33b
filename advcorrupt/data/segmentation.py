"""Semantic segmentation datasets: any folder of images with class-index label maps.

Layout::

    <root>/<images>/<name>.png|.jpg|...     the images (gray, RGB, RGBA, palette, 8 or 16 bit)
    <root>/<masks>/<name>.png               one label map per image, same name (any lossless format)

A label map stores one class index per pixel: an 8-bit (``L``) or 16-bit (``I;16``) single-channel
PNG, or a palette (``P``) PNG whose *indices* are the classes (the PASCAL VOC convention: the
palette only colours them for viewing). A colour-coded RGB map is refused with an explanation of
how to convert it (:func:`colors_to_labels`).

Items are ``(image, mask)``: image (3, H, W) float32 in [0, 1] (gray is repeated to three
channels, alpha dropped, 16-bit divided by 65535), mask (H, W) int64.

Checks, as in :class:`advcorrupt.data.ISTDDataset`: at construction every pair is found and its
files' headers read (PNG files are also verified against their chunk checksums, without decoding
the pixels): a missing or unreadable file raises (``on_bad_file="error"``) or drops the pair with a
warning (``"skip"``); a colour-coded mask, a lossy (JPEG) mask and a mask whose size differs from
its image always raise. Label values are checked when an item is read, which costs one comparison
per pixel: a value ``>= num_classes`` that is not ``ignore_index`` raises, naming the file, the
value and the first pixel holding it.
"""

from __future__ import annotations

import errno
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .istd import _DECODE_ERRORS, IMAGE_EXTENSIONS, BadFileError, Problem, _find_file, _open_image, _pil_channels

__all__ = ["SegmentationFolder", "colorize", "colors_to_labels"]

#: PIL modes accepted for label maps: one integer per pixel.
LABEL_MODES: tuple[str, ...] = ("L", "P", "1", "I;16", "I;16B", "I;16L", "I;16N", "I")
_LOSSY = (".jpg", ".jpeg")

Transform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn every way of failing to read ``path`` into :class:`BadFileError` naming it (as ISTD does)."""
    try:
        yield
    except (BadFileError, FileNotFoundError):
        raise
    except PermissionError as e:
        raise BadFileError(path, f"permission denied ({e.strerror}); check the file's read permission") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise BadFileError(path, "it is a symbolic-link loop") from None
        raise BadFileError(path, f"the file is truncated or corrupt ({type(e).__name__}: {e})") from None
    except _DECODE_ERRORS as e:
        raise BadFileError(path, f"the file is truncated or corrupt ({type(e).__name__}: {e})") from None


def _header(path: Path) -> tuple[tuple[int, int], str]:
    """``((W, H), mode)`` of an image file, reading its header (and, for PNG, checking its chunks)."""
    with _reading(path):
        if path.stat().st_size == 0:
            raise BadFileError(path, "the file is empty (0 bytes)")
        with Image.open(path) as img:
            size, mode, fmt = img.size, img.mode, img.format
            if fmt == "PNG":
                img.verify()
    return size, mode


def _read_image(path: Path) -> torch.Tensor:
    """Decode an image as (3, H, W) float32 in [0, 1]."""
    with _open_image(path) as img:
        arr, scale = _pil_channels(img)
    arr = np.clip(arr / scale, 0.0, 1.0).astype(np.float32, copy=False)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def _read_labels(path: Path) -> np.ndarray:
    """Decode a label map as (H, W) int64 (palette images give their indices)."""
    with _open_image(path) as img:
        if img.mode not in LABEL_MODES:
            raise ValueError(_colour_map_message(path, img.mode))
        return np.asarray(img).astype(np.int64)


def _colour_map_message(path: Path, mode: str) -> str:
    return (
        f"mask {path} has PIL mode {mode!r}: masks must be class-index images, one integer per pixel "
        f"(an 8-bit 'L' or 16-bit 'I;16' PNG, or a palette 'P' PNG whose indices are the classes), "
        f"not a colour-coded map. Convert a colour-coded map once with "
        f"advcorrupt.data.colors_to_labels(rgb, palette, ignore_index=...) and save the result with "
        f"Image.fromarray(labels.astype(np.uint8)).save(...); a gray map stored as RGB (three equal "
        f"channels) converts with Image.open(path).convert('L')"
    )


class SegmentationFolder(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """A folder of images and class-index label maps with the same names.

    Items are ``(image, mask)``: image (3, H, W) float32 in [0, 1] (not normalised: normalise in
    the trainer's ``preprocess``, after the corruption), mask (H, W) int64 class indices.

    Args:
        root: dataset folder.
        images: sub-folder of ``root`` holding the images.
        masks: sub-folder of ``root`` holding the label maps, named as the images (the
            extension may differ: ``a.jpg`` pairs with ``a.png``).
        num_classes: number of classes K; labels are ``0..K-1``.
        ignore_index: label of unlabelled pixels (skipped by the loss and the metrics), or None.
        class_names: K names, for reports.
        palette: one (R, G, B) colour per label, at least K (a colour for ``ignore_index``
            may follow), for :func:`colorize`.
        transform: ``transform(image, mask) -> (image, mask)`` on the tensors above, e.g.
            :class:`advcorrupt.data.Compose` of :class:`advcorrupt.data.RandomScaleCrop` and
            :class:`advcorrupt.data.RandomHorizontalFlip` (randomness from torch's global
            generator, so ``torch.manual_seed`` reproduces an epoch).
        on_bad_file: what to do with a name whose image or mask is missing or cannot be read
            (empty, truncated, corrupt, no permission, a link loop): ``"error"`` (raise, naming
            the file) or ``"skip"`` (drop the pair, with a warning; each one is listed in
            :attr:`problems` as ``"missing_file"`` or ``"bad_file"``).
        names: the sample names (file names without extension) to use, in order, e.g. a split;
            default every image in ``images``, sorted.

    Attributes:
        names: sample names, in order (after skipping).
        files: ``(image path, mask path)`` per sample.
        problems: list of :class:`advcorrupt.data.Problem` found at construction.

    Raises:
        FileNotFoundError: a folder is missing; a name has no image or no mask (with
            ``on_bad_file="error"``).
        BadFileError: a file cannot be read (with ``on_bad_file="error"``); a ``ValueError``.
        ValueError: bad arguments; a colour-coded or JPEG mask; image and mask sizes differ; when
            an item is read, a label outside ``0..K-1`` that is not ``ignore_index``.

    Example:
        >>> import tempfile, os
        >>> root = tempfile.mkdtemp()
        >>> os.makedirs(f"{root}/images"); os.makedirs(f"{root}/masks")
        >>> Image.new("RGB", (6, 4), (255, 0, 0)).save(f"{root}/images/a.png")
        >>> Image.fromarray(np.full((4, 6), 2, np.uint8)).save(f"{root}/masks/a.png")
        >>> ds = SegmentationFolder(root, num_classes=3)
        >>> image, mask = ds[0]
        >>> tuple(image.shape), image.dtype, tuple(mask.shape), mask.dtype, int(mask[0, 0])
        ((3, 4, 6), torch.float32, (4, 6), torch.int64, 2)
    """

    def __init__(
        self,
        root: str | Path,
        *,
        images: str = "images",
        masks: str = "masks",
        num_classes: int,
        ignore_index: int | None = None,
        class_names: Sequence[str] | None = None,
        palette: Sequence[Sequence[int]] | None = None,
        transform: Transform | None = None,
        on_bad_file: Literal["error", "skip"] = "error",
        names: Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.num_classes, self.ignore_index = _check_classes(num_classes, ignore_index)
        self.class_names = _check_class_names(class_names, num_classes)
        self.palette = _check_palette(palette, num_classes)
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be None or a callable transform(image, mask) -> (image, mask); got {type(transform).__name__}")
        if on_bad_file not in ("error", "skip"):
            raise ValueError(f"on_bad_file must be 'error' or 'skip'; got {on_bad_file!r}")
        self.transform = transform
        self.on_bad_file = on_bad_file
        self.image_dir, self.mask_dir = self.root / images, self.root / masks
        for arg, folder in (("images", self.image_dir), ("masks", self.mask_dir)):
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"{arg} folder not found: {folder} ({arg}={folder.name!r} under root={str(self.root)!r}); expected "
                    f"<root>/{images}/ holding the images and <root>/{masks}/ holding class-index masks with the same names"
                )
        self.problems: list[Problem] = []
        self.names: list[str] = []
        self.files: list[tuple[Path, Path]] = []
        if names is None:
            self._build(self._list_names())
        else:
            unique = _check_names(names)
            counts = Counter(names)
            self.problems += [Problem(n, "duplicate_name", f"listed {counts[n]} times in names", "first kept")
                              for n in unique if counts[n] > 1]
            self._build(unique)

    # ----------------------------------------------------------------- construction
    def _list_names(self) -> list[str]:
        """Stems of every image in the image folder, sorted; two images with one stem are refused."""
        found: dict[str, Path] = {}
        for path in sorted(self.image_dir.iterdir()):
            if path.suffix.lower() not in IMAGE_EXTENSIONS or path.name.startswith("."):
                continue
            if path.stem in found:
                raise ValueError(f"two images share the name {path.stem!r}: {found[path.stem].name} and {path.name} in {self.image_dir}")
            found[path.stem] = path
        return sorted(found)

    def _build(self, names: list[str]) -> None:
        """Find and check every pair (headers only); fill names, files and problems."""
        unreadable: list[str] = []
        for stem in names:
            try:
                image, mask = self._pair(stem)
                (image_size, _), (mask_size, mask_mode) = _header(image), _header(mask)
            except (FileNotFoundError, BadFileError) as e:
                if self.on_bad_file == "error":
                    raise
                kind = "missing_file" if isinstance(e, FileNotFoundError) else "bad_file"
                self.problems.append(Problem(stem, kind, str(e), "skipped"))
                unreadable.append(stem)
                continue
            if mask_mode not in LABEL_MODES:
                raise ValueError(_colour_map_message(mask, mask_mode))
            if mask_size != image_size:
                raise ValueError(
                    f"mask {mask} is {mask_size[0]}x{mask_size[1]} (WxH) but its image {image.name} is "
                    f"{image_size[0]}x{image_size[1]}: a mask must have its image's size"
                )
            self.names.append(stem)
            self.files.append((image, mask))
        if unreadable:
            warnings.warn(
                f"{self.root.name}/{self.image_dir.name}: skipped {len(unreadable)} sample(s) whose image or mask is missing "
                f"or unreadable: {unreadable} (on_bad_file='skip'). See .problems.", stacklevel=3,
            )

    def _pair(self, stem: str) -> tuple[Path, Path]:
        image = _find_file(self.image_dir, stem)
        if image is None:
            raise FileNotFoundError(f"image for {stem!r} not found in {self.image_dir} with extensions {IMAGE_EXTENSIONS}")
        mask = _find_file(self.mask_dir, stem)
        if mask is None:
            raise FileNotFoundError(f"image {image.name} has no mask: expected {self.mask_dir / stem}.png (same name, any of {IMAGE_EXTENSIONS})")
        if mask.suffix.lower() in _LOSSY:
            raise ValueError(f"mask {mask} is a JPEG: lossy compression changes class indices; store masks as PNG")
        return image, mask

    # ----------------------------------------------------------------- loading
    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Item ``index`` before ``transform``: image (3, H, W) float32, mask (H, W) int64, labels checked."""
        image_path, mask_path = self.files[index]
        image = _read_image(image_path)
        labels = _read_labels(mask_path)
        if labels.shape != tuple(image.shape[1:]):
            raise ValueError(f"mask {mask_path} is {labels.shape[1]}x{labels.shape[0]} (WxH) but its image is {image.shape[2]}x{image.shape[1]}")
        self._check_labels(labels, mask_path)
        return image, torch.from_numpy(labels)

    def _check_labels(self, labels: np.ndarray, path: Path) -> None:
        bad = (labels < 0) | (labels >= self.num_classes)
        if self.ignore_index is not None:
            bad &= labels != self.ignore_index
        if bad.any():
            row, col = (int(v) for v in np.argwhere(bad)[0])
            allowed = f"0..{self.num_classes - 1}" + (f" or the ignore_index {self.ignore_index}" if self.ignore_index is not None else "")
            raise ValueError(
                f"mask {path} has label {int(labels[row, col])} at pixel (row {row}, col {col}) ({int(bad.sum())} pixels "
                f"out of range, values {np.unique(labels[bad])[:8].tolist()}); labels must be in {allowed} "
                f"(num_classes={self.num_classes}, ignore_index={self.ignore_index})"
            )

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {self!r}")
        image, mask = self.load(index)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, mask

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, images={self.image_dir.name!r}, masks={self.mask_dir.name!r}, "
                f"n={len(self)}, num_classes={self.num_classes}, ignore_index={self.ignore_index})")


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_classes(num_classes: int, ignore_index: int | None) -> tuple[int, int | None]:
    if not _is_int(num_classes) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int (the number of classes K); got {num_classes!r}")
    if ignore_index is not None and (not _is_int(ignore_index) or ignore_index < 0):
        raise ValueError(f"ignore_index must be None or a non-negative int (the label of unlabelled pixels); got {ignore_index!r}")
    return int(num_classes), None if ignore_index is None else int(ignore_index)


def _check_class_names(class_names: Sequence[str] | None, num_classes: int) -> tuple[str, ...] | None:
    if class_names is None:
        return None
    if isinstance(class_names, str) or len(class_names) != num_classes or not all(isinstance(n, str) for n in class_names):
        raise ValueError(f"class_names must be {num_classes} strings (one per class, num_classes={num_classes}); got {class_names!r}")
    return tuple(class_names)


def _check_palette(palette: Sequence[Sequence[int]] | None, num_classes: int) -> tuple[tuple[int, int, int], ...] | None:
    if palette is None:
        return None
    colours = [tuple(c) for c in palette] if isinstance(palette, Sequence) and not isinstance(palette, str) else None
    if (colours is None or len(colours) < num_classes
            or not all(len(c) == 3 and all(_is_int(v) and 0 <= v <= 255 for v in c) for c in colours)):
        raise ValueError(f"palette must be at least {num_classes} (R, G, B) colours with ints in 0..255 (num_classes={num_classes}); got {palette!r}")
    return tuple((int(c[0]), int(c[1]), int(c[2])) for c in colours)


def _check_names(names: Sequence[str]) -> list[str]:
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"names must be a sequence of file names without extension; got {names!r}")
    return list(dict.fromkeys(names))


def colorize(
    mask: torch.Tensor | np.ndarray, palette: Sequence[Sequence[int]], *, ignore_color: tuple[int, int, int] = (0, 0, 0)
) -> np.ndarray:
    """Colour a label map for plotting: label ``k`` becomes ``palette[k]``.

    Args:
        mask: integer labels (a tensor on any device, or an array).
        palette: (R, G, B) colours in 0..255, one per label value.
        ignore_color: colour of labels the palette has no entry for (negative or
            ``>= len(palette)``), e.g. an ignore label of 255.

    Shape:
        - mask: (..., H, W). Output: (..., H, W, 3).

    Returns:
        A uint8 numpy array, ready for ``matplotlib.pyplot.imshow`` or ``PIL.Image.fromarray``.

    Example:
        >>> colorize(torch.tensor([[0, 1], [2, 255]]), [(128, 128, 128), (128, 0, 0), (192, 192, 128)]).tolist()
        [[[128, 128, 128], [128, 0, 0]], [[192, 192, 128], [0, 0, 0]]]
    """
    labels = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if labels.dtype.kind not in "iub":
        raise ValueError(f"mask must hold integer labels; got dtype {labels.dtype}")
    lut = np.asarray([*palette, ignore_color], dtype=np.int64)
    if lut.ndim != 2 or lut.shape[1] != 3 or lut.min() < 0 or lut.max() > 255:
        raise ValueError(f"palette must be (R, G, B) colours with values in 0..255; got {palette!r}")
    labels = labels.astype(np.int64)
    index = np.where((labels >= 0) & (labels < len(palette)), labels, len(palette))
    return lut[index].astype(np.uint8)


def colors_to_labels(rgb: np.ndarray, palette: Sequence[Sequence[int]], *, ignore_index: int) -> np.ndarray:
    """Turn a colour-coded label map into class indices: ``palette[k]`` becomes ``k``.

    The inverse of :func:`colorize`, for datasets published with RGB label maps. Save the result
    as a class-index PNG with ``Image.fromarray(labels.astype(np.uint8)).save(path)``.

    Args:
        rgb: the colour-coded map, uint8 (or integer) values in 0..255.
        palette: (R, G, B) colour of each class.
        ignore_index: label given to pixels whose colour is not in the palette.

    Shape:
        - rgb: (H, W, 3) (an alpha channel is dropped). Output: (H, W) int64.

    Returns:
        The class indices.

    Example:
        >>> rgb = np.array([[[128, 0, 0], [0, 0, 0]]], np.uint8)
        >>> colors_to_labels(rgb, [(128, 128, 128), (128, 0, 0)], ignore_index=255).tolist()
        [[1, 255]]
    """
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"rgb must have shape (H, W, 3) or (H, W, 4); got {arr.shape}")
    code = (arr[..., 0].astype(np.int64) << 16) | (arr[..., 1].astype(np.int64) << 8) | arr[..., 2].astype(np.int64)
    labels = np.full(arr.shape[:2], ignore_index, dtype=np.int64)
    for k, (r, g, b) in enumerate(palette):
        labels[code == (int(r) << 16 | int(g) << 8 | int(b))] = k
    return labels
