"""The 10 built-in corruptions with the five ImageNet-C severity levels of each.

Level tables follow ``imagecorruptions`` (Hendrycks & Dietterich, ICLR 2019), the reference
implementation of ImageNet-C; the kernels live in :mod:`advcorrupt.corruptions.functional`.
Registration order is the public order of :func:`advcorrupt.corruptions.available`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from . import functional as Fc
from ._registry import CorruptionFn, register

__all__ = ["LEVELS"]

# name -> (category, parameter names, five levels). Single source for registration and docs.
LEVELS: dict[str, tuple[str, tuple[str, ...], tuple[tuple[float, ...], ...]]] = {
    "gaussian_noise": ("noise", ("sigma",), ((0.08,), (0.12,), (0.18,), (0.26,), (0.38,))),
    "shot_noise": ("noise", ("lam",), ((60,), (25,), (12,), (5,), (3,))),
    "impulse_noise": ("noise", ("amount",), ((0.03,), (0.06,), (0.09,), (0.17,), (0.27,))),
    "defocus_blur": ("blur", ("radius", "alias_blur"), ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))),
    "motion_blur": ("blur", ("radius", "sigma"), ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))),
    "gaussian_blur": ("blur", ("sigma",), ((1,), (2,), (3,), (4,), (6,))),
    "brightness": ("digital", ("delta",), ((0.1,), (0.2,), (0.3,), (0.4,), (0.5,))),
    "contrast": ("digital", ("factor",), ((0.4,), (0.3,), (0.2,), (0.1,), (0.05,))),
    "pixelate": ("digital", ("factor",), ((0.6,), (0.5,), (0.4,), (0.3,), (0.25,))),
    "jpeg_compression": ("digital", ("quality",), ((25,), (18,), (15,), (10,), (7,))),
}


def _reg(name: str) -> Callable[[CorruptionFn], CorruptionFn]:
    category, names, levels = LEVELS[name]
    return register(name, severities=levels, category=category, param_names=names)


def _col_max(name: str, col: int = 0) -> float:
    return max(level[col] for level in LEVELS[name][2])


@_reg("gaussian_noise")
def _gaussian_noise(x: Tensor, p: Tensor, generator: torch.Generator | None) -> Tensor:
    return Fc.gaussian_noise(x, p, generator=generator)


@_reg("shot_noise")
def _shot_noise(x: Tensor, p: Tensor, generator: torch.Generator | None) -> Tensor:
    return Fc.shot_noise(x, p, generator=generator)


@_reg("impulse_noise")
def _impulse_noise(x: Tensor, p: Tensor, generator: torch.Generator | None) -> Tensor:
    return Fc.impulse_noise(x, p, max_amount=_col_max("impulse_noise"), generator=generator)


@_reg("defocus_blur")
def _defocus_blur(x: Tensor, p: Tensor, generator: torch.Generator | None) -> Tensor:
    return Fc.defocus_blur(x, p[:, 0], p[:, 1], max_radius=_col_max("defocus_blur"))


@_reg("motion_blur")
def _motion_blur(x: Tensor, p: Tensor, generator: torch.Generator | None) -> Tensor:
    return Fc.motion_blur(x, p[:, 0], p[:, 1], max_radius=_col_max("motion_blur"), generator=generator)


@_reg("gaussian_blur")
def _gaussian_blur(x: Tensor, p: Tensor, generator: torch.Generator | None) -> Tensor:
    return Fc.gaussian_blur(x, p, max_sigma=_col_max("gaussian_blur"))


@_reg("brightness")
def _brightness(x: Tensor, p: Tensor, generator: torch.Generator | None) -> Tensor:
    return Fc.brightness(x, p)


@_reg("contrast")
def _contrast(x: Tensor, p: Tensor, generator: torch.Generator | None) -> Tensor:
    return Fc.contrast(x, p)


@_reg("pixelate")
def _pixelate(x: Tensor, p: Tensor, generator: torch.Generator | None) -> Tensor:
    return Fc.pixelate(x, p, max_factor=_col_max("pixelate"))


@_reg("jpeg_compression")
def _jpeg_compression(x: Tensor, p: Tensor, generator: torch.Generator | None) -> Tensor:
    return Fc.jpeg_compression(x, p)
