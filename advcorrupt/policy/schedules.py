"""Fixed severity schedules: the baselines a learned adversary must beat.

TrivialAugment (Müller & Hutter, ICCV 2021) and RandAugment (Cubuk et al., 2020) showed that a
well-chosen *fixed* distribution is a hard baseline for learned augmentation. These strategies are
that baseline for BALISTD's adversary: every corruption stays uniform, only the distribution over
severity levels is chosen, with no policy network and no REINFORCE.

One string names each schedule (the ``strategy`` argument everywhere, recorded as is in a run's
``config.json``); items after ``@`` are joined by ``+`` so the string is also a folder name:

* ``"random@3"``: every corruption, level 3 only; ``"random@2+3"``: levels 2 and 3;
  ``"random@1-5"``: levels 1 to 5, uniform;
* ``"random@1:10+2:10+3:80"``: level weights (normalised), here 10% / 10% / 80%;
* ``"curriculum@1-3"``: levels rising over training, level 1 for the first third of the run, then
  2, then 3; ``"curriculum@1:0+2:0.3+3:0.6"`` gives each level's start as a fraction of the run.

The action space must hold the levels a schedule draws; the trainer and ``advcorrupt train`` widen
their default action space to include them (:func:`schedule_levels`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .action_space import ActionSpace
from .reinforce import PolicySample, sample_categorical
from ._strategy import Strategy, entropy

__all__ = [
    "CurriculumStrategy",
    "LevelScheduleStrategy",
    "Schedule",
    "make_schedule",
    "parse_schedule",
    "schedule_action_space",
    "schedule_levels",
    "widen_severities",
]

_KINDS = ("random", "curriculum")
_ITEM = re.compile(r"^(\d+)(?:-(\d+))?(?::([0-9.eE+-]+))?$")


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule string.

    Attributes:
        kind: ``"random"`` (a fixed distribution over levels) or ``"curriculum"`` (one level at a
            time, rising on a fixed timetable).
        levels: the levels drawn, in the order given.
        weights: ``random``: each level's probability (sums to 1).
        starts: ``curriculum``: each level's start, as a fraction of the run in [0, 1).
    """

    kind: str
    levels: tuple[int, ...]
    weights: tuple[float, ...] = ()
    starts: tuple[float, ...] = ()


def _bad(spec: str, why: str) -> ValueError:
    return ValueError(
        f"strategy {spec!r}: {why}; schedules read e.g. 'random@3', 'random@1-5', 'random@1:10+2:10+3:80', "
        "'curriculum@1-3' or 'curriculum@1:0+2:0.3+3:0.6'"
    )


def _items(spec: str, body: str) -> list[tuple[list[int], float | None]]:
    """``"1:10+2-3"`` -> ``[([1], 10.0), ([2, 3], None)]``."""
    out = []
    for item in body.split("+"):
        m = _ITEM.match(item.strip())
        if m is None:
            raise _bad(spec, f"cannot read the item {item!r}")
        lo, hi = int(m[1]), int(m[2] or m[1])
        if hi < lo:
            raise _bad(spec, f"the range {item!r} must rise")
        try:
            value = None if m[3] is None else float(m[3])
        except ValueError:
            raise _bad(spec, f"cannot read the number in {item!r}") from None
        if value is not None and hi != lo:
            raise _bad(spec, f"a weight or start belongs to one level, not the range {item!r}")
        out.append((list(range(lo, hi + 1)), value))
    return out


