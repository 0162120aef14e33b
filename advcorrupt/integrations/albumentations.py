"""The built-in corruptions as an albumentations ``ImageOnlyTransform``.

The wrapper runs the same batched torch kernels as :class:`advcorrupt.transforms.RandomCorruption`
on a batch of one image; its random numbers come from the transform's own numpy generator, so
``albumentations.Compose(..., seed=S)`` replays a pipeline exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from albumentations.core.transforms_interface import ImageOnlyTransform

from ..policy.action_space import ActionSpace

__all__ = ["AlbumentationsCorruption"]


class AlbumentationsCorruption(ImageOnlyTransform):
    """Corrupt one numpy image with a random (corruption, severity), for albumentations pipelines.

    Args:
        corruptions: registered corruption names (``None``: all); an unknown name is a
            ``KeyError`` listing the valid ones.
        severities: 1-based levels to draw from (1-5 for the built-ins).
        p: probability of applying the transform (albumentations' own ``p``).

    Shape:
        - image: (H, W), (H, W, 1) or (H, W, 3); uint8 (0-255) or float (in [0, 1]).
        - output: same shape and dtype (uint8 results are rounded).

    Example:
        >>> import albumentations as A, numpy as np
        >>> from advcorrupt.transforms import AlbumentationsCorruption
        >>> pipe = A.Compose([AlbumentationsCorruption(["gaussian_noise"], severities=(3,), p=1.0)], seed=0)
        >>> out = pipe(image=np.zeros((16, 16), np.uint8))["image"]
        >>> out.shape, out.dtype
        ((16, 16), dtype('uint8'))
    """

    def __init__(
        self,
        corruptions: Sequence[str] | None = None,
        severities: Sequence[int] = (1, 2, 3),
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.action_space = ActionSpace(corruptions, severities)
        self.corruptions = list(self.action_space.corruptions)
        self.severities = list(self.action_space.severities)

    def get_params(self) -> dict[str, Any]:
        rng = self.random_generator
        return {
            "action": int(rng.integers(self.action_space.size)),
            "torch_seed": int(rng.integers(0, 2**62)),
        }

    def apply(self, img: np.ndarray, action: int = 0, torch_seed: int = 0, **params: Any) -> np.ndarray:
        x = _to_tensor(img)
        g = torch.Generator().manual_seed(torch_seed)
        out = self.action_space.apply(x, torch.tensor([action]), generator=g)
        return _from_tensor(out, img)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("corruptions", "severities")


def _to_tensor(img: object) -> torch.Tensor:
    """(1, C, H, W) float32 in [0, 1] from an (H, W) / (H, W, C) uint8 or float image."""
    if not isinstance(img, np.ndarray):
        raise TypeError(f"image must be a numpy array of shape (H, W) or (H, W, C); got {type(img).__name__}")
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3)):
        raise ValueError(f"image must have shape (H, W), (H, W, 1) or (H, W, 3); got {img.shape}")
    if img.dtype == np.uint8:
        arr = img.astype(np.float32) / 255.0
    elif np.issubdtype(img.dtype, np.floating):
        arr = img.astype(np.float32, copy=False)
    else:
        raise TypeError(f"image must be uint8 (0-255) or float (in [0, 1]); got dtype {img.dtype}")
    t = torch.from_numpy(np.ascontiguousarray(arr))
    t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)
    return t.unsqueeze(0)


def _from_tensor(out: torch.Tensor, like: np.ndarray) -> np.ndarray:
    arr = out[0].permute(1, 2, 0).numpy()
    arr = arr[..., 0] if like.ndim == 2 else arr
    if like.dtype == np.uint8:
        return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    return arr.astype(like.dtype, copy=False)
