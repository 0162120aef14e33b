"""The training loop: :func:`fit`, one epoch after another.

:func:`fit` checks the configuration, builds the run (:mod:`~advcorrupt.training.run`), restores
the newest checkpoint when resuming (:mod:`~advcorrupt.training.checkpoints`), then per epoch
trains (:func:`_train_epoch`, checkpointing every ``checkpoint_every`` steps) and finishes it
(:func:`_finish_epoch`: statistics reduced over processes, validation, logs, a checkpoint).
Statistics stay on the device during an epoch; the host reads them once at its end.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader

from ..corruptions._common import _host_reads_ok
from .checkpoints import _resume_position, _save_checkpoint
from .config import TrainConfig, check_config
from .data import _batches, _SeededItems
from .distributed import _Dist
from .logs import (
    _epoch_line,
    _Log,
    _open_log,
    _open_tensorboard,
    _step_rows,
    _tensorboard_heatmap,
    _write_policy_history,
)
from .run import _build_run, _Position, _Run
from .schedule import _scheduler_step
from .validation import _collapse_message, _validate, is_collapsed

__all__ = ["TrainingStopped", "fit"]


class TrainingStopped(RuntimeError):
    """Training gave up: too many consecutive steps had a non-finite loss or gradient."""


def fit(
    config: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    tensorboard: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Train per ``config``; return a summary (final validation metrics, paths, counts).

    Everything that can be wrong with the configuration (unknown model or strategy, severities
    outside the level tables, a data root without its dataset's layout, a task the dataset cannot
    have, colour-coded label maps, a model whose output channels disagree with ``num_classes``,
    pretrained weights that cannot be downloaded, an incompatible checkpoint) raises before the
    first training step, and before the run folder is created.

    Args:
        config: the run's :class:`TrainConfig`.
        resume: continue from the newest checkpoint in ``config.out_dir`` (a fresh start when
            there is none).
        progress: rank 0 reports progress: a bar per epoch on a terminal, and one line per epoch.
        tensorboard: also write TensorBoard events to this folder (rank 0): losses, learning rate,
            validation metrics, the policy's action shares per epoch and, after the last epoch, the
            robustness heatmap (needs ``pip install "advcorrupt[tensorboard]"``).

    Returns:
        ``{"out_dir", "epochs", "steps", "skipped", "val": {...}, "checkpoint", "failed", "failure",
        "collapsed_epochs"}``.
    """
    check_config(config)
    if config.deterministic:
        from .._determinism import set_deterministic

        set_deterministic(True)
    run = _build_run(config)
    tb = _open_tensorboard(run, tensorboard)
    try:
        pos = _resume_position(run, resume)
        log = _open_log(run, pos)
        for epoch in range(pos.epoch, config.epochs):
            stats = _train_epoch(run, pos, epoch, log, progress=progress)
            _finish_epoch(run, pos, epoch, stats, log, tb, progress=progress)
        if tb is not None:
            _tensorboard_heatmap(run, tb, progress=progress)
    finally:
        if tb is not None:
            tb.close()
    return _summary(run, pos)


def _train_epoch(run: _Run, pos: _Position, epoch: int, log: _Log | None, *, progress: bool) -> _EpochStats:
    """Train ``epoch`` from batch ``pos.batch``; checkpoint inside it every ``checkpoint_every`` steps."""
    config, trainer = run.config, run.trainer
    run.sampler.set_epoch(epoch)
    first = pos.batch
    batches = _batches(run.sampler, config.batch_size, config.steps_per_epoch)[first:]
    loader = DataLoader(
        _SeededItems(run.train_ds, config.seed, epoch), batch_sampler=batches, num_workers=config.num_workers,
        pin_memory=run.device.type == "cuda",
    )
    trainer.model.train()
    stats = _EpochStats(run.action_space.size, run.device, pos.partial)
    pos.partial = {}
    bar = _progress(loader, enabled=progress and run.d.main, desc=f"epoch {epoch + 1}/{config.epochs}")
    # On an accelerator the trainer counts skipped steps on the device: read them once every
    # max_consecutive_skips steps (one sync), not every step; there the optimizer always steps.
    host = _host_reads_ok(run.device)
    for i, (images, masks) in enumerate(bar):
        step = trainer.step(images.to(run.device, non_blocking=True), masks.to(run.device, non_blocking=True))
        _scheduler_step(run.scheduler, skipped=host and bool(trainer.consecutive_skips))
        pos.global_step += 1
        stats.add(step, trainer.last_actions)
        check = host or pos.global_step % config.max_consecutive_skips == 0
        if check and trainer.consecutive_skips >= config.max_consecutive_skips:
            stats.flush_steps(log, epoch, pos.global_step)
            raise TrainingStopped(_stopped_message(trainer, pos))
        done = first + i + 1
        if config.checkpoint_every and pos.global_step % config.checkpoint_every == 0 and done < run.steps_per_epoch:
            stats.flush_steps(log, epoch, pos.global_step)
            _save_checkpoint(run, pos, epoch, done, stats.snapshot())
    return stats


