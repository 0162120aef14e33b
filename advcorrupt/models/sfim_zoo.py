""""X + SFIM" for the zoo's detectors: ``sfim_acm``, ``sfim_alcnet``, ``sfim_rdian``, ``sfim_isnet``,
``sfim_istdunet``.

Each factory builds the base detector and calls :func:`advcorrupt.layers.insert_sfim` with its
default insertion points (the base class's ``sfim_targets``, read by
:func:`advcorrupt.layers.default_sfim_targets`), so a training script can pick the SFIM variant
by name. A fresh SFIM is the identity, so each variant starts
with exactly its base model's outputs. ``sfim_dnanet`` (BALISTD's detector, defined in
``dnanet.py``) is different: it *replaces* DNANet's attention modules by SFIM.
"""

from __future__ import annotations

import torch  # noqa: F401  (used by the docstring examples)
from torch import nn

from ..layers.insert import insert_sfim
from ._registry import create_model, register_model

__all__ = ["sfim_acm", "sfim_alcnet", "sfim_isnet", "sfim_istdunet", "sfim_rdian"]


def _with_sfim(base: str, kwargs: dict[str, object]) -> nn.Module:
    return insert_sfim(create_model(base, **kwargs))


@register_model
def sfim_acm(**kwargs: object) -> nn.Module:
    """ACM with an SFIM after each encoder and decoder stage (``layer1``-``3``, ``uplayer2``, ``uplayer1``).

    Example:
        >>> sfim_acm(in_channels=1).eval()(torch.rand(1, 1, 32, 32)).shape
        torch.Size([1, 1, 32, 32])
    """
    return _with_sfim("acm", kwargs)


@register_model
def sfim_alcnet(**kwargs: object) -> nn.Module:
    """ALCNet with an SFIM after each stage and both fusions (``layer1``-``3``, ``fuse23``, ``fuse12``).

    Example:
        >>> sfim_alcnet(in_channels=1).eval()(torch.rand(1, 1, 32, 32)).shape
        torch.Size([1, 1, 32, 32])
    """
    return _with_sfim("alcnet", kwargs)


@register_model
def sfim_rdian(**kwargs: object) -> nn.Module:
    """RDIAN with an SFIM after the stride-2 trunk conv and the receptive-field fusion.

    Example:
        >>> sfim_rdian(in_channels=1).eval()(torch.rand(1, 1, 32, 32)).shape
        torch.Size([1, 1, 32, 32])
    """
    return _with_sfim("rdian", kwargs)


@register_model
def sfim_isnet(**kwargs: object) -> nn.Module:
    """ISNet with an SFIM after each encoder and decoder stage of its segmentation trunk.

    Example:
        >>> sfim_isnet(in_channels=1).eval()(torch.rand(1, 1, 32, 32)).shape
        torch.Size([1, 1, 32, 32])
    """
    return _with_sfim("isnet", kwargs)


@register_model
def sfim_istdunet(**kwargs: object) -> nn.Module:
    """ISTDU-Net with an SFIM after each decoder step (``up1``, ``up2``, ``up3``).

    Example:
        >>> sfim_istdunet(in_channels=1).eval()(torch.rand(1, 1, 32, 32)).shape
        torch.Size([1, 1, 32, 32])
    """
    return _with_sfim("istdunet", kwargs)
