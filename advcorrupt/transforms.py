"""Corruptions as pipeline transforms: a batched ``nn.Module`` and an albumentations wrapper.

:class:`RandomCorruption` is the kornia-style augmentation: every sample of a batch gets its own
random (corruption, severity), drawn on the batch's device, and the batch is corrupted by the same
kernels the trainer uses (:meth:`advcorrupt.ActionSpace.apply`). It needs no policy and no
trainer: use it for plain corruption augmentation (the paper's "random" baseline) or to build
corrupted inputs inside any pipeline.

:class:`AlbumentationsCorruption` (defined in :mod:`advcorrupt.integrations.albumentations`, and
importable from here) does the same for one numpy image inside an ``albumentations.Compose``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .policy.action_space import ActionSpace

__all__ = ["AlbumentationsCorruption", "RandomCorruption"]


class RandomCorruption(nn.Module):
    """Corrupt each image of a batch with a random (corruption, severity), kornia-style.

    Each sample draws one action uniformly from the ``corruptions`` x ``severities`` grid and,
    with probability ``p``, is corrupted with it; the others pass through unchanged. All random
    numbers are drawn on the input's device (from ``generator`` when given), with no host-device
    sync beyond what :meth:`ActionSpace.apply` needs to group the batch on the CPU.

    Args:
        corruptions: registered corruption names (``None``: all of
            :func:`advcorrupt.corruptions.available` at construction); an unknown name is a
            ``KeyError`` that lists the valid ones.
        severities: the 1-based levels to draw from (each within every corruption's table, 1-5
            for the built-ins).
        p: probability that a sample is corrupted, in [0, 1].
        generator: default ``torch.Generator`` (on the inputs' device) for the draws and the
            corruptions' own randomness; ``forward(..., generator=g)`` overrides it per call.

    Shape:
        - input: (B, C, H, W) or (C, H, W), float in [0, 1], C in {1, 3}.
        - output: same shape, dtype and device.

    Attributes:
        last_actions: (B,) long tensor of the last call's flat actions (index into
            :attr:`labels`), ``-1`` for samples left unchanged.

    Example:
        >>> import torch
        >>> from advcorrupt.transforms import RandomCorruption
        >>> aug = RandomCorruption(["gaussian_noise", "contrast"], severities=(1, 3), p=1.0)
        >>> out = aug(torch.rand(4, 1, 32, 32), generator=torch.Generator().manual_seed(0))
        >>> out.shape, aug.last_actions.shape
        (torch.Size([4, 1, 32, 32]), torch.Size([4]))
    """

    def __init__(
        self,
        corruptions: Sequence[str] | None = None,
        severities: Sequence[int] = (1, 2, 3),
        p: float = 1.0,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1]; got {p!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None; got {type(generator).__name__}")
        self.action_space = ActionSpace(corruptions, severities)
        self.p = float(p)
        self.generator = generator
        self.last_actions: Tensor | None = None

    @property
    def labels(self) -> list[str]:
        """Action names ``"<corruption>@<severity>"`` in action order."""
        return self.action_space.labels()

    def forward(self, images: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Corrupt ``images``; see the class docstring for shapes."""
        if not isinstance(images, Tensor):
            raise TypeError(f"images must be a torch.Tensor of shape (B, C, H, W) or (C, H, W); got {type(images).__name__}")
        single = images.ndim == 3
        x = images.unsqueeze(0) if single else images
        g = generator if generator is not None else self.generator
        b = x.shape[0]
        actions = torch.randint(self.action_space.size, (b,), device=x.device, generator=g)
        out = self.action_space.apply(x, actions, generator=g)  # validates x, names the problem
        if self.p < 1.0:
            keep = torch.rand((b,), device=x.device, generator=g) >= self.p
            out = torch.where(keep.view(-1, 1, 1, 1), x, out)
            actions = torch.where(keep, torch.full_like(actions, -1), actions)
        self.last_actions = actions
        return out[0] if single else out

    def extra_repr(self) -> str:
        space = self.action_space
        return f"corruptions={list(space.corruptions)}, severities={space.severities}, p={self.p}"


def __getattr__(name: str) -> Any:
    # The albumentations wrapper is imported only when asked for (albumentations is slow to import).
    if name == "AlbumentationsCorruption":
        from .integrations.albumentations import AlbumentationsCorruption

        return AlbumentationsCorruption
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
