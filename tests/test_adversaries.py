"""The adversaries of issue 9: hierarchical heads, bands around uniform, damage rewards, coverage."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from advcorrupt.training import TrainConfig, WarmupCosine, fit, is_collapsed
from advcorrupt.policy import ActionSpace, make_strategy
from advcorrupt.policy.adversaries import DEFAULT_ADVERSARY, Adversary, get_adversary, list_adversaries
from advcorrupt.policy.heads import FlatHead, HierarchicalHead
from advcorrupt.trainer import AdversarialCorruptionTrainer

from _toy import corruption_mass, mass_after_training, scenes, toy_corruptions, toy_trainer

pytestmark = pytest.mark.usefixtures("one_thread")

TOY = ("adv_up", "adv_down", "adv_same_a", "adv_same_b")
K = len(TOY)


@pytest.fixture()
def toy_space() -> Iterator[ActionSpace]:
    """Shift up, shift down and two identities; on bright images only shifting up hurts."""
    with toy_corruptions(TOY) as space:
        yield space


# ----------------------------------------------------------------------------- heads
def test_hierarchical_head_is_a_corruption_then_a_severity() -> None:
    head = HierarchicalHead(5, 3, band=None, min_prob=0.0)
    logits = torch.randn(7, head.num_logits)
    joint = head.log_probs(logits).exp()
    assert joint.shape == (7, 15) and torch.allclose(joint.sum(-1), torch.ones(7))
    pk = torch.softmax(logits[:, :5], -1)
    ps = torch.softmax(logits[:, 5:].view(7, 5, 3), -1)
    assert torch.allclose(joint.view(7, 5, 3), pk[:, :, None] * ps, atol=1e-6)  # action k * S + j


@pytest.mark.parametrize("band", [(0.5, 2.0), (0.25, 3.0), (0.9, 1.1), (1.0, 1.0), (0.5, 10.0)])
def test_band_holds_on_every_image_whatever_the_logits(band: tuple[float, float]) -> None:
    k = 10
    head = HierarchicalHead(k, 3, band=band)
    logits = torch.cat([torch.randn(64, head.num_logits) * 50, torch.zeros(1, head.num_logits)])
    pk = head.log_probs(logits).exp().view(-1, k, 3).sum(-1)
    assert torch.allclose(pk.sum(-1), torch.ones(len(pk)), atol=1e-5)
    assert pk.min() >= band[0] / k - 1e-6 and pk.max() <= band[1] / k + 1e-6
    assert torch.allclose(pk[-1], torch.full((k,), 1 / k))  # zero logits are uniform
    one_hot = torch.full((1, head.num_logits), -1e4)
    one_hot[0, 0] = 1e4
    top = head.corruption_probs(one_hot)[0, 0]
    cap = min(band[1] / k, 1 - (k - 1) * band[0] / k)  # hi/K, unless the others' floors leave less
    assert math.isclose(float(top), cap, rel_tol=1e-4)  # the cap is reached, not exceeded


def test_unbanded_heads_can_collapse_onto_one_corruption() -> None:
    one_hot = torch.full((1, 10 + 30), -1e4)
    one_hot[0, 0] = 1e4
    assert HierarchicalHead(10, 3, band=None, min_prob=0.1).corruption_probs(one_hot)[0, 0] > 0.9
    flat = torch.full((1, 30), -1e4)
    flat[0, 0] = 1e4
    assert FlatHead(30, min_prob=0.1).log_probs(flat).exp()[0, 0] > 0.9


@pytest.mark.parametrize("band", [(0.0, 2.0), (1.5, 2.0), (0.5, 0.9), (0.5, 11.0), (0.5,), "wide", (0.5, math.inf)])
def test_band_outside_its_limits_is_a_clear_error(band: object) -> None:
    with pytest.raises(ValueError, match=r"band must be None or \(lo, hi\).*got"):
        HierarchicalHead(10, 3, band=band)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- named adversaries
def test_named_adversaries_and_the_default() -> None:
    names = list_adversaries()
    assert {"paper", "damage", "hierarchical", "banded", "severity"} <= set(names)
    assert get_adversary("learned") is get_adversary(DEFAULT_ADVERSARY)
    paper = get_adversary("paper")
    assert (paper.head, paper.reward, paper.band, paper.min_prob) == ("flat", "loss", None, 0.1)
    space = ActionSpace()
    assert isinstance(make_strategy("paper", space).reinforce.head, FlatHead)  # type: ignore[attr-defined]
    learned = make_strategy("learned", space)
    assert learned.name == "learned" and learned.adversary.name == DEFAULT_ADVERSARY  # type: ignore[attr-defined]


def test_an_adversary_over_five_levels_widens_the_action_space_everywhere() -> None:
    """``banded5`` (issue 20: the five levels in the action space) is ``banded`` over levels 1-5."""
    assert get_adversary("banded5").levels == (1, 2, 3, 4, 5) and get_adversary("banded").levels == ()
    model = nn.Conv2d(1, 1, 3, padding=1)
    trainer = AdversarialCorruptionTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), strategy="banded5")
    trainer.step(torch.rand(4, 1, 16, 16), (torch.rand(4, 1, 16, 16) > 0.9).float())
    head = trainer.strategy.reinforce.head  # type: ignore[attr-defined]
    assert trainer.action_space.severities == (1, 2, 3, 4, 5) and head.num_severities == 5
    _, levels = trainer.action_space.decode(trainer.last_actions)  # type: ignore[arg-type]
    assert bool(((levels >= 1) & (levels <= 5)).all())
    config = TrainConfig(model="acm", strategy="banded5")
    from advcorrupt.training.config import check_config
    from advcorrupt.policy.schedules import schedule_action_space

    check_config(config)
    assert schedule_action_space(config.strategy, config.corruptions, config.severities).severities == (1, 2, 3, 4, 5)
    with pytest.raises(ValueError, match=r"'banded5' chooses among levels \[1, 2, 3, 4, 5\]; the action space has "
                                         r"\[1, 2, 3\] \(missing \[4, 5\]\)"):
        make_strategy("banded5", ActionSpace())
    with pytest.raises(ValueError, match="levels must be rising ints >= 1"):
        Adversary("x", levels=(3, 1))


def test_unknown_adversary_settings_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="reward must be one of"):
        Adversary("x", reward="surprise")
    with pytest.raises(ValueError, match="head must be one of"):
        Adversary("x", head="tree")
    with pytest.raises(ValueError, match="band applies to the hierarchical head only"):
        Adversary("x", head="flat", band=(0.5, 2.0))
    with pytest.raises(KeyError, match="unknown adversary 'greedy'.*paper"):
        get_adversary("greedy")
    with pytest.raises(ValueError, match="strategy must be 'learned', an adversary"):
        make_strategy("greedy", ActionSpace())
    with pytest.raises(ValueError, match="must not set head"):
        make_strategy("banded", ActionSpace(), reinforce_kwargs={"head": None})


def test_rewards_are_the_corrupted_loss_or_the_damage() -> None:
    lc, lx = torch.tensor([0.2, 0.5]), torch.tensor([0.9, 0.6])
    assert torch.equal(get_adversary("paper").rewards(lx, lc), lx)
    assert torch.allclose(get_adversary("banded").rewards(lx, lc), lx - lc)
    with pytest.raises(ValueError, match="needs clean_loss"):
        get_adversary("banded").rewards(lx, None)
    with pytest.raises(ValueError, match=r"clean_loss must be a \(B,\)"):
        get_adversary("banded").rewards(lx, torch.zeros(3))


def test_two_line_integration_passes_the_clean_losses(toy_space: ActionSpace) -> None:
    trainer, g = toy_trainer(toy_space, "banded")
    x, m = scenes(torch.ones(8, dtype=torch.bool), g)
    x_hat = trainer.corrupt(x)
    loss = nn.functional.mse_loss(torch.sigmoid(trainer.model(torch.cat([x, x_hat]))), torch.cat([m, m]),
                                  reduction="none").mean((1, 2, 3))
    with pytest.raises(ValueError, match="needs clean_loss"):
        trainer.update_policy(loss[8:].detach())
    stats = trainer.update_policy(loss[8:].detach(), clean_loss=loss[:8].detach())  # the failed call kept the batch
    assert torch.allclose(stats["reward"], (loss[8:] - loss[:8]).mean(), atol=1e-6)


def test_progress_reward_is_the_damage_the_update_removed() -> None:
    lx, lc = torch.tensor([0.9, 0.6]), torch.tensor([0.2, 0.5])
    lx_after, lc_after = torch.tensor([0.4, 0.6]), torch.tensor([0.1, 0.5])
    learnable = get_adversary("learnable")
    assert learnable.needs_after and not get_adversary("banded").needs_after
    # damage 0.7 -> 0.3 on the first image (0.4 learned), 0.1 -> 0.1 on the second (nothing learned)
    torch.testing.assert_close(learnable.rewards(lx, lc, (lx_after, lc_after)), torch.tensor([0.4, 0.0]))
    with pytest.raises(ValueError, match="needs the losses recomputed after the update"):
        learnable.rewards(lx, lc)
    with pytest.raises(ValueError, match=r"clean_loss_after must be a \(B,\) = \(2,\).*got \(3,\)"):
        learnable.rewards(lx, lc, (lx_after, torch.zeros(3)))


class _BNDetector(nn.Module):
    """A learnable detector with batch norm: the probe forward must not move its running statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn, self.out = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.bn(self.conv(x))))


