"""Joint training transforms for semantic segmentation: image and label map move together.

Each transform takes ``(image, mask)`` tensors and returns the transformed pair, drawing its
random parameters from an optional ``torch.Generator`` (torch's global generator when none is
given, so ``torch.manual_seed`` reproduces an epoch and DataLoader workers, which torch seeds
differently, draw different views):

* :class:`RandomScaleCrop` - resize by a random factor (image bilinear, labels nearest), pad what
  falls short of the crop (image with ``fill``, labels with ``ignore_index``), crop a fixed size at
  a random position: the "random resize + random crop" of mmsegmentation and DeepLab training;
* :class:`RandomHorizontalFlip` - mirror both left-right with probability ``p``;
* :class:`Compose` - a sequence of them, sharing one generator.

Labels are resampled by torch's ``mode="nearest-exact"`` rule, applied to the row and column
indices and then gathered, so every output label is a copy of an input label in its own dtype (no
new value can appear), and the label chosen for an output pixel is the source pixel with the largest
bilinear weight in the image: where the resized image shows a region's exact colour, the label
shows that region's class.

They are the ``transform=`` of :class:`advcorrupt.data.SegmentationFolder` and
:class:`advcorrupt.data.CamVid`, and work on any device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

__all__ = ["Compose", "JointTransform", "RandomHorizontalFlip", "RandomScaleCrop", "resize_pair"]


@runtime_checkable
class JointTransform(Protocol):
    """What :class:`Compose` chains: ``transform(image, mask, *, generator=None) -> (image, mask)``.

    Example:
        >>> isinstance(RandomHorizontalFlip(), JointTransform)
        True
    """

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


def _check_pair(image: torch.Tensor, mask: torch.Tensor) -> None:
    """Refuse anything but a float image (..., C, H, W) and an integer mask (..., H, W) of the same size."""
    if not isinstance(image, torch.Tensor) or not image.is_floating_point() or image.ndim < 3:
        got = f"{image.dtype} of shape {tuple(image.shape)}" if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be a float tensor of shape (C, H, W) or (B, C, H, W); got {got}")
    if not isinstance(mask, torch.Tensor) or mask.is_floating_point() or mask.is_complex() or mask.dtype == torch.bool:
        got = str(mask.dtype) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"mask must be an integer tensor of class indices (e.g. int64); got {got}")
    expected = (*image.shape[:-3], *image.shape[-2:])
    if tuple(mask.shape) != expected:
        raise ValueError(
            f"mask must have shape {expected} to match image {tuple(image.shape)} (no channel dim); got {tuple(mask.shape)}"
        )


def _uniform(generator: torch.Generator | None) -> float:
    device = generator.device if generator is not None else "cpu"
    return float(torch.rand((), generator=generator, device=device))


def _randint(high: int, generator: torch.Generator | None) -> int:
    """A uniform int in [0, high)."""
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, high, (), generator=generator, device=device))


def resize_pair(image: torch.Tensor, mask: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize an image (bilinear) and its label map (nearest, values kept exactly) to ``size``.

    Args:
        image: float image.
        mask: integer label map of the image's spatial size.
        size: output ``(H', W')``.

    Shape:
        - image: (..., C, H, W), mask: (..., H, W).
        - output: (..., C, H', W') and (..., H', W'), the input dtypes.

    Returns:
        ``(image, mask)`` resized.

    Example:
        >>> img, lab = resize_pair(torch.rand(3, 4, 6), torch.arange(24).view(4, 6) % 5, (8, 12))
        >>> tuple(img.shape), tuple(lab.shape), sorted(lab.unique().tolist())
        ((3, 8, 12), (8, 12), [0, 1, 2, 3, 4])
    """
    _check_pair(image, mask)
    lead, (h, w) = image.shape[:-3], image.shape[-2:]
    if (h, w) == tuple(size):
        return image, mask
    lo, hi = torch.aminmax(image.detach())
    image = F.interpolate(image.reshape(-1, *image.shape[-3:]), size=size, mode="bilinear", align_corners=False)
    # Bilinear weights sum to one, but torch's one-thread kernel rounds to 1 + 1 ulp next to a
    # saturated pixel: clamp back to the input's own range so a [0, 1] image stays in [0, 1].
    image = image.clamp_(lo, hi)
    # Nearest is separable: resample the row and column *indices* with torch's own rule, then gather
    # the labels, so they keep their dtype and exact values (no float round trip; any device).
    rows = torch.arange(h, dtype=torch.float32, device=mask.device).view(1, 1, h, 1)
    cols = torch.arange(w, dtype=torch.float32, device=mask.device).view(1, 1, 1, w)
    rows = F.interpolate(rows, size=(size[0], 1), mode="nearest-exact").view(-1).long()
    cols = F.interpolate(cols, size=(1, size[1]), mode="nearest-exact").view(-1).long()
    return image.reshape(*lead, *image.shape[-3:]), mask[..., rows[:, None], cols[None, :]]


