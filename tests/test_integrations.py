"""Integrations: PyTorch Lightning (callback, checkpoints, DDP with two CPU processes) and accelerate.

The DDP case runs this file as a script (``python tests/test_integrations.py ddp OUT``): Lightning's
DDP launcher starts the second process by re-running the same command, with gloo on the loopback.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

L = pytest.importorskip("lightning.pytorch") if __name__ != "__main__" else __import__("lightning.pytorch").pytorch

from advcorrupt.data import SyntheticIRSTD  # noqa: E402
from advcorrupt.integrations.lightning import AdversarialCorruption  # noqa: E402
from advcorrupt.losses import PerSampleCrossEntropy, SoftIoULoss  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMALL_POLICY = {"input_size": 32, "widths": [4, 4, 8, 8, 8]}


class TinySegmenter(L.LightningModule):
    """An ordinary LightningModule; ``per_sample=False`` returns only the mean loss (not enough)."""

    def __init__(self, per_sample: bool = True) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))
        self.loss_fn = SoftIoULoss(reduction="none")
        self.per_sample = per_sample
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        images, masks = batch
        self.batch_sizes.append(images.shape[0])
        per_sample = self.loss_fn(self(images), masks)
        if not self.per_sample:
            return per_sample.mean()
        return {"loss": per_sample.mean(), "per_sample_loss": per_sample}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def _loader(n: int = 8) -> DataLoader:
    return DataLoader(SyntheticIRSTD(n, size=32, seed=1), batch_size=4)


def _trainer(tmp: Path, **kw: Any) -> Any:
    args = dict(
        accelerator="cpu", devices=1, max_epochs=1, default_root_dir=str(tmp), enable_progress_bar=False,
        enable_model_summary=False, logger=L.loggers.CSVLogger(str(tmp), name="logs"),
    )
    return L.Trainer(**{**args, **kw})


def _callback(**kw: Any) -> AdversarialCorruption:
    return AdversarialCorruption(corruptions=["gaussian_noise", "contrast"], severities=(1, 2), seed=0,
                                 policy_kwargs=SMALL_POLICY, **kw)


def test_lightning_callback_trains_on_clean_plus_corrupted_and_logs_through_the_module(tmp_path: Path) -> None:
    module, cb = TinySegmenter(), _callback()
    trainer = _trainer(tmp_path, max_epochs=2, callbacks=[cb], log_every_n_steps=1)
    trainer.fit(module, _loader())
    assert module.batch_sizes == [8, 8, 8, 8], "each step sees 4 clean images and their 4 corrupted copies"
    assert cb.adversary is not None and cb.adversary.strategy.reinforce.num_updates == 4
    logged = trainer.logged_metrics
    for key in ("loss_clean_epoch", "loss_corrupted_epoch", "policy_entropy_epoch"):
        assert torch.isfinite(logged[f"advcorrupt/{key}"])
    shares = [float(logged[f"advcorrupt/share/{n}"]) for n in ("gaussian_noise", "contrast")]
    assert abs(sum(shares) - 1.0) < 1e-6
    metrics_csv = next(tmp_path.glob("logs/version_*/metrics.csv")).read_text()
    assert "advcorrupt/share/contrast" in metrics_csv.splitlines()[0], "the module's logger received the shares"


class TinySemanticSegmenter(L.LightningModule):
    """An RGB, 3-class LightningModule with class-index masks and per-image cross-entropy."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Conv2d(3, 3, 3, padding=1)
        self.loss_fn = PerSampleCrossEntropy(ignore_index=255)
        self.mask_shapes: list[tuple[int, ...]] = []

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        images, masks = batch
        self.mask_shapes.append(tuple(masks.shape))
        per_sample = self.loss_fn(self.net(images), masks)
        return {"loss": per_sample.mean(), "per_sample_loss": per_sample}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def test_lightning_callback_trains_a_multi_class_rgb_module_with_class_index_masks(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(8, 3, 16, 16, generator=gen)
    masks = torch.randint(0, 3, (8, 16, 16), generator=gen)
    masks[0, :4] = 255  # ignored pixels
    loader = DataLoader(torch.utils.data.TensorDataset(images, masks), batch_size=4)
    module = TinySemanticSegmenter()
    cb = AdversarialCorruption("random@1-5", corruptions=["gaussian_noise", "contrast"], seed=0)
    trainer = _trainer(tmp_path, max_epochs=1, callbacks=[cb], log_every_n_steps=1)
    trainer.fit(module, loader)
    assert cb.action_space.severities == (1, 2, 3, 4, 5), "the schedule's levels widen the action space"
    assert module.mask_shapes == [(8, 16, 16), (8, 16, 16)], "class-index masks follow their corrupted copies"
    assert cb.adversary is not None and cb.adversary.last_actions is not None
    _, levels = cb.adversary.action_space.decode(cb.adversary.last_actions)
    assert levels.shape == (4,) and bool(((levels >= 1) & (levels <= 5)).all())
    assert torch.isfinite(trainer.logged_metrics["advcorrupt/loss_corrupted_epoch"])


def test_lightning_default_strategy_is_the_tasks_and_a_module_without_forward_is_told_to_name_it(
    tmp_path: Path,
) -> None:
    gen = torch.Generator().manual_seed(0)
    loader = DataLoader(torch.utils.data.TensorDataset(torch.rand(8, 3, 16, 16, generator=gen),
                                                       torch.randint(0, 3, (8, 16, 16), generator=gen)), batch_size=4)
    with_forward = type("WithForward", (TinySemanticSegmenter,), {"forward": lambda self, x: self.net(x)})
    cb = AdversarialCorruption(corruptions=["gaussian_noise", "contrast"], seed=0)
    _trainer(tmp_path / "a", max_epochs=2, callbacks=[cb]).fit(with_forward(), loader)
    assert cb.adversary is not None and cb.adversary.strategy.name == "curriculum@1-3"  # 3 output channels: semantic
    assert cb.adversary.strategy.total_steps == 4  # the default is a curriculum: its timetable spans the fit
    cb = AdversarialCorruption(corruptions=["gaussian_noise", "contrast"], seed=0)
    with pytest.raises(RuntimeError, match=r"strategy=None .*Name the strategy"):
        _trainer(tmp_path / "b", callbacks=[cb]).fit(TinySemanticSegmenter(), loader)


def test_lightning_curriculum_spans_the_fit(tmp_path: Path) -> None:
    cb = _callback(strategy="curriculum@1-2")
    trainer = _trainer(tmp_path, max_epochs=2, callbacks=[cb])
    trainer.fit(TinySegmenter(), _loader())
    assert cb.adversary is not None
    schedule = cb.adversary.strategy
    assert schedule.total_steps == 4 and schedule.step == 4, "2 epochs x 2 batches: the timetable covers the fit"
    assert [schedule.level_at(t) for t in range(4)] == [1, 1, 2, 2]


def test_lightning_checkpoint_saves_and_restores_the_policy_its_optimizer_and_baseline(tmp_path: Path) -> None:
    module, cb = TinySegmenter(), _callback()
    trainer = _trainer(tmp_path, callbacks=[cb])
    trainer.fit(module, _loader())
    ckpt = tmp_path / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    saved = cb.adversary.state_dict()
    assert saved["strategy_state"]["num_updates"] == 2

    restored_cb = _callback()
    more = _trainer(tmp_path / "more", max_epochs=2, callbacks=[restored_cb])
    more.fit(TinySegmenter(), _loader(), ckpt_path=str(ckpt))
    strategy_state = restored_cb.adversary.state_dict()["strategy_state"]
    assert strategy_state["num_updates"] == 4, "resumed from the saved 2 updates, then 2 more"

    check_cb = _callback()
    check = _trainer(tmp_path / "check", callbacks=[check_cb])
    check.fit(TinySegmenter(), _loader(), ckpt_path=str(ckpt))  # nothing left to train: restore only
    got = check_cb.adversary.state_dict()["strategy_state"]
    want = saved["strategy_state"]
    assert got["num_updates"] == want["num_updates"]
    torch.testing.assert_close(got["baseline"], want["baseline"])
    for k, v in want["policy"].items():
        torch.testing.assert_close(got["policy"][k], v)
    assert got["optimizer"]["state"].keys() == want["optimizer"]["state"].keys()


def test_lightning_module_without_per_sample_losses_gets_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r'return \{"loss": loss, "per_sample_loss": per_sample\}.*\(8,\)'):
        _trainer(tmp_path, callbacks=[_callback()]).fit(TinySegmenter(per_sample=False), _loader())


