"""How the adversary picks corruptions: the strategies of BALISTD's ablation (AAAI 2024, Table 6).

* ``"learned"``: the sample-conditioned policy ``p(s | x)`` trained by REINFORCE (Eq. 2-7);
* ``"random"``: uniform over the whole action space;
* a corruption name (``"gaussian_noise"``) or a category (``"noise"``, ``"blur"``, ``"digital"``):
  uniform over that corruption's / category's actions (all its severities);
* ``"none"``: no corruption at all; the trainer skips the corrupted half of the batch, which makes
  it plain training through the same code path (the baseline rows of the ablation);
* a fixed severity schedule (:mod:`advcorrupt.policy.schedules`): ``"random@3"``, ``"random@1-5"``,
  ``"random@1:10+2:10+3:80"``, ``"curriculum@1-3"``: uniform corruptions, chosen levels.

:func:`make_strategy` turns the one ``strategy`` argument into one of these objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from ._strategy import Strategy
from .action_space import ActionSpace
from .adversaries import Adversary, get_adversary, is_adversary, list_adversaries
from .network import PolicyNetwork
from .reinforce import PolicySample, Reinforce
from .schedules import make_schedule, parse_schedule

__all__ = [
    "FixedStrategy",
    "LearnedStrategy",
    "NoneStrategy",
    "RandomStrategy",
    "Strategy",
    "make_strategy",
]


class FixedStrategy(Strategy):
    """Uniform over a fixed subset of actions (a corruption, a category, or all of them).

    Args:
        action_space: the action grid.
        actions: flat action indices to draw from, uniformly.
        name: the strategy string (for checkpoints and logs).

    Example:
        >>> import torch
        >>> from advcorrupt.policy import ActionSpace, FixedStrategy
        >>> space = ActionSpace()
        >>> s = FixedStrategy(space, space.actions_of("noise"), name="noise")
        >>> s.probabilities(torch.rand(2, 1, 32, 32)).shape == (2, space.size)
        True
    """

    def __init__(self, action_space: ActionSpace, actions: Sequence[int], *, name: str) -> None:
        super().__init__(action_space)
        acts = sorted({int(a) for a in actions})
        if not acts or acts[0] < 0 or acts[-1] >= action_space.size:
            raise ValueError(f"actions must be non-empty indices in [0, {action_space.size}); got {list(actions)}")
        self.actions = tuple(acts)
        self.name = name
        self._rows: dict[torch.device, Tensor] = {}

    def _row(self, device: torch.device) -> Tensor:
        row = self._rows.get(device)
        if row is None:
            cpu = torch.zeros(self.action_space.size)
            cpu[list(self.actions)] = 1.0 / len(self.actions)
            row = self._rows[device] = cpu.to(device)  # one copy per device, then cached
        return row

    def probabilities(self, images: Tensor) -> Tensor:
        return self._row(images.device).expand(images.shape[0], -1)


class RandomStrategy(FixedStrategy):
    """Uniform over the whole action space (``strategy="random"``)."""

    def __init__(self, action_space: ActionSpace) -> None:
        super().__init__(action_space, range(action_space.size), name="random")


class NoneStrategy(Strategy):
    """No corruption (``strategy="none"``): the trainer trains on the clean batch only."""

    name = "none"
    corrupts = False

    def probabilities(self, images: Tensor) -> Tensor:
        return images.new_zeros((images.shape[0], self.action_space.size), dtype=torch.float32)

    def sample(self, images: Tensor, *, generator: torch.Generator | None = None) -> PolicySample:
        empty = torch.zeros(0, dtype=torch.long, device=images.device)
        return PolicySample(actions=empty, probs=self.probabilities(images)[:0], entropy=None)


class LearnedStrategy(Strategy):
    """The learned, sample-conditioned policy (``strategy="learned"`` or an adversary's name).

    Args:
        action_space: the action grid.
        reinforce: the updater holding the :class:`PolicyNetwork` and its optimizer; its head
            must match ``adversary``'s.
        adversary: the :class:`Adversary` (head and reward); default: the paper's.
        name: the strategy string (``"learned"`` or the adversary's name).
    """

    learns = True

    def __init__(
        self, action_space: ActionSpace, reinforce: Reinforce, *, adversary: Adversary | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(action_space)
        if not isinstance(reinforce, Reinforce):
            raise TypeError(f"reinforce must be a Reinforce; got {type(reinforce).__name__}")
        self.reinforce = reinforce
        self.adversary = adversary if adversary is not None else get_adversary("paper")
        self.name = name or self.adversary.name

    @property
    def policy(self) -> torch.nn.Module:
        return self.reinforce.policy

    def probabilities(self, images: Tensor) -> Tensor:
        return self.reinforce.probabilities(images)

    def sample(self, images: Tensor, *, generator: torch.Generator | None = None) -> PolicySample:
        return self.reinforce.act(images, generator=generator)

    @property
    def needs_after(self) -> bool:  # type: ignore[override]
        return self.adversary.needs_after

    def update(
        self, sample: PolicySample, corrupted_loss: Tensor, *, clean_loss: Tensor | None = None,
        valid: Tensor | None = None, after: tuple[Tensor, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        rewards = self.adversary.rewards(corrupted_loss, clean_loss, after)
        return self.reinforce.update(sample, rewards, valid=valid)

    def state_dict(self) -> dict[str, Any]:
        return {**self.reinforce.state_dict(), "adversary": self.adversary.name}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("adversary", "paper")  # checkpoints of version 0.1 used the paper's adversary
        if saved != self.adversary.name:
            raise ValueError(
                f"state was saved with adversary {saved!r}; this strategy uses {self.adversary.name!r}"
            )
        self.reinforce.load_state_dict({k: v for k, v in state.items() if k != "adversary"})


def make_strategy(
    strategy: str | Strategy,
    action_space: ActionSpace,
    *,
    in_channels: int = 1,
    device: torch.device | str | None = None,
    policy: torch.nn.Module | None = None,
    policy_lr: float = 1e-2,
    policy_kwargs: dict[str, Any] | None = None,
    reinforce_kwargs: dict[str, Any] | None = None,
    total_steps: int | None = None,
) -> Strategy:
    """Build the strategy named by ``strategy``.

    Args:
        strategy: ``"learned"`` (the default adversary), an adversary name
            (:func:`~advcorrupt.policy.adversaries.list_adversaries`, e.g. ``"paper"``), ``"random"``,
            ``"none"``, a corruption name of ``action_space`` or a category (``"noise"``, ``"blur"``,
            ``"digital"``, ``"custom"``), or a severity schedule (``"random@3"``, ``"curriculum@1-3"``,
            :mod:`~advcorrupt.policy.schedules`); a :class:`Strategy` is returned as is.
        action_space: the action grid.
        in_channels: image channels the policy network sees (learned strategies only).
        device: where to build the policy network (learned strategies only).
        policy: a ready policy network whose output size is the head's ``num_logits`` (``K * S``
            for a flat head, ``K + K * S`` for a hierarchical one); default
            ``PolicyNetwork(in_channels, num_logits, **policy_kwargs)``.
        policy_lr: the policy's SGD learning rate (paper: 1e-4, which barely moves the policy
            within a training run; see docs/trainer.md).
        policy_kwargs: extra arguments of :class:`PolicyNetwork`.
        reinforce_kwargs: extra arguments of :class:`Reinforce`; ``min_prob`` and
            ``entropy_coef`` override the adversary's.
        total_steps: the run's training steps (needed by ``"curriculum@..."`` schedules only).

    Returns:
        The strategy.

    Example:
        >>> from advcorrupt.policy import ActionSpace, make_strategy
        >>> make_strategy("blur", ActionSpace()).name
        'blur'
        >>> make_strategy("learned", ActionSpace()).adversary.name
        'banded'
        >>> make_strategy("random@3", ActionSpace()).levels
        (3,)
    """
    if isinstance(strategy, Strategy):
        if strategy.action_space.state_dict() != action_space.state_dict():
            raise ValueError("strategy was built for a different action space than action_space")
        return strategy
    if not isinstance(strategy, str):
        raise TypeError(f"strategy must be a str or a Strategy; got {type(strategy).__name__}")
    learned = is_adversary(strategy)
    if not learned and (policy is not None or reinforce_kwargs):
        raise ValueError(
            f"policy / reinforce_kwargs only apply to learned strategies (learned, "
            f"{', '.join(list_adversaries())}); got strategy={strategy!r}"
        )
    if learned:
        return _make_learned(strategy, action_space, in_channels=in_channels, device=device, policy=policy,
                             policy_lr=policy_lr, policy_kwargs=policy_kwargs, reinforce_kwargs=reinforce_kwargs)
    if strategy == "random":
        return RandomStrategy(action_space)
    if strategy == "none":
        return NoneStrategy(action_space)
    if parse_schedule(strategy) is not None:
        return make_schedule(strategy, action_space, total_steps=total_steps)
    try:
        actions = action_space.actions_of(strategy)
    except KeyError:
        raise ValueError(
            f"strategy must be 'learned', an adversary ({', '.join(list_adversaries())}), 'random', 'none', "
            f"a corruption of the action space ({', '.join(action_space.corruptions)}), a category or a "
            "schedule such as 'random@3' or 'curriculum@1-3'; "
            f"got {strategy!r}"
        ) from None
    return FixedStrategy(action_space, actions, name=strategy)


def _make_learned(
    strategy: str, action_space: ActionSpace, *, in_channels: int, device: torch.device | str | None,
    policy: torch.nn.Module | None, policy_lr: float, policy_kwargs: dict[str, Any] | None,
    reinforce_kwargs: dict[str, Any] | None,
) -> LearnedStrategy:
    adversary = get_adversary(strategy)
    missing = [lv for lv in adversary.levels if lv not in action_space.severities]
    if missing:
        raise ValueError(
            f"strategy {strategy!r} chooses among levels {list(adversary.levels)}; the action space has "
            f"{list(action_space.severities)} (missing {missing}): leave action_space out (it is widened to them) "
            "or build it with those levels"
        )
    kwargs = dict(reinforce_kwargs or {})
    min_prob = kwargs.pop("min_prob", adversary.min_prob)
    kwargs.setdefault("entropy_coef", adversary.entropy_coef)
    kwargs.setdefault("per_action_baseline", adversary.baseline == "per_action")
    if "head" in kwargs:
        raise ValueError(f"reinforce_kwargs must not set head: strategy {strategy!r} defines it")
    head = replace(adversary, min_prob=min_prob).make_head(action_space.num_corruptions, action_space.num_severities)
    if policy is None:
        policy = PolicyNetwork(in_channels, head.num_logits, **(policy_kwargs or {}))
    else:
        n_out = getattr(policy, "num_actions", None)
        if n_out is not None and n_out != head.num_logits:
            raise ValueError(
                f"policy must emit {head.num_logits} logits per image for adversary {adversary.name!r} "
                f"({head.kind} head over {action_space.num_corruptions} corruptions x "
                f"{action_space.num_severities} severities); got a policy with {n_out}"
            )
    if device is not None:
        policy = policy.to(device)
    reinforce = Reinforce(policy, lr=policy_lr, head=head, **kwargs)
    return LearnedStrategy(action_space, reinforce, adversary=adversary, name=strategy)
