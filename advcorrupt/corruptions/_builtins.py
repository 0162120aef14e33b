"""The 10 built-in corruptions with the five ImageNet-C severity levels of each.

Level tables follow ``imagecorruptions`` (Hendrycks & Dietterich, ICLR 2019), the reference
implementation of ImageNet-C; the kernels live by family in :mod:`advcorrupt.corruptions.noise`,
:mod:`advcorrupt.corruptions.blur` and :mod:`advcorrupt.corruptions.digital`.
Registration order is the public order of :func:`advcorrupt.corruptions.available`.

``FAMILIES`` groups built-ins that one fixed-shape kernel can apply together to a batch where each
sample has its own corruption (the noises as :func:`~advcorrupt.corruptions.noise.noise_mix`,
the blurs as one FFT correlation like :func:`~advcorrupt.corruptions.blur.blur_mix`), with
per-level tables (kernels, pixelate's index maps) built once and gathered per sample;
``ActionSpace(grouping="fused")`` uses them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ._registry import CorruptionFn, CorruptionSpec, get, register
from .blur import (
    _correlate_per_sample,
    _motion_scatter,
    _motion_weights,
    defocus_blur,
    defocus_kernel,
    gaussian_blur,
    gaussian_blur_kernel,
    motion_blur,
)
from .digital import (
    _pixelate_plan,
    _pixelate_planned,
    brightness,
    contrast,
    jpeg_compression,
    pixelate,
)
from .noise import gaussian_noise, impulse_noise, noise_mix, shot_noise

__all__ = ["FAMILIES", "Family", "LEVELS", "is_builtin_spec"]

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
    return gaussian_noise(x, p, generator=generator)


@_reg("shot_noise")
def _shot_noise(x: Tensor, p: Tensor, generator: torch.Generator | None) -> Tensor:
    return shot_noise(x, p, generator=generator)


@_reg("impulse_noise")
def _impulse_noise(x: Tensor, p: Tensor, generator: torch.Generator | None) -> Tensor:
    return impulse_noise(x, p, max_amount=_col_max("impulse_noise"), generator=generator)


@_reg("defocus_blur")
def _defocus_blur(x: Tensor, p: Tensor, generator: torch.Generator | None) -> Tensor:
    return defocus_blur(x, p[:, 0], p[:, 1], max_radius=_col_max("defocus_blur"))


@_reg("motion_blur")
def _motion_blur(x: Tensor, p: Tensor, generator: torch.Generator | None) -> Tensor:
    return motion_blur(x, p[:, 0], p[:, 1], max_radius=_col_max("motion_blur"), generator=generator)


@_reg("gaussian_blur")
def _gaussian_blur(x: Tensor, p: Tensor, generator: torch.Generator | None) -> Tensor:
    return gaussian_blur(x, p, max_sigma=_col_max("gaussian_blur"))


@_reg("brightness")
def _brightness(x: Tensor, p: Tensor, generator: torch.Generator | None) -> Tensor:
    return brightness(x, p)


@_reg("contrast")
def _contrast(x: Tensor, p: Tensor, generator: torch.Generator | None) -> Tensor:
    return contrast(x, p)


@_reg("pixelate")
def _pixelate(x: Tensor, p: Tensor, generator: torch.Generator | None) -> Tensor:
    return pixelate(x, p, max_factor=_col_max("pixelate"))


@_reg("jpeg_compression")
def _jpeg_compression(x: Tensor, p: Tensor, generator: torch.Generator | None) -> Tensor:
    return jpeg_compression(x, p)


# The kernel each built-in name was registered with (a user may replace a name; then it is no
# longer a built-in for fusion).
_BUILTIN_FNS: dict[str, CorruptionFn] = {
    "gaussian_noise": _gaussian_noise, "shot_noise": _shot_noise, "impulse_noise": _impulse_noise,
    "defocus_blur": _defocus_blur, "motion_blur": _motion_blur, "gaussian_blur": _gaussian_blur,
    "brightness": _brightness, "contrast": _contrast, "pixelate": _pixelate,
    "jpeg_compression": _jpeg_compression,
}  # fmt: skip


def is_builtin_spec(spec: CorruptionSpec) -> bool:
    """Whether ``spec`` is a built-in with its own kernel and levels (not replaced by a user)."""
    return spec.fn is _BUILTIN_FNS.get(spec.name) and spec.levels == LEVELS[spec.name][2]


FamilyFn = Callable[[Tensor, Tensor, Tensor, Sequence[str], Sequence[int], "torch.Generator | None"], Tensor]


@dataclass(frozen=True)
class Family:
    """Built-ins one fixed-shape kernel applies together, each sample its own member.

    Attributes:
        members: the member names; ``fn``'s ``which`` indexes this tuple.
        fn: ``fn(x, which, severity, present, severities, generator)``: ``which`` (B,) long is each
            sample's member index (any other value: leave the sample as it is), ``severity`` (B,)
            its 1-based level, ``present`` the members that some sample may draw and
            ``severities`` the levels that may occur (they size the kernels statically).
        min_members: members that must be in an action space for the family kernel to pay off.
    """

    members: tuple[str, ...]
    fn: FamilyFn
    min_members: int = 2


def _levels_max(name: str, severities: Sequence[int], col: int = 0) -> float:
    return max(LEVELS[name][2][s - 1][col] for s in severities)


def _noise_family(
    x: Tensor, which: Tensor, severity: Tensor, present: Sequence[str], severities: Sequence[int],
    generator: torch.Generator | None,
) -> Tensor:
    def p(name: str) -> Tensor | None:
        return get(name).params_for(severity) if name in present else None

    return noise_mix(
        x, which, sigma=p("gaussian_noise"), lam=p("shot_noise"), amount=p("impulse_noise"), generator=generator
    )


# Per-level tables the family kernels gather from, built once per (space, size, device): they
# depend only on the level, and building them per batch would cost dozens of small launches.
_BANKS: dict[tuple[object, ...], tuple[Tensor, ...]] = {}


def _level_params(name: str, severities: Sequence[int], device: torch.device) -> Tensor:
    """(5, P) float32: the level table, rows of levels outside ``severities`` zeroed (never used)."""
    rows = [lv if i + 1 in severities else (0.0,) * len(lv) for i, lv in enumerate(LEVELS[name][2])]
    return torch.tensor(rows, dtype=torch.float32, device=device)


def _blur_bank(present: Sequence[str], severities: Sequence[int], size: int, device: torch.device) -> tuple[Tensor, ...]:
    """(15, size, size) kernels, row ``member * 5 + level - 1`` (motion rows zero), and (5, size)
    motion tap weights."""
    key = ("blur", tuple(present), tuple(severities), size, device)
    bank = _BANKS.get(key)
    if bank is None:
        kernels = torch.zeros(15, size, size, device=device)
        wts = torch.zeros(5, size, device=device)
        levels = [s - 1 for s in severities]
        if "defocus_blur" in present:
            p = _level_params("defocus_blur", severities, device)[levels]
            kernels[levels] = defocus_kernel(p[:, 0], p[:, 1], size=size)
        if "gaussian_blur" in present:
            p = _level_params("gaussian_blur", severities, device)[levels]
            kernels[[10 + i for i in levels]] = gaussian_blur_kernel(p[:, 0], size=size)
        if "motion_blur" in present:
            p = _level_params("motion_blur", severities, device)[levels]
            wts[levels] = _motion_weights(p[:, 0], p[:, 1], size)
        bank = _BANKS[key] = (kernels, wts)
    return bank


def _blur_family(
    x: Tensor, which: Tensor, severity: Tensor, present: Sequence[str], severities: Sequence[int],
    generator: torch.Generator | None,
) -> Tensor:
    reach = 0
    if "defocus_blur" in present:
        reach = max(reach, int(max(8.0, math.ceil(_levels_max("defocus_blur", severities)))))
    if "motion_blur" in present:
        reach = max(reach, 2 * int(math.ceil(_levels_max("motion_blur", severities))))
    if "gaussian_blur" in present:
        reach = max(reach, int(4.0 * _levels_max("gaussian_blur", severities) + 0.5))
    size = 2 * reach + 1
    kernels, wts = _blur_bank(present, severities, size, x.device)
    level = severity.long() - 1
    kernel = kernels[which.clamp(min=0) * 5 + level]  # samples of other families: discarded later
    if "motion_blur" in present:
        ang = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=torch.float32) * 90.0 - 45.0
        kernel = torch.where((which == 1).view(-1, 1, 1), _motion_scatter(wts[level], ang, size), kernel)
    reflect = which == 0 if "defocus_blur" in present else None
    return _correlate_per_sample(x, kernel, reflect=reflect)


def _pixelate_family(
    x: Tensor, which: Tensor, severity: Tensor, present: Sequence[str], severities: Sequence[int],
    generator: torch.Generator | None,
) -> Tensor:
    h, w = x.shape[-2:]
    key = ("pixelate", tuple(severities), (h, w), x.device)
    plan = _BANKS.get(key)
    if plan is None:
        factors = _level_params("pixelate", severities, x.device)[:, 0].clamp(min=1e-6)
        plan = _BANKS[key] = _pixelate_plan(factors, (h, w), max_factor=min(1.0, _levels_max("pixelate", severities)))
    level = severity.long() - 1
    return _pixelate_planned(x, [t[level] for t in plan])


FAMILIES: tuple[Family, ...] = (
    Family(("gaussian_noise", "shot_noise", "impulse_noise"), _noise_family),
    Family(("defocus_blur", "motion_blur", "gaussian_blur"), _blur_family, min_members=1),
    Family(("pixelate",), _pixelate_family, min_members=1),
)
