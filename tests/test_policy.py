"""Behaviour of the adversary: policy network, REINFORCE, strategies, action-space grouping."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import pytest
import torch
from torch import Tensor, nn

from advcorrupt.corruptions import _registry, available, corrupt
from advcorrupt.policy import (
    ActionSpace,
    FixedStrategy,
    LearnedStrategy,
    NoneStrategy,
    PolicyNetwork,
    RandomStrategy,
    Reinforce,
    make_strategy,
    sample_categorical,
)
from _toy import corruption_mass, mass_after_training, scenes, toy_corruptions, toy_trainer

TOY = ("toy_up", "toy_down", "toy_same_a", "toy_same_b")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toy_space() -> Iterator[ActionSpace]:
    """Four toy corruptions: shift up, shift down, and two that change nothing (removed afterwards)."""
    with toy_corruptions(TOY) as space:
        yield space


# ----------------------------------------------------------------------------- network
def test_policy_network_is_small_uniform_at_start_and_accepts_any_size() -> None:
    net = PolicyNetwork(1, 30)
    assert sum(p.numel() for p in net.parameters()) < 1_000_000
    conv_blocks = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(conv_blocks) == 5 and sum(isinstance(m, nn.Linear) for m in net.modules()) == 1
    for size in [(17, 40), (64, 64), (256, 256)]:
        logits = net(torch.rand(3, 1, *size))
        assert logits.shape == (3, 30)
        assert torch.allclose(logits.softmax(-1), torch.full((3, 30), 1 / 30))
    with pytest.raises(ValueError, match="x must have shape"):
        net(torch.rand(2, 3, 32, 32))


def test_policy_network_runs_in_float32_under_autocast() -> None:
    net = PolicyNetwork(1, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(torch.rand(2, 1, 64, 64))
    assert out.dtype == torch.float32


# ----------------------------------------------------------------------------- sampling / reinforce
def test_sample_categorical_matches_probabilities() -> None:
    probs = torch.tensor([0.1, 0.6, 0.0, 0.3]).expand(20000, -1)
    g = torch.Generator().manual_seed(0)
    freq = torch.bincount(sample_categorical(probs, generator=g), minlength=4).float() / 20000
    assert freq[2] == 0
    assert torch.allclose(freq, probs[0], atol=0.015)


def test_probability_floor_keeps_every_action_explorable() -> None:
    torch.manual_seed(0)
    updater = Reinforce(PolicyNetwork(1, 5, input_size=32), lr=0.5, min_prob=0.1, entropy_coef=0.0)
    x = torch.rand(16, 1, 32, 32)
    for _ in range(30):  # reward action 0 only: the policy concentrates on it
        sample = updater.act(x)
        updater.update(sample, (sample.actions == 0).float())
    p = updater.probabilities(x)
    assert p[:, 0].min() > 0.8
    assert p.min() >= 0.1 / 5 - 1e-6
    assert torch.allclose(p.sum(-1), torch.ones(16))


def test_reinforce_ignores_non_finite_rewards_without_nan_in_weights() -> None:
    updater = Reinforce(PolicyNetwork(1, 4, input_size=32), lr=0.1)
    x = torch.rand(8, 1, 32, 32)
    sample = updater.act(x)
    rewards = torch.rand(8)
    rewards[::2] = float("nan")
    stats = updater.update(sample, rewards)
    assert all(torch.isfinite(p).all() for p in updater.policy.parameters())
    assert torch.isfinite(stats["baseline"]) and torch.isfinite(updater.baseline)


def test_reinforce_state_dict_round_trip_restores_policy_and_baseline() -> None:
    a = Reinforce(PolicyNetwork(1, 4, input_size=32), lr=0.1, momentum=0.9)
    x = torch.rand(8, 1, 32, 32)
    for _ in range(3):
        s = a.act(x)
        a.update(s, torch.rand(8))
    b = Reinforce(PolicyNetwork(1, 4, input_size=32), lr=0.1, momentum=0.9)
    b.load_state_dict(a.state_dict())
    assert torch.allclose(a.probabilities(x), b.probabilities(x))
    assert torch.equal(a.baseline, b.baseline) and b.num_updates == 3
    assert b.optimizer.state_dict()["state"].keys() == a.optimizer.state_dict()["state"].keys()


def _two_kinds_of_image(per_action: bool, reward_of: Callable[[Tensor, Tensor], Tensor], *, steps: int = 60, seed: int = 0) -> Tensor:
    """Train a two-action policy on dark (kind 0) and bright (kind 1) images; return p(a | x) per kind,
    (2, 2): row = image kind, column = action."""
    torch.manual_seed(seed)
    updater = Reinforce(PolicyNetwork(1, 2, input_size=32), lr=0.5, entropy_coef=0.0, per_action_baseline=per_action)
    kind = torch.arange(16) % 2
    x = kind.float()[:, None, None, None].expand(16, 1, 32, 32) + 0.05 * torch.rand(16, 1, 32, 32)
    for _ in range(steps):
        sample = updater.act(x)
        updater.update(sample, reward_of(sample.actions, kind))
    p = updater.probabilities(x)
    return torch.stack([p[kind == 0].mean(0), p[kind == 1].mean(0)])


@pytest.mark.parametrize("seed", [0, 1])
def test_per_action_baseline_pays_only_the_per_image_choice(seed: int) -> None:
    """Action 0 pays 2 more on every image; on top, each kind of image has its own better action. A
    global baseline chases the action that is better on average; per-action baselines learn each
    image's own action."""
    def reward(actions: Tensor, kind: Tensor) -> Tensor:
        return (actions == kind).float() + 2.0 * (actions == 0).float()

    glob = _two_kinds_of_image(False, reward, seed=seed)
    per = _two_kinds_of_image(True, reward, seed=seed)
    assert glob[1, 0] > 0.8, glob  # the bright images get action 0 too
    assert per[0, 0] > 0.8 and per[1, 1] > 0.8, per


