"""Fixed severity schedules (issue 20): ``"random@..."`` and ``"curriculum@..."`` strategies.

Parsing and its refusals, the probabilities and draws of :class:`LevelScheduleStrategy` and
:class:`CurriculumStrategy`, the trainer's widened action space and curriculum resume, and
``advcorrupt train --strategy <schedule>`` through the CLI.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from advcorrupt.cli import main
from advcorrupt.models import list_models, register_model
from advcorrupt.policy import ActionSpace
from advcorrupt.policy.schedules import (
    CurriculumStrategy,
    LevelScheduleStrategy,
    Schedule,
    make_schedule,
    parse_schedule,
    schedule_action_space,
    schedule_levels,
    widen_severities,
)
from advcorrupt.policy.strategies import make_strategy
from advcorrupt.trainer import AdversarialCorruptionTrainer

SPACE = ActionSpace(["gaussian_noise", "brightness", "contrast"], severities=(1, 2, 3))


def _levels(space: ActionSpace, actions: torch.Tensor) -> torch.Tensor:
    return space.decode(actions)[1]


# ----------------------------------------------------------------------------------- parse_schedule
@pytest.mark.parametrize(
    "spec, expected",
    [
        ("random@3", Schedule("random", (3,), weights=(1.0,))),
        ("random@2+3", Schedule("random", (2, 3), weights=(0.5, 0.5))),
        ("random@1-5", Schedule("random", (1, 2, 3, 4, 5), weights=(0.2,) * 5)),
        ("random@1:10+2:10+3:80", Schedule("random", (1, 2, 3), weights=(0.1, 0.1, 0.8))),
        ("random@1:1+2:3", Schedule("random", (1, 2), weights=(0.25, 0.75))),
        ("curriculum@1-3", Schedule("curriculum", (1, 2, 3), starts=(0.0, 1 / 3, 2 / 3))),
        ("curriculum@1:0+2:0.3+3:0.6", Schedule("curriculum", (1, 2, 3), starts=(0.0, 0.3, 0.6))),
        ("curriculum@2+4", Schedule("curriculum", (2, 4), starts=(0.0, 0.5))),
    ],
)
def test_parse_schedule_reads_every_form(spec: str, expected: Schedule) -> None:
    got = parse_schedule(spec)
    assert got is not None
    assert (got.kind, got.levels) == (expected.kind, expected.levels)
    assert got.weights == pytest.approx(expected.weights) and len(got.weights) == len(expected.weights)
    assert got.starts == pytest.approx(expected.starts) and len(got.starts) == len(expected.starts)
    if got.kind == "random":
        assert sum(got.weights) == pytest.approx(1.0)


def test_weights_whose_sum_overflows_are_still_normalised() -> None:
    got = parse_schedule("random@1:1e308+2:1e308")
    assert got is not None and got.weights == (0.5, 0.5)
    assert LevelScheduleStrategy(SPACE, (1, 2), (1e308, 1e308)).weights == (0.5, 0.5)


@pytest.mark.parametrize("spec", ["random", "learned", "banded", "gaussian_noise", "noise", "other@3", 3, None])
def test_parse_schedule_returns_none_for_strings_that_name_no_schedule(spec: object) -> None:
    assert parse_schedule(spec) is None
    assert schedule_levels(spec) == ()


@pytest.mark.parametrize(
    "spec, why",
    [
        ("random@", r"cannot read the item ''"),
        ("random@three", r"cannot read the item 'three'"),
        ("random@1:nan+2:1", r"cannot read the item '1:nan'"),
        ("random@1:1.2.3", r"cannot read the number in '1:1.2.3'"),
        ("random@1+1", r"levels must be distinct and >= 1; got \[1, 1\]"),
        ("random@1-3+2", r"levels must be distinct and >= 1; got \[1, 2, 3, 2\]"),
        ("random@0+1", r"levels must be distinct and >= 1; got \[0, 1\]"),
        ("random@1:-1+2:2", r"level weights must be finite, >= 0 and not all zero; got \[-1.0, 2.0\]"),
        ("random@1:0+2:0", r"level weights must be finite, >= 0 and not all zero; got \[0.0, 0.0\]"),
        ("random@1:1e999+2:1", r"level weights must be finite, >= 0 and not all zero; got \[inf, 1.0\]"),
        ("random@1:10+2", r"give a number for every level or for none"),
        ("curriculum@1:0+2", r"give a number for every level or for none"),
        ("random@3-1", r"the range '3-1' must rise"),
        ("random@1-3:5", r"a weight or start belongs to one level, not the range '1-3:5'"),
        ("curriculum@3+1", r"a curriculum's levels must rise; got \[3, 1\]"),
        ("curriculum@1:0.1+2:0.5", r"starts must begin at 0, rise, and stay below 1"),
        ("curriculum@1:0+2:0.5+3:0.4", r"starts must begin at 0, rise, and stay below 1"),
        ("curriculum@1:0+2:0.5+3:0.5", r"starts must begin at 0, rise, and stay below 1"),
        ("curriculum@1:0+2:1", r"starts must begin at 0, rise, and stay below 1 \(the run's end\); got \[0.0, 1.0\]"),
    ],
)
def test_parse_schedule_refuses_bad_strings_naming_them_and_the_grammar(spec: str, why: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_schedule(spec)
    message = str(info.value)
    assert message.startswith(f"strategy {spec!r}: "), message
    assert re.search(why, message), message
    assert "'random@1:10+2:10+3:80'" in message and "'curriculum@1-3'" in message  # the grammar


def test_schedule_levels_and_widening() -> None:
    assert schedule_levels("random@1:10+2:10+3:80") == (1, 2, 3)
    assert schedule_levels("curriculum@2+4") == (2, 4)
    assert widen_severities((1, 2, 3), "random@1-5") == (1, 2, 3, 4, 5)
    assert widen_severities((1, 2), "random@3") == (1, 2, 3)
    assert widen_severities((3, 1), "random") == (3, 1)  # unchanged for other strategies
    assert schedule_action_space("random@2+4", ["gaussian_noise"], (1,)).severities == (1, 2, 4)
    assert schedule_action_space("random@3").severities == (1, 2, 3)


def test_schedule_action_space_names_the_strategy_when_a_level_is_outside_a_table() -> None:
    with pytest.raises(ValueError, match=r"strategy 'random@1-7' draws levels \[1, 2, 3, 4, 5, 6, 7\]: "):
        schedule_action_space("random@1-7")


# ----------------------------------------------------------------------------- LevelScheduleStrategy
def test_level_schedule_probabilities_are_the_weights_per_level_uniform_over_corruptions() -> None:
    space = ActionSpace(["gaussian_noise", "brightness", "contrast", "pixelate"], severities=(1, 2, 3, 4, 5))
    strategy = make_strategy("random@1:10+2:10+3:80", space)
    assert isinstance(strategy, LevelScheduleStrategy) and strategy.name == "random@1:10+2:10+3:80"
    images = torch.rand(3, 1, 8, 8)
    probs = strategy.probabilities(images)
    assert probs.shape == (3, space.size) and probs.dtype == torch.float32 and probs.device == images.device
    grid = probs.view(3, space.num_corruptions, space.num_severities)  # (B, corruption, level)
    expected = torch.tensor([0.1, 0.1, 0.8, 0.0, 0.0]) / space.num_corruptions
    torch.testing.assert_close(grid, expected.expand(3, space.num_corruptions, -1))
    assert float(probs.sum(1).min()) == pytest.approx(1.0)
    assert (probs[:, 3::5] == 0).all() and (probs[:, 4::5] == 0).all()  # levels 4 and 5: never


def test_level_schedule_probabilities_follow_the_images_device() -> None:
    strategy = LevelScheduleStrategy(SPACE, (3,))
    probs = strategy.probabilities(torch.empty(2, 1, 4, 4, device="meta"))
    assert probs.device.type == "meta" and probs.shape == (2, SPACE.size)
    assert strategy.probabilities(torch.rand(2, 1, 4, 4)).device.type == "cpu"


@pytest.mark.gpu
def test_level_schedule_probabilities_and_draws_stay_on_cuda() -> None:
    strategy = LevelScheduleStrategy(SPACE, (2, 3), (1, 3))
    images = torch.rand(64, 1, 4, 4, device="cuda")
    sample = strategy.sample(images, generator=torch.Generator(device="cuda").manual_seed(0))
    assert sample.probs.device.type == "cuda" and sample.actions.device.type == "cuda"
    assert set(_levels(SPACE, sample.actions).tolist()) <= {2, 3}


def test_level_schedule_draws_match_the_weights_empirically() -> None:
    space = ActionSpace(["gaussian_noise", "brightness", "contrast", "pixelate"], severities=(1, 2, 3))
    strategy = make_strategy("random@1:10+2:30+3:60", space)
    n = 4000
    sample = strategy.sample(torch.empty(n, 1, 2, 2), generator=torch.Generator().manual_seed(0))
    corruption, level = space.decode(sample.actions)
    level_share = torch.bincount(level, minlength=4)[1:].float() / n
    corruption_share = torch.bincount(corruption, minlength=4).float() / n
    # binomial std at n = 4000 is <= 0.008: a tolerance of 0.03 catches any wrong weight
    torch.testing.assert_close(level_share, torch.tensor([0.1, 0.3, 0.6]), atol=0.03, rtol=0)
    torch.testing.assert_close(corruption_share, torch.full((4,), 0.25), atol=0.03, rtol=0)


def test_level_schedule_never_draws_a_level_outside_the_schedule() -> None:
    strategy = make_strategy("random@3", SPACE)
    sample = strategy.sample(torch.empty(2000, 1, 2, 2), generator=torch.Generator().manual_seed(1))
    assert set(_levels(SPACE, sample.actions).tolist()) == {3}
    assert not strategy.learns and strategy.corrupts


@pytest.mark.parametrize(
    "weights, message",
    [
        ((1.0,), r"weights must give one weight per level \(2\); got 1: \[1.0\]"),
        ((1.0, 2.0, 3.0), r"weights must give one weight per level \(2\); got 3"),
        ((-1.0, 2.0), r"weights must be finite, >= 0 and not all zero; got \[-1.0, 2.0\]"),
        ((0.0, 0.0), r"weights must be finite, >= 0 and not all zero"),
        ((float("nan"), 1.0), r"weights must be finite, >= 0 and not all zero"),
    ],
)
def test_level_schedule_object_api_refuses_bad_weights(weights: tuple[float, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LevelScheduleStrategy(SPACE, (1, 2), weights)


def test_level_schedule_refuses_repeated_or_no_levels() -> None:
    with pytest.raises(ValueError, match=r"levels must be distinct levels, at least one; got \[2, 2\]"):
        LevelScheduleStrategy(SPACE, (2, 2))
    with pytest.raises(ValueError, match=r"got \[\]"):
        LevelScheduleStrategy(SPACE, ())


def test_a_level_the_action_space_lacks_is_refused_naming_the_strategy_and_the_fix() -> None:
    with pytest.raises(ValueError) as info:
        make_strategy("random@1-5", SPACE)
    message = str(info.value)
    assert "strategy 'random@1-5' draws levels [4, 5]" in message
    assert "its severities are [1, 2, 3]" in message
    assert "ActionSpace(severities=[1, 2, 3, 4, 5])" in message
    with pytest.raises(ValueError, match=r"strategy 'curriculum@2\+4' draws levels \[4\]"):
        make_strategy("curriculum@2+4", SPACE, total_steps=10)


# -------------------------------------------------------------------------------- CurriculumStrategy
def test_curriculum_level_at_follows_the_timetable_over_a_run() -> None:
    strategy = make_strategy("curriculum@1-3", SPACE, total_steps=9)
    assert isinstance(strategy, CurriculumStrategy)
    assert strategy.milestones == (0, 3, 6)
    assert [strategy.level_at(t) for t in range(12)] == [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3, 3]
    given = make_strategy("curriculum@1:0+2:0.3+3:0.6", SPACE, total_steps=10)
    assert [given.level_at(t) for t in range(10)] == [1, 1, 1, 2, 2, 2, 3, 3, 3, 3]


def test_curriculum_sample_advances_the_step_and_draws_the_level_of_the_timetable() -> None:
    strategy = make_strategy("curriculum@1-3", SPACE, total_steps=6)
    g = torch.Generator().manual_seed(0)
    images = torch.empty(200, 1, 2, 2)
    drawn = []
    for t in range(8):
        assert strategy.step == t
        probs = strategy.probabilities(images)  # looking does not advance the timetable
        assert strategy.step == t
        sample = strategy.sample(images, generator=g)
        torch.testing.assert_close(sample.probs, probs)
        levels = set(_levels(SPACE, sample.actions).tolist())
        assert len(levels) == 1
        drawn.append(levels.pop())
        corruptions = SPACE.decode(sample.actions)[0]
        assert set(corruptions.tolist()) == {0, 1, 2}  # every corruption drawn, uniformly
    assert strategy.step == 8
    assert drawn == [1, 1, 2, 2, 3, 3, 3, 3]


def test_curriculum_state_round_trip_continues_the_timetable_exactly() -> None:
    images = torch.empty(16, 1, 2, 2)

    def draws(strategy: CurriculumStrategy, g: torch.Generator, n: int) -> list[list[int]]:
        return [strategy.sample(images, generator=g).actions.tolist() for _ in range(n)]

    g_full = torch.Generator().manual_seed(3)
    full = draws(make_strategy("curriculum@1-3", SPACE, total_steps=9), g_full, 9)  # type: ignore[arg-type]

    g = torch.Generator().manual_seed(3)
    first = make_strategy("curriculum@1-3", SPACE, total_steps=9)
    head = draws(first, g, 4)  # type: ignore[arg-type]
    state = first.state_dict()
    assert state == {"step": 4}
    resumed = make_strategy("curriculum@1-3", SPACE, total_steps=9)
    resumed.load_state_dict(state)
    assert resumed.step == 4  # type: ignore[attr-defined]
    assert head + draws(resumed, g, 5) == full  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"strategy 'curriculum@1-3' expects state with the key 'step'"):
        resumed.load_state_dict({"steps": 4})


def test_curriculum_refuses_a_timetable_that_gives_a_level_no_step() -> None:
    with pytest.raises(ValueError, match=r"strategy 'curriculum@1-3': the timetable .* at least one of the run's 2 "
                                         r"steps; its levels start at steps \[0, 1, 1\]"):
        make_strategy("curriculum@1-3", SPACE, total_steps=2)
    with pytest.raises(ValueError, match=r"of the run's 1 steps"):
        make_schedule("curriculum@1:0+2:0.5", SPACE, total_steps=1)
    make_schedule("curriculum@1:0+2:0.5", SPACE, total_steps=2)  # one step each: fine


@pytest.mark.parametrize("total_steps", [0, -3, 2.5, True])
def test_curriculum_refuses_a_total_steps_that_is_not_a_positive_int(total_steps: object) -> None:
    with pytest.raises(ValueError, match=r"total_steps must be a positive int"):
        CurriculumStrategy(SPACE, (1, 2), (0.0, 0.5), total_steps=total_steps)  # type: ignore[arg-type]


def test_curriculum_without_total_steps_is_refused_naming_total_steps() -> None:
    with pytest.raises(ValueError, match=r"strategy 'curriculum@1-3' is a curriculum: it needs total_steps="):
        make_strategy("curriculum@1-3", SPACE)


def test_curriculum_object_api_refuses_falling_levels_and_mismatched_starts() -> None:
    with pytest.raises(ValueError, match=r"levels must rise; got \[2, 1\]"):
        CurriculumStrategy(SPACE, (2, 1), (0.0, 0.5), total_steps=10)
    with pytest.raises(ValueError, match=r"starts must give one start per level \(2\)"):
        CurriculumStrategy(SPACE, (1, 2), (0.0,), total_steps=10)


# ------------------------------------------------------------------------------------------ trainer
def _model() -> tuple[nn.Module, torch.optim.Optimizer]:
    model = nn.Conv2d(1, 1, 3, padding=1)
    return model, torch.optim.SGD(model.parameters(), lr=0.01)


def _batch(b: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(b, 1, 16, 16, generator=g), (torch.rand(b, 1, 16, 16, generator=g) > 0.9).float()


def test_trainer_widens_its_default_action_space_to_the_schedules_levels() -> None:
    model, opt = _model()
    trainer = AdversarialCorruptionTrainer(model, opt, strategy="random@1-5", generator=torch.Generator().manual_seed(0))
    assert trainer.action_space.severities == (1, 2, 3, 4, 5)
    assert isinstance(trainer.strategy, LevelScheduleStrategy) and trainer.built
    stats = trainer.step(*_batch())
    assert torch.isfinite(stats["loss"]) and float(stats["baseline"]) == 0.0
    assert trainer.policy is None  # no policy network for a schedule
    assert AdversarialCorruptionTrainer(*_model(), strategy="random@3").action_space.severities == (1, 2, 3)
    assert AdversarialCorruptionTrainer(*_model(), strategy="random").action_space.severities == (1, 2, 3)


def test_trainer_refuses_an_explicit_action_space_lacking_a_schedules_level() -> None:
    model, opt = _model()
    with pytest.raises(ValueError, match=r"strategy 'random@4' draws levels \[4\] that action_space does not hold.*"
                                         r"ActionSpace\(severities=\[1, 2, 3, 4\]\)"):
        AdversarialCorruptionTrainer(model, opt, action_space=SPACE, strategy="random@4")


def test_trainer_refuses_a_curriculum_without_total_steps() -> None:
    model, opt = _model()
    with pytest.raises(ValueError, match=r"needs total_steps="):
        AdversarialCorruptionTrainer(model, opt, strategy="curriculum@1-3")


def test_trainer_curriculum_state_carries_the_step_and_a_new_trainer_continues() -> None:
    def make() -> AdversarialCorruptionTrainer:
        return AdversarialCorruptionTrainer(*_model(), strategy="curriculum@1-3", total_steps=6,
                                            generator=torch.Generator().manual_seed(0))

    images, masks = _batch(8)
    first = make()
    levels = []
    for _ in range(3):
        first.step(images, masks)
        assert first.last_actions is not None
        levels.append(set(_levels(first.action_space, first.last_actions).tolist()))
    state = first.state_dict()
    assert state["strategy"] == "curriculum@1-3" and state["strategy_state"] == {"step": 3} and state["num_steps"] == 3

    second = make()
    second.load_state_dict(state)
    assert second.strategy.step == 3 and second.num_steps == 3  # type: ignore[attr-defined]
    for _ in range(3):
        second.step(images, masks)
        assert second.last_actions is not None
        levels.append(set(_levels(second.action_space, second.last_actions).tolist()))
    assert levels == [{1}, {1}, {2}, {2}, {3}, {3}]
    with pytest.raises(ValueError, match=r"state was saved with strategy 'curriculum@1-3'"):
        AdversarialCorruptionTrainer(*_model(), strategy="random@3").load_state_dict(state)


# ---------------------------------------------------------------------------------------------- CLI
class _TinyNet(nn.Module):
    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def tiny_schedule_net(*, in_channels: int = 1) -> nn.Module:
    return _TinyNet(in_channels)


if "tiny_schedule_net" not in list_models():
    register_model(tiny_schedule_net)


def _train_args(out: Path, strategy: str) -> list[str]:
    return [
        "train", "--model", "tiny_schedule_net", "--strategy", strategy, "--corruptions", "gaussian_noise,brightness",
        "--epochs", "1", "--batch-size", "2", "--synthetic-train", "4", "--synthetic-test", "2",
        "--synthetic-size", "32", "--device", "cpu", "--out-dir", str(out), "--no-progress",
    ]


@pytest.mark.filterwarnings("ignore:.*the detector collapsed:RuntimeWarning")  # two steps of a 1-conv model
def test_cli_trains_with_a_weighted_schedule_and_records_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main([*_train_args(run, "random@1:10+2:10+3:80"), "--severities", "1,2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and summary["skipped"] == 0
    assert json.loads((run / "config.json").read_text())["strategy"] == "random@1:10+2:10+3:80"
    # the action space was widened to level 3, which the schedule draws
    actions = json.loads((run / "policy_actions.json").read_text())["actions"]
    assert actions == [f"{c}@{s}" for c in ("gaussian_noise", "brightness") for s in (1, 2, 3)]


@pytest.mark.parametrize(
    "strategy, message",
    [
        ("random@0-2", r"strategy 'random@0-2': levels must be distinct and >= 1"),
        ("curriculum@3+1", r"strategy 'curriculum@3\+1': a curriculum's levels must rise"),
        ("random@1:x", r"strategy 'random@1:x': cannot read the item '1:x'"),
    ],
)
def test_cli_refuses_a_bad_schedule_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], strategy: str, message: str
) -> None:
    run = tmp_path / "run"
    assert main(_train_args(run, strategy)) == 2
    err = capsys.readouterr().err
    assert err.startswith("advcorrupt train: error: ") and re.search(message, err), err
    assert not run.exists() or not any(run.iterdir())
