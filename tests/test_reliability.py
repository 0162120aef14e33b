"""Fault tolerance of training: safe and atomic checkpoints, kill-and-resume, non-finite steps,
configuration errors (GitHub issue 6).

Everything runs on tiny synthetic scenes (32x32) with a two-layer test model and a small policy
network so the whole file stays within a few tens of seconds on a 2-core CPU.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from advcorrupt import checkpoint as ckpt_mod
from advcorrupt.checkpoint import (
    CheckpointError,
    CheckpointWarning,
    CheckpointWriteError,
    capture_rng_state,
    latest_valid_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from advcorrupt.training import TrainConfig, TrainingStopped, fit, load_model, restore_training_state
from advcorrupt.models import list_models, register_model

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent


# ------------------------------------------------------------------------------ tiny test models
STALL_ENV = "ADVCORRUPT_TEST_STALL_AT_CALL"


class TinyNet(nn.Module):
    """Two 3x3 convolutions, no BatchNorm; optionally slow (``delay`` s per training forward),
    producing NaN logits on given training-forward calls (``nan_calls``; ``-1``: always), or
    hanging at the training-forward call named by the environment variable ``STALL_ENV`` (so a
    test can kill the process at a known point)."""

    def __init__(self, in_channels: int = 1, *, width: int = 4, delay: float = 0.0, nan_calls: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.a = nn.Conv2d(in_channels, width, 3, padding=1)
        self.b = nn.Conv2d(width, 1, 3, padding=1)
        self.delay = float(delay)
        self.nan_calls = tuple(nan_calls)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.b(torch.relu(self.a(x)))
        if self.training:
            if self.delay:
                time.sleep(self.delay)
            if -1 in self.nan_calls or self.calls in self.nan_calls:
                out = out * float("nan")
            if self.calls == int(os.environ.get(STALL_ENV, "-1")):
                time.sleep(300)
            self.calls += 1
        return out


def tiny_reliability_net(*, in_channels: int = 1, width: int = 4, delay: float = 0.0, nan_calls: Any = ()) -> nn.Module:
    return TinyNet(in_channels, width=width, delay=delay, nan_calls=tuple(nan_calls))


if "tiny_reliability_net" not in list_models():
    register_model(tiny_reliability_net)

SMALL_POLICY = {"input_size": 32, "widths": [4, 4, 8, 8, 8]}


def tiny_config(out_dir: Path, **overrides: Any) -> TrainConfig:
    kw: dict[str, Any] = dict(
        model="tiny_reliability_net", strategy="learned", corruptions=("gaussian_noise", "brightness"),
        severities=(1, 2), epochs=1, steps_per_epoch=2, batch_size=2, synthetic_train=8, synthetic_test=2,
        synthetic_size=32, device="cpu", out_dir=str(out_dir), policy_kwargs=SMALL_POLICY, policy_lr=1e-2,
    )
    kw.update(overrides)
    return TrainConfig(**kw)


def cli_args(out_dir: Path, **overrides: Any) -> list[str]:
    """`advcorrupt train` arguments equivalent to :func:`tiny_config` (plus overrides)."""
    opts: dict[str, Any] = {
        "--model": "tiny_reliability_net", "--strategy": "learned", "--corruptions": "gaussian_noise,brightness",
        "--severities": "1,2", "--epochs": 1, "--steps-per-epoch": 2, "--batch-size": 2,
        "--synthetic-train": 8, "--synthetic-test": 2, "--synthetic-size": 32, "--device": "cpu",
        "--out-dir": str(out_dir), "--policy-kwargs": json.dumps(SMALL_POLICY), "--policy-lr": 1e-2,
    }
    opts.update(overrides)
    args = ["train"]
    for k, v in opts.items():
        args += [k, str(v)]
    return [*args, "--no-progress"]


def _state_snapshot(model: nn.Module, optimizer: torch.optim.Optimizer, trainer: Any) -> dict[str, Any]:
    import copy

    return copy.deepcopy({"model": model.state_dict(), "opt": optimizer.state_dict(), "trainer": trainer.state_dict()})


def _assert_same(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), f"{where} changed"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where} keys changed"
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where} length changed"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where} changed: {a!r} -> {b!r}"


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """Run with one intra-op thread, like the killed subprocess, so losses match bit for bit."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------- atomic saving
def test_a_crash_during_save_leaves_the_previous_checkpoint_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "ckpt_00000001.pt"
    save_checkpoint({"w": torch.arange(4.0)}, target)

    def crash(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        f.write(b"PK\x03\x04 half a zip")  # a partial write, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_mod.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"w": torch.zeros(4)}, target)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(target)["w"], torch.arange(4.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name], "temporary file left behind"


def test_keep_last_keeps_only_the_newest_checkpoints(tmp_path: Path) -> None:
    for step in (5, 10, 20, 40):
        save_checkpoint({"step": step}, tmp_path / f"ckpt_{step:08d}.pt", keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt_00000020.pt", "ckpt_00000040.pt"]
    with pytest.raises(ValueError, match="keep_last"):
        save_checkpoint({}, tmp_path / "ckpt_00000050.pt", keep_last=0)


# ---------------------------------------------------------- full disks and read-only folders
def _full_disk(monkeypatch: pytest.MonkeyPatch, *, fail_from_call: int = 1) -> None:
    """Make checkpoint writes hit a real ENOSPC: from the ``fail_from_call``-th save on, the
    temporary file's descriptor is swapped for /dev/full (the kernel answers "No space left")."""
    calls = {"n": 0}
    real_fdopen = os.fdopen

    def fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if mode == "wb":
            calls["n"] += 1
            if calls["n"] >= fail_from_call:
                os.close(fd)
                return open("/dev/full", "wb")  # noqa: SIM115
        return real_fdopen(fd, mode, *args, **kwargs)

    monkeypatch.setattr(ckpt_mod.os, "fdopen", fdopen)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_during_a_save_names_the_cause_and_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_checkpoint({"w": torch.arange(4.0)}, tmp_path / "ckpt_00000001.pt")
    save_checkpoint({"w": torch.arange(5.0)}, tmp_path / "ckpt_00000002.pt")
    state = {"w": torch.zeros(100_000)}
    _full_disk(monkeypatch)
    with pytest.raises(CheckpointWriteError, match=r"ckpt_00000003\.pt .*the disk is full.*ckpt_00000002\.pt is intact") as e:
        save_checkpoint(state, tmp_path / "ckpt_00000003.pt", keep_last=1)
    monkeypatch.undo()
    assert e.value.errno == 28 and e.value.filename == str(tmp_path / "ckpt_00000003.pt")
    assert isinstance(e.value, OSError)
    # Nothing pruned (keep_last=1 would have deleted both), no temporary file, the state untouched.
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt_00000001.pt", "ckpt_00000002.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt_00000001.pt", "ckpt_00000002.pt"]
    assert torch.equal(load_checkpoint(tmp_path / "ckpt_00000002.pt")["w"], torch.arange(5.0))
    assert set(state) == {"w"} and torch.equal(state["w"], torch.zeros(100_000))


@pytest.mark.parametrize("code, cause", [(30, "read-only"), (13, "not writable")])
def test_a_read_only_folder_names_the_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, cause: str) -> None:
    # Simulated (this suite may run as root, who can write into a chmod-ed folder): the temporary
    # file cannot be created, as on a read-only mount (EROFS) or a folder without write access.
    save_checkpoint({"w": torch.arange(4.0)}, tmp_path / "ckpt_00000001.pt")

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError(code, os.strerror(code), str(tmp_path))

    monkeypatch.setattr(ckpt_mod.tempfile, "mkstemp", refuse)
    with pytest.raises(CheckpointWriteError, match=rf"{cause}.*ckpt_00000001\.pt is intact"):
        save_checkpoint({"w": torch.zeros(4)}, tmp_path / "ckpt_00000002.pt")
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt_00000001.pt"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_training_stops_on_a_full_disk_and_resumes_from_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    # Checkpoints at steps 2, 4 (end of epoch 1), 6, 8: the third write (step 6) meets a full disk.
    cfg = tiny_config(tmp_path / "full", epochs=2, steps_per_epoch=4, synthetic_train=8, checkpoint_every=2)
    _full_disk(monkeypatch, fail_from_call=3)
    with pytest.raises(CheckpointWriteError, match=r"ckpt_00000006\.pt .*disk is full.*ckpt_00000004\.pt is intact"):
        fit(cfg, progress=False)
    monkeypatch.undo()
    assert [p.name for p in list_checkpoints(cfg.out_dir)] == ["ckpt_00000002.pt", "ckpt_00000004.pt"]
    assert load_checkpoint(Path(cfg.out_dir) / "ckpt_00000004.pt")["global_step"] == 4
    assert not list(Path(cfg.out_dir).glob(".ckpt_*")), "no temporary file left behind"
    # Space is back: the same command with resume loses nothing beyond the last interval.
    fit(cfg, resume=True, progress=False)
    ref = tiny_config(tmp_path / "ref", epochs=2, steps_per_epoch=4, synthetic_train=8, checkpoint_every=2)
    fit(ref, progress=False)
    assert _steps(Path(cfg.out_dir)) == _steps(Path(ref.out_dir))
    _assert_same(load_checkpoint(list_checkpoints(ref.out_dir)[-1])["model"],
                 load_checkpoint(list_checkpoints(cfg.out_dir)[-1])["model"], "model")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_train_exits_4_with_a_message_when_a_checkpoint_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    from advcorrupt.cli import main

    _full_disk(monkeypatch)
    assert main(cli_args(tmp_path)) == 4
    err = capsys.readouterr().err
    assert "advcorrupt train: error: could not write checkpoint ckpt_00000002.pt" in err and "the disk is full" in err
    assert "Traceback" not in err and list_checkpoints(tmp_path) == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_train_exits_4_when_the_disk_fills_while_writing_the_step_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    from advcorrupt.cli import main

    real_open = Path.open
    appends = {"n": 0}

    def full_steps_log(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if self.name == "steps.jsonl" and mode == "a":
            appends["n"] += 1
            if appends["n"] >= 2:  # step 1 and its checkpoint land; the log append of step 2 fails
                return open("/dev/full", "a")  # noqa: SIM115  (the kernel answers ENOSPC on flush)
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", full_steps_log)
    assert main(cli_args(tmp_path, **{"--checkpoint-every": 1, "--steps-per-epoch": 3})) == 4
    err = capsys.readouterr().err
    assert "advcorrupt train: error: could not write" in err and "No space left on device" in err
    assert "the last checkpoint" in err and "ckpt_00000001.pt is intact" in err and "Traceback" not in err
    monkeypatch.undo()
    assert load_checkpoint(list_checkpoints(tmp_path)[-1])["global_step"] == 1, "the last checkpoint is intact"


# ------------------------------------------------------------------------------- determinism
def _final_weights(out: Path) -> dict[str, Any]:
    state = load_checkpoint(list_checkpoints(out)[-1])
    return {"model": state["model"], "policy": state["trainer"]["strategy_state"]["policy"]}


def test_the_same_seed_twice_gives_identical_weights_on_cpu(tmp_path: Path, one_thread: None) -> None:
    runs = {name: tiny_config(tmp_path / name, seed=seed, steps_per_epoch=3) for name, seed in (("a", 5), ("b", 5), ("c", 6))}
    for cfg in runs.values():
        fit(cfg, progress=False)
    _assert_same(_final_weights(tmp_path / "a"), _final_weights(tmp_path / "b"), "weights")
    assert _steps(tmp_path / "a") == _steps(tmp_path / "b")
    other = _final_weights(tmp_path / "c")["model"]
    assert any(not torch.equal(v, other[k]) for k, v in _final_weights(tmp_path / "a")["model"].items()), "seed has no effect"


def test_deterministic_sets_the_torch_switches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None) -> None:
    from advcorrupt.cli.train import config_from_args
    from advcorrupt._determinism import set_deterministic
    from advcorrupt.cli import build_parser

    assert config_from_args(build_parser().parse_args([*cli_args(tmp_path), "--deterministic"])).deterministic is True
    assert config_from_args(build_parser().parse_args(cli_args(tmp_path))).deterministic is False
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        fit(tiny_config(tmp_path, deterministic=True, steps_per_epoch=1), progress=False)
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        set_deterministic(False)
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic


# ------------------------------------------------------------------ damaged newest checkpoint
def _three_checkpoints(folder: Path) -> list[Path]:
    return [save_checkpoint({"step": s, "w": torch.full((64,), float(s))}, folder / f"ckpt_{s:08d}.pt") for s in (2, 4, 6)]


def test_latest_valid_checkpoint_skips_a_damaged_newest_one_with_a_warning(tmp_path: Path) -> None:
    paths = _three_checkpoints(tmp_path)
    paths[2].write_bytes(paths[2].read_bytes()[:100])  # torn by a dying disk, say
    with pytest.warns(CheckpointWarning, match=r"ckpt_00000006\.pt is truncated or corrupt.*kept as ckpt_00000006\.pt\.damaged"):
        found = latest_valid_checkpoint(tmp_path)
    assert found is not None and found[0] == paths[1] and found[1]["step"] == 4
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt_00000002.pt", "ckpt_00000004.pt"]
    assert (tmp_path / "ckpt_00000006.pt.damaged").is_file(), "the damaged file is kept for inspection"


def test_latest_valid_checkpoint_refuses_to_start_over_when_every_checkpoint_is_damaged(tmp_path: Path) -> None:
    assert latest_valid_checkpoint(tmp_path) is None
    for p in _three_checkpoints(tmp_path):
        p.write_bytes(b"")
    with pytest.warns(CheckpointWarning), pytest.raises(CheckpointError, match=r"none of the 3 checkpoint\(s\).*start afresh"):
        latest_valid_checkpoint(tmp_path, quarantine=False)
    assert len(list_checkpoints(tmp_path)) == 3, "quarantine=False renames nothing"


def test_resume_skips_damaged_newest_checkpoints_and_still_reproduces_the_run(tmp_path: Path, one_thread: None) -> None:
    # Checkpoints at steps 2, 4 (end of epoch 1), 6, 8. The two newest get damaged (a disk that
    # lost them, a copy cut short): resume falls back to step 4 and redoes steps 4-7 exactly.
    cfg = tiny_config(tmp_path, epochs=2, steps_per_epoch=4, synthetic_train=8, checkpoint_every=2, keep_last=4)
    fit(cfg, progress=False)
    reference = load_checkpoint(tmp_path / "ckpt_00000008.pt")
    ref_steps = _steps(tmp_path)
    (tmp_path / "ckpt_00000008.pt").write_bytes((tmp_path / "ckpt_00000008.pt").read_bytes()[:5000])
    (tmp_path / "ckpt_00000006.pt").write_bytes(b"")
    with pytest.warns(CheckpointWarning) as caught:
        summary = fit(cfg, resume=True, progress=False)
    messages = [str(w.message) for w in caught if issubclass(w.category, CheckpointWarning)]
    assert len(messages) == 2 and "ckpt_00000008.pt" in messages[0] and "ckpt_00000006.pt is empty" in messages[1]
    assert summary["steps"] == 8
    assert sorted(p.name for p in tmp_path.glob("*.damaged")) == ["ckpt_00000006.pt.damaged", "ckpt_00000008.pt.damaged"]
    assert _steps(tmp_path) == ref_steps
    _assert_same(reference["model"], load_checkpoint(tmp_path / "ckpt_00000008.pt")["model"], "model")


def test_rng_states_survive_a_safe_save_and_load(tmp_path: Path) -> None:
    state = capture_rng_state()
    first = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    save_checkpoint({"rng": state}, tmp_path / "ckpt_00000001.pt")
    restore_rng_state(load_checkpoint(tmp_path / "ckpt_00000001.pt")["rng"])
    again = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(first[0], again[0])
    assert np.array_equal(first[1], again[1])
    assert first[2] == again[2]


# ---------------------------------------------------------------------------- unsafe files
class _Payload:
    """Unpickling this runs ``open(marker, "w")``: it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("container", ["torch_zip", "raw_pickle"])
def test_a_pickle_that_would_run_code_is_refused_and_never_runs(tmp_path: Path, container: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "ckpt_00000001.pt"
    if container == "torch_zip":
        torch.save({"format_version": 1, "model": {}, "evil": _Payload(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"format_version": 1, "evil": _Payload(marker)}))
    # The payload is live: an unsafe load would create the marker.
    unsafe = torch.load(path, weights_only=False) if container == "torch_zip" else pickle.loads(path.read_bytes())
    unsafe["evil"].close()
    assert marker.exists()
    marker.unlink()

    named = r"the global (io|builtins)\.open" if container == "torch_zip" else ""
    with pytest.raises(CheckpointError, match=rf"refused to load .*{named}.*weights_only=True"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError):
        load_model(path)
    assert not marker.exists(), "the pickle's code ran"


@pytest.mark.parametrize(
    "damage, message",
    [
        ("empty", "empty"),
        ("truncated", "truncated or corrupt"),
        ("garbage", "truncated or corrupt"),
        ("not_a_checkpoint", "not an advcorrupt checkpoint"),
    ],
)
def test_a_damaged_checkpoint_is_reported_as_such(tmp_path: Path, damage: str, message: str) -> None:
    good = tmp_path / "good.pt"
    save_checkpoint({"w": torch.randn(256, 64)}, good)
    bad = tmp_path / "ckpt_00000001.pt"
    data = good.read_bytes()
    if damage == "empty":
        bad.write_bytes(b"")
    elif damage == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        bad.write_bytes(bytes(reversed(data)))
    else:
        torch.save([1, 2, 3], bad)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(bad)


# ------------------------------------------------------ failed loads leave the running state alone
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    fit(tiny_config(out), progress=False)
    return out


def _running_objects(config: TrainConfig) -> tuple[nn.Module, torch.optim.Optimizer, Any]:
    from advcorrupt.models import create_model
    from advcorrupt.policy import ActionSpace
    from advcorrupt.trainer import AdversarialCorruptionTrainer

    torch.manual_seed(123)
    model = create_model(config.model, in_channels=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    trainer = AdversarialCorruptionTrainer(
        model, opt, action_space=ActionSpace(config.corruptions, severities=config.severities),
        strategy=config.strategy, policy_kwargs=dict(config.policy_kwargs), policy_lr=config.policy_lr,
    )
    x, y = torch.rand(2, 1, 32, 32), (torch.rand(2, 1, 32, 32) > 0.97).float()
    trainer.step(x, y)  # non-trivial optimizer, policy and baseline state
    return model, opt, trainer


@pytest.mark.parametrize("case", ["truncated", "corrupt", "other_model", "other_action_space", "other_config"])
def test_a_failed_restore_names_the_problem_and_changes_nothing(trained_run: Path, tmp_path: Path, case: str) -> None:
    config = tiny_config(trained_run)
    source = list_checkpoints(trained_run)[-1]
    bad = tmp_path / "ckpt_00000099.pt"
    state = load_checkpoint(source)
    if case == "truncated":
        bad.write_bytes(source.read_bytes()[:1000])
        expected = "truncated or corrupt"
    elif case == "corrupt":
        raw = bytearray(source.read_bytes())
        raw[len(raw) // 2 : len(raw) // 2 + 64] = b"\x00" * 64
        bad.write_bytes(bytes(raw))
        expected = "truncated or corrupt"
    elif case == "other_model":
        state["model"] = TinyNet(width=8).state_dict()
        state["config"]["model"] = "wide_net"
        save_checkpoint(state, bad)
        expected = r"another model \(the checkpoint says model='wide_net'\); expected 'tiny_reliability_net'.*shape"
    elif case == "other_action_space":
        state["trainer"]["action_space"]["severities"] = [1, 2, 3]
        save_checkpoint(state, bad)
        expected = r"different action space .*'severities': \[1, 2, 3\].*expected this trainer's .*'severities': \[1, 2\]"
    else:
        state["config"]["seed"] = 7
        save_checkpoint(state, bad)
        expected = r"different configuration: seed=7 \(this run: 0\)"

    model, opt, trainer = _running_objects(config)
    before = _state_snapshot(model, opt, trainer)
    rng_before = torch.get_rng_state()
    with pytest.raises(CheckpointError, match=expected):
        restore_training_state(bad, model=model, optimizer=opt, trainer=trainer, config=config)
    _assert_same(before, _state_snapshot(model, opt, trainer), "state")
    assert torch.equal(rng_before, torch.get_rng_state())


def test_a_good_restore_loads_every_part(trained_run: Path) -> None:
    config = tiny_config(trained_run)
    model, opt, trainer = _running_objects(config)
    state = restore_training_state(list_checkpoints(trained_run)[-1], model=model, optimizer=opt, trainer=trainer, config=config)
    _assert_same(state["model"], model.state_dict(), "model")
    _assert_same(state["trainer"]["strategy_state"]["policy"], trainer.policy.state_dict(), "policy")
    assert state["global_step"] == 2 and state["epoch"] == 1 and state["batch"] == 0
    for key in ("optimizer", "scheduler", "rng", "generators", "config", "trainer"):
        assert state[key], key
    assert {"torch", "numpy", "python"} <= set(state["rng"])


def test_resume_with_another_configuration_fails_before_touching_the_run(trained_run: Path) -> None:
    before = {p.name: p.read_bytes() for p in trained_run.iterdir() if p.is_file()}
    with pytest.raises(CheckpointError, match=r"batch_size=2 \(this run: 4\).*new --out-dir"):
        fit(tiny_config(trained_run, batch_size=4, epochs=2), resume=True, progress=False)
    after = {p.name: p.read_bytes() for p in trained_run.iterdir() if p.is_file()}
    assert before == after


# --------------------------------------------------------------------------- non-finite steps
def test_non_finite_steps_are_skipped_counted_and_logged(tmp_path: Path) -> None:
    # Training forwards 1 and 2 give NaN logits: two skipped steps, fewer than the limit of 3.
    cfg = tiny_config(tmp_path, model_kwargs={"nan_calls": [1, 2]}, steps_per_epoch=4, max_consecutive_skips=3)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        summary = fit(cfg, progress=False)
    assert summary["skipped"] == 2 and summary["steps"] == 4
    steps = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert [s["skipped"] for s in steps] == [0.0, 1.0, 1.0, 0.0]
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["skipped_epoch"] == 2 and row["skipped_total"] == 2
    assert np.isfinite(row["train_loss"]), "skipped steps must stay out of the epoch means"


def test_training_stops_after_too_many_consecutive_non_finite_steps(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, model_kwargs={"nan_calls": [-1]}, steps_per_epoch=8, max_consecutive_skips=3)
    with pytest.warns(RuntimeWarning), pytest.raises(TrainingStopped, match=r"step 3: 3 consecutive .*--max-consecutive-skips"):
        fit(cfg, progress=False)
    steps = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert [s["skipped"] for s in steps] == [1.0, 1.0, 1.0], "the skipped steps are logged before stopping"


# --------------------------------------------------------------------------- configuration errors
def _bad_layout(tmp_path: Path) -> str:
    (tmp_path / "data" / "images").mkdir(parents=True)
    return str(tmp_path / "data")


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        ({"model": "resnet9000"}, KeyError, r"unknown model 'resnet9000'; choose one of .*--model"),
        ({"strategy": "hurricane"}, ValueError, r"unknown strategy 'hurricane'.*--strategy"),
        ({"bce_pos_weight": 0.0}, ValueError, r"bce_pos_weight must be a finite number > 0; got 0.0"),
        ({"severities": (1, 9)}, ValueError, r"severities must be in \[1, 5\].*got \[9\].*--severities"),
        ({"corruptions": ("gaussian_noise", "fog_of_war")}, KeyError, r"fog_of_war.*--corruptions"),
        ({"data_root": "MISSING"}, FileNotFoundError, r"does not exist.*--data-root"),
        ({"data_root": "BAD_LAYOUT"}, FileNotFoundError, r"lacks the ISTD layout: missing masks/, img_idx/"),
    ],
)
def test_configuration_errors_fail_before_training_and_name_the_fix(
    tmp_path: Path, overrides: dict[str, Any], error: type[Exception], message: str
) -> None:
    if overrides.get("data_root") == "MISSING":
        overrides = {"data_root": str(tmp_path / "nowhere")}
    elif overrides.get("data_root") == "BAD_LAYOUT":
        overrides = {"data_root": _bad_layout(tmp_path)}
    out = tmp_path / "run"
    with pytest.raises(error, match=message):
        fit(tiny_config(out, **overrides), progress=False)
    assert not out.exists(), "nothing may be written before the configuration is valid"


# ---------------------------------------------------------------------------- kill and resume
_CHILD = """
import json, sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
import test_reliability  # registers the tiny test model
from advcorrupt.cli import main
sys.exit(main(json.loads(sys.argv[1])))
"""


def _steps(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (path / "steps.jsonl").read_text().splitlines() if line.strip()]


def test_a_killed_run_resumes_from_its_last_checkpoint_and_reproduces_the_uninterrupted_run(
    tmp_path: Path, one_thread: None
) -> None:
    from advcorrupt.cli import main

    # 2 epochs x 6 steps, a checkpoint every 2 steps: 2, 4 (mid-epoch), 6 (epoch end), 8, 10, 12.
    # The child hangs in step 10 (training forward #9), after checkpoint 8 is written: the kill
    # then lands mid-epoch whatever the machine's speed.
    overrides = {"--epochs": 2, "--steps-per-epoch": 6, "--synthetic-train": 12, "--checkpoint-every": 2, "--keep-last": 3}
    killed = tmp_path / "killed"
    env = {
        **os.environ, STALL_ENV: "9", "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    log = tmp_path / "child.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD.format(tests=str(TESTS_DIR)), json.dumps(cli_args(killed, **overrides))],
            env=env, stdout=sink, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 120
            while not (killed / "ckpt_00000008.pt").exists():  # appears atomically (os.replace)
                assert proc.poll() is None, f"training exited early:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, "no mid-epoch checkpoint within 120 s"
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)

    survivors = list_checkpoints(killed)
    newest = load_checkpoint(survivors[-1])
    assert newest["global_step"] == 8 and newest["epoch"] == 1 and newest["batch"] == 2, "the kill lands mid-epoch"
    # keep_last=3 prunes right after the newest file lands; the kill may fall in between.
    assert [p.name for p in survivors][-3:] == ["ckpt_00000004.pt", "ckpt_00000006.pt", "ckpt_00000008.pt"]
    assert len(survivors) <= 4
    before_resume = _steps(killed)
    resumed_from = newest["global_step"]

    # A copy that only keeps the epoch-boundary checkpoint (step 6).
    boundary = tmp_path / "boundary"
    shutil.copytree(killed, boundary)
    for p in list_checkpoints(boundary):
        if p.name != "ckpt_00000006.pt":
            p.unlink()

    reference = tmp_path / "reference"
    assert main(cli_args(reference, **overrides)) == 0
    assert main([*cli_args(killed, **overrides), "--resume"]) == 0
    assert main([*cli_args(boundary, **overrides), "--resume"]) == 0

    ref = _steps(reference)
    assert [s["step"] for s in ref] == list(range(12))
    # Work up to the last checkpoint was kept as it was; only the steps after it were redone.
    after = _steps(killed)
    assert after[:resumed_from] == before_resume[:resumed_from]
    assert after == ref, "resuming mid-epoch must replay the uninterrupted run exactly"
    assert _steps(boundary) == ref, "resuming from an epoch boundary must replay the uninterrupted run exactly"
    # Epoch logs agree too (wall time aside).
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time_s"} for r in rows]  # noqa: E731
    metrics = lambda d: strip([json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()])  # noqa: E731
    assert metrics(killed) == metrics(reference) == metrics(boundary)
    final = {d: load_checkpoint(list_checkpoints(d)[-1]) for d in (reference, killed, boundary)}
    for d in (killed, boundary):
        _assert_same(final[reference]["model"], final[d]["model"], "model")
        _assert_same(final[reference]["trainer"]["strategy_state"]["policy"], final[d]["trainer"]["strategy_state"]["policy"], "policy")
    assert not list(killed.glob(".ckpt_*.tmp")), "stale temporary files are cleaned on resume"


# -------------------------------------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_run_checkpoints_cuda_rng_and_resumes(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, device="cuda", amp="bf16", epochs=2, steps_per_epoch=3, checkpoint_every=2, keep_last=5)
    fit(cfg, progress=False)
    state = load_checkpoint(list_checkpoints(tmp_path)[-1])
    assert "cuda" in state["rng"] and len(state["rng"]["cuda"]) == torch.cuda.device_count()
    assert all(t.device.type == "cpu" for t in state["model"].values()), "checkpoints load onto the CPU"
    ref = _steps(tmp_path)
    list_checkpoints(tmp_path)[-1].unlink()  # back to the mid-epoch checkpoint at step 4
    summary = fit(cfg, resume=True, progress=False)
    assert summary["steps"] == 6
    again = _steps(tmp_path)
    assert [s["step"] for s in again] == list(range(6))
    assert np.allclose([s["loss"] for s in again], [s["loss"] for s in ref], atol=1e-3)