def parse_schedule(spec: object) -> Schedule | None:
    """The :class:`Schedule` a strategy string names, or ``None`` if it names no schedule.

    Raises:
        ValueError: a schedule string that cannot be read, repeats a level, has weights that are
            negative or all zero, or a curriculum whose levels or starts do not rise or whose
            first start is not 0. The message names the string and shows the grammar.

    Example:
        >>> parse_schedule("random@1:10+2:10+3:80").weights
        (0.1, 0.1, 0.8)
        >>> parse_schedule("curriculum@1-3").starts
        (0.0, 0.3333333333333333, 0.6666666666666666)
        >>> parse_schedule("banded") is None
        True
    """
    if not isinstance(spec, str) or "@" not in spec:
        return None
    kind, _, body = spec.partition("@")
    if kind not in _KINDS:
        return None
    items = _items(spec, body)
    levels = [lv for lvs, _ in items for lv in lvs]
    if len(set(levels)) != len(levels) or min(levels) < 1:
        raise _bad(spec, f"levels must be distinct and >= 1; got {levels}")
    values = [v for _, v in items]
    given = [v is not None for v in values]
    if any(given) and not all(given):
        raise _bad(spec, "give a number for every level or for none")
    if kind == "random":
        return Schedule("random", tuple(levels), weights=_weights(spec, values if all(given) else None, len(levels)))
    return Schedule("curriculum", tuple(levels), starts=_starts(spec, levels, values if all(given) else None))


def _weights(spec: str, values: Sequence[float | None] | None, n: int) -> tuple[float, ...]:
    if values is None:
        return tuple(1.0 / n for _ in range(n))
    w = [float(v) for v in values]  # type: ignore[arg-type]
    if any(not math.isfinite(v) or v < 0 for v in w) or sum(w) <= 0:
        raise _bad(spec, f"level weights must be finite, >= 0 and not all zero; got {w}")
    return _normalised(w)


def _normalised(w: Sequence[float]) -> tuple[float, ...]:
    """``w / sum(w)``; weights whose sum overflows (e.g. ``1e308`` twice) are scaled down first."""
    if not math.isfinite(sum(w)):
        w = [v / max(w) for v in w]
    return tuple(v / sum(w) for v in w)


def _starts(spec: str, levels: list[int], values: Sequence[float | None] | None) -> tuple[float, ...]:
    if any(b <= a for a, b in zip(levels, levels[1:])):
        raise _bad(spec, f"a curriculum's levels must rise; got {levels}")
    if values is None:
        return tuple(i / len(levels) for i in range(len(levels)))
    s = [float(v) for v in values]  # type: ignore[arg-type]
    if s[0] != 0 or any(b <= a for a, b in zip(s, s[1:])) or not all(0 <= v < 1 for v in s):
        raise _bad(spec, f"a curriculum's starts must begin at 0, rise, and stay below 1 (the run's end); got {s}")
    return tuple(s)


def schedule_levels(strategy: object) -> tuple[int, ...]:
    """The levels a strategy string's schedule draws, or its adversary's action space must hold
    (:attr:`~advcorrupt.policy.adversaries.Adversary.levels`); ``()`` for any other strategy.

    Example:
        >>> schedule_levels("random@1-5"), schedule_levels("banded5"), schedule_levels("random")
        ((1, 2, 3, 4, 5), (1, 2, 3, 4, 5), ())
    """
    from .adversaries import get_adversary, is_adversary

    schedule = parse_schedule(strategy)
    if schedule is not None:
        return schedule.levels
    if is_adversary(strategy):
        return get_adversary(strategy).levels  # type: ignore[arg-type]
    return ()


def widen_severities(severities: Sequence[int], strategy: object) -> tuple[int, ...]:
    """``severities`` plus the levels ``strategy``'s schedule draws, sorted (unchanged otherwise)."""
    extra = schedule_levels(strategy)
    if not extra:
        return tuple(severities)
    return tuple(sorted({*map(int, severities), *extra}))


