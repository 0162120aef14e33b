"""Checkpoints of a training run: writing them, checking them, restoring them, loading a model.

A checkpoint holds everything needed to continue: model, optimizer, LR scheduler, the trainer's
policy/baseline/step counts, every process's generator, every RNG state, the position in the
epoch and the config. The file format itself (atomic writes, safe loading, finding the newest
valid file) is :mod:`advcorrupt.checkpoint`'s job; this module knows what a *training* checkpoint
holds: :func:`restore_training_state` checks everything before applying anything, and
:func:`load_model` rebuilds a trained detector.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..checkpoint import (
    CheckpointError,
    capture_rng_state,
    latest_valid_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from .config import TrainConfig
from .distributed import _unwrap
from .run import _Position, _Run, build_model

__all__ = ["load_model", "restore_training_state"]


# Config fields a resumed run must share with the checkpoint (others, e.g. epochs, may change).
_RESUME_KEYS = (
    "model", "model_kwargs", "policy_kwargs", "strategy", "corruptions", "severities", "lam", "batch_size",
    "patch_size", "seed", "data_root", "dataset_name", "synthetic_train", "synthetic_size", "dataset", "task",
    "num_classes", "ignore_index", "crop_size",
)


def load_model(checkpoint: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> tuple[nn.Module, TrainConfig, dict[str, Any]]:
    """Rebuild the model of a checkpoint written by :func:`fit` (safe loading).

    ISTD models, ``smp:<Arch>:<encoder>`` models and semantic runs alike: the model is built as the
    run built it (its channels, its K classes; :func:`~advcorrupt.training.run_task` of the config
    gives the task), without downloading pretrained encoder weights (the checkpoint holds the
    trained ones).

    Returns:
        ``(model in eval mode on device, its TrainConfig, the checkpoint dict)``.
    """
    from ..models import smp

    state = load_checkpoint(checkpoint)
    if "config" not in state or "model" not in state:
        raise CheckpointError(f"{checkpoint} is not a training checkpoint of advcorrupt (no 'config'/'model')")
    try:
        config = TrainConfig.from_dict(state["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{checkpoint} holds an unusable config: {e}") from None
    try:
        model = build_model(config, **({"encoder_weights": None} if smp.is_smp_name(config.model) else {}))
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{checkpoint} holds a model that cannot be rebuilt here: {e}") from None
    _check_model_state(model, state["model"], checkpoint, saved_name=config.model, expected_name=config.model)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), config, state


def _check_model_state(
    model: nn.Module, saved: object, source: object, *, saved_name: str | None = None, expected_name: str | None = None
) -> None:
    """Raise CheckpointError (changing nothing) unless ``saved`` fits ``model`` key for key."""
    if not isinstance(saved, Mapping) or not all(isinstance(v, Tensor) for v in saved.values()):
        raise CheckpointError(f"{source} has no usable model weights: expected a dict of tensors under 'model'")
    mine = model.state_dict()
    missing = sorted(set(mine) - set(saved))
    extra = sorted(set(saved) - set(mine))
    shapes = [
        f"{k}: checkpoint {tuple(saved[k].shape)} vs model {tuple(v.shape)}"
        for k, v in mine.items()
        if k in saved and tuple(saved[k].shape) != tuple(v.shape)
    ]
    if missing or extra or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[:3]}")
        if extra:
            parts.append(f"{len(extra)} unexpected key(s), e.g. {extra[:3]}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es), e.g. {shapes[:2]}")
        what = f"{expected_name!r} ({type(model).__name__})" if expected_name else type(model).__name__
        theirs = f" (the checkpoint says model={saved_name!r})" if saved_name else ""
        raise CheckpointError(
            f"{source} holds weights of another model{theirs}; expected {what}: " + "; ".join(parts)
        )


_STATE_KEYS = ("config", "model", "optimizer", "scheduler", "trainer", "rng", "epoch", "batch", "global_step")


def _check_optimizer_state(optimizer: torch.optim.Optimizer, saved: object, source: object) -> None:
    """Raise CheckpointError unless ``saved`` is an optimizer state for ``optimizer``'s parameters."""
    if not isinstance(saved, Mapping) or "param_groups" not in saved or "state" not in saved:
        raise CheckpointError(f"{source} has no usable optimizer state: expected a dict with 'state' and 'param_groups'")
    groups = saved["param_groups"]
    mine = [len(g["params"]) for g in optimizer.param_groups]
    theirs = [len(g.get("params", ())) for g in groups] if isinstance(groups, list) else None
    if theirs != mine:
        raise CheckpointError(
            f"{source} holds the state of another optimizer: parameter groups of sizes {theirs}; expected {mine}"
        )
    params = [p for g in optimizer.param_groups for p in g["params"]]
    ids = [i for g in groups for i in g["params"]]
    index = dict(zip(ids, params))
    for key, per_param in saved["state"].items():
        p = index.get(key)
        if p is None or not isinstance(per_param, Mapping):
            raise CheckpointError(f"{source}: optimizer state for unknown parameter {key!r}")
        for name, value in per_param.items():
            if isinstance(value, Tensor) and value.ndim > 0 and tuple(value.shape) != tuple(p.shape):
                raise CheckpointError(
                    f"{source}: optimizer state {name!r} of parameter {key} has shape {tuple(value.shape)}; "
                    f"expected {tuple(p.shape)}"
                )