def _bn_trainer(space: ActionSpace, strategy: str) -> AdversarialCorruptionTrainer:
    torch.manual_seed(0)
    det = _BNDetector()
    return AdversarialCorruptionTrainer(
        det, torch.optim.SGD(det.parameters(), lr=0.5), action_space=space, strategy=strategy, policy_lr=1e-2,
        generator=torch.Generator().manual_seed(0), policy_kwargs={"input_size": 32}, in_channels=1,
    )


def test_step_rewards_progress_with_one_probe_forward_that_leaves_the_model_as_a_plain_step_does(
    toy_space: ActionSpace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``learnable`` trains the detector exactly as ``banded`` does (same weights and BN statistics
    after the step); its rewards are damage before minus damage after, from one extra no-grad
    forward of the same 2B batch with the updated weights."""
    x, m = scenes(torch.tensor([True, False] * 4), torch.Generator().manual_seed(1))
    plain, learnable = _bn_trainer(toy_space, "banded"), _bn_trainer(toy_space, "learnable")
    assert learnable.needs_losses_after and not plain.needs_losses_after
    seen: dict[str, torch.Tensor] = {}
    update = learnable.strategy.update

    def spy(sample, corrupted_loss, *, clean_loss=None, valid=None, after=None):  # type: ignore[no-untyped-def]
        seen.update(corrupted=corrupted_loss, clean=clean_loss, after_corrupted=after[0], after_clean=after[1])
        return update(sample, corrupted_loss, clean_loss=clean_loss, valid=valid, after=after)

    monkeypatch.setattr(learnable.strategy, "update", spy)
    probe = learnable._losses_now
    monkeypatch.setattr(learnable, "_losses_now", lambda inputs, *a: seen.update(inputs=inputs) or probe(inputs, *a))
    plain.step(x, m)
    learnable.step(x, m)
    for (name, a), b in zip(plain.model.state_dict().items(), learnable.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=f"{name} differs: the probe changed the detector")
    # The probe's losses are the updated detector's, in training mode, on the step's 2B batch.
    assert torch.equal(seen["inputs"][:8], x)
    copy = copy_module(learnable.model)
    with torch.no_grad():
        again = learnable.per_sample_loss(copy(seen["inputs"]), torch.cat([m, m]))
    torch.testing.assert_close(seen["after_clean"], again[:8])
    torch.testing.assert_close(seen["after_corrupted"], again[8:])
    assert not torch.allclose(seen["after_corrupted"], seen["corrupted"]), "the update changed the losses"


def test_frozen_buffers_undo_a_probe_forward_and_only_that() -> None:
    from advcorrupt.policy.adversaries import needs_losses_after
    from advcorrupt.trainer import frozen_buffers

    det, x = _BNDetector().train(), torch.rand(4, 1, 8, 8)
    before = copy.deepcopy(det.state_dict())
    with torch.no_grad(), frozen_buffers(det):
        det(x)
        assert not torch.equal(det.bn.running_mean, before["bn.running_mean"]), "the probe did move the statistics"
    for name, value in det.state_dict().items():
        torch.testing.assert_close(value, before[name], msg=name)
    assert needs_losses_after("learnable") and not needs_losses_after("banded")
    assert not needs_losses_after("random") and not needs_losses_after(None)


def copy_module(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module).train()


def test_two_line_integration_passes_the_losses_after_the_update(toy_space: ActionSpace) -> None:
    trainer, g = toy_trainer(toy_space, "learnable")
    x, m = scenes(torch.ones(8, dtype=torch.bool), g)
    x_hat = trainer.corrupt(x)
    loss = nn.functional.mse_loss(torch.sigmoid(trainer.model(torch.cat([x, x_hat]))), torch.cat([m, m]),
                                  reduction="none").mean((1, 2, 3)).detach()
    with pytest.raises(ValueError, match="needs the losses recomputed after the update"):
        trainer.update_policy(loss[8:], clean_loss=loss[:8])
    with pytest.raises(ValueError, match="go together"):
        trainer.update_policy(loss[8:], clean_loss=loss[:8], corrupted_loss_after=loss[8:])
    after = loss * 0.5
    stats = trainer.update_policy(loss[8:], clean_loss=loss[:8], corrupted_loss_after=after[8:],
                                  clean_loss_after=after[:8])
    torch.testing.assert_close(stats["reward"], 0.5 * (loss[8:] - loss[:8]).mean())


@pytest.mark.parametrize("strategy", ["learnable", "banded"])
def test_the_two_line_example_runs_adversaries_with_and_without_a_second_forward(
    strategy: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _example("wrap_existing_loop").main(steps=2, batch_size=2, size=32, strategy=strategy)  # type: ignore[attr-defined]
    assert "2 steps in" in capsys.readouterr().out


# ----------------------------------------------------------------------------- coverage (issue 9, item 5)
def test_default_adversary_finds_the_weakness_and_starves_no_corruption(toy_space: ActionSpace) -> None:
    """Against a frozen detector that only one of K corruptions hurts: (a) its probability rises to
    >= 1.5/K; (b) every corruption keeps >= 0.5/K on every image at every step."""
    trainer, g = toy_trainer(toy_space, "learned")
    bright = torch.ones(16, dtype=torch.bool)
    for _ in range(150):
        x, m = scenes(bright, g)
        assert corruption_mass(trainer, x).min() >= 0.5 / K - 1e-6
        trainer.step(x, m)
    x, _ = scenes(bright, g)
    mass = corruption_mass(trainer, x)
    assert mass[:, TOY.index("adv_up")].min() >= 1.5 / K, mass.mean(0)
    assert mass.min() >= 0.5 / K - 1e-6


def test_default_adversary_still_chooses_per_image(toy_space: ActionSpace) -> None:
    """Bright images are hurt by shifting up, dark ones by shifting down."""
    bright = torch.arange(16) % 2 == 0
    mass = mass_after_training(toy_space, "learned", bright, steps=220, seed=1)
    assert mass[bright, TOY.index("adv_up")].mean() >= 1.5 / K, mass[bright].mean(0)
    assert mass[~bright, TOY.index("adv_down")].mean() >= 1.5 / K, mass[~bright].mean(0)
    assert mass.min() >= 0.5 / K - 1e-6


def test_relative_adversary_chooses_per_image_with_its_own_baselines(toy_space: ActionSpace) -> None:
    """``relative`` is ``banded`` with one baseline per action: built so, and on the toy's bright and
    dark images it learns each kind's own harmful shift."""
    relative = make_strategy("relative", toy_space)
    assert relative.reinforce.per_action_baseline and not make_strategy("banded", toy_space).reinforce.per_action_baseline  # type: ignore[attr-defined]
    assert get_adversary("relative5").levels == (1, 2, 3, 4, 5) and get_adversary("relative5").baseline == "per_action"
    bright = torch.arange(16) % 2 == 0
    mass = mass_after_training(toy_space, "relative", bright, steps=220, seed=1)
    assert mass[bright, TOY.index("adv_up")].mean() >= 1.5 / K, mass[bright].mean(0)
    assert mass[~bright, TOY.index("adv_down")].mean() >= 1.5 / K, mass[~bright].mean(0)
    with pytest.raises(ValueError, match="baseline must be one of"):
        Adversary("x", baseline="median")


def test_paper_adversary_starves_the_harmless_corruptions(toy_space: ActionSpace) -> None:
    """The contrast that motivates the band: the paper's flat policy leaves the others at its floor."""
    trainer, g = toy_trainer(toy_space, "paper")
    bright = torch.ones(16, dtype=torch.bool)
    for _ in range(150):
        trainer.step(*scenes(bright, g))
    mass = corruption_mass(trainer, scenes(bright, g)[0]).mean(0)
    assert mass[TOY.index("adv_up")] > 0.5 and mass.min() < 0.5 / K


# ----------------------------------------------------------------------------- zero-config wrapping
def test_trainer_infers_channels_from_the_first_batch_and_checkpoints_before_it() -> None:
    model = nn.Conv2d(3, 1, 3, padding=1)
    trainer = AdversarialCorruptionTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), strategy="learned")
    assert not trainer.built and trainer.policy is None
    with pytest.raises(RuntimeError, match="built from the first batch"):
        _ = trainer.strategy
    early = trainer.state_dict()  # before the first batch: no policy to save yet
    x, y = torch.rand(4, 3, 32, 32), (torch.rand(4, 1, 32, 32) > 0.95).float()
    trainer.step(x, y)
    assert trainer.built and trainer.policy.in_channels == 3  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="C = 3 channel"):
        trainer.step(torch.rand(4, 1, 32, 32), y)
    trainer.load_state_dict(early)  # a pre-build state leaves the built policy as it is
    other = AdversarialCorruptionTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), strategy="learned")
    other.load_state_dict(trainer.state_dict())  # builds the policy from the saved weights
    assert other.built and torch.allclose(other.policy_probabilities(x), trainer.policy_probabilities(x))