def schedule_action_space(
    strategy: object, corruptions: Sequence[str] | None = None, severities: Sequence[int] = (1, 2, 3),
) -> ActionSpace:
    """``ActionSpace(corruptions, severities)`` widened to the levels ``strategy``'s schedule draws.

    Raises:
        ValueError: a level outside a corruption's table (the message names the strategy).

    Example:
        >>> schedule_action_space("random@1-5").severities
        (1, 2, 3, 4, 5)
    """
    levels = widen_severities(severities, strategy)
    try:
        return ActionSpace(corruptions, severities=levels)
    except ValueError as e:
        if levels == tuple(severities):
            raise
        raise ValueError(f"strategy {strategy!r} draws levels {list(schedule_levels(strategy))}: {e}") from None


def _level_row(action_space: ActionSpace, levels: Sequence[int], weights: Sequence[float], name: str) -> Tensor:
    """(size,) probabilities: corruptions uniform, level ``levels[i]`` with weight ``weights[i]``."""
    missing = [lv for lv in levels if lv not in action_space.severities]
    if missing:
        raise ValueError(
            f"strategy {name!r} draws levels {missing} that action_space does not hold (its severities are "
            f"{list(action_space.severities)}); build it with ActionSpace(severities={sorted({*action_space.severities, *levels})})"
        )
    per_level = torch.zeros(action_space.num_severities, dtype=torch.float64)
    for lv, w in zip(levels, weights):
        per_level[action_space.severities.index(lv)] = w
    row = per_level.repeat(action_space.num_corruptions) / action_space.num_corruptions
    return row.float()


class _RowStrategy(Strategy):
    """Draws from fixed probability rows, cached once per device."""

    def __init__(self, action_space: ActionSpace, rows: Sequence[Tensor], *, name: str) -> None:
        super().__init__(action_space)
        self.name = name
        self._cpu_rows = list(rows)
        self._rows: dict[tuple[int, torch.device], Tensor] = {}

    def _row(self, index: int, device: torch.device) -> Tensor:
        row = self._rows.get((index, device))
        if row is None:
            row = self._rows[(index, device)] = self._cpu_rows[index].to(device)
        return row


class LevelScheduleStrategy(_RowStrategy):
    """Uniform over corruptions, a fixed distribution over severity levels (``"random@..."``).

    Args:
        action_space: the action grid; it must hold every level in ``levels``.
        levels: the levels drawn.
        weights: each level's weight (normalised; default: uniform). Same length as ``levels``,
            finite, >= 0, not all zero.
        name: the strategy string (for checkpoints and logs).

    Example:
        >>> import torch
        >>> from advcorrupt.policy import ActionSpace, LevelScheduleStrategy
        >>> s = LevelScheduleStrategy(ActionSpace(severities=(1, 2, 3)), levels=(3,))
        >>> p = s.probabilities(torch.rand(2, 1, 16, 16))
        >>> float(p[0, 2::3].sum())  # every action at level 3
        1.0
    """

    def __init__(
        self, action_space: ActionSpace, levels: Sequence[int], weights: Sequence[float] | None = None, *,
        name: str | None = None,
    ) -> None:
        levels = tuple(int(lv) for lv in levels)
        label = name or "random@" + "+".join(map(str, levels))
        if not levels or len(set(levels)) != len(levels):
            raise ValueError(f"levels must be distinct levels, at least one; got {list(levels)}")
        if weights is None:
            weights = [1.0] * len(levels)
        if len(weights) != len(levels):
            raise ValueError(f"weights must give one weight per level ({len(levels)}); got {len(weights)}: {list(weights)}")
        w = [float(v) for v in weights]
        if any(not math.isfinite(v) or v < 0 for v in w) or sum(w) <= 0:
            raise ValueError(f"weights must be finite, >= 0 and not all zero; got {w}")
        weights = _normalised(w)
        super().__init__(action_space, [_level_row(action_space, levels, weights, label)], name=label)
        self.levels, self.weights = levels, weights

    def probabilities(self, images: Tensor) -> Tensor:
        return self._row(0, images.device).expand(images.shape[0], -1)


