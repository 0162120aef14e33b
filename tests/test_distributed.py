"""Distributed data parallel for real: two CPU processes with the gloo backend on loopback.

The processes are started like ``torchrun`` starts them (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT`` in the environment). The rendezvous store is hosted by this test
process on a port the OS picks (bound to port 0 and held open while the workers run), and the
workers join it as clients (``TORCHELASTIC_USE_AGENT_STORE``, as under ``torchrun``), so two test
runs on one machine can never collide on a port.

One launch of two workers checks three things (see docs/distributed.md for the maths):

A. Deterministic corruption (one fixed action, ``brightness`` at level 2) and a BatchNorm-free
   model: the detector of both ranks equals a single-process run on the concatenated batch.
B. The learned policy: each rank starts from different random weights and samples from its own
   generator stream; after training both ranks hold identical policy and detector weights, and
   their sampled actions differ.
C. ``advcorrupt train`` itself under two processes: a DistributedSampler split, statistics
   reduced across ranks, only rank 0 writing files.
D. The same for a semantic run: ``--dataset camvid`` on a tiny CamVid-layout folder, an 11-class
   model, the semantic task's loss and validation (mIoU) under DDP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from advcorrupt.checkpoint import CheckpointError, list_checkpoints, load_checkpoint

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent
WORLD = 2
STEPS = 3
SMALL_POLICY = {"input_size": 32, "widths": [4, 4, 8, 8, 8]}
SPACE = {"corruptions": ["gaussian_noise", "brightness"], "severities": [1, 2]}


class TinyNet(nn.Module):
    """Two 3x3 convolutions, no BatchNorm (its batch statistics would differ per rank)."""

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        self.a = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def tiny_ddp_net(*, in_channels: int = 1) -> nn.Module:
    return TinyNet(in_channels)


class TinySegNet(nn.Module):
    """RGB in, K class logits out; no BatchNorm."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.b = nn.Conv2d(4, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def tiny_ddp_seg(*, in_channels: int = 3, num_classes: int = 11) -> nn.Module:
    return TinySegNet(in_channels, num_classes)


def _register() -> None:
    from advcorrupt.models import list_models, register_model

    for factory in (tiny_ddp_net, tiny_ddp_seg):
        if factory.__name__ not in list_models():
            register_model(factory)


_register()


def _data(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, 32, 32, generator=g)
    masks = (torch.rand(n, 1, 32, 32, generator=g) > 0.97).float()
    return images, masks


def _fixed_trainer(model: nn.Module, params: Any) -> Any:
    from advcorrupt.policy import ActionSpace
    from advcorrupt.trainer import AdversarialCorruptionTrainer

    opt = torch.optim.Adam(params, lr=1e-2)
    return AdversarialCorruptionTrainer(
        model, opt, action_space=ActionSpace(["brightness"], severities=(2,)), strategy="brightness"
    )


