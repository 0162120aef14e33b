"""Named adversaries: which action distribution the policy has and what it is rewarded for.

The paper's adversary (AAAI 2024, Eq. 3) is a flat distribution over (corruption, severity) actions
rewarded with the detector's loss on the corrupted image. Measured on NUAA-SIRST it collapses onto
the single hardest corruption (``docs/results.md``), which is the wrong objective when robustness is
averaged over corruptions. The adversaries here differ in two choices:

* ``head``: ``"flat"`` (one softmax over all actions) or ``"hierarchical"`` (a corruption, then a
  severity given the corruption; optionally with the corruption's probability held in a ``band``
  around uniform, see :class:`~advcorrupt.policy.heads.HierarchicalHead`);
* ``reward``: ``"loss"`` (the corrupted image's loss, the paper), ``"damage"`` (the corrupted
  image's loss minus the same clean image's loss: how much *this* corruption hurts *this* image;
  both come from the step's one forward pass, so neither costs an extra pass) or ``"progress"``
  (learnability: how much of that damage the detector's update just removed, damage before the
  update minus damage after it; unlearnable extremes stop paying. It needs the batch's losses
  once more after the update: :meth:`AdversarialCorruptionTrainer.step` runs one extra no-grad
  forward pass of the 2B batch, with the model's buffers restored afterwards);
* ``baseline``: ``"mean"`` (one moving baseline for all actions) or ``"per_action"`` (each action's
  own: only what an action does to *this* image beyond its average pays, so the policy gains only
  by choosing per image; the ``relative`` adversaries, issue 20).

``strategy="learned"`` means :data:`DEFAULT_ADVERSARY`; every adversary can also be named directly
(``strategy="paper"`` reproduces version 0.1 for ablations).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from torch import Tensor

from .heads import FlatHead, HierarchicalHead, check_band

__all__ = [
    "DEFAULT_ADVERSARY",
    "REWARDS",
    "Adversary",
    "get_adversary",
    "is_adversary",
    "list_adversaries",
    "needs_losses_after",
    "register_adversary",
]

REWARDS = ("loss", "damage", "progress")
HEADS = ("flat", "hierarchical")
BASELINES = ("mean", "per_action")


@dataclass(frozen=True)
class Adversary:
    """A named adversary configuration.

    Attributes:
        name: the ``strategy`` string that selects it.
        head: ``"flat"`` or ``"hierarchical"``.
        reward: ``"loss"``, ``"damage"`` (needs the clean per-sample losses) or ``"progress"``
            (also needs both per-sample losses recomputed after the detector's update).
        band: for the hierarchical head, ``(lo, hi)`` in multiples of ``1/K`` or ``None``.
        severity: ``"learned"`` or ``"uniform"`` (hierarchical head: only the corruption is chosen).
        min_prob: uniform mixing weight of the (severity) distribution, see :class:`Reinforce`.
        entropy_coef: entropy bonus weight.
        description: one line for docs and ``--help``.
        levels: severity levels the adversary's action space must hold (a default action space
            is widened to them, as for a schedule; e.g. ``(1, 2, 3, 4, 5)``); ``()``: the action
            space's own. The policy chooses among every level of the action space.
        baseline: ``"mean"`` or ``"per_action"`` (:class:`~advcorrupt.policy.Reinforce`'s
            ``per_action_baseline``).

    Example:
        >>> from advcorrupt.policy.adversaries import get_adversary
        >>> get_adversary("paper").head, get_adversary("paper").reward
        ('flat', 'loss')
    """

    name: str
    head: str = "hierarchical"
    reward: str = "damage"
    band: tuple[float, float] | None = (0.5, 2.0)
    severity: str = "learned"
    min_prob: float = 0.1
    entropy_coef: float = 0.01
    description: str = ""
    levels: tuple[int, ...] = ()
    baseline: str = "mean"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty str; got {self.name!r}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}; got {self.head!r}")
        if self.reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}; got {self.reward!r}")
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}; got {self.baseline!r}")
        if self.severity not in ("learned", "uniform"):
            raise ValueError(f"severity must be 'learned' or 'uniform'; got {self.severity!r}")
        if self.head == "flat" and self.severity != "learned":
            raise ValueError("severity='uniform' needs the hierarchical head; got head='flat'")
        if self.head == "flat" and self.band is not None:
            raise ValueError(f"band applies to the hierarchical head only; got band={self.band} with head='flat'")
        object.__setattr__(self, "band", check_band(self.band, None))
        levels = tuple(self.levels)
        ints = all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in levels)
        if not ints or list(levels) != sorted(set(levels)):
            raise ValueError(f"levels must be rising ints >= 1 (or () for the action space's); got {self.levels!r}")
        object.__setattr__(self, "levels", levels)

    def make_head(self, num_corruptions: int, num_severities: int) -> FlatHead | HierarchicalHead:
        """The action distribution for a ``K x S`` action space (``hi`` of the band is capped at ``K``)."""
        if self.head == "flat":
            return FlatHead(num_corruptions * num_severities, min_prob=self.min_prob)
        band = None if self.band is None else (self.band[0], min(self.band[1], float(num_corruptions)))
        return HierarchicalHead(num_corruptions, num_severities, band=band, min_prob=self.min_prob,
                                learn_severity=self.severity == "learned")

    @property
    def needs_after(self) -> bool:
        """Whether the reward needs the per-sample losses recomputed after the detector's update."""
        return self.reward == "progress"

    def rewards(
        self, corrupted_loss: Tensor, clean_loss: Tensor | None,
        after: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """Per-sample rewards from the detector's per-sample losses.

        Args:
            corrupted_loss: loss on each corrupted image (before the detector's update).
            clean_loss: loss on the same clean images ("damage" and "progress").
            after: ``(corrupted_loss_after, clean_loss_after)``, the same losses recomputed after
                the detector's update ("progress" only).

        Shape:
            every loss: (B,). Output: (B,).
        """
        if self.reward == "loss":
            return corrupted_loss
        damage = corrupted_loss - _per_sample(clean_loss, corrupted_loss, "clean_loss", self.name)
        if self.reward == "damage":
            return damage
        if after is None:
            raise ValueError(
                f"adversary {self.name!r} is rewarded with progress = damage before the detector's update - damage "
                "after it and needs the losses recomputed after the update: update_policy(loss_corrupted, "
                "clean_loss=loss_clean, corrupted_loss_after=..., clean_loss_after=...)"
            )
        corrupted_after = _per_sample(after[0], corrupted_loss, "corrupted_loss_after", self.name)
        clean_after = _per_sample(after[1], corrupted_loss, "clean_loss_after", self.name)
        return damage - (corrupted_after - clean_after)


def _per_sample(loss: Tensor | None, like: Tensor, name: str, adversary: str) -> Tensor:
    """``loss`` checked to be a (B,) tensor like ``like``, on its device and dtype."""
    if loss is None:
        raise ValueError(
            f"adversary {adversary!r} needs {name} (per-sample losses, reduction='none'): pass it to "
            f"update_policy(loss_corrupted, clean_loss=loss_clean, ...)"
        )
    if not isinstance(loss, Tensor) or loss.shape != like.shape:
        got = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise ValueError(f"{name} must be a (B,) = {tuple(like.shape)} tensor of per-sample losses; got {got}")
    return loss.detach().to(like.device, like.dtype)


_ADVERSARIES: dict[str, Adversary] = {}
# Chosen by measurement over seeds (docs/results.md); the paper's adversary stays available as "paper".
DEFAULT_ADVERSARY = "banded"


def register_adversary(adversary: Adversary) -> Adversary:
    """Add a named adversary (a name registered twice is replaced, with a warning)."""
    if not isinstance(adversary, Adversary):
        raise TypeError(f"adversary must be an Adversary; got {type(adversary).__name__}")
    if adversary.name in _ADVERSARIES:
        warnings.warn(f"adversary {adversary.name!r} is already registered; replacing it", stacklevel=2)
    _ADVERSARIES[adversary.name] = adversary
    return adversary


def list_adversaries() -> list[str]:
    """Names of the registered adversaries."""
    return list(_ADVERSARIES)


def is_adversary(strategy: object) -> bool:
    """Whether ``strategy`` names a learned adversary (``"learned"`` or a registered name)."""
    return isinstance(strategy, str) and (strategy == "learned" or strategy in _ADVERSARIES)


def needs_losses_after(strategy: object) -> bool:
    """Whether ``strategy`` names an adversary whose reward needs the losses after the detector's update."""
    return is_adversary(strategy) and get_adversary(strategy).needs_after  # type: ignore[arg-type]


def get_adversary(name: str) -> Adversary:
    """The adversary called ``name`` (``"learned"`` is the default one); KeyError lists the names."""
    if name == "learned":
        name = DEFAULT_ADVERSARY
    try:
        return _ADVERSARIES[name]
    except KeyError:
        raise KeyError(f"unknown adversary {name!r}; registered: learned (= {DEFAULT_ADVERSARY}), "
                       f"{', '.join(_ADVERSARIES)}") from None


for _adv in (
    Adversary("paper", head="flat", reward="loss", band=None,
              description="the paper as written: flat softmax, reward = corrupted loss (version 0.1's learned)"),
    Adversary("damage", head="flat", reward="damage", band=None,
              description="flat softmax, reward = loss(corrupted) - loss(clean) of the same image"),
    Adversary("hierarchical", head="hierarchical", reward="loss", band=None,
              description="corruption then severity, unconstrained, reward = corrupted loss"),
    Adversary("banded", head="hierarchical", reward="damage", band=(0.5, 2.0),
              description="corruption kept in [0.5/K, 2/K], severity adversarial, reward = damage"),
    Adversary("banded_loss", head="hierarchical", reward="loss", band=(0.5, 2.0),
              description="corruption kept in [0.5/K, 2/K], severity adversarial, reward = corrupted loss"),
    Adversary("severity", head="hierarchical", reward="damage", band=(1.0, 1.0),
              description="corruption uniform, only the severity is chosen adversarially, reward = damage"),
    Adversary("tilt", head="hierarchical", reward="damage", band=(0.5, 2.0), severity="uniform",
              description="corruption kept in [0.5/K, 2/K], severity uniform, reward = damage"),
    Adversary("learnable", head="hierarchical", reward="progress", band=(0.5, 2.0),
              description="corruption kept in [0.5/K, 2/K], severity adversarial, reward = damage the update removed"),
    Adversary("banded5", head="hierarchical", reward="damage", band=(0.5, 2.0), levels=(1, 2, 3, 4, 5),
              description="banded over severity levels 1-5 (the action space widened, as random@1-5's)"),
    Adversary("relative", head="hierarchical", reward="damage", band=(0.5, 2.0), baseline="per_action",
              description="banded, but each action's damage is paid relative to its own average: only per-image choice pays"),
    Adversary("relative5", head="hierarchical", reward="damage", band=(0.5, 2.0), baseline="per_action",
              levels=(1, 2, 3, 4, 5), description="relative over severity levels 1-5 (random@1-5 plus per-image choice)"),
):
    register_adversary(_adv)