def test_per_action_baseline_leaves_an_image_blind_preference_unlearned() -> None:
    """Action 0 pays more on every image and nothing depends on the image: per-action baselines
    see no advantage and keep the draw near uniform."""
    per = _two_kinds_of_image(True, lambda actions, kind: 2.0 * (actions == 0).float())
    assert (per - 0.5).abs().max() < 0.1, per


def test_per_action_baselines_round_trip_and_refuse_a_mismatched_state() -> None:
    a = Reinforce(PolicyNetwork(1, 4, input_size=32), lr=0.1, per_action_baseline=True)
    x = torch.rand(8, 1, 32, 32)
    for _ in range(3):
        s = a.act(x)
        a.update(s, s.actions.float())  # action k earns k: the per-action means are the actions
    state = a.state_dict()
    drawn = state["action_count"] > 0
    assert drawn.any() and torch.allclose(state["action_baseline"][drawn], torch.arange(4.0)[drawn])
    b = Reinforce(PolicyNetwork(1, 4, input_size=32), lr=0.1, per_action_baseline=True)
    b.load_state_dict(state)
    assert torch.equal(b.state_dict()["action_baseline"], state["action_baseline"])
    with pytest.raises(ValueError, match="per_action_baseline=True; this updater has per_action_baseline=False"):
        Reinforce(PolicyNetwork(1, 4, input_size=32), lr=0.1).load_state_dict(state)
    with pytest.raises(TypeError, match="per_action_baseline must be a bool; got str"):
        Reinforce(PolicyNetwork(1, 4, input_size=32), per_action_baseline="yes")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the claims
def test_paper_policy_finds_the_harmful_corruption(toy_space: ActionSpace) -> None:
    trainer, g = toy_trainer(toy_space, "paper")
    bright = torch.ones(16, dtype=torch.bool)
    x0, _ = scenes(bright, g)
    assert torch.allclose(corruption_mass(trainer, x0), torch.full((16, 4), 0.25))
    for _ in range(150):
        trainer.step(*scenes(bright, g))
    mass = corruption_mass(trainer, x0).mean(0)
    assert mass[TOY.index("toy_up")] > 0.5, mass


def test_random_strategy_stays_uniform(toy_space: ActionSpace) -> None:
    trainer, g = toy_trainer(toy_space, "random")
    bright = torch.ones(16, dtype=torch.bool)
    counts = torch.zeros(toy_space.size)
    for _ in range(40):
        x, _ = scenes(bright, g)
        counts += torch.bincount(trainer.strategy.sample(x, generator=g).actions, minlength=toy_space.size)
        trainer.step(x, _)
    x, _ = scenes(bright, g)
    assert torch.allclose(trainer.policy_probabilities(x), torch.full((16, toy_space.size), 1 / toy_space.size))
    freq = counts / counts.sum()
    assert (freq - 1 / toy_space.size).abs().max() < 0.05


