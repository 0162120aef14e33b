"""Helpers shared by the ISTD models: padding to a size multiple and weight initialisation."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_values

__all__ = ["check_image_batch", "init_logit_bias", "init_weights", "pad_to_multiple", "validate_model_input"]


def check_image_batch(x: Tensor, in_channels: int) -> None:
    """Raise ``ValueError`` unless ``x`` is a float (B, in_channels, H, W) tensor."""
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != in_channels or not x.is_floating_point():
        got = f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"images must be a float tensor of shape (B, {in_channels}, H, W); got {got}")


def validate_model_input(x: object, in_channels: int, name: str = "x") -> Tensor:
    """Check a model's input: a float (B, ``in_channels``, H, W) tensor of finite values.

    Call it first in ``forward``. Models see normalised images, so no range is imposed, only
    finiteness: on CPU a NaN or inf raises at once; on CUDA an asynchronous device assert checks
    it without stalling the stream (see :mod:`advcorrupt._checks`).

    Args:
        x: the input batch.
        in_channels: the channels the model was built for.
        name: the argument's name in error messages.

    Returns:
        ``x`` unchanged.

    Raises:
        TypeError: ``x`` is not a tensor, or not floating point.
        ValueError: wrong shape or channels, an empty spatial size; (CPU) NaN or inf.

    Example:
        >>> import torch
        >>> validate_model_input(torch.zeros(2, 1, 8, 8), 1).shape
        torch.Size([2, 1, 8, 8])
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, {in_channels}, H, W); got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a float tensor of shape (B, {in_channels}, H, W); got {x.dtype} of shape {tuple(x.shape)}"
        )
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(f"{name} must have shape (B, {in_channels}, H, W); got shape {tuple(x.shape)}")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{name} must have H, W >= 1; got shape {tuple(x.shape)}")
    check_values(x, name)
    return x


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Replicate-pad H and W at the bottom/right up to the next multiple of ``multiple``.

    Replicate (not zero) padding adds no artificial edge that a small-target detector could
    fire on; the caller crops its output back to the original size.

    Shape:
        - Input: (B, C, H, W).
        - Output: (B, C, ceil(H / m) * m, ceil(W / m) * m).
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU) convolutions with zero bias; BatchNorm to (1, 0).

    Modules that define their own ``reset_parameters`` schedule with a ``zero_init_last`` flag
    (SFIM) are re-initialised afterwards by their owner.
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def init_logit_bias(convs: Iterable[nn.Conv2d], prior_prob: float | None) -> None:
    """Start the logit convolutions' biases at ``log(p / (1 - p))`` (a target prior ``p``).

    Small targets cover well under 1% of an infrared image; with a zero bias an untrained
    detector says "target" with probability 0.5 everywhere and the Soft-IoU loss spends its
    first hundreds of steps suppressing the background (the RetinaNet focal-loss prior, Lin et
    al. 2017). ``None`` keeps the zero bias of the original papers.
    """
    if prior_prob is None:
        return
    if not 0.0 < prior_prob < 1.0:
        raise ValueError(f"prior_prob must be in (0, 1) or None; got {prior_prob!r}")
    for conv in convs:
        if conv.bias is not None:
            nn.init.constant_(conv.bias, math.log(prior_prob / (1.0 - prior_prob)))