def restore_training_state(
    checkpoint: str | os.PathLike[str] | Mapping[str, Any],
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer: Any,
    scheduler: Any = None,
    scaler: Any = None,
    config: TrainConfig | None = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Check a training checkpoint against the running objects, then load it into them.

    All checks run before anything is applied: a truncated, corrupt or unsafe file, one from
    another model (keys or shapes), another optimizer, another action space or strategy, or (with
    ``config``) another run configuration raises :class:`CheckpointError` saying which and what
    was expected, and leaves every object untouched. Should applying still fail midway, the
    previous states are put back before the error propagates.

    Args:
        checkpoint: a ``ckpt_*.pt`` path (loaded safely) or an already loaded checkpoint dict.
        model: the detector (unwrapped, not the DDP wrapper).
        optimizer: the detector's optimizer.
        trainer: the :class:`~advcorrupt.AdversarialCorruptionTrainer` (policy, baseline, counts).
        scheduler: the LR scheduler, if any.
        scaler: the fp16 ``GradScaler``, if any.
        config: the running configuration; the fields that define a run must match.
        restore_rng: also restore the torch/CUDA/NumPy/Python RNG states.

    Returns:
        The checkpoint dict (``epoch``, ``batch``, ``global_step``, ``generators``... for the caller).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: any mismatch or unreadable file (nothing was changed).

    Example:
        >>> import torch
        >>> from advcorrupt import AdversarialCorruptionTrainer
        >>> from advcorrupt.checkpoint import capture_rng_state
        >>> from advcorrupt.models import create_model
        >>> model = create_model("acm", in_channels=1)
        >>> optimizer = torch.optim.Adam(model.parameters())
        >>> trainer = AdversarialCorruptionTrainer(model, optimizer, strategy="random", in_channels=1)
        >>> saved = {  # what fit writes (a path to a ckpt_*.pt file works the same)
        ...     "config": TrainConfig(model="acm", strategy="random").to_dict(), "model": model.state_dict(),
        ...     "optimizer": optimizer.state_dict(), "scheduler": {}, "trainer": trainer.state_dict(),
        ...     "rng": capture_rng_state(), "epoch": 2, "batch": 0, "global_step": 40,
        ... }
        >>> state = restore_training_state(saved, model=model, optimizer=optimizer, trainer=trainer)
        >>> state["epoch"], state["global_step"]
        (2, 40)
        >>> other = create_model("dnanet", in_channels=1)  # another model: refused, nothing changed
        >>> restore_training_state(saved, model=other, optimizer=torch.optim.Adam(other.parameters()), trainer=trainer)
        Traceback (most recent call last):
        ...
        advcorrupt.checkpoint.CheckpointError: the checkpoint holds weights of another model ...
    """
    if isinstance(checkpoint, Mapping):
        return _restore(dict(checkpoint), "the checkpoint", model=model, optimizer=optimizer, trainer=trainer,
                        scheduler=scheduler, scaler=scaler, config=config, restore_rng=restore_rng)
    return _restore(load_checkpoint(checkpoint), checkpoint, model=model, optimizer=optimizer, trainer=trainer,
                    scheduler=scheduler, scaler=scaler, config=config, restore_rng=restore_rng)


def _restore(
    state: dict[str, Any], source: object, *, model: nn.Module, optimizer: torch.optim.Optimizer, trainer: Any,
    scheduler: Any, scaler: Any, config: TrainConfig | None, restore_rng: bool,
) -> dict[str, Any]:
    import copy

    missing = [k for k in _STATE_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{source} is not a training checkpoint of advcorrupt: it lacks {missing}")
    try:
        saved_cfg = TrainConfig.from_dict(state["config"])
    except (TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{source} holds an unusable config: {e}") from None
    _check_model_state(
        model, state["model"], source, saved_name=saved_cfg.model,
        expected_name=config.model if config is not None else None,
    )
    try:
        trainer.check_state_dict(state["trainer"])
    except ValueError as e:
        raise CheckpointError(f"{source}: {e} (use the run's --strategy, --corruptions and --severities)") from None
    _check_optimizer_state(optimizer, state["optimizer"], source)
    if config is not None:
        saved, now = saved_cfg.to_dict(), config.to_dict()
        diff = {k: (saved[k], now[k]) for k in _RESUME_KEYS if saved[k] != now[k]}
        if diff:
            raise CheckpointError(
                f"cannot resume from {source}: the run was started with a different configuration: "
                + ", ".join(f"{k}={a!r} (this run: {b!r})" for k, (a, b) in diff.items())
                + "; use the original settings or a new --out-dir"
            )

    # Apply, with a snapshot to roll back to should a load still fail halfway.
    backup = {
        "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        "trainer": copy.deepcopy(trainer.state_dict()),
        "scheduler": copy.deepcopy(scheduler.state_dict()) if scheduler is not None else None,
    }
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        trainer.load_state_dict(dict(state["trainer"]))
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if restore_rng:
            restore_rng_state(state["rng"])
    except Exception as e:
        model.load_state_dict(backup["model"])
        optimizer.load_state_dict(backup["optimizer"])
        trainer.load_state_dict(backup["trainer"])
        if scheduler is not None:
            scheduler.load_state_dict(backup["scheduler"])
        raise CheckpointError(f"{source} could not be applied ({type(e).__name__}: {e}); nothing was changed") from e
    return state


def _resume_position(run: _Run, resume: bool) -> _Position:
    """Restore the newest checkpoint that loads (damaged newer ones are skipped with a warning and
    renamed ``*.damaged`` by rank 0, so a requeued job resumes by itself); else start at zero."""
    found = latest_valid_checkpoint(run.out, quarantine=run.d.main) if resume else None
    if not found:
        if resume and run.d.main:
            warnings.warn(f"--resume: no checkpoint in {run.out}; starting from scratch", stacklevel=3)
        return _Position()
    path, state = found
    # A mid-epoch position refers to the old DistributedSampler split: refuse another process count.
    saved_world = int(state.get("world_size", 1))
    if state.get("batch", 0) and saved_world != run.d.world:
        raise CheckpointError(
            f"{path} was written mid-epoch by {saved_world} process(es); this run has {run.d.world}. "
            f"Resume with {saved_world} process(es), or from an epoch-end checkpoint"
        )
    _restore(
        state, path, model=run.model, optimizer=run.optimizer, trainer=run.trainer, scheduler=run.scheduler,
        scaler=run.scaler, config=run.config, restore_rng=True,
    )
    run.schedule.total_steps = run.steps_per_epoch * run.config.epochs  # epochs may have been raised
    gens = state.get("generators") or []
    if run.d.rank < len(gens) and saved_world == run.d.world:
        run.generator.set_state(gens[run.d.rank])
    partial = state.get("partial_epoch") or {}
    if isinstance(partial, list):  # one entry per rank (mid-epoch checkpoints of a distributed run)
        partial = partial[run.d.rank] if run.d.rank < len(partial) else {}
    return _Position(
        epoch=int(state["epoch"]), batch=int(state["batch"]), global_step=int(state["global_step"]),
        history=[list(h) for h in state.get("policy_history", [])], partial=dict(partial),
        last_ckpt=path, resumed=True,
    )


def _save_checkpoint(run: _Run, pos: _Position, epoch: int, batch: int, partial: dict[str, Any]) -> None:
    """Gather every rank's generator state and running epoch sums; rank 0 writes the checkpoint and
    records it in ``pos``."""
    gens: list[Any] = [run.generator.get_state()]
    partials: list[Any] = [partial]
    if run.d.world > 1:
        gens, partials = [None] * run.d.world, [None] * run.d.world
        dist.all_gather_object(gens, run.generator.get_state())
        if partial:  # mid-epoch: each rank resumes its own sums (they are reduced at the epoch's end)
            dist.all_gather_object(partials, partial)
    if not run.d.main:
        return
    state = {
        "config": run.config.to_dict(),
        "model": _unwrap(run.ddp_model).state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler is not None else {},
        "trainer": run.trainer.state_dict(),
        "generators": gens,
        "world_size": run.d.world,
        "normalize": {"mean": run.preprocess.mean, "std": run.preprocess.std},
        "rng": capture_rng_state(),
        "epoch": epoch,
        "batch": batch,
        "global_step": pos.global_step,
        "policy_history": pos.history,
        "partial_epoch": partials if run.d.world > 1 and partial else partial,
        "time": time.time(),
    }
    pos.last_ckpt = save_checkpoint(state, run.out / f"ckpt_{pos.global_step:08d}.pt", keep_last=run.config.keep_last)