def test_bad_masks_before_the_first_batch_build_nothing() -> None:
    model = nn.Conv2d(1, 1, 3, padding=1)
    trainer = AdversarialCorruptionTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="masks must have shape"):
        trainer.step(torch.rand(2, 1, 16, 16), torch.zeros(2, 1, 8, 8))
    assert not trainer.built


# ----------------------------------------------------------------------------- recipe and collapse
def test_warmup_cosine_schedule() -> None:
    s = WarmupCosine(100, warmup_steps=10)
    assert math.isclose(s(0), 0.01) and math.isclose(s(5), 0.505) and s(10) == 1.0
    assert math.isclose(s(55), 0.505) and math.isclose(s(100), 0.01) and s(1000) == s(100)
    assert WarmupCosine(10)(0) == 1.0  # no warm-up: a plain cosine from the full rate


def test_collapsed_run_is_warned_about_and_marked_failed(tmp_path: Path) -> None:
    assert is_collapsed({"iou": 0.0}) and is_collapsed({"iou": float("nan")}) and not is_collapsed({"iou": 0.3})
    config = TrainConfig(model="acm", strategy="random", epochs=1, steps_per_epoch=1, batch_size=2,
                         synthetic_train=4, synthetic_test=2, synthetic_size=32, out_dir=str(tmp_path / "run"),
                         device="cpu", lr=1e-9)  # one step at a negligible rate: the prior predicts nothing
    with pytest.warns(RuntimeWarning, match="the detector collapsed"):
        summary = fit(config, progress=False)
    assert summary["failed"] and "validation IoU" in summary["failure"] and summary["collapsed_epochs"] == [1]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["collapsed"] is True