class RandomScaleCrop:
    """Random rescale, then a random crop of fixed size, applied to image and labels alike.

    The scale factor ``s`` is drawn uniformly from ``scale``; the pair is resized to
    ``(round(s H), round(s W))`` (image bilinear, labels nearest, see :func:`resize_pair`), padded
    on the bottom and right up to the crop size where it is smaller (image with ``fill``, labels
    with ``ignore_index``), and cropped to ``size`` at a uniform position. One draw per call: a
    batch (B, C, H, W) gets the same parameters for every sample.

    Args:
        size: output ``(h, w)``, or an int for a square.
        scale: ``(low, high)`` range of the scale factor, ``0 < low <= high``.
        ignore_index: label written into the padding (the dataset's ignore label, e.g.
            ``CamVid.ignore_index``), so the loss and the metrics skip it.
        fill: image value written into the padding.

    Shape:
        - image: (C, H, W) or (B, C, H, W) float; mask: (H, W) or (B, H, W) integer.
        - output: (C, h, w) and (h, w) (with the batch dim if given), the input dtypes and device.

    Example:
        >>> t = RandomScaleCrop((32, 48), scale=(0.5, 2.0), ignore_index=11)
        >>> image, mask = torch.rand(3, 40, 60), torch.randint(0, 11, (40, 60))
        >>> out_image, out_mask = t(image, mask, generator=torch.Generator().manual_seed(0))
        >>> tuple(out_image.shape), tuple(out_mask.shape), out_mask.dtype
        ((3, 32, 48), (32, 48), torch.int64)
    """

    def __init__(
        self, size: int | tuple[int, int], *, scale: tuple[float, float] = (0.5, 2.0), ignore_index: int, fill: float = 0.0
    ) -> None:
        pair = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
        if (not isinstance(pair, Sequence) or len(pair) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair)):
            raise ValueError(f"size must be a positive int or a pair (h, w) of positive ints; got {size!r}")
        if not isinstance(scale, Sequence) or len(scale) != 2 or not 0 < float(scale[0]) <= float(scale[1]):
            raise ValueError(f"scale must be a pair (low, high) with 0 < low <= high; got {scale!r}")
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise ValueError(f"ignore_index must be an int (the label written into padding); got {ignore_index!r}")
        self.size: tuple[int, int] = (int(pair[0]), int(pair[1]))
        self.scale: tuple[float, float] = (float(scale[0]), float(scale[1]))
        self.ignore_index = ignore_index
        self.fill = float(fill)

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _check_pair(image, mask)
        low, high = self.scale
        s = low + (high - low) * _uniform(generator)
        h, w = image.shape[-2:]
        image, mask = resize_pair(image, mask, (max(1, round(h * s)), max(1, round(w * s))))
        ch, cw = self.size
        pad_h, pad_w = max(0, ch - image.shape[-2]), max(0, cw - image.shape[-1])
        if pad_h or pad_w:
            image = F.pad(image, (0, pad_w, 0, pad_h), value=self.fill)
            mask = F.pad(mask, (0, pad_w, 0, pad_h), value=self.ignore_index)
        y0 = _randint(image.shape[-2] - ch + 1, generator)
        x0 = _randint(image.shape[-1] - cw + 1, generator)
        return image[..., y0 : y0 + ch, x0 : x0 + cw], mask[..., y0 : y0 + ch, x0 : x0 + cw]

    def __repr__(self) -> str:
        return f"RandomScaleCrop(size={self.size}, scale={self.scale}, ignore_index={self.ignore_index}, fill={self.fill})"


class RandomHorizontalFlip:
    """Mirror image and labels left-right with probability ``p`` (one draw per call).

    Args:
        p: flip probability in [0, 1].

    Shape:
        - image: (C, H, W) or (B, C, H, W) float; mask: (H, W) or (B, H, W) integer.
        - output: the same shapes, dtypes and device.

    Example:
        >>> image, mask = torch.arange(6.0).view(1, 2, 3), torch.arange(6).view(2, 3)
        >>> flipped_image, flipped_mask = RandomHorizontalFlip(p=1.0)(image, mask)
        >>> flipped_mask.tolist()
        [[2, 1, 0], [5, 4, 3]]
    """

    def __init__(self, p: float = 0.5) -> None:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1]; got {p!r}")
        self.p = float(p)

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _check_pair(image, mask)
        if _uniform(generator) < self.p:
            return image.flip(-1), mask.flip(-1)
        return image, mask

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Compose:
    """Apply joint transforms in order, passing them one generator.

    Args:
        transforms: callables ``t(image, mask, *, generator=None) -> (image, mask)``.

    Shape:
        - as the transforms it holds.

    Example:
        >>> train = Compose([RandomScaleCrop(32, ignore_index=11), RandomHorizontalFlip()])
        >>> image, mask = torch.rand(3, 48, 64), torch.randint(0, 11, (48, 64))
        >>> a = train(image, mask, generator=torch.Generator().manual_seed(3))
        >>> b = train(image, mask, generator=torch.Generator().manual_seed(3))
        >>> torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        True
    """

    def __init__(self, transforms: Sequence[JointTransform]) -> None:
        transforms = list(transforms)
        bad = [type(t).__name__ for t in transforms if not callable(t)]
        if bad:
            raise TypeError(f"transforms must be callables t(image, mask, *, generator=None); got non-callable {bad}")
        self.transforms = transforms

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        for t in self.transforms:
            image, mask = t(image, mask, generator=generator)
        return image, mask

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"
