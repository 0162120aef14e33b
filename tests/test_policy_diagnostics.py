"""image_dependence: is a policy conditioned on the image, or a fixed schedule in disguise?"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from advcorrupt.policy.diagnostics import image_dependence
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