class CurriculumStrategy(_RowStrategy):
    """Levels rising on a fixed timetable (``"curriculum@..."``): one level at a time, corruptions uniform.

    The strategy counts its own :meth:`sample` calls (one per training step; saved in
    :meth:`state_dict`, so a resumed run continues the timetable). Level ``levels[i]`` is drawn from
    step ``round(starts[i] * total_steps)`` on.

    Args:
        action_space: the action grid; it must hold every level in ``levels``.
        levels: the levels, rising.
        starts: each level's start as a fraction of the run: begins at 0, rises, below 1.
        total_steps: the run's length in training steps; every level must get at least one step.
        name: the strategy string (for checkpoints and logs).

    Example:
        >>> import torch
        >>> from advcorrupt.policy import ActionSpace, CurriculumStrategy
        >>> s = CurriculumStrategy(ActionSpace(), levels=(1, 2, 3), starts=(0, 0.5, 0.75), total_steps=4)
        >>> [s.level_at(t) for t in range(5)]
        [1, 1, 2, 3, 3]
    """

    def __init__(
        self, action_space: ActionSpace, levels: Sequence[int], starts: Sequence[float], *, total_steps: int,
        name: str | None = None,
    ) -> None:
        levels, starts = tuple(int(lv) for lv in levels), tuple(float(s) for s in starts)
        label = name or "curriculum@" + "+".join(f"{lv}:{s:g}" for lv, s in zip(levels, starts))
        if len(starts) != len(levels) or not levels:
            raise ValueError(f"starts must give one start per level ({len(levels)}); got {list(starts)}")
        if any(b <= a for a, b in zip(levels, levels[1:])):
            raise ValueError(f"levels must rise; got {list(levels)}")
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"total_steps must be a positive int (the run's training steps); got {total_steps!r}")
        steps = [round(s * total_steps) for s in starts]
        if starts[0] != 0 or any(b <= a for a, b in zip(steps, steps[1:])) or steps[-1] >= total_steps:
            raise ValueError(
                f"strategy {label!r}: the timetable must start at step 0 and give every level at least one of the "
                f"run's {total_steps} steps; its levels start at steps {steps}"
            )
        rows = [_level_row(action_space, [lv], [1.0], label) for lv in levels]
        super().__init__(action_space, rows, name=label)
        self.levels, self.starts, self.total_steps, self.milestones = levels, starts, total_steps, tuple(steps)
        self.step = 0

    def _stage(self, step: int) -> int:
        return sum(step >= m for m in self.milestones) - 1

    def level_at(self, step: int) -> int:
        """The level drawn at training step ``step`` (0-based)."""
        return self.levels[self._stage(step)]

    def probabilities(self, images: Tensor) -> Tensor:
        return self._row(self._stage(self.step), images.device).expand(images.shape[0], -1)

    def sample(self, images: Tensor, *, generator: torch.Generator | None = None) -> PolicySample:
        probs = self.probabilities(images)
        self.step += 1
        return PolicySample(actions=sample_categorical(probs, generator=generator), probs=probs, entropy=entropy(probs))

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != {"step"}:
            raise ValueError(f"strategy {self.name!r} expects state with the key 'step'; got keys {sorted(state)}")
        self.step = int(state["step"])


def make_schedule(
    spec: str, action_space: ActionSpace, *, total_steps: int | None = None,
) -> LevelScheduleStrategy | CurriculumStrategy:
    """Build the strategy a schedule string names (see the module docstring)."""
    schedule = parse_schedule(spec)
    if schedule is None:
        raise ValueError(f"strategy {spec!r} names no schedule")
    if schedule.kind == "random":
        return LevelScheduleStrategy(action_space, schedule.levels, schedule.weights, name=spec)
    if total_steps is None:
        raise ValueError(
            f"strategy {spec!r} is a curriculum: it needs total_steps= (the run's training steps, e.g. "
            "epochs * len(loader)) to place its timetable"
        )
    return CurriculumStrategy(action_space, schedule.levels, schedule.starts, total_steps=total_steps, name=spec)