# ----------------------------------------------------------------------------- the multi-seed harness
def _example(name: str = "istd_dnanet") -> object:
    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_seed_lists_are_checked_before_any_training(tmp_path: Path) -> None:
    ex = _example()
    assert ex.parse_seeds("0, 1,2", 7) == [0, 1, 2] and ex.parse_seeds(None, 7) == [7]  # type: ignore[attr-defined]
    for bad, msg in (("", "at least one seed"), ("0,1,0", "must not repeat"), ("a,b", "comma-separated integers")):
        with pytest.raises(ValueError, match=msg):
            ex.parse_seeds(bad, 0)  # type: ignore[attr-defined]
    with pytest.raises(SystemExit, match="must not repeat"):
        ex.main(["--seeds", "1,1", "--out", str(tmp_path / "x")])  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="unknown strategy 'greedy'"):
        ex.main(["--strategies", "random,greedy", "--out", str(tmp_path / "y")])  # type: ignore[attr-defined]
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    with pytest.raises(ValueError, match="input_size.*--policy-kwargs"):  # reaches the policy, checked first
        ex.main(["--strategies", "banded", "--policy-kwargs", '{"input_size": 0}', "--out", str(tmp_path / "z")])  # type: ignore[attr-defined]
    assert not (tmp_path / "z").exists()


