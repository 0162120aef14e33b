"""Model registry: ``@register_model``, ``create_model`` and ``list_models`` (timm-style).

A registered entry is a factory function whose name is the registry key; it takes keyword
arguments only (at least ``in_channels``) and returns an ``nn.Module`` that maps (B, C, H, W)
images to logits. Names ``smp:<Arch>:<encoder>`` are not registered: :func:`create_model` hands
them to :func:`advcorrupt.models.smp.create_smp_model` (any segmentation-models-pytorch model).
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from torch import nn

from ._args import check_positive_int

__all__ = ["create_model", "list_models", "register_model"]

ModelFactory = Callable[..., nn.Module]
_F = TypeVar("_F", bound=ModelFactory)

_MODELS: dict[str, ModelFactory] = {}


def register_model(fn: _F) -> _F:
    """Register a model factory under its function name; registering a name twice warns.

    Args:
        fn: factory ``fn(**kwargs) -> nn.Module``.

    Returns:
        ``fn`` unchanged, so this works as a decorator.

    Example:
        >>> @register_model
        ... def tiny_conv(*, in_channels: int = 1) -> nn.Module:
        ...     return nn.Conv2d(in_channels, 1, 3, padding=1)
        >>> "tiny_conv" in list_models()
        True
        >>> _ = _MODELS.pop("tiny_conv")
    """
    name = fn.__name__
    if name in _MODELS:
        warnings.warn(f"model {name!r} is already registered; overwriting it", stacklevel=2)
    _MODELS[name] = fn
    return fn


def list_models(filter: str = "") -> list[str]:
    """Registered model names, in registration order, optionally filtered by a glob pattern.

    Args:
        filter: glob pattern such as ``"*dnanet"``; empty means all.

    Returns:
        The matching names.

    Example:
        >>> list_models("*dnanet")
        ['dnanet', 'sfim_dnanet']
    """
    return [n for n in _MODELS if not filter or fnmatch.fnmatchcase(n, filter)]


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model.

    Args:
        name: a name from :func:`list_models`, or ``"smp:<Arch>:<encoder>"`` for any
            segmentation-models-pytorch model (``"smp:Unet:resnet18"``; trained from scratch
            unless ``encoder_weights=`` says otherwise, see :mod:`advcorrupt.models.smp`).
        **kwargs: passed to the factory (e.g. ``in_channels=1``, ``deep_supervision=False``;
            ``num_classes=`` / ``classes=`` for the output channels of an smp model).

    Returns:
        The model, in training mode, with freshly initialised weights.

    Raises:
        KeyError: for an unknown name; the message lists the registered names (or, for an
            ``smp:`` name, the valid architectures).
        ValueError: ``in_channels`` or ``num_classes`` that is not an integer >= 1.

    Example:
        >>> import torch
        >>> net = create_model("acm", in_channels=1)
        >>> net.eval()(torch.rand(1, 1, 33, 47)).shape
        torch.Size([1, 1, 33, 47])
        >>> create_model("smp:Unet:resnet18", in_channels=3, classes=11).eval()(torch.rand(1, 3, 64, 64)).shape
        torch.Size([1, 11, 64, 64])
    """
    from .smp import create_smp_model, is_smp_name

    factory: ModelFactory
    if is_smp_name(name):
        factory = partial(create_smp_model, name)
    elif name in _MODELS:
        factory = _MODELS[name]
    else:
        raise KeyError(
            f"unknown model {name!r}; available models: {list_models()}, or 'smp:<Arch>:<encoder>' for a "
            f"segmentation-models-pytorch model (e.g. 'smp:Unet:resnet18')"
        )
    for arg in ("in_channels", "num_classes", "classes"):
        if arg in kwargs:
            check_positive_int(arg, kwargs[arg])
    return factory(**kwargs)
