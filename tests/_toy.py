"""Shared test helpers: a toy adversarial world (four corruptions and a fixed detector) and 8-bit rounding.

On scenes with a bright background only shifting up hurts the threshold detector (false alarms);
on dark scenes only shifting down hurts (the target disappears); the two identities never hurt.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from advcorrupt.corruptions import _registry
from advcorrupt.policy import ActionSpace
from advcorrupt.trainer import AdversarialCorruptionTrainer


@contextlib.contextmanager
def toy_corruptions(names: tuple[str, str, str, str]) -> Iterator[ActionSpace]:
    """Register (shift up, shift down, identity, identity) under ``names``; removed on exit."""
    up, down, same_a, same_b = names
    levels = (0.2, 0.25)
    _registry.register(up, severities=levels)(lambda x, p, g=None: x + p.view(-1, 1, 1, 1).to(x.dtype))
    _registry.register(down, severities=levels)(lambda x, p, g=None: x - p.view(-1, 1, 1, 1).to(x.dtype))
    _registry.register(same_a, severities=levels)(lambda x, p, g=None: x.clone())
    _registry.register(same_b, severities=levels)(lambda x, p, g=None: x.clone())
    try:
        yield ActionSpace(list(names), severities=(1, 2))
    finally:
        for name in names:
            _registry._REGISTRY.pop(name, None)


def scenes(bright: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A square target 0.5 above a flat background: 0.35 for bright images, 0.05 for dark ones."""
    n = bright.shape[0]
    bg = torch.where(bright, 0.35, 0.05).view(-1, 1, 1, 1)
    x = bg + 0.03 * torch.rand(n, 1, 32, 32, generator=g)
    m = torch.zeros(n, 1, 32, 32)
    m[:, :, 12:20, 12:20] = 1
    return torch.where(m > 0, bg + 0.5, x).clamp(0, 1), m


def threshold_detector() -> nn.Module:
    """Fixed detector: logit = 20 (x - 0.5)."""
    det = nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        det.weight.fill_(20.0)
        det.bias.fill_(-10.0)
    return det


def toy_trainer(space: ActionSpace, strategy: str, seed: int = 0) -> tuple[AdversarialCorruptionTrainer, torch.Generator]:
    """A trainer whose detector never changes (lr 0): only the adversary learns."""
    det = threshold_detector()
    g = torch.Generator().manual_seed(seed)
    trainer = AdversarialCorruptionTrainer(
        det, torch.optim.SGD(det.parameters(), lr=0.0), action_space=space, strategy=strategy,
        policy_lr=1e-2, generator=g, policy_kwargs={"input_size": 32},
    )
    return trainer, g


def corruption_mass(trainer: AdversarialCorruptionTrainer, x: torch.Tensor) -> torch.Tensor:
    """(B, K) probability of each corruption, summed over its severities."""
    s = trainer.action_space
    return trainer.policy_probabilities(x).view(-1, s.num_corruptions, s.num_severities).sum(-1)


def mass_after_training(space: ActionSpace, strategy: str, bright: torch.Tensor, *, steps: int, seed: int = 0) -> torch.Tensor:
    """(B, K) corruption mass per image after ``steps`` adversary updates on scenes lit as ``bright``."""
    trainer, g = toy_trainer(space, strategy, seed=seed)
    for _ in range(steps):
        trainer.step(*scenes(bright, g))
    return corruption_mass(trainer, scenes(bright, g)[0])


class Rounded8Bit(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """A dataset's images rounded to 1/255, as the PNGs of ``corrupt-dataset`` store them."""

    def __init__(self, ds: object) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, m = self.ds[i]  # type: ignore[index]
        return torch.round(x * 255) / 255, m