def test_harness_runs_strategies_over_seeds_with_paired_differences(tmp_path: Path) -> None:
    ex = _example()
    out = tmp_path / "grid"
    argv = ["--strategies", "random,banded", "--seeds", "0,1", "--epochs", "1", "--steps-per-epoch", "2",
            "--out", str(out), "--no-progress"]
    ex.PROFILES["demo"] = {**ex.PROFILES["demo"], "synthetic_train": 16, "synthetic_test": 4,  # type: ignore[attr-defined]
                           "synthetic_size": 32, "batch_size": 4}
    ex.BENCH_SEVERITIES["demo"] = (1,)  # type: ignore[attr-defined]
    assert ex.main(argv) == 0  # type: ignore[attr-defined]
    runs = json.loads((out / "results.json").read_text())
    assert sorted((r["strategy"], r["seed"]) for r in runs) == [("banded", 0), ("banded", 1), ("random", 0), ("random", 1)]
    for r in runs:
        assert (out / r["strategy"] / f"seed{r['seed']}" / "bench" / "robustness.json").is_file()
    text = (out / "results.md").read_text()
    # two-step models find nothing: every run is marked failed and none is averaged in silently
    assert all(r["failed"] for r in runs)
    assert "Failed runs (left out of every mean)" in text and "Mean +- std" not in text
    assert text.count("the detector collapsed") == 4
    assert ex.main(argv + ["--resume"]) == 0  # type: ignore[attr-defined]  # reuses every finished run
    assert json.loads((out / "results.json").read_text()) == runs
    # a finished run of another recipe is refused, never reused or tabulated beside this one
    for mode in ("--resume", "--report-only"):
        with pytest.raises(SystemExit, match=r"another recipe.*lr: 0.005 vs 0.001.*give another --out"):
            ex.main(argv + [mode, "--lr", "1e-3"])  # type: ignore[attr-defined]
    assert json.loads((out / "results.json").read_text()) == runs
    # --compare tabulates finished folders side by side (here: every run failed, so they are listed)
    text = ex.compare_runs([f"R={out / 'random'}", f"B={out / 'banded'}"])  # type: ignore[attr-defined]
    assert text.count("the detector collapsed") == 4 and "- B seed 1:" in text
    with pytest.raises(SystemExit, match="LABEL=DIR"):
        ex.compare_runs([str(out / "random")])  # type: ignore[attr-defined]
    with pytest.raises(SystemExit, match="no finished run there"):
        ex.compare_runs([f"X={tmp_path}"])  # type: ignore[attr-defined]
    missing = tmp_path / "never-trained"
    with pytest.raises(SystemExit, match=r"never-trained is not a folder: --report-only tabulates"):
        ex.main([*argv[: argv.index("--out")], "--out", str(missing), "--report-only"])  # type: ignore[attr-defined]
    assert not missing.exists()