def test_paper_policy_chooses_per_image(toy_space: ActionSpace) -> None:
    """Bright images are hurt by shifting up, dark ones by shifting down: the policy must tell them apart."""
    bright = torch.arange(16) % 2 == 0
    mass = mass_after_training(toy_space, "paper", bright, steps=220, seed=1)
    assert mass[bright, TOY.index("toy_up")].mean() > 0.5, mass[bright].mean(0)
    assert mass[~bright, TOY.index("toy_down")].mean() > 0.5, mass[~bright].mean(0)


# ----------------------------------------------------------------------------- strategies
BUILTINS = available()[:10]
STRATEGY_NAMES = ["learned", "random", "none", "noise", "blur", "digital", *BUILTINS]


def test_every_strategy_name_is_covered() -> None:
    """A new built-in corruption or category cannot land without being a tested strategy."""
    assert len(BUILTINS) == 10
    cats = {_registry.get(n).category for n in BUILTINS}
    assert set(BUILTINS) <= set(STRATEGY_NAMES)
    assert cats - {"custom"} <= set(STRATEGY_NAMES)


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_strategy_draws_only_its_own_actions(name: str) -> None:
    space = ActionSpace(available()[:10])
    strat = make_strategy(name, space, in_channels=1)
    x = torch.rand(32, 1, 32, 32)
    probs = strat.probabilities(x)
    assert probs.shape == (32, space.size)
    if name == "none":
        assert isinstance(strat, NoneStrategy) and not strat.corrupts and probs.sum() == 0
        assert strat.sample(x).actions.numel() == 0
        return
    allowed = set(range(space.size)) if name in ("learned", "random") else set(space.actions_of(name))
    assert torch.allclose(probs.sum(-1), torch.ones(32))
    support = set(torch.nonzero(probs[0] > 0).flatten().tolist())
    assert support == allowed
    if name != "learned":
        assert isinstance(strat, FixedStrategy)
        assert torch.allclose(probs[0][list(allowed)], torch.full((len(allowed),), 1 / len(allowed)))
    else:
        assert isinstance(strat, LearnedStrategy)
    actions = strat.sample(x, generator=torch.Generator().manual_seed(0)).actions
    assert set(actions.tolist()) <= allowed


def test_random_strategy_is_uniform_over_whole_space() -> None:
    space = ActionSpace(available()[:10])
    assert isinstance(make_strategy("random", space), RandomStrategy)
    assert make_strategy("random", space).actions == tuple(range(space.size))


def test_unknown_strategy_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="strategy must be"):
        make_strategy("fog", ActionSpace(available()[:10]))
    with pytest.raises(TypeError, match="strategy must be"):
        make_strategy(3, ActionSpace(available()[:10]))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- grouping
@pytest.mark.parametrize("name", ["brightness", "contrast", "gaussian_blur", "pixelate"])
def test_masked_grouping_equals_subset_grouping_for_deterministic_corruptions(name: str) -> None:
    names = ["brightness", "contrast", "gaussian_blur", "pixelate"]
    x = torch.rand(12, 1, 24, 24)
    actions = torch.arange(12) % (len(names) * 3)
    subset = ActionSpace(names, grouping="subset").apply(x, actions)
    masked = ActionSpace(names, grouping="masked").apply(x, actions)
    assert torch.allclose(subset, masked, atol=1e-6)
    k = names.index(name)
    sel = actions // 3 == k
    expect = corrupt(x[sel], name, (actions[sel] % 3) + 1)
    assert torch.allclose(masked[sel], expect, atol=1e-6)


def test_grouping_auto_uses_subset_on_cpu_and_rejects_unknown_modes() -> None:
    space = ActionSpace(available()[:10])
    assert space.grouping == "auto" and space._resolve_grouping(torch.device("cpu")) == "subset"
    assert space._resolve_grouping(torch.device("cuda")) == "fused"
    with pytest.raises(ValueError, match="grouping must be one of"):
        ActionSpace(available()[:10], grouping="fast")


def test_sampling_entropy_is_log_k_for_uniform_strategies() -> None:
    space = ActionSpace(available()[:10])
    s = make_strategy("noise", space).sample(torch.rand(4, 1, 32, 32))
    assert s.entropy is not None
    assert torch.allclose(s.entropy, torch.full((4,), math.log(len(space.actions_of("noise")))))