# ------------------------------------------------------------------------------------ the worker
def _worker(out_dir: str) -> None:
    """Body of each of the two processes (run through ``python -c``)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from advcorrupt.cli import main
    from advcorrupt.policy import ActionSpace
    from advcorrupt.trainer import AdversarialCorruptionTrainer

    out = Path(out_dir)
    rank = int(os.environ["RANK"])
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    world = dist.get_world_size()

    # A: deterministic corruption; every rank takes its half of one global batch.
    images, masks = _data(0, 2 * world)
    torch.manual_seed(1000 + rank)  # different init per rank: DDP must start all from rank 0's
    model = TinyNet()
    ddp = DDP(model)
    trainer = _fixed_trainer(ddp, ddp.parameters())
    part = slice(2 * rank, 2 * rank + 2)
    for _ in range(STEPS):
        trainer.step(images[part], masks[part])
    torch.save({"model": model.state_dict()}, out / f"fixed_rank{rank}.pt")

    # B: a learned policy, own data and own generator stream per rank; "relative" also keeps
    # one reward baseline per action, summed across ranks in the same all_reduce.
    for strategy in ("learned", "relative"):
        torch.manual_seed(2000 + rank)  # the policies start different: the trainer must broadcast
        model = TinyNet()
        ddp = DDP(model)
        trainer = AdversarialCorruptionTrainer(
            ddp, torch.optim.Adam(ddp.parameters(), lr=1e-2),
            action_space=ActionSpace(SPACE["corruptions"], severities=SPACE["severities"]),
            strategy=strategy, policy_kwargs=SMALL_POLICY, policy_lr=0.05, in_channels=1,
            generator=torch.Generator().manual_seed(3000 + rank),
        )
        drawn: list[torch.Tensor] = []
        sample = trainer.strategy.sample

        def recording_sample(images: torch.Tensor, *, generator: torch.Generator | None = None) -> Any:
            s = sample(images, generator=generator)
            drawn.append(s.actions.clone())
            return s

        trainer.strategy.sample = recording_sample  # type: ignore[method-assign]
        images, masks = _data(4000 + rank, 4)
        for _ in range(STEPS):
            trainer.step(images, masks)
        assert trainer.policy is not None
        state = trainer.strategy.state_dict()
        torch.save(
            {"model": model.state_dict(), "policy": trainer.policy.state_dict(), "actions": torch.cat(drawn),
             **{k: state[k] for k in ("baseline", "action_baseline", "action_count") if k in state}},
            out / f"{strategy}_rank{rank}.pt",
        )

    # C: the CLI in the same process group (as under torchrun).
    code = main([
        "train", "--model", "tiny_ddp_net", "--strategy", "learned", "--corruptions", ",".join(SPACE["corruptions"]),
        "--severities", "1,2", "--epochs", "2", "--batch-size", "2", "--synthetic-train", "8",
        "--synthetic-test", "2", "--synthetic-size", "32", "--device", "cpu", "--checkpoint-every", "1",
        "--keep-last", "5", "--policy-kwargs", json.dumps(SMALL_POLICY), "--out-dir", str(out / "run"),
        "--no-progress",
    ])
    (out / f"cli_rank{rank}.json").write_text(json.dumps({"code": code}))

    # D: a semantic run (CamVid layout written by the fixture), 4 images over 2 ranks, batch 1.
    code = main([
        "train", "--model", "tiny_ddp_seg", "--dataset", "camvid", "--data-root", str(out / "camvid"),
        "--crop-size", "32", "48", "--corruptions", ",".join(SPACE["corruptions"]), "--severities", "1,2",
        "--epochs", "1", "--batch-size", "1", "--device", "cpu", "--checkpoint-every", "1", "--keep-last", "5",
        "--policy-kwargs", json.dumps(SMALL_POLICY), "--out-dir", str(out / "semantic"), "--no-progress",
    ])
    (out / f"semantic_rank{rank}.json").write_text(json.dumps({"code": code}))
    dist.destroy_process_group()


_CHILD = """
import sys
sys.path.insert(0, {tests!r})
import test_distributed
test_distributed._worker(sys.argv[1])
"""


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from torch.distributed import TCPStore

    from test_training_semantic import write_camvid

    out = tmp_path_factory.mktemp("ddp")
    write_camvid(out / "camvid")  # for part D
    # The OS picks a free port; the store stays bound to it until the workers are done.
    store = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=90))
    base = {
        **os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(store.port), "WORLD_SIZE": str(WORLD),
        "TORCHELASTIC_USE_AGENT_STORE": "True", "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    procs, logs = [], []
    for rank in range(WORLD):
        log = (out / f"rank{rank}.log").open("wb")
        logs.append(log)
        procs.append(subprocess.Popen(
            [sys.executable, "-c", _CHILD.format(tests=str(TESTS_DIR)), str(out)],
            env={**base, "RANK": str(rank), "LOCAL_RANK": str(rank)}, stdout=log, stderr=subprocess.STDOUT,
        ))
    deadline = time.monotonic() + 150
    try:
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
        for log in logs:
            log.close()
        del store
    codes = [p.returncode for p in procs]
    assert codes == [0] * WORLD, "workers failed:\n" + "\n".join(
        f"--- rank {r} (exit {c}):\n{(out / f'rank{r}.log').read_text()[-3000:]}" for r, c in enumerate(codes)
    )
    return out


def _load(out: Path, name: str) -> list[dict[str, Any]]:
    return [torch.load(out / f"{name}_rank{r}.pt", weights_only=True) for r in range(WORLD)]


def test_ddp_detector_matches_one_process_on_the_concatenated_batch(two_ranks: Path) -> None:
    ranks = _load(two_ranks, "fixed")
    for k, v in ranks[0]["model"].items():
        assert torch.equal(v, ranks[1]["model"][k]), f"ranks disagree on {k}"
    # The same maths in one process: rank 0's initial weights, the whole global batch.
    images, masks = _data(0, 2 * WORLD)
    torch.manual_seed(1000)
    model = TinyNet()
    trainer = _fixed_trainer(model, model.parameters())
    start = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(STEPS):
        trainer.step(images, masks)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(ranks[0]["model"][k], v, rtol=1e-5, atol=1e-6, msg=f"{k} differs from one process")
        assert not torch.equal(v, start[k]), f"{k} did not train"


@pytest.mark.parametrize("strategy", ["learned", "relative"])
def test_policy_stays_identical_across_ranks_while_each_samples_its_own_actions(two_ranks: Path, strategy: str) -> None:
    ranks = _load(two_ranks, strategy)
    for part in ("model", "policy"):
        for k, v in ranks[0][part].items():
            assert torch.equal(v, ranks[1][part][k]), f"ranks disagree on {part}.{k}"
    assert torch.equal(ranks[0]["baseline"], ranks[1]["baseline"]), "the baseline follows the global mean reward"
    if strategy == "relative":  # the per-action baselines follow the actions of both ranks
        assert torch.equal(ranks[0]["action_baseline"], ranks[1]["action_baseline"])
        assert torch.equal(ranks[0]["action_count"], ranks[1]["action_count"])
        assert (ranks[0]["action_count"] > 0).any()
    assert not torch.equal(ranks[0]["actions"], ranks[1]["actions"]), "each rank must draw its own actions"
    from advcorrupt.policy import PolicyNetwork

    def initial_policy(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        TinyNet()  # the worker builds the detector first, from the same seed
        return PolicyNetwork(1, 4, input_size=32, widths=SMALL_POLICY["widths"]).state_dict()

    rank0, rank1 = initial_policy(2000), initial_policy(2001)
    assert any(not torch.equal(rank0[k], rank1[k]) for k in rank0), "the ranks' own initial policies differ"
    assert any(not torch.equal(rank0[k], v) for k, v in ranks[0]["policy"].items()), "the policy must have trained"


def test_train_cli_under_two_processes_writes_once_and_reduces_statistics(two_ranks: Path) -> None:
    assert all(json.loads((two_ranks / f"cli_rank{r}.json").read_text())["code"] == 0 for r in range(WORLD))
    run = two_ranks / "run"
    # 8 images over 2 ranks, batch 2: 2 steps per epoch, 2 epochs; rank 0 logs its own step losses.
    steps = [json.loads(x) for x in (run / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [0, 1, 2, 3]
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    # skipped_epoch = steps x world - (non-skipped steps summed over ranks): 0 only if all_reduced.
    assert all(r["skipped_epoch"] == 0 for r in rows)
    assert all(abs(sum(r["actions"].values()) - 1.0) < 1e-3 or sum(r["actions"].values()) == 0 for r in rows)
    ckpts = list_checkpoints(run)
    assert [p.name for p in ckpts] == [f"ckpt_{s:08d}.pt" for s in (1, 2, 3, 4)]
    last = load_checkpoint(ckpts[-1])
    assert last["world_size"] == WORLD and len(last["generators"]) == WORLD
    assert not torch.equal(last["generators"][0], last["generators"][1]), "one generator stream per rank"


def test_a_semantic_run_under_two_processes_trains_validates_miou_and_records_the_task(two_ranks: Path) -> None:
    assert all(json.loads((two_ranks / f"semantic_rank{r}.json").read_text())["code"] == 0 for r in range(WORLD))
    run = two_ranks / "semantic"
    # 4 training images over 2 ranks, batch 1: 2 steps, each rank on its own half.
    assert [s["step"] for s in (json.loads(x) for x in (run / "steps.jsonl").read_text().splitlines())] == [0, 1]
    (row,) = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert row["skipped_epoch"] == 0 and 0.0 <= row["val_mIoU"] <= 1.0 and len(row["val_IoU"]) == 11
    last = load_checkpoint(list_checkpoints(run)[-1])
    assert last["world_size"] == WORLD and last["trainer"]["task"]["name"] == "semantic"
    assert last["trainer"]["task"]["num_classes"] == 11 and last["trainer"]["task"]["ignore_index"] == 11
    assert last["model"]["b.weight"].shape[0] == 11


def test_a_mid_epoch_checkpoint_of_two_processes_refuses_a_one_process_resume(two_ranks: Path, tmp_path: Path) -> None:
    from advcorrupt.training import TrainConfig, fit

    run = tmp_path / "run"
    run.mkdir()
    mid = load_checkpoint(two_ranks / "run" / "ckpt_00000003.pt")
    assert mid["batch"] == 1
    (run / "ckpt_00000003.pt").write_bytes((two_ranks / "run" / "ckpt_00000003.pt").read_bytes())
    cfg = TrainConfig.from_dict({**mid["config"], "out_dir": str(run)})
    with pytest.raises(CheckpointError, match=r"mid-epoch by 2 process\(es\); this run has 1"):
        fit(cfg, resume=True, progress=False)
