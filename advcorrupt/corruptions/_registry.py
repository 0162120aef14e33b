"""Corruption registry: ``register``, ``available``, ``get`` and ``corrupt``.

A corruption is a batched kernel ``fn(x, params, generator) -> Tensor`` plus a table that maps each
severity level (1-based) to that kernel's parameters. ``corrupt`` looks the per-sample parameters up
from the table, on the input's device, and calls the kernel once for the whole batch.

The built-ins follow the ImageNet-C definitions (Hendrycks & Dietterich, ICLR 2019), as used by
BALISTD (AAAI 2024) for its corrupted test sets; see ``docs/corruptions.md``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import check_values

__all__ = [
    "CATEGORIES",
    "CorruptionFn",
    "CorruptionSpec",
    "available",
    "corrupt",
    "get",
    "register",
    "validate_images",
]

CorruptionFn = Callable[[Tensor, Tensor, "torch.Generator | None"], Tensor]

# Categories of the paper's ablation (Table 6). User corruptions default to "custom".
CATEGORIES: tuple[str, ...] = ("noise", "blur", "digital", "custom")


@dataclass(frozen=True)
class CorruptionSpec:
    """A registered corruption.

    Attributes:
        name: registry key, e.g. ``"gaussian_noise"``.
        fn: batched kernel ``fn(x, params, generator)``; ``x`` is (B, C, H, W) float in [0, 1],
            ``params`` is (B,) when each level has one parameter, else (B, P).
        levels: the level table, ``levels[s - 1]`` holds the parameters of severity ``s``.
        category: ``"noise"``, ``"blur"``, ``"digital"`` or ``"custom"``.
        param_names: names of the parameters of one level, for listings and docs.
    """

    name: str
    fn: CorruptionFn
    levels: tuple[tuple[float, ...], ...]
    category: str = "custom"
    param_names: tuple[str, ...] = ("param",)

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    def params_for(self, severity: Tensor) -> Tensor:
        """Per-sample parameters for a (B,) tensor of 1-based severities, on its device."""
        params = _level_table(self, severity.device)[severity.long() - 1]
        return params[:, 0] if params.shape[1] == 1 else params


_REGISTRY: dict[str, CorruptionSpec] = {}
# Level tables cached per device: a host-to-device copy on every call would stall a CUDA stream.
_TABLES: dict[tuple[tuple[tuple[float, ...], ...], torch.device], Tensor] = {}


def _level_table(spec: CorruptionSpec, device: torch.device) -> Tensor:
    key = (spec.levels, device)
    table = _TABLES.get(key)
    if table is None:
        table = _TABLES[key] = torch.tensor(spec.levels, dtype=torch.float32, device=device)
    return table


def register(
    name: str,
    *,
    severities: Sequence[float | Sequence[float]],
    category: str = "custom",
    param_names: Sequence[str] | None = None,
) -> Callable[[CorruptionFn], CorruptionFn]:
    """Register a batched corruption kernel under ``name``.

    Args:
        name: registry key; registering an existing name replaces it with a warning.
        severities: the level table: one entry per severity level (level 1 first), each a number
            or a sequence of numbers (all entries of the same length).
        category: ``"noise"``, ``"blur"``, ``"digital"`` or ``"custom"``; strategies such as
            ``"noise"`` sample uniformly within a category.
        param_names: names of one level's parameters (documentation only).

    Returns:
        The decorator, which returns the kernel unchanged.

    Example:
        >>> import torch
        >>> from advcorrupt import corruptions
        >>> @corruptions.register("invert_blend", severities=(0.2, 0.5, 0.8))
        ... def invert_blend(x, alpha, generator=None):
        ...     a = alpha.view(-1, 1, 1, 1).to(x.dtype)
        ...     return (1 - a) * x + a * (1 - x)
        >>> corruptions.corrupt(torch.rand(2, 1, 8, 8), "invert_blend", 2).shape
        torch.Size([2, 1, 8, 8])
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str; got {name!r}")
    if category not in CATEGORIES:
        raise ValueError(f"category must be one of {list(CATEGORIES)}; got {category!r}")
    levels = tuple(
        tuple(float(v) for v in s) if isinstance(s, Sequence) else (float(s),) for s in severities
    )
    if not levels:
        raise ValueError(f"severities must hold at least one level; got {severities!r}")
    if len({len(lv) for lv in levels}) != 1:
        raise ValueError(f"every level in severities must have the same length; got {severities!r}")
    names = tuple(param_names) if param_names is not None else (
        ("param",) if len(levels[0]) == 1 else tuple(f"p{i}" for i in range(len(levels[0])))
    )
    if len(names) != len(levels[0]):
        raise ValueError(
            f"param_names must name {len(levels[0])} parameter(s); got {list(names)}"
        )

    def decorator(fn: CorruptionFn) -> CorruptionFn:
        if not callable(fn):
            raise TypeError(f"a corruption must be callable; got {type(fn).__name__}")
        if name in _REGISTRY:
            warnings.warn(f"corruption {name!r} is already registered; replacing it", stacklevel=2)
        _REGISTRY[name] = CorruptionSpec(name, fn, levels, category, names)
        return fn

    return decorator


