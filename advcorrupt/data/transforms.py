"""Views, normalisation and collation for ISTD data.

* :class:`TrainView` - the training view: pad to at least the patch size, crop a square
  patch (centred on a random target pixel with probability ``target_prob``, uniform
  otherwise), random horizontal/vertical flips and transpose (the 8 symmetries of the
  square). It has the albumentations calling convention ``view(image=..., mask=...) -> dict``
  so an ``albumentations.Compose`` can be passed in its place.
* :class:`Normalize` - ``(x - mean) / std`` on the batch's device, meant as the trainer's
  ``preprocess`` step (it runs after corruption: images stay in [0, 1] until then).
* :func:`collate` / :func:`pad_to_multiple` - batching native-size test views.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Normalize", "TrainView", "collate", "pad_to_multiple"]


class TrainView:
    """Random training patch of an ``(H, W)`` image/mask pair (numpy, albumentations-style).

    Args:
        patch_size: side of the square output patch.
        target_prob: probability of centring the crop on a random target pixel (when the
            mask has one); otherwise the crop position is uniform.
        flip: apply random horizontal flip, vertical flip and transpose (each p=0.5).
        pad_value: value of the padding added (bottom and right) to images smaller than the
            patch; masks are padded with 0.

    Shape:
        - image: (H, W) float32, mask: (H, W) uint8 or bool.
        - output: ``{"image": (P, P) float32, "mask": (P, P) uint8}``.

    Example:
        >>> view = TrainView(64)
        >>> img, msk = np.random.rand(50, 80).astype(np.float32), np.zeros((50, 80), np.uint8)
        >>> out = view(image=img, mask=msk, rng=np.random.default_rng(0))
        >>> out["image"].shape, out["mask"].shape
        ((64, 64), (64, 64))
    """

    def __init__(self, patch_size: int = 256, *, target_prob: float = 0.5, flip: bool = True, pad_value: float = 0.0) -> None:
        if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
            raise ValueError(f"patch_size must be a positive int; got {patch_size!r}")
        if not 0.0 <= target_prob <= 1.0:
            raise ValueError(f"target_prob must be in [0, 1]; got {target_prob!r}")
        self.patch_size = patch_size
        self.target_prob = float(target_prob)
        self.flip = bool(flip)
        self.pad_value = float(pad_value)

    def __call__(self, *, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator | None = None) -> dict[str, Any]:
        rng = rng if rng is not None else np.random.default_rng()
        p = self.patch_size
        h, w = image.shape
        if mask.shape != (h, w):
            raise ValueError(f"mask must have the image's shape {(h, w)}; got {mask.shape}")
        ph, pw = max(0, p - h), max(0, p - w)
        if ph or pw:
            image = np.pad(image, ((0, ph), (0, pw)), constant_values=self.pad_value)
            mask = np.pad(mask, ((0, ph), (0, pw)), constant_values=0)
            h, w = image.shape
        y0 = x0 = None
        if self.target_prob > 0 and rng.random() < self.target_prob:
            ys, xs = np.nonzero(mask)
            if len(ys):
                k = int(rng.integers(len(ys)))
                y0 = int(np.clip(ys[k] - p // 2, 0, h - p))
                x0 = int(np.clip(xs[k] - p // 2, 0, w - p))
        if y0 is None or x0 is None:
            y0 = int(rng.integers(h - p + 1))
            x0 = int(rng.integers(w - p + 1))
        image = image[y0 : y0 + p, x0 : x0 + p]
        mask = mask[y0 : y0 + p, x0 : x0 + p]
        if self.flip:
            hflip, vflip, transpose = rng.random(3) < 0.5
            if hflip:
                image, mask = image[:, ::-1], mask[:, ::-1]
            if vflip:
                image, mask = image[::-1], mask[::-1]
            if transpose:
                image, mask = image.T, mask.T
        return {"image": np.ascontiguousarray(image), "mask": np.ascontiguousarray(mask)}

    def __repr__(self) -> str:
        return f"TrainView(patch_size={self.patch_size}, target_prob={self.target_prob}, flip={self.flip})"


class Normalize(nn.Module):
    """``(x - mean) / std`` for images in [0, 1]; the trainer's ``preprocess`` step.

    It has no buffers: the statistics are applied as Python scalars (or a small tensor made
    on the input's device and dtype for per-channel values), so the module never needs to
    be moved to the batch's device.

    Args:
        mean: mean intensity in [0, 1] units, a float or one value per channel.
        std: standard deviation in [0, 1] units, a float or one value per channel (> 0).

    Shape:
        - x: (B, C, H, W) (or any shape with channels at dim -3 for per-channel values).
        - output: same shape, dtype and device as ``x``.

    Example:
        >>> norm = Normalize(0.4, 0.15)
        >>> norm(torch.full((2, 1, 4, 4), 0.4)).abs().max().item()
        0.0
    """

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
        super().__init__()
        self.mean = _as_stat(mean, "mean")
        self.std = _as_stat(std, "std")
        if any(s <= 0 for s in (self.std if isinstance(self.std, tuple) else (self.std,))):
            raise ValueError(f"std must be > 0; got {std!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            got = type(x).__name__ if not isinstance(x, torch.Tensor) else str(x.dtype)
            raise TypeError(f"x must be a floating-point tensor; got {got}")
        if isinstance(self.mean, float) and isinstance(self.std, float):
            return (x - self.mean) / self.std
        mean = torch.as_tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.as_tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return (x - mean) / std

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}"


def _as_stat(value: float | Sequence[float], name: str) -> float | tuple[float, ...]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, Sequence) and len(value) > 0:
        return tuple(float(v) for v in value)
    raise TypeError(f"{name} must be a float or a non-empty sequence of floats; got {value!r}")


def collate(
    batch: Sequence[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor | list[torch.Tensor]]:
    """Collate ``(image, mask)`` items: stack when all sizes agree, else return lists.

    Use it as ``DataLoader(test_set, batch_size=8, collate_fn=collate)`` for native-size test
    views; :meth:`advcorrupt.metrics.ISTDMetrics.update` accepts either form.

    Args:
        batch: items ``(image (C, H, W), mask (1, H, W))``.

    Returns:
        ``(images, masks)``: (B, C, H, W) and (B, 1, H, W) tensors, or two lists.

    Example:
        >>> items = [(torch.zeros(1, 4, 5), torch.zeros(1, 4, 5)), (torch.zeros(1, 6, 5), torch.zeros(1, 6, 5))]
        >>> images, masks = collate(items)
        >>> type(images).__name__, len(images)
        ('list', 2)
    """
    images = [b[0] for b in batch]
    masks = [b[1] for b in batch]
    if len({tuple(t.shape) for t in images}) == 1 and len({tuple(t.shape) for t in masks}) == 1:
        return torch.stack(images), torch.stack(masks)
    return images, masks


def pad_to_multiple(x: torch.Tensor, multiple: int = 32, *, value: float = 0.0) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad the bottom/right of ``x`` so H and W are multiples of ``multiple``.

    Networks with several stride-2 stages need this at native test size; crop the output
    back with ``out[..., :h, :w]``.

    Args:
        x: tensor with spatial dims last.
        multiple: the required divisor.
        value: padding value.

    Shape:
        - x: (..., H, W). Output: (..., H', W') with H' >= H, W' >= W divisible by ``multiple``.

    Returns:
        ``(padded, (H, W))`` - the original size for cropping back.

    Example:
        >>> y, (h, w) = pad_to_multiple(torch.zeros(1, 1, 220, 325), 32)
        >>> tuple(y.shape[-2:]), (h, w)
        ((224, 352), (220, 325))
    """
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1; got {multiple}")
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), value=value)
    return x, (h, w)
