"""What a run writes besides checkpoints (rank 0 only).

- ``config.json``: the run's :class:`~advcorrupt.training.TrainConfig` and, under ``"git"``, the
  commit its code came from and whether the tree was dirty
  (:func:`~advcorrupt.training.provenance.source_revision`);
- the epoch log ``metrics.jsonl`` (or ``metrics.csv``) with one row per epoch (training means,
  validation IoU/nIoU/Pd/Fa, or for a semantic run mIoU/aAcc/mAcc and the per-class list
  ``val_IoU``, action shares), cut back consistently on resume (:class:`_Log`);
- ``steps.jsonl``: the per-step losses, written once per epoch or checkpoint (no sync per step);
- ``policy_actions.json`` and the plot ``policy_actions.png``: the policy's action shares per epoch;
- TensorBoard events when asked for, ending with the final model's robustness heatmap.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .distributed import _unwrap
from .provenance import source_revision
from .run import _Position, _Run

__all__: list[str] = []


class _Log:
    """Rank-0 epoch log (JSONL or CSV) and per-step losses, rewritten consistently on resume."""

    def __init__(self, out: Path, fmt: str, *, keep_before_epoch: int | None) -> None:
        self.path = out / ("metrics.jsonl" if fmt == "jsonl" else "metrics.csv")
        self.steps_path = out / "steps.jsonl"
        self.fmt = fmt
        self.rows: list[dict[str, Any]] = []
        if keep_before_epoch is not None:
            self.rows = [r for r in self._read(self.path) if int(r["epoch"]) < keep_before_epoch]
        else:
            for p in (self.path, self.steps_path):
                p.unlink(missing_ok=True)
        self._write()

    def _read(self, path: Path) -> list[dict[str, Any]]:
        if not path.is_file():
            return []
        if self.fmt == "jsonl":
            return _read_jsonl(path)
        with path.open(newline="") as f:
            return [dict(r) for r in csv.DictReader(f)]

    def _write(self) -> None:
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        if self.fmt == "jsonl":
            tmp.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
        else:
            keys: list[str] = []
            for r in self.rows:
                keys += [k for k in r if k not in keys]
            with tmp.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=keys)
                writer.writeheader()
                writer.writerows(self.rows)
        os.replace(tmp, self.path)

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self._write()

    def truncate_steps(self, global_step: int) -> None:
        """Drop per-step rows at or after ``global_step`` (work lost to a crash is redone)."""
        if self.steps_path.is_file():
            rows = _read_jsonl(self.steps_path)
            tmp = self.steps_path.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in rows if r["step"] < global_step))
            os.replace(tmp, self.steps_path)

    def add_steps(self, rows: list[dict[str, Any]]) -> None:
        with self.steps_path.open("a") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
            f.flush()


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a torn last line (a crash while appending) is dropped."""
    rows: list[dict[str, Any]] = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def _open_log(run: _Run, pos: _Position) -> _Log | None:
    """Rank 0: the output folder, ``config.json`` and the metrics log (cut back to the resumed step)."""
    if not run.d.main:
        return None
    run.out.mkdir(parents=True, exist_ok=True)
    for stale in run.out.glob(".ckpt_*.tmp"):  # left by a process killed while saving
        stale.unlink(missing_ok=True)
    record = {**run.config.to_dict(), "git": source_revision()}  # which code trained it (not a config field)
    (run.out / "config.json").write_text(json.dumps(record, indent=2))
    log = _Log(run.out, run.config.log_format, keep_before_epoch=pos.epoch if pos.resumed else None)
    if pos.resumed:
        log.truncate_steps(pos.global_step)
    return log


def _step_rows(buf: list[Tensor], epoch: int, end_step: int) -> list[dict[str, Any]]:
    if not buf:
        return []
    values = torch.stack(buf).tolist()  # one sync per epoch / checkpoint, never per step
    start = end_step - len(values)
    return [
        {"step": start + j, "epoch": epoch, "loss": v[0], "loss_clean": v[1], "loss_corrupted": v[2], "skipped": v[3]}
        for j, v in enumerate(values)
    ]


def _write_policy_history(out: Path, labels: list[str], history: list[list[float]]) -> None:
    (out / "policy_actions.json").write_text(json.dumps({"actions": labels, "per_epoch": history}, indent=1))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        return
    if not history:
        return
    corruptions = list(dict.fromkeys(lab.split("@")[0] for lab in labels))
    per_corruption = [[sum(p for lab, p in zip(labels, row) if lab.split("@")[0] == c) for row in history] for c in corruptions]
    fig, ax = plt.subplots(figsize=(7, 4))
    epochs = list(range(1, len(history) + 1))
    if len(epochs) > 1:
        ax.stackplot(epochs, per_corruption, labels=corruptions)
    else:
        bottom = 0.0
        for c, v in zip(corruptions, per_corruption):
            ax.bar(1, v[0], bottom=bottom, label=c)
            bottom += v[0]
    ax.set_xlabel("epoch")
    ax.set_ylabel("share of sampled actions")
    ax.set_ylim(0, 1)
    ax.set_title("Corruptions chosen by the policy")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(out / "policy_actions.png", dpi=100)
    plt.close(fig)


def _epoch_line(epoch: int, epochs: int, row: Mapping[str, Any]) -> str:
    """The one line per epoch: ``epoch 3/10 train_loss=0.41 val_iou=0.62 ... time_s=12.3`` (semantic
    runs: ``val_mIoU``, ``val_aAcc``, ``val_mAcc``)."""
    keys = ("train_loss", "val_iou", "val_niou", "val_pd", "val_fa", "val_mIoU", "val_aAcc", "val_mAcc", "time_s")
    return f"epoch {epoch + 1}/{epochs} " + " ".join(f"{k}={round(row[k], 4)}" for k in keys if k in row)


def _open_tensorboard(run: _Run, folder: str | os.PathLike[str] | None) -> Any:
    """The TensorBoard writer on rank 0; every rank checks the package first, before any training."""
    if folder is None:
        return None
    if importlib.util.find_spec("tensorboard") is None:
        raise ImportError('--tensorboard needs the tensorboard package: pip install "advcorrupt[tensorboard]"')
    if not run.d.main:
        return None
    from ..integrations.tensorboard import TensorBoardWriter

    return TensorBoardWriter(folder)


def _tensorboard_heatmap(run: _Run, tb: Any, *, progress: bool) -> None:
    """After the last epoch: the final model's primary metric (IoU, or mIoU) per corruption x severity as a
    TensorBoard image."""
    from ..bench import evaluate_robustness

    report = evaluate_robustness(
        _unwrap(run.ddp_model), run.test_ds, corruptions=list(run.action_space.corruptions),
        severities=list(run.action_space.severities), seed=run.config.seed,
        preprocess=run.preprocess.to(run.device), device=run.device, progress=progress,
        model_name=f"{run.config.model} ({run.config.strategy})", task=run.task,
    )
    name = f"robustness_{run.task.primary_metric.lower()}.png"  # robustness_iou.png, robustness_miou.png
    tb.add_heatmap(report.plot_heatmap(tb.log_dir / name), run.config.epochs)