def test_lightning_callback_refuses_adversaries_that_need_a_second_forward() -> None:
    with pytest.raises(ValueError, match="strategy='learnable'.*'progress'.*does not run that extra forward"):
        AdversarialCorruption("learnable")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_lightning_ddp_two_cpu_processes_keep_one_policy(tmp_path: Path) -> None:
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    # Own session: on a timeout the whole group goes, the rank Lightning started included.
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "ddp", str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    result = json.loads((tmp_path / "ddp.json").read_text())
    assert result["world_size"] == 2
    assert result["num_updates"] == [2, 2]
    assert result["policy_checksums"][0] == result["policy_checksums"][1], "both ranks hold the same policy"
    assert abs(sum(result["shares"]) - 1.0) < 1e-6


def _ddp_worker(out: Path) -> None:
    import torch.distributed as dist
    from lightning.pytorch.strategies import DDPStrategy

    torch.set_num_threads(1)
    torch.manual_seed(0)
    module, cb = TinySegmenter(), _callback()
    trainer = _trainer(out, devices=2, strategy=DDPStrategy(process_group_backend="gloo"), callbacks=[cb], logger=False)
    trainer.fit(module, _loader(16))  # 16 images / 2 processes / batch 4 = 2 steps each
    policy = cb.adversary.policy
    checksum = float(sum(p.detach().double().sum() for p in policy.parameters()))
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, (checksum, cb.adversary.strategy.reinforce.num_updates))
    if trainer.global_rank == 0:
        shares = [float(trainer.callback_metrics[f"advcorrupt/share/{n}"]) for n in ("gaussian_noise", "contrast")]
        (out / "ddp.json").write_text(json.dumps({
            "world_size": dist.get_world_size(),
            "policy_checksums": [g[0] for g in gathered],
            "num_updates": [g[1] for g in gathered],
            "shares": shares,
        }))
    # Tear gloo down before the interpreter exits: left to the exit handlers its threads can abort the process
    # ("terminate called without an active exception", exit -6), seen once in CI.
    dist.destroy_process_group()


