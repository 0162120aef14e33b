"""image_dependence: is a policy conditioned on the image, or a fixed schedule in disguise?"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from advcorrupt.policy.diagnostics import image_dependence, per_image_headroom
from advcorrupt.training import TrainConfig, fit


def test_one_distribution_for_every_image_carries_no_information() -> None:
    p = torch.softmax(torch.randn(30), 0).expand(16, 30)
    d = image_dependence(p, num_severities=3)
    for factor in ("action", "corruption", "severity"):
        assert d[factor]["mutual_information"] == pytest.approx(0.0, abs=1e-12)
        assert d[factor]["normalized"] == pytest.approx(0.0, abs=1e-12) and d[factor]["max_tv"] < 1e-12
    assert d["action"]["entropy_of_mean"] > 0


def test_an_action_fixed_by_the_image_carries_all_of_it() -> None:
    d = image_dependence(torch.eye(6))  # image i always gets action i: I = H = log 6
    assert d["action"]["mutual_information"] == pytest.approx(math.log(6))
    assert d["action"]["normalized"] == pytest.approx(1.0) and d["action"]["mean_tv"] == pytest.approx(5 / 6)


def test_the_factors_are_told_apart() -> None:
    # 2 corruptions x 3 levels: the level depends on the image (images 0-2 get levels 1-3), the
    # corruption never does (always 50/50).
    p = torch.zeros(3, 2, 3)
    for i in range(3):
        p[i, :, i] = 0.5
    d = image_dependence(p.view(3, 6), num_severities=3)
    assert d["severity"]["normalized"] == pytest.approx(1.0)
    assert d["corruption"]["mutual_information"] == pytest.approx(0.0, abs=1e-12)
    assert 0 < d["action"]["normalized"] < 1  # log 3 of the log 6 nats


@pytest.mark.parametrize(
    ("probs", "kwargs", "match"),
    [
        (torch.rand(1, 6).softmax(-1), {}, "N >= 2"),
        (torch.rand(4, 6), {}, "sum to 1"),
        (torch.randn(4, 6), {}, "sum to 1"),
        (torch.ones(4, 6, dtype=torch.long), {}, "float"),
        (torch.rand(4, 6).softmax(-1), {"num_severities": 4}, "divisor of the 6 actions; got 4"),
    ],
)
def test_bad_input_is_refused_with_the_argument_named(probs: torch.Tensor, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        image_dependence(probs, **kwargs)


def _example() -> object:
    path = Path(__file__).resolve().parents[1] / "examples" / "policy_dependence.py"
    spec = importlib.util.spec_from_file_location("policy_dependence_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.filterwarnings("ignore:.*the detector collapsed:RuntimeWarning")
def test_the_example_reads_a_trained_run_and_reports_its_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = TrainConfig(model="acm", strategy="banded", epochs=1, steps_per_epoch=2, batch_size=2,
                         synthetic_train=6, synthetic_test=2, synthetic_size=32, out_dir=str(tmp_path / "run"),
                         device="cpu")
    fit(config, progress=False)
    example = _example()
    probs, s, strategy = example.policy_probabilities(tmp_path / "run", None, 6)  # type: ignore[attr-defined]
    assert probs.shape == (6, 30) and s == 3 and strategy == "banded"
    assert torch.allclose(probs.sum(-1), torch.ones(6), atol=1e-5)
    again, _, _ = example.policy_probabilities(tmp_path / "run", None, 6)  # type: ignore[attr-defined]
    assert torch.equal(probs, again)  # the same views every call: the table is reproducible
    assert example.main([str(tmp_path / "run"), "--images", "6"]) == 0  # type: ignore[attr-defined]
    row = capsys.readouterr().out.strip().splitlines()[-1]
    assert row.startswith(f"| {tmp_path / 'run'} | banded | ") and row.count("|") == 8
    with pytest.raises(FileNotFoundError, match="no ckpt"):
        example.policy_probabilities(tmp_path, None, 6)  # type: ignore[attr-defined]
    # --headroom: every action scored on the final detector, twice, as damage = loss(corrupted) - loss(clean)
    trainer, cfg, datasets = example.load_run(tmp_path / "run", None)  # type: ignore[attr-defined]
    x, y = example.training_views(datasets, cfg.seed, 4)  # type: ignore[attr-defined]
    d = example.damage_matrix(trainer, datasets[2], x, y, seed=1)  # type: ignore[attr-defined]
    assert d.shape == (4, 30) and torch.isfinite(d).all() and d.abs().sum() > 0
    assert torch.equal(d, example.damage_matrix(trainer, datasets[2], x, y, seed=1))  # type: ignore[attr-defined]
    assert not torch.equal(d, example.damage_matrix(trainer, datasets[2], x, y, seed=2))  # type: ignore[attr-defined]
    assert example.main([str(tmp_path / "run"), "--images", "6", "--headroom", "--headroom-images", "4"]) == 0  # type: ignore[attr-defined]
    row = capsys.readouterr().out.strip().splitlines()[-1]
    assert row.startswith(f"| {tmp_path / 'run'} | banded | ") and row.count("|") == 9


# ---------------------------------------------------------------- per_image_headroom


def _noisy(r: torch.Tensor, sd: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return r + sd * torch.randn(r.shape, generator=g)


def test_headroom_is_none_when_one_action_is_best_for_every_image() -> None:
    r = torch.tensor([0.0, 0.5, 2.0, 1.0]).expand(200, 4) + torch.linspace(0, 1, 200)[:, None]  # image + action
    out = per_image_headroom(_noisy(r, 0.05, 1), _noisy(r, 0.05, 2))
    assert out["interaction_share"] < 0.01 and out["noise_share"] < 0.01
    assert out["action_share"] > 0.5 and out["image_share"] > 0.1
    assert abs(sum(out[k] for k in ("action_share", "image_share", "interaction_share")) - 1) < 1e-9
    assert out["best_action_gain"] == pytest.approx(2.0 - 0.875, abs=0.02)
    assert out["per_image_gain"] <= 0.0


def test_headroom_finds_a_per_image_best_action() -> None:
    """Half the images are hurt most by action 0, the other half by action 1: a per-image choice
    gains 1.0 over any single action, and the interaction holds the variance."""
    half = torch.arange(100)[:, None] < 50
    r = torch.where(half, torch.tensor([2.0, 1.0]), torch.tensor([1.0, 2.0]))
    out = per_image_headroom(_noisy(r, 0.05, 1), _noisy(r, 0.05, 2))
    assert out["interaction_share"] > 0.95 and out["action_share"] < 0.01
    assert out["per_image_gain"] == pytest.approx(0.5, abs=0.02)  # 2.0 per image against 1.5 for one action
    assert out["best_action_gain"] == pytest.approx(0.0, abs=0.02)


def test_headroom_out_of_sample_gain_is_not_fooled_by_noise() -> None:
    """Pure noise: choosing per image on one measurement gains nothing on the other (in-sample it would)."""
    r = torch.zeros(500, 10)
    a, b = _noisy(r, 1.0, 1), _noisy(r, 1.0, 2)
    out = per_image_headroom(a, b)
    assert abs(out["per_image_gain"]) < 0.15
    assert out["noise_share"] == pytest.approx(out["interaction_share"], rel=0.1)


@pytest.mark.parametrize(
    ("reward", "replicate", "match"),
    [
        (torch.zeros(5), torch.zeros(5), "reward must be a float \\(N, A\\)"),
        (torch.zeros(1, 3), torch.zeros(1, 3), "N >= 2"),
        (torch.zeros(4, 3), torch.zeros(4, 2), "replicate must have reward's shape \\(4, 3\\)"),
        (torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, 3), "reward must be a float"),
        (torch.full((4, 3), float("nan")), torch.zeros(4, 3), "finite"),
    ],
)
def test_headroom_refuses_bad_input(reward: torch.Tensor, replicate: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        per_image_headroom(reward, replicate)