def test_paired_table_reports_per_seed_differences() -> None:
    ex = _example()
    from advcorrupt.benchmark import RobustnessReport, SettingResult

    def report(clean: float, corr: float) -> RobustnessReport:
        return RobustnessReport(clean={"iou": clean}, corruptions=("contrast",), severities=(1,),
                                results=(SettingResult("contrast", 1, corr, corr, 0.5, 1.0, 0.5),), seed=0,
                                num_images=1, model_name="m")
    results = [
        {"strategy": "random", "seed": 0, "failed": False, "report": report(0.60, 0.30)},
        {"strategy": "random", "seed": 1, "failed": False, "report": report(0.62, 0.32)},
        {"strategy": "banded", "seed": 0, "failed": False, "report": report(0.61, 0.35)},
        {"strategy": "banded", "seed": 1, "failed": False, "report": report(0.60, 0.31)},
    ]
    table = ex.paired_table(results, ["random", "banded"])  # type: ignore[attr-defined]
    row = next(line for line in table.splitlines() if "banded | mean corrupted IoU" in line)
    assert "0: +5.00, 1: -1.00" in row and "+2.00 +- 4.24" in row and "| 1/2 |" in row
    level = next(line for line in table.splitlines() if "banded | level 1 IoU" in line)  # one level here
    assert "0: +5.00, 1: -1.00" in level