class _EpochStats:
    """Running sums of one epoch, kept on the device (no sync per step); restored mid-epoch on resume."""

    def __init__(self, num_actions: int, device: torch.device, partial: Mapping[str, Any]) -> None:
        self.counts = torch.tensor(partial.get("counts", [0.0] * num_actions), device=device)
        self.sums = {k: torch.tensor(v, device=device) for k, v in partial.get("sums", {}).items()}
        self.n_ok = torch.tensor(float(partial.get("n_ok", 0.0)), device=device)  # steps not skipped
        self.steps: list[Tensor] = []  # per-step losses not yet written to steps.jsonl
        self.t0 = time.perf_counter()

    def add(self, stats: Mapping[str, Tensor], actions: Tensor | None) -> None:
        if actions is not None and actions.numel():
            # index_add_, not bincount: its output size is data-dependent (a host-device sync on CUDA)
            self.counts.index_add_(0, actions, torch.ones_like(actions, dtype=self.counts.dtype))
        ok = stats["skipped"].float() < 0.5
        self.n_ok += ok.float()
        for k, v in stats.items():  # skipped steps (non-finite) stay out of the epoch means
            if k != "skipped":
                self.sums[k] = self.sums.get(k, torch.zeros_like(self.n_ok)) + torch.where(ok, v.float(), 0.0)
        losses = [stats["loss"], stats["loss_clean"], stats["loss_corrupted"], stats["skipped"]]
        self.steps.append(torch.stack(losses).float())

    def flush_steps(self, log: _Log | None, epoch: int, global_step: int) -> None:
        if log is not None:
            log.add_steps(_step_rows(self.steps, epoch, global_step))
        self.steps = []

    def snapshot(self) -> dict[str, Any]:
        sums = {k: float(v) for k, v in self.sums.items()}
        return {"counts": self.counts.tolist(), "sums": sums, "n_ok": float(self.n_ok)}

    def reduce(self, d: _Dist) -> tuple[dict[str, float], float, list[float]]:
        """Means over every rank's non-skipped steps, the number of those steps, the action shares."""
        keys = sorted(self.sums)
        packed = torch.stack([self.sums[k] for k in keys] + [self.n_ok, self.counts.sum()])
        if d.world > 1:
            dist.all_reduce(packed)
            dist.all_reduce(self.counts)
        good = float(packed[-2])
        means = {k: (float(v) / good if good > 0 else float("nan")) for k, v in zip(keys, packed[:-2])}
        return means, good, (self.counts / self.counts.sum().clamp_min(1)).tolist()


def _stopped_message(trainer: Any, pos: _Position) -> str:
    return (
        f"training stopped at step {pos.global_step}: {trainer.consecutive_skips} consecutive steps had a "
        f"non-finite loss or gradient ({trainer.num_skipped} skipped in total; the detector and policy "
        f"were not updated on them). Lower --lr, use --amp none or bf16 instead of fp16, or check the "
        f"data; raise --max-consecutive-skips to tolerate more. Last good checkpoint: {pos.last_ckpt}"
    )


def _finish_epoch(
    run: _Run, pos: _Position, epoch: int, stats: _EpochStats, log: _Log | None, tb: Any, *, progress: bool
) -> None:
    """End of an epoch: reduce statistics over ranks, validate (rank 0), log, then checkpoint."""
    config = run.config
    means, good, shares = stats.reduce(run.d)
    pos.history.append(shares)
    row: dict[str, Any] = {
        "epoch": epoch, "step": pos.global_step, "lr": run.scheduler.get_last_lr()[0],
        "time_s": round(time.perf_counter() - stats.t0, 3), **{f"train_{k}": v for k, v in means.items()},
        "skipped_epoch": int(round(run.steps_per_epoch * run.d.world - good)),
        "skipped_total": run.trainer.num_skipped,
    }
    if run.d.main and ((epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs):
        row.update(_validate(run, pos, epoch))
    if log is not None:
        stats.flush_steps(log, epoch, pos.global_step)
        labels = run.action_space.labels()
        row["actions"] = {lab: round(p, 5) for lab, p in zip(labels, shares)}
        log.add(row)
        _write_policy_history(run.out, labels, pos.history)
        if tb is not None:
            tb.add_epoch(epoch + 1, row, labels, shares)
        if progress:
            print(_epoch_line(epoch, config.epochs, row), flush=True)
    pos.epoch, pos.batch = epoch + 1, 0
    _save_checkpoint(run, pos, epoch + 1, 0, {})
    if run.d.world > 1:
        dist.barrier()


def _summary(run: _Run, pos: _Position) -> dict[str, Any]:
    failed = bool(pos.val) and is_collapsed(pos.val)
    return {
        "out_dir": str(run.out),
        "epochs": run.config.epochs,
        "steps": pos.global_step,
        "skipped": run.trainer.num_skipped,
        "val": pos.val,
        "checkpoint": str(pos.last_ckpt) if pos.last_ckpt else None,
        "failed": failed,
        "failure": _collapse_message(run.config.epochs, pos.val) if failed else None,
        "collapsed_epochs": pos.collapsed_epochs,
    }


def _progress(iterable: Sequence[Any], *, enabled: bool, desc: str) -> Iterator[Any]:
    # A bar on a terminal only: a piped log gets the one line per epoch that fit prints.
    from .._progress import progress_iter

    return progress_iter(iterable, desc=desc, enabled=enabled)
