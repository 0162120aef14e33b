"""What one training run is made of, and building it.

:class:`_Run` holds everything :func:`~advcorrupt.training.fit` builds before the first step (the
process group, device, data, model, optimizer, schedule and the adversarial trainer);
:func:`_build_run` builds it, so every configuration error surfaces before training starts.
:class:`_Position` is where a run stands (epoch, batch, step, what it has produced so far); a
checkpoint restores it on resume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from ..tasks import Task
from .config import _AMP, TrainConfig, run_task
from .data import _batches, _mix, build_datasets
from .distributed import _Dist, _init_distributed, _pick_device
from .schedule import WarmupCosine

__all__: list[str] = []


@dataclass
class _Run:
    """What :func:`fit` builds before the first step (configuration errors surface while building it)."""

    config: TrainConfig
    d: _Dist
    device: torch.device
    out: Path
    action_space: Any
    train_ds: Dataset[Any]
    test_ds: Dataset[Any]
    preprocess: Any
    model: nn.Module
    ddp_model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: WarmupCosine
    scheduler: Any
    scaler: Any
    generator: torch.Generator
    sampler: DistributedSampler[Any]
    steps_per_epoch: int
    trainer: Any
    task: Task  # what the masks mean: the loss, the validation metrics and collapse follow from it


@dataclass
class _Position:
    """Where a run stands and what it has produced (restored from a checkpoint on resume)."""

    epoch: int = 0
    batch: int = 0  # the next batch of ``epoch`` (non-zero when resuming mid-epoch)
    global_step: int = 0
    history: list[list[float]] = field(default_factory=list)  # action shares per epoch
    partial: dict[str, Any] = field(default_factory=dict)  # running sums of a mid-epoch checkpoint
    last_ckpt: Path | None = None
    resumed: bool = False
    val: dict[str, float] = field(default_factory=dict)
    collapsed_epochs: list[int] = field(default_factory=list)  # evaluations that found a collapsed detector


def _build_run(config: TrainConfig) -> _Run:
    """Process group, device, data, model, optimizer, schedule and the adversarial trainer."""
    from ..policy.schedules import schedule_action_space
    from ..trainer import AdversarialCorruptionTrainer

    d = _init_distributed(config.device)
    device = _pick_device(config, d)
    action_space = schedule_action_space(config.strategy, config.corruptions, config.severities)
    task = run_task(config)
    train_ds, test_ds, preprocess = build_datasets(config)
    torch.manual_seed(config.seed)
    model = build_model(config).to(device)
    _check_model_output(model, task, config, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    sampler: DistributedSampler[Any] = DistributedSampler(
        train_ds, num_replicas=d.world, rank=d.rank, shuffle=True, seed=config.seed, drop_last=True
    )
    steps_per_epoch = len(_batches(sampler, config.batch_size, config.steps_per_epoch))
    if steps_per_epoch == 0:
        raise ValueError(
            f"batch_size {config.batch_size} x {d.world} process(es) exceeds the {len(train_ds)} training "  # type: ignore[arg-type]
            f"images: no full batch; lower --batch-size (TrainConfig.batch_size) or add training images"
        )
    schedule = WarmupCosine(steps_per_epoch * config.epochs, warmup_steps=config.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    amp_dtype = _AMP[config.amp]
    scaler = torch.amp.GradScaler(device.type) if amp_dtype is torch.float16 else None
    generator = torch.Generator(device=device).manual_seed(_mix(config.seed, 7, d.rank))
    ddp_model: nn.Module = model
    if d.world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    trainer = AdversarialCorruptionTrainer(
        ddp_model, optimizer, action_space=action_space, strategy=config.strategy, lam=config.lam,
        policy_lr=config.policy_lr, preprocess=preprocess.to(device), generator=generator,
        scaler=scaler, autocast_dtype=amp_dtype, reinforce_kwargs=dict(config.reinforce_kwargs) or None,
        policy_kwargs=dict(config.policy_kwargs) or None, in_channels=in_channels(config),
        max_grad_norm=config.grad_clip, loss_fn=task.default_loss(), task=task,
        total_steps=steps_per_epoch * config.epochs,
    )
    return _Run(
        config, d, device, Path(config.out_dir), action_space, train_ds, test_ds, preprocess, model, ddp_model,
        optimizer, schedule, scheduler, scaler, generator, sampler, steps_per_epoch, trainer, task,
    )


def in_channels(config: TrainConfig) -> int:
    """Image channels of the run's data: 1 for ISTD (infrared), 3 for CamVid and segmentation folders."""
    return 1 if config.dataset == "istd" else 3


def build_model(config: TrainConfig, **overrides: Any) -> nn.Module:
    """The run's model, freshly initialised: ``create_model(config.model, in_channels=..., **model_kwargs)``,
    plus the task's :meth:`~advcorrupt.tasks.Task.model_kwargs` (``num_classes=K`` for a semantic task)
    unless ``model_kwargs`` sets ``classes`` / ``num_classes`` (a disagreeing one is then refused by
    :func:`_check_model_output`). ``overrides`` replace model
    arguments (:func:`~advcorrupt.training.load_model` drops pretrained encoder weights this way)."""
    from ..models import create_model

    kwargs: dict[str, Any] = {"in_channels": in_channels(config), **run_task(config).model_kwargs()}
    if "classes" in config.model_kwargs:  # smp's name for num_classes: the user's wins, not both
        kwargs.pop("num_classes", None)
    return create_model(config.model, **{**kwargs, **config.model_kwargs, **overrides})


def _check_model_output(model: nn.Module, task: Task, config: TrainConfig, device: torch.device) -> None:
    """A run whose task constrains the model's output (:attr:`~advcorrupt.tasks.Task.checks_output`:
    a semantic run's K channels) refuses another output now, before the run folder exists.

    One forward pass of a zero crop in eval mode, under a forked RNG (the run's random streams are
    untouched). Other tasks' models are not probed (binary: the first step checks them, as it always did).
    """
    if not task.checks_output:
        return
    from .._outputs import output_heads

    h, w = config.crop_size
    was_training = model.training
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            model.eval()
            logits = output_heads(model(torch.zeros(1, in_channels(config), h, w, device=device)))[-1]
    except RuntimeError as e:
        raise ValueError(
            f"model {config.model!r} cannot run on {h}x{w} training crops (--crop-size; most smp models need sides "
            f"divisible by 32): {e}"
        ) from None
    finally:
        model.train(was_training)
    try:
        task.check_output(logits, torch.zeros(1, h, w, dtype=torch.long, device=device))
    except ValueError as e:
        raise ValueError(f"model {config.model!r} (--model / --model-kwargs): {e}") from None
