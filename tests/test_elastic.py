"""Elastic restart under a real ``torchrun`` (GitHub issue 13).

``torchrun --max-restarts 1 --nproc-per-node 2`` runs ``advcorrupt train ... --resume`` on two CPU
processes (gloo, a loopback rendezvous on a port the OS picks: ``--standalone``; with
``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``, see :func:`_torchrun`). In the first
attempt rank 1 SIGKILLs itself in step 5 of the epoch's 6, right after the mid-epoch
checkpoint of step 4 has landed. torchrun sees the dead worker, stops rank 0 and restarts the group; the
same command line resumes from that checkpoint by itself and finishes. The final detector and
policy weights, the per-step losses and the epoch log equal those of an uninterrupted
``torchrun`` run bit for bit.

This file is also the script torchrun runs (``python tests/test_elastic.py train ...``): it
registers the tiny test model, then calls ``advcorrupt.cli.main``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent
KILL_ENV = "ADVCORRUPT_TEST_KILL_RANK1_AT_CALL"  # training-forward call (0-based) at which rank 1 dies
WAIT_ENV = "ADVCORRUPT_TEST_KILL_AFTER_FILE"  # ...once this checkpoint file exists
SMALL_POLICY = {"input_size": 32, "widths": [4, 4, 8, 8, 8]}


class ElasticNet(nn.Module):
    """Two 3x3 convolutions (no BatchNorm); rank 1 of the first torchrun attempt kills itself
    with SIGKILL at the training-forward call named by ``KILL_ENV``."""

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        self.a = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 1, 3, padding=1)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            if self.calls == int(os.environ.get(KILL_ENV, "-1")) and _first_attempt_rank1():
                deadline = time.monotonic() + 60
                while not Path(os.environ[WAIT_ENV]).exists() and time.monotonic() < deadline:
                    time.sleep(0.01)
                os.kill(os.getpid(), signal.SIGKILL)
            self.calls += 1
        return self.b(torch.relu(self.a(x)))


def _first_attempt_rank1() -> bool:
    return os.environ.get("RANK") == "1" and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"


def elastic_net(*, in_channels: int = 1) -> nn.Module:
    return ElasticNet(in_channels)


def _register() -> None:
    from advcorrupt.models import list_models, register_model

    if "elastic_net" not in list_models():
        register_model(elastic_net)


def _train_args(out: Path) -> list[str]:
    # One epoch of 6 steps, 2 images per rank; checkpoints at steps 2, 4 (mid-epoch) and 6.
    opts: dict[str, Any] = {
        "--model": "elastic_net", "--strategy": "learned", "--corruptions": "gaussian_noise,brightness",
        "--severities": "1,2", "--epochs": 1, "--steps-per-epoch": 6, "--batch-size": 2,
        "--synthetic-train": 24, "--synthetic-test": 2, "--synthetic-size": 32, "--device": "cpu",
        "--out-dir": str(out), "--policy-kwargs": json.dumps(SMALL_POLICY), "--policy-lr": 1e-2,
        "--checkpoint-every": 2, "--keep-last": 5,
    }
    return ["train", *[str(a) for kv in opts.items() for a in kv], "--no-progress", "--resume"]


def _torchrun(out: Path, log: Path, **env: str) -> subprocess.Popen[bytes]:
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    cmd = [torchrun, "--standalone", "--nnodes", "1", "--nproc-per-node", "2", "--max-restarts", "1",
           "--monitor-interval", "0.2", str(Path(__file__).resolve()), *_train_args(out)]
    full_env = {
        **os.environ, "OMP_NUM_THREADS": "1", **env,
        # torchrun's agent shares one TCPStore across restarts by default, and a restarted rank
        # can read the previous attempt's gloo/NCCL addresses from it (pytorch/pytorch#135712,
        # #167288: "Connection refused" at init after a restart). A fresh store per attempt:
        "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    with log.open("wb") as sink:
        return subprocess.Popen(cmd, env=full_env, stdout=sink, stderr=subprocess.STDOUT)


def _wait(proc: subprocess.Popen[bytes], timeout: float = 600) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
        raise


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


needs_dist = pytest.mark.skipif(not torch.distributed.is_available(), reason="needs torch.distributed")


@pytest.fixture(scope="module")
def elastic_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """The killed-and-restarted run and an uninterrupted one: ``(killed, reference, torchrun log)``."""
    tmp = tmp_path_factory.mktemp("elastic")
    killed, reference = tmp / "killed", tmp / "reference"
    # Both runs at once (each on its own OS-picked port): half the wall time of one after the other.
    run = _torchrun(killed, tmp / "killed.log", **{KILL_ENV: "4", WAIT_ENV: str(killed / "ckpt_00000004.pt")})
    ref_run = _torchrun(reference, tmp / "reference.log")
    try:
        codes = _wait(run), _wait(ref_run)
    finally:
        for proc in (run, ref_run):
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    log = (tmp / "killed.log").read_text(errors="replace")
    assert codes[0] == 0, f"torchrun failed:\n{log[-4000:]}"
    assert codes[1] == 0, (tmp / "reference.log").read_text(errors="replace")[-4000:]
    return killed, reference, log


@needs_dist
@pytest.mark.timeout(900)  # ~31 s of CPU time in all; minutes of wall time when the CPUs are shared
def test_torchrun_restarts_a_group_after_a_rank_is_killed_and_the_run_matches_an_uninterrupted_one(
    elastic_runs: tuple[Path, Path, str],
) -> None:
    from advcorrupt.checkpoint import list_checkpoints, load_checkpoint

    killed, reference, log = elastic_runs
    # The first attempt really lost rank 1 to SIGKILL (exit code -9); finishing with code 0
    # after that means torchrun restarted the group and the second attempt completed.
    assert "exitcode: -9" in log and "local_rank: 1" in log, log[-4000:]
    assert log.count("no checkpoint in") == 1, "only the first attempt started from scratch"

    steps = _rows(killed / "steps.jsonl")
    assert [s["step"] for s in steps] == list(range(6)), "every step logged exactly once"
    assert steps == _rows(reference / "steps.jsonl"), "the restarted run replays the uninterrupted one"
    final = {d: load_checkpoint(list_checkpoints(d)[-1]) for d in (killed, reference)}
    assert final[killed]["global_step"] == 6
    for key in final[reference]["model"]:
        assert torch.equal(final[killed]["model"][key], final[reference]["model"][key]), key
    policy = lambda d: final[d]["trainer"]["strategy_state"]["policy"]  # noqa: E731
    for key in policy(reference):
        assert torch.equal(policy(killed)[key], policy(reference)[key]), key
    for a, b in zip(final[killed]["generators"], final[reference]["generators"]):
        assert torch.equal(a, b), "each rank's corruption generator continues where it stopped"
    # Validation (rank 0, on the final weights) agrees too.
    val = lambda d: {k: v for k, v in _rows(d / "metrics.jsonl")[-1].items() if k.startswith("val_")}  # noqa: E731
    assert val(killed) == val(reference) and val(killed)


@needs_dist
@pytest.mark.timeout(900)
def test_the_epoch_log_of_a_restarted_ddp_run_matches_the_uninterrupted_one(elastic_runs: tuple[Path, Path, str]) -> None:
    killed, reference, _ = elastic_runs
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time_s"} for r in rows]  # noqa: E731
    assert strip(_rows(killed / "metrics.jsonl")) == strip(_rows(reference / "metrics.jsonl"))


if __name__ == "__main__":  # the script torchrun runs
    torch.set_num_threads(1)
    _register()
    from advcorrupt.cli import main

    sys.exit(main(sys.argv[1:]))