def test_compare_puts_finished_folders_side_by_side_with_paired_differences(tmp_path: Path) -> None:
    ex = _example()
    from advcorrupt.benchmark import RobustnessReport, SettingResult

    def run(folder: Path, clean: float, corr: float, **config: Any) -> None:
        (folder / "bench").mkdir(parents=True)
        (folder / "done.json").write_text(json.dumps({"failed": False}))
        (folder / "config.json").write_text(json.dumps({"model": "sfim_acm" if "sfim" in str(folder) else "acm",
                                                        "seed": int(folder.name[4:]), **config}))
        RobustnessReport(clean={"iou": clean, "niou": clean, "pd": 1.0, "fa": 1.0}, corruptions=("contrast",),
                         severities=(1,), results=(SettingResult("contrast", 1, corr, corr, 0.5, 1.0, 0.5),),
                         seed=0, num_images=1, model_name="m").save(folder / "bench")

    for seed, (a, b) in enumerate(((0.30, 0.33), (0.32, 0.31), (0.31, 0.36))):
        run(tmp_path / "acm" / f"seed{seed}", 0.6, a)
        run(tmp_path / "sfim" / f"seed{seed}", 0.6, b)
    text = ex.compare_runs([f"ACM={tmp_path / 'acm'}", f"ACM + SFIM={tmp_path / 'sfim'}"])  # type: ignore[attr-defined]
    assert "| metric | ACM | ACM + SFIM |" in text
    row = next(line for line in text.splitlines() if "ACM + SFIM | mean corrupted IoU" in line)
    assert "0: +3.00, 1: -1.00, 2: +5.00" in row and "| 2/3 |" in row
    only = ex.compare_runs([f"ACM={tmp_path / 'acm'}", f"S={tmp_path / 'sfim'}"], seeds=[0, 2])  # type: ignore[attr-defined]
    assert "0: +3.00, 2: +5.00 |" in only and "(seeds): ACM: 2, S: 2" in only
    # the header names what the columns differ in; a column mixing recipes is refused
    assert text.startswith("The columns differ in (first column vs another): model: 'acm' vs 'sfim_acm'")
    same = ex.compare_runs([f"A={tmp_path / 'acm'}", f"B={tmp_path / 'acm'}"])  # type: ignore[attr-defined]
    assert same.startswith("Every column was trained with the same recipe.")
    assert "Recipe of every run: model acm, data synthetic, device cpu, epochs 10" in same
    assert "Recipe of every run" not in text  # the header says what differs instead
    run(tmp_path / "acm" / "seed3", 0.6, 0.3, bce_pos_weight=10.0)
    with pytest.raises(SystemExit, match=r"ACM=.*mix recipes \(seed 0 vs seed 3: bce_pos_weight: 1.0 vs 10.0\)"):
        ex.compare_runs([f"ACM={tmp_path / 'acm'}", f"S={tmp_path / 'sfim'}"])  # type: ignore[attr-defined]


def test_tilt_chooses_the_corruption_and_keeps_severities_uniform(toy_space: ActionSpace) -> None:
    trainer, g = toy_trainer(toy_space, "tilt")
    bright = torch.ones(16, dtype=torch.bool)
    for _ in range(150):
        trainer.step(*scenes(bright, g))
    assert trainer.policy.num_actions == K  # type: ignore[union-attr]  # K corruption logits only
    x, _ = scenes(bright, g)
    probs = trainer.policy_probabilities(x).view(-1, K, 2)
    assert torch.allclose(probs[..., 0], probs[..., 1])  # severity uniform given the corruption
    mass = probs.sum(-1)
    assert mass[:, TOY.index("adv_up")].min() >= 1.5 / K and mass.min() >= 0.5 / K - 1e-6
    with pytest.raises(ValueError, match="severity must be 'learned' or 'uniform'"):
        Adversary("x", severity="hardest")


