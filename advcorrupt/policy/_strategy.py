"""The base class of every strategy: draws one action per image and optionally learns from rewards."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .action_space import ActionSpace
from .reinforce import PolicySample, sample_categorical

__all__ = ["Strategy", "entropy"]


def entropy(probs: Tensor) -> Tensor:
    """Entropy of each row of ``probs`` (B, K) -> (B,), with 0 log 0 = 0."""
    return -torch.special.xlogy(probs, probs).sum(-1)


class Strategy:
    """Base class: draws one action per image and (optionally) learns from rewards.

    Attributes:
        name: the ``strategy`` string this object stands for.
        learns: whether :meth:`update` changes anything.
        corrupts: ``False`` only for ``"none"``: no corrupted samples are produced.
    """

    name: str = "strategy"
    learns: bool = False
    corrupts: bool = True

    def __init__(self, action_space: ActionSpace) -> None:
        if not isinstance(action_space, ActionSpace):
            raise TypeError(f"action_space must be an ActionSpace; got {type(action_space).__name__}")
        self.action_space = action_space

    def probabilities(self, images: Tensor) -> Tensor:
        """Action probabilities per image, (B, K), no gradient."""
        raise NotImplementedError

    def sample(self, images: Tensor, *, generator: torch.Generator | None = None) -> PolicySample:
        """Draw one action per image."""
        probs = self.probabilities(images)
        actions = sample_categorical(probs, generator=generator)
        return PolicySample(actions=actions, probs=probs, entropy=entropy(probs))

    needs_after = False  # whether update() needs the losses recomputed after the detector's update

    def update(
        self, sample: PolicySample, corrupted_loss: Tensor, *, clean_loss: Tensor | None = None,
        valid: Tensor | None = None, after: tuple[Tensor, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Learn from the detector's per-sample losses; non-learning strategies only report statistics.

        Args:
            sample: what :meth:`sample` returned for this batch.
            corrupted_loss: (B,) the detector's loss on each corrupted image.
            clean_loss: (B,) its loss on the same clean images (needed by ``"damage"`` rewards).
            valid: optional bool mask (or 0-dim bool) of samples to learn from.
            after: (B,) corrupted and clean losses recomputed after the detector's update (needed
                by ``"progress"`` rewards, see :attr:`needs_after`).
        """
        r = corrupted_loss.detach().float()
        ok = torch.isfinite(r)
        if valid is not None:
            ok = ok & valid.to(device=ok.device, dtype=torch.bool)
        reward = torch.where(ok, r, torch.zeros_like(r)).sum() / ok.sum().clamp(min=1)
        ent = sample.entropy.detach().mean() if sample.entropy is not None and sample.entropy.numel() else reward * 0
        return {"reward": reward, "policy_entropy": ent}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"strategy {self.name!r} has no state; got keys {sorted(state)}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, actions={self.action_space.size})"
