"""``advcorrupt train`` and ``advcorrupt bench`` end to end, through ``advcorrupt.cli.main``.

Tiny synthetic scenes (32x32) and a two-layer test model keep each run to a second or two; the
subprocess path (``python -c ... main(...)`` killed with SIGKILL) is covered in
tests/test_reliability.py, and ``torchrun``-style processes in tests/test_distributed.py.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from advcorrupt.benchmark import RobustnessReport
from advcorrupt.checkpoint import list_checkpoints, load_checkpoint
from advcorrupt.cli import main
from advcorrupt.models import list_models, register_model


class TinyNet(nn.Module):
    """Two 3x3 convolutions; ``nan=True`` makes every training forward return NaN logits."""

    def __init__(self, in_channels: int = 1, *, nan: bool = False) -> None:
        super().__init__()
        self.a = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 1, 3, padding=1)
        self.nan = nan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.b(torch.relu(self.a(x)))
        return out * float("nan") if self.nan and self.training else out


def tiny_cli_net(*, in_channels: int = 1, nan: bool = False) -> nn.Module:
    return TinyNet(in_channels, nan=nan)


if "tiny_cli_net" not in list_models():
    register_model(tiny_cli_net)


def train_args(out: Path, *extra: str) -> list[str]:
    return [
        "train", "--model", "tiny_cli_net", "--strategy", "learned", "--corruptions", "gaussian_noise,brightness",
        "--severities", "1,2", "--epochs", "1", "--batch-size", "2", "--synthetic-train", "4",
        "--synthetic-test", "2", "--synthetic-size", "32", "--device", "cpu", "--out-dir", str(out),
        "--policy-kwargs", '{"input_size": 32, "widths": [4, 4, 8, 8, 8]}', "--no-progress", *extra,
    ]


def test_train_resume_and_bench_end_to_end_on_synthetic_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(train_args(run, "--log-format", "csv")) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and summary["skipped"] == 0 and set(summary["val"]) >= {"iou", "niou", "pd", "fa"}

    # --resume with more epochs continues where the first run ended.
    assert main([*train_args(run, "--log-format", "csv", "--resume"), "--epochs", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 4 and Path(summary["checkpoint"]).name == "ckpt_00000004.pt"
    with (run / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0", "1"] and all(r["val_iou"] for r in rows)
    assert [json.loads(x)["step"] for x in (run / "steps.jsonl").read_text().splitlines()] == [0, 1, 2, 3]
    history = json.loads((run / "policy_actions.json").read_text())
    assert history["actions"] == ["gaussian_noise@1", "gaussian_noise@2", "brightness@1", "brightness@2"]
    assert len(history["per_epoch"]) == 2
    assert (run / "policy_actions.png").stat().st_size > 0
    assert json.loads((run / "config.json").read_text())["epochs"] == 2
    state = load_checkpoint(list_checkpoints(run)[-1])
    assert state["epoch"] == 2 and state["config"]["model"] == "tiny_cli_net"

    report_dir = tmp_path / "bench"
    code = main(["bench", "--checkpoint", str(run), "--corruptions", "gaussian_noise,brightness", "--severities", "1",
                 "--device", "cpu", "--out", str(report_dir), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "gaussian_noise" in printed and "brightness" in printed
    report = RobustnessReport.from_json(report_dir / "robustness.json")
    assert sorted((r.corruption, r.severity) for r in report.results) == [("brightness", 1), ("gaussian_noise", 1)]
    for name in ("robustness.md", "robustness.csv", "robustness_iou.png"):
        assert (report_dir / name).stat().st_size > 0, name


def _no_layout(tmp_path: Path) -> str:
    (tmp_path / "data" / "images").mkdir(parents=True)
    return str(tmp_path / "data")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "not_a_model"], r"unknown model 'not_a_model'; choose one of"),
        (["--strategy", "earthquake"], r"unknown strategy 'earthquake'"),
        (["--severities", "1,7"], r"severities must be in \[1, 5\]"),
        (["--data-root", "NO_LAYOUT"], r"lacks the ISTD layout: missing masks/, img_idx/"),
        (["--batch-size", "0"], r"batch_size must be an int >= 1; got 0"),
        (["--bce-pos-weight", "-1"], r"bce_pos_weight must be a finite number > 0; got -1.0"),
    ],
)
def test_train_configuration_errors_exit_2_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    import re

    extra = [_no_layout(tmp_path) if e == "NO_LAYOUT" else e for e in extra]
    run = tmp_path / "run"
    assert main([*train_args(run), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("advcorrupt train: error: ") and re.search(message, err), err
    assert not run.exists()


def test_train_exits_3_when_every_step_is_non_finite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    with pytest.warns(RuntimeWarning, match="non-finite"):
        code = main([*train_args(run, "--model-kwargs", '{"nan": true}', "--max-consecutive-skips", "2"),
                     "--synthetic-train", "8"])
    assert code == 3
    err = capsys.readouterr().err
    assert "2 consecutive steps had a non-finite loss or gradient" in err and "--max-consecutive-skips" in err


@pytest.mark.parametrize("damage", ["truncated", "missing", "empty_folder"])
def test_bench_refuses_unusable_checkpoints_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str) -> None:
    target: Any
    if damage == "truncated":
        target = tmp_path / "ckpt_00000001.pt"
        target.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
        expected = "truncated or corrupt"
    elif damage == "missing":
        target = tmp_path / "nothing.pt"
        expected = "checkpoint not found"
    else:
        target = tmp_path
        expected = "no ckpt_*.pt in"
    assert main(["bench", "--checkpoint", str(target), "--device", "cpu", "--no-progress"]) == 2
    assert expected in capsys.readouterr().err


def test_bench_reads_a_corrupt_dataset_folder_and_matches_the_in_memory_clean_score(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_corrupt_dataset import make_istd

    src = make_istd(tmp_path / "src")
    run = tmp_path / "run"
    assert main(train_args(run)) == 0
    dst = tmp_path / "src-c"
    assert main(["corrupt-dataset", str(src), str(dst), "--corruptions", "gaussian_noise,contrast", "--severities", "2",
                 "--seed", "4", "--no-progress"]) == 0
    common = ["bench", "--checkpoint", str(run), "--data-root", str(src), "--device", "cpu", "--no-progress",
              "--corruptions", "gaussian_noise,contrast", "--severities", "2", "--seed", "4"]
    assert main([*common, "--out", str(tmp_path / "mem")]) == 0
    assert main([*common, "--out", str(tmp_path / "disk"), "--corrupted-root", str(dst)]) == 0
    capsys.readouterr()
    mem = RobustnessReport.from_json(tmp_path / "mem" / "robustness.json")
    disk = RobustnessReport.from_json(tmp_path / "disk" / "robustness.json")
    assert disk.clean == mem.clean and disk.seed == 4 and disk.dataset_name == "src-c"
    assert [(r.corruption, r.severity) for r in disk.results] == [(r.corruption, r.severity) for r in mem.results]
    assert main([*common, "--corrupted-root", str(src)]) == 2
    assert "has no corruptions.json" in capsys.readouterr().err


def test_progress_is_one_line_per_setting_when_stderr_is_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    from advcorrupt.benchmark import evaluate_robustness
    from advcorrupt.data import SyntheticIRSTD

    evaluate_robustness(TinyNet(), SyntheticIRSTD(3, size=32), corruptions=["contrast", "brightness"],
                        severities=(1, 2), progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert [line.split(":")[0] for line in lines] == ["clean", "contrast@1", "contrast@2", "brightness@1", "brightness@2"]
    assert lines[-1].startswith("brightness@2: 15/15 img")


def test_train_writes_tensorboard_events_and_one_line_per_epoch_when_piped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("tensorboard")
    from test_integrations import read_events

    args = [a for a in train_args(tmp_path / "run", "--epochs", "2", "--tensorboard", str(tmp_path / "tb")) if a != "--no-progress"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "\r" not in out + err, "no progress-bar frames when the output is not a terminal"
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epoch_lines] == ["1/2", "2/2"] and all("val_iou=" in x for x in epoch_lines)
    ev = read_events(tmp_path / "tb")
    scalars = set(ev.Tags()["scalars"])
    assert {"lr", "train/loss", "train/loss_clean", "train/loss_corrupted", "train/policy_entropy",
            "val/iou", "val/niou", "val/pd", "val/fa", "policy_share/gaussian_noise", "policy_share/brightness"} <= scalars
    assert [e.step for e in ev.Scalars("val/iou")] == [1, 2]
    shares = [ev.Scalars(f"policy_share/{n}")[-1].value for n in ("gaussian_noise", "brightness")]
    assert abs(sum(shares) - 1.0) < 1e-6
    assert ev.Tags()["images"] == ["robustness/iou"] and (tmp_path / "tb" / "robustness_iou.png").stat().st_size > 0