# ----------------------------------------------------------------------------- the loss's dead end
def test_bce_term_keeps_a_gradient_on_targets_of_a_collapsed_detector() -> None:
    from advcorrupt.losses import SoftIoULoss

    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, 6:9, 6:9] = 1
    logits = torch.full((2, 1, 16, 16), -19.0, requires_grad=True)  # all-background, saturated
    SoftIoULoss("none")(logits, mask).sum().backward()
    assert logits.grad is not None and logits.grad.abs().max() < 1e-6  # Soft IoU alone: no way out
    logits.grad = None
    loss = SoftIoULoss("none", bce_weight=1.0)(logits, mask)
    loss.sum().backward()
    assert logits.grad is not None and (logits.grad[mask > 0] < -1e-3).all()  # pushes target logits up
    plain = SoftIoULoss("none")(logits.detach(), mask)
    bce = nn.functional.binary_cross_entropy_with_logits(logits.detach(), mask, reduction="none").mean((1, 2, 3))
    assert torch.allclose(loss.detach(), plain + bce)
    with pytest.raises(ValueError, match="bce_weight must be a number >= 0"):
        SoftIoULoss(bce_weight=-1.0)


def test_bce_pos_weight_scales_the_pull_on_target_pixels_only() -> None:
    from advcorrupt.losses import SoftIoULoss

    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, 6:8, 6:8] = 1
    logits = torch.full((2, 1, 16, 16), -4.0, requires_grad=True)
    SoftIoULoss("none", bce_weight=1.0)(logits, mask).sum().backward()
    assert logits.grad is not None
    plain = logits.grad.clone()
    logits.grad = None
    SoftIoULoss("none", bce_weight=1.0, bce_pos_weight=10.0)(logits, mask).sum().backward()
    assert logits.grad is not None
    on, off = mask > 0, mask == 0
    assert torch.allclose(logits.grad[off], plain[off])  # the background's pull is unchanged
    soft = torch.autograd.grad(SoftIoULoss("none")(logits, mask).sum(), logits)[0]
    # the cross-entropy part of a target pixel's gradient is 10x the unweighted one
    assert torch.allclose(logits.grad[on] - soft[on], 10 * (plain[on] - soft[on]), rtol=1e-4)
    # at the start of training (every pixel at the 1% prior) the targets' summed pull now beats the background's
    start = torch.full((1, 1, 256, 256), math.log(0.01 / 0.99), requires_grad=True)
    target = torch.zeros(1, 1, 256, 256)
    target[..., 100:108, 100:108] = 1  # 64 pixels, ~0.1%
    # summed pulls, 64 x 0.99 x w up against 65472 x 0.01 = 654.7 down: weight 1 loses about 10 to 1,
    # weight 10 brings the two close to even (633.6, the background still slightly ahead), 20 wins
    for pos_weight, up, targets_win in ((1.0, 63.36, False), (10.0, 633.6, False), (20.0, 1267.2, True)):
        bce = nn.functional.binary_cross_entropy_with_logits(
            start, target, pos_weight=torch.tensor(pos_weight), reduction="sum")
        (g,) = torch.autograd.grad(bce, start)
        pull_up, pull_down = float(g[target > 0].abs().sum()), float(g[target == 0].abs().sum())
        assert pull_up == pytest.approx(up, rel=1e-3) and pull_down == pytest.approx(654.72, rel=1e-3)
        assert (pull_up > pull_down) is targets_win
    # the same numbers as torch's own pos_weight
    y = (torch.rand(2, 1, 8, 8) > 0.8).float()
    x = torch.randn(2, 1, 8, 8) * 5
    ref = nn.functional.binary_cross_entropy_with_logits(x, y, pos_weight=torch.tensor(3.0), reduction="none")
    ours = SoftIoULoss("none", bce_weight=1.0, bce_pos_weight=3.0)(x, y) - SoftIoULoss("none")(x, y)
    assert torch.allclose(ours, ref.mean((1, 2, 3)), atol=1e-5)
    for bad in (0.0, -2.0, float("inf"), True):
        with pytest.raises(ValueError, match="bce_pos_weight must be a finite number > 0"):
            SoftIoULoss(bce_weight=1.0, bce_pos_weight=bad)