def test_accelerate_example_runs_on_cpu() -> None:
    pytest.importorskip("accelerate")
    import importlib.util

    from accelerate.state import AcceleratorState

    spec = importlib.util.spec_from_file_location("accelerate_loop", ROOT / "examples" / "accelerate_loop.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    try:
        result = example.main(steps=3, batch_size=2, size=32)
    finally:
        AcceleratorState._reset_state(True)
    assert result["step"] == 2 and torch.isfinite(torch.tensor(result["loss"]))
    assert result["trainer"].strategy.reinforce.num_updates == 3


def read_events(log_dir: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0, "histograms": 0})
    events.Reload()
    return events


def test_tensorboard_writer_records_epochs_shares_and_the_heatmap(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from PIL import Image

    from advcorrupt.integrations.tensorboard import TensorBoardWriter

    labels = ["gaussian_noise@1", "gaussian_noise@2", "contrast@1", "contrast@2"]
    w = TensorBoardWriter(tmp_path / "tb")
    w.add_epoch(1, {"epoch": 0, "lr": 1e-3, "train_loss": 0.9, "val_iou": 0.2, "actions": {}}, labels, [0.1, 0.2, 0.3, 0.4])
    w.add_epoch(2, {"epoch": 1, "lr": 5e-4, "train_loss": 0.7, "val_iou": 0.3}, labels, [0.25, 0.25, 0.25, 0.25])
    Image.new("RGB", (12, 8), (255, 0, 0)).save(tmp_path / "heat.png")
    w.add_heatmap(tmp_path / "heat.png", 2)
    w.close()
    ev = read_events(tmp_path / "tb")
    tags = ev.Tags()
    assert {"lr", "train/loss", "val/iou", "policy_share/gaussian_noise", "policy_share/contrast"} <= set(tags["scalars"])
    assert [round(e.value, 6) for e in ev.Scalars("policy_share/contrast")] == [0.7, 0.5]
    assert [e.step for e in ev.Scalars("train/loss")] == [1, 2]
    assert tags["histograms"] == ["policy/actions"] and tags["images"] == ["robustness/iou"]
    image = ev.Images("robustness/iou")[0]
    assert (image.width, image.height) == (12, 8)


if __name__ == "__main__":
    if sys.argv[1:2] == ["ddp"]:
        _ddp_worker(Path(sys.argv[2]))