def available(category: str | None = None) -> list[str]:
    """Names of the registered corruptions: the 10 built-ins in their fixed order, then user ones.

    Args:
        category: only names of this category (``"noise"``, ``"blur"``, ``"digital"``, ``"custom"``).
    """
    if category is not None and category not in CATEGORIES:
        raise ValueError(f"category must be one of {list(CATEGORIES)} or None; got {category!r}")
    return [n for n, s in _REGISTRY.items() if category is None or s.category == category]


def get(name: str) -> CorruptionSpec:
    """The :class:`CorruptionSpec` registered under ``name``; ``KeyError`` lists valid names."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise KeyError(
            f"unknown corruption {name!r}; available: {', '.join(_REGISTRY)}"
        ) from None


def validate_images(x: object, argname: str = "x") -> Tensor:
    """Check that ``x`` is a float (B, C, H, W) tensor with C in {1, 3} and values in [0, 1].

    The values are checked by :func:`advcorrupt._checks.check_values`: on CPU a NaN, an inf or a
    value outside [0, 1] (e.g. an image in 0-255, a forgotten ``/ 255``) raises ``ValueError``;
    on CUDA an asynchronous device assert checks the same without stalling the stream.

    Args:
        x: the images.
        argname: the argument's name in error messages.

    Returns:
        ``x`` unchanged.

    Raises:
        TypeError: ``x`` is not a tensor, or not floating point.
        ValueError: wrong number of dimensions or channels, H or W of 0; (CPU) NaN/inf or values
            outside [0, 1].
    """
    x = _check_layout(x, argname)
    check_values(x, argname, low=0.0, high=1.0, hint=_RANGE_HINT)
    return x


def _check_layout(x: object, argname: str) -> Tensor:
    """The type, dtype and shape checks of :func:`validate_images` (no pass over the values)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{argname} must be a torch.Tensor of shape (B, C, H, W); got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{argname} must be float in [0, 1] with shape (B, C, H, W); got {x.dtype} of shape "
            f"{tuple(x.shape)} (convert with x.float() / 255)"
        )
    if x.ndim != 4:
        raise ValueError(
            f"{argname} must have shape (B, C, H, W); got {x.ndim} dimension(s), shape {tuple(x.shape)}"
        )
    if x.shape[1] not in (1, 3):
        raise ValueError(f"{argname} must have C = 1 or 3 channels; got C = {x.shape[1]}")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{argname} must have H, W >= 1; got shape {tuple(x.shape)}")
    return x


_RANGE_HINT = (
    "Images enter as float in [0, 1]: divide 8-bit data by 255 (16-bit by 65535), clamp(0, 1) after a "
    "resize that overshoots, and normalise (mean/std) only after corrupting (the trainer's preprocess)"
)


def _severity_tensor(severity: int | Tensor, batch: int, num_levels: int, device: torch.device) -> Tensor:
    if isinstance(severity, bool):
        raise TypeError(f"severity must be an int or a (B,) integer tensor; got bool {severity}")
    if isinstance(severity, int):
        if not 1 <= severity <= num_levels:
            raise ValueError(f"severity must be in [1, {num_levels}]; got {severity}")
        return torch.full((batch,), severity, dtype=torch.long, device=device)
    if not isinstance(severity, Tensor):
        raise TypeError(f"severity must be an int or a (B,) integer tensor; got {type(severity).__name__}")
    if severity.dtype.is_floating_point or severity.dtype.is_complex or severity.dtype == torch.bool:
        raise TypeError(f"severity must be an integer tensor; got dtype {severity.dtype}")
    if severity.shape != (batch,):
        raise ValueError(
            f"severity must have shape (B,) = ({batch},) to match x; got shape {tuple(severity.shape)}"
        )
    if severity.device.type == "cpu" and batch:
        # Range check only where it costs no host-device sync.
        lo, hi = int(severity.min()), int(severity.max())
        if lo < 1 or hi > num_levels:
            raise ValueError(f"severity values must be in [1, {num_levels}]; got range [{lo}, {hi}]")
    return severity.to(device=device, dtype=torch.long)


def corrupt(
    x: Tensor,
    name: str,
    severity: int | Tensor,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Apply corruption ``name`` at ``severity`` to a batch.

    Args:
        x: images, float in [0, 1].
        name: a name from :func:`available`.
        severity: 1-based level, an int for the whole batch or a (B,) integer tensor per sample.
        generator: optional generator on ``x``'s device, for exact replay of random corruptions.

    Shape:
        x: (B, C, H, W) with C in {1, 3}. Output: same shape.

    Returns:
        The corrupted batch, with ``x``'s shape, dtype and device, clamped to [0, 1].

    Example:
        >>> import torch
        >>> from advcorrupt.corruptions import corrupt
        >>> x = torch.rand(4, 1, 32, 32)
        >>> corrupt(x, "gaussian_noise", torch.tensor([1, 2, 3, 5])).shape
        torch.Size([4, 1, 32, 32])
    """
    spec = get(name)
    validate_images(x)
    sev = _severity_tensor(severity, x.shape[0], spec.num_levels, x.device)
    if x.shape[0] == 0:
        return x.clone()
    out = spec.fn(x, spec.params_for(sev), generator)
    if out.shape != x.shape:
        raise RuntimeError(
            f"corruption {name!r} returned shape {tuple(out.shape)}; expected {tuple(x.shape)}"
        )
    return out.to(x.dtype).clamp_(0.0, 1.0)
