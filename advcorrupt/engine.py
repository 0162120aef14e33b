"""The training loop behind ``advcorrupt train`` and ``examples/istd_dnanet.py``.

:func:`fit` trains an ISTD model with :class:`~advcorrupt.AdversarialCorruptionTrainer` (BALISTD,
Alg. 1) on an ISTD-layout dataset or the built-in :class:`~advcorrupt.data.SyntheticIRSTD`, with:

- checkpoints that hold everything needed to continue (model, optimizer, LR scheduler, the
  trainer's policy/baseline/step counts, the trainer's generator, every RNG state, the position in
  the epoch and the config), written atomically, the last ``keep_last`` kept; ``resume=True``
  continues from the newest one;
- determinism: the epoch's sample order comes from ``(seed, epoch)``, each item's augmentation from
  ``(seed, epoch, index)``, so a resumed run replays the uninterrupted one exactly on CPU;
- a metrics log (JSONL or CSV, one row per epoch, with validation IoU/nIoU/Pd/Fa), per-step losses
  (``steps.jsonl``), and the policy's action distribution per epoch (``policy_actions.json`` and a
  plot ``policy_actions.png``);
- ``torchrun``: a ``DistributedSampler`` split, detector in ``DistributedDataParallel``, training
  statistics reduced across ranks, only rank 0 writes files and shows progress.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .corruptions.functional import _host_reads_ok
from .checkpoint import (
    CheckpointError,
    capture_rng_state,
    latest_valid_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)

__all__ = [
    "TrainConfig",
    "TrainingStopped",
    "build_datasets",
    "check_config",
    "fit",
    "load_model",
    "restore_training_state",
]

_AMP = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# Config fields a resumed run must share with the checkpoint (others, e.g. epochs, may change).
_RESUME_KEYS = (
    "model", "model_kwargs", "policy_kwargs", "strategy", "corruptions", "severities", "lam", "batch_size",
    "patch_size", "seed", "data_root", "dataset_name", "synthetic_train", "synthetic_size",
)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint).

    Attributes:
        model: a name from :func:`advcorrupt.models.list_models`.
        model_kwargs: extra arguments of the model factory.
        strategy: ``"learned"``, ``"random"``, ``"none"``, a corruption name or a category.
        data_root: ISTD-layout dataset folder; ``None`` uses :class:`SyntheticIRSTD`.
        dataset_name: split-file name (``img_idx/train_<name>.txt``); inferred when ``None``.
        synthetic_train, synthetic_test, synthetic_size: the synthetic default's sizes.
        epochs: number of epochs.
        steps_per_epoch: cap on optimizer steps per epoch (``None``: one pass over the data).
        batch_size: clean images per step (the forward pass sees twice as many).
        patch_size: training crop side for real data.
        lr: detector Adam learning rate (paper: 5e-4), cosine-annealed to ``lr * 0.01``.
        warmup_epochs: linear learning-rate warm-up from ``lr / 100`` over this many epochs
            (0: none). A few epochs keep the high rates of short schedules from collapsing the
            detector to all-background on some seeds (docs/results.md).
        grad_clip: clip the detector's gradient norm to this value (``None``: no clipping).
        on_bad_file: ``"error"`` (default) or ``"skip"``: what to do with a split entry whose image
            or mask is missing or cannot be read (skipped pairs are warned about and reported).
        bce_weight: weight of a per-sample binary cross-entropy added to the Soft-IoU loss (0: the
            paper's Soft-IoU alone); it keeps a gradient on target pixels when every logit is far
            below zero, the all-background collapse (docs/results.md).
        bce_pos_weight: weight of the target pixels inside the BCE term (1: unweighted); targets
            cover ~0.1% of an infrared image, so a plain mean pulls the background down far harder
            than it pulls the targets up.
        deterministic: set torch's reproducibility switches (deterministic algorithms, cuDNN
            without autotuning, ``CUBLAS_WORKSPACE_CONFIG``); matters on CUDA, slower there.
        policy_lr: policy SGD learning rate (paper: 1e-4, which barely moves the policy within a
            run; default 1e-2, see docs/trainer.md).
        lam: weight of the corrupted loss (Eq. 1).
        corruptions, severities: the action space (``None``: all registered corruptions).
        seed: seeds initialisation, data order, augmentation and the adversary.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; ``None`` picks CUDA when available.
        out_dir: where checkpoints and logs go.
        keep_last: checkpoints kept.
        checkpoint_every: also checkpoint every N steps inside an epoch (0: only at epoch ends).
        max_consecutive_skips: stop after this many consecutive non-finite steps.
        eval_every: validate every N epochs (and always after the last).
        num_workers: DataLoader workers.
        amp: ``"none"``, ``"bf16"`` or ``"fp16"`` (fp16 uses a GradScaler).
        log_format: ``"jsonl"`` or ``"csv"``.
        reinforce_kwargs: extra arguments of :class:`~advcorrupt.Reinforce`.
        policy_kwargs: extra arguments of :class:`~advcorrupt.PolicyNetwork` (``input_size``,
            ``widths``).
    """

    model: str = "sfim_dnanet"
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    strategy: str = "learned"
    data_root: str | None = None
    dataset_name: str | None = None
    synthetic_train: int = 256
    synthetic_test: int = 64
    synthetic_size: int = 128
    epochs: int = 10
    steps_per_epoch: int | None = None
    batch_size: int = 16
    patch_size: int = 256
    lr: float = 5e-4
    warmup_epochs: int = 0
    grad_clip: float | None = None
    bce_weight: float = 0.0
    bce_pos_weight: float = 1.0
    on_bad_file: str = "error"
    deterministic: bool = False
    policy_lr: float = 1e-2
    lam: float = 1.0
    corruptions: tuple[str, ...] | None = None
    severities: tuple[int, ...] = (1, 2, 3)
    seed: int = 0
    device: str | None = None
    out_dir: str = "runs/default"
    keep_last: int = 3
    checkpoint_every: int = 0
    max_consecutive_skips: int = 10
    eval_every: int = 1
    num_workers: int = 0
    amp: str = "none"
    log_format: str = "jsonl"
    reinforce_kwargs: Mapping[str, Any] = field(default_factory=dict)
    policy_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "patch_size", "keep_last", "eval_every", "synthetic_train",
                    "synthetic_test", "synthetic_size", "max_consecutive_skips")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1; got {value!r}")
        for name in ("checkpoint_every", "num_workers", "warmup_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0; got {value!r}")
        if self.steps_per_epoch is not None and (not isinstance(self.steps_per_epoch, int) or self.steps_per_epoch < 1):
            raise ValueError(f"steps_per_epoch must be None or an int >= 1; got {self.steps_per_epoch!r}")
        for name in ("lr", "policy_lr"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
        if self.grad_clip is not None and (
            not isinstance(self.grad_clip, (int, float)) or not math.isfinite(self.grad_clip) or self.grad_clip <= 0
        ):
            raise ValueError(f"grad_clip must be None or a finite number > 0; got {self.grad_clip!r}")
        if self.on_bad_file not in ("error", "skip"):
            raise ValueError(f"on_bad_file must be 'error' or 'skip'; got {self.on_bad_file!r} (--on-bad-file)")
        if not isinstance(self.bce_weight, (int, float)) or not math.isfinite(self.bce_weight) or self.bce_weight < 0:
            raise ValueError(f"bce_weight must be a finite number >= 0; got {self.bce_weight!r}")
        if (
            isinstance(self.bce_pos_weight, bool) or not isinstance(self.bce_pos_weight, (int, float))
            or not math.isfinite(self.bce_pos_weight) or self.bce_pos_weight <= 0
        ):
            raise ValueError(f"bce_pos_weight must be a finite number > 0; got {self.bce_pos_weight!r}")
        if not isinstance(self.lam, (int, float)) or not math.isfinite(self.lam) or self.lam < 0:
            raise ValueError(f"lam must be a finite number >= 0; got {self.lam!r}")
        if self.amp not in _AMP:
            raise ValueError(f"amp must be one of {list(_AMP)}; got {self.amp!r}")
        if self.log_format not in ("jsonl", "csv"):
            raise ValueError(f"log_format must be 'jsonl' or 'csv'; got {self.log_format!r}")
        # Normalise containers so configs compare equal after a JSON round trip.
        object.__setattr__(self, "model_kwargs", dict(self.model_kwargs))
        object.__setattr__(self, "reinforce_kwargs", dict(self.reinforce_kwargs))
        object.__setattr__(self, "policy_kwargs", dict(self.policy_kwargs))
        object.__setattr__(self, "severities", tuple(int(s) for s in self.severities))
        if self.corruptions is not None:
            if isinstance(self.corruptions, str):
                raise TypeError(f"corruptions must be a sequence of names or None; got the str {self.corruptions!r}")
            object.__setattr__(self, "corruptions", tuple(self.corruptions))

    def to_dict(self) -> dict[str, Any]:
        """Plain-container form (JSON- and checkpoint-safe)."""
        out = asdict(self)
        out["severities"] = list(self.severities)
        out["corruptions"] = None if self.corruptions is None else list(self.corruptions)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; known: {sorted(known)}")
        kw = dict(data)
        if kw.get("severities") is not None:
            kw["severities"] = tuple(kw["severities"])
        if kw.get("corruptions") is not None:
            kw["corruptions"] = tuple(kw["corruptions"])
        return cls(**kw)


class TrainingStopped(RuntimeError):
    """Training gave up: too many consecutive steps had a non-finite loss or gradient."""


def check_config(config: TrainConfig) -> None:
    """Raise, naming the fix, if ``config`` cannot train; cheap (builds no model and no dataset).

    Checks the model name, the action space (corruption names, severities within each
    corruption's level table), the strategy, the device and the data root's ISTD layout.

    Raises:
        KeyError: unknown model or corruption name (the message lists the valid names).
        ValueError: severities outside the tables, unknown strategy, unavailable device.
        FileNotFoundError: ``data_root`` missing or without ``images/``, ``masks/``, ``img_idx/``.

    Example:
        >>> check_config(TrainConfig(model="acm"))
        >>> check_config(TrainConfig(model="nope"))
        Traceback (most recent call last):
        ...
        KeyError: "unknown model 'nope'; ..."
    """
    from .models import list_models

    if config.model not in list_models():
        raise KeyError(
            f"unknown model {config.model!r}; choose one of {list_models()} (--model / TrainConfig.model), "
            f"or register yours with advcorrupt.models.register_model"
        )
    from .policy.schedules import parse_schedule, schedule_action_space

    parse_schedule(config.strategy)  # a schedule string that cannot be read: ValueError naming it
    try:
        space = schedule_action_space(config.strategy, config.corruptions, config.severities)
    except KeyError as e:
        raise KeyError(f"{e.args[0]} (--corruptions / TrainConfig.corruptions)") from None
    except ValueError as e:
        raise ValueError(f"{e} (--severities / TrainConfig.severities; levels are listed in docs/)") from None
    from .policy.adversaries import list_adversaries

    adversaries = list_adversaries()
    if config.strategy not in ("learned", "random", "none", *adversaries) and parse_schedule(config.strategy) is None:
        try:
            space.actions_of(config.strategy)
        except (KeyError, ValueError):
            raise ValueError(
                f"unknown strategy {config.strategy!r}; use 'learned', an adversary ({', '.join(adversaries)}), "
                f"'random', 'none', a corruption of the action space ({', '.join(space.corruptions)}) or a "
                f"category with members in it (noise, blur, digital) (--strategy / TrainConfig.strategy)"
            ) from None
    if config.device is not None:
        try:
            dev = torch.device(config.device)
        except RuntimeError:
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N'; got {config.device!r} (--device)") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {config.device!r} was asked for, but CUDA is not available here; use --device cpu")
    if config.data_root is not None:
        root = Path(config.data_root)
        if not root.is_dir():
            raise FileNotFoundError(
                f"data_root {root} does not exist; pass the folder holding images/, masks/ and img_idx/ "
                f"(e.g. ../shared/data/NUAA-SIRST), or leave --data-root out to train on synthetic scenes"
            )
        missing = [sub + "/" for sub in ("images", "masks", "img_idx") if not (root / sub).is_dir()]
        if missing:
            raise FileNotFoundError(
                f"data_root {root} lacks the ISTD layout: missing {', '.join(missing)}; expected images/, masks/ "
                f"and img_idx/train_<NAME>.txt + img_idx/test_<NAME>.txt (point --data-root at such a folder)"
            )
        splits = sorted((root / "img_idx").glob("train_*.txt"))
        if config.dataset_name is not None:
            want = root / "img_idx" / f"train_{config.dataset_name}.txt"
            if not want.is_file():
                raise FileNotFoundError(
                    f"{want} not found; --dataset-name must be one of "
                    f"{[f.stem[len('train_'):] for f in splits]}"
                )
        elif not splits:
            raise FileNotFoundError(f"data_root {root} has no img_idx/train_<NAME>.txt split file")


# ---------------------------------------------------------------------------------------- data
def _mix(*values: int) -> int:
    """A 63-bit seed from integers (SplitMix64 finaliser over a running combination)."""
    z = 0x243F6A8885A308D3
    for v in values:
        z = (z ^ (v & 0xFFFFFFFFFFFFFFFF)) * 0x9E3779B97F4A7C15 & 0xFFFFFFFFFFFFFFFF
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        z ^= z >> 31
    return z & 0x7FFFFFFFFFFFFFFF


class _SeededItems(Dataset[tuple[Tensor, Tensor]]):
    """Each item's randomness seeded from ``(seed, epoch, index)``: order- and worker-independent."""

    def __init__(self, dataset: Dataset[Any], seed: int, epoch: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_mix(self.seed, self.epoch, index))
            return self.dataset[index]


def build_datasets(config: TrainConfig) -> tuple[Dataset[Any], Dataset[Any], nn.Module]:
    """Train set (training views), test set (native size) and the normalising ``preprocess``.

    Raises:
        FileNotFoundError: ``data_root`` lacks the ISTD layout (names what is missing).
    """
    from .data import ISTDDataset, Normalize, SyntheticIRSTD

    if config.data_root is None:
        train = SyntheticIRSTD(config.synthetic_train, size=config.synthetic_size, seed=config.seed)
        test = SyntheticIRSTD(config.synthetic_test, size=config.synthetic_size, seed=config.seed + 1_000_003)
        mean, std = _synthetic_stats(train)
    else:
        root = Path(config.data_root)
        if not root.is_dir():
            raise FileNotFoundError(
                f"data_root {root} does not exist; pass the folder holding images/, masks/ and img_idx/ "
                f"(e.g. ../shared/data/NUAA-SIRST), or leave it out to train on synthetic scenes"
            )
        policy = config.on_bad_file
        train = ISTDDataset(root, "train", name=config.dataset_name, transform="train", patch_size=config.patch_size,
                            cache=True, on_bad_file=policy)  # type: ignore[arg-type]
        test = ISTDDataset(root, "test", name=config.dataset_name, transform="test", cache=True,
                           on_bad_file=policy)  # type: ignore[arg-type]
        mean, std = train.mean, train.std
    return train, test, Normalize(mean, std)


def _synthetic_stats(dataset: Dataset[Any], n: int = 16) -> tuple[float, float]:
    images = torch.stack([dataset[i][0] for i in range(min(n, len(dataset)))])  # type: ignore[arg-type]
    return float(images.mean()), float(images.std())


# ---------------------------------------------------------------------------------- distributed
@dataclass(frozen=True)
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_hint: str | None) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and (device_hint is None or device_hint.startswith("cuda"))
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _pick_device(config: TrainConfig, d: _Dist) -> torch.device:
    if config.device is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        name = config.device
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was asked for, but CUDA is not available here; use --device cpu")
        if d.world > 1:
            device = torch.device("cuda", d.local_rank)
        elif device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
    return device


# ---------------------------------------------------------------------------------------- model
def load_model(checkpoint: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> tuple[nn.Module, TrainConfig, dict[str, Any]]:
    """Rebuild the model of a checkpoint written by :func:`fit` (safe loading).

    Returns:
        ``(model in eval mode on device, its TrainConfig, the checkpoint dict)``.
    """
    from .models import create_model

    state = load_checkpoint(checkpoint)
    if "config" not in state or "model" not in state:
        raise CheckpointError(f"{checkpoint} is not a training checkpoint of advcorrupt (no 'config'/'model')")
    try:
        config = TrainConfig.from_dict(state["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{checkpoint} holds an unusable config: {e}") from None
    model = create_model(config.model, in_channels=1, **config.model_kwargs)
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


# ------------------------------------------------------------------------------------ resuming
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
        >>> # state = restore_training_state("runs/x/ckpt_00000100.pt", model=m, optimizer=o, trainer=t)
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


# ----------------------------------------------------------------------------------------- fit
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


def _batches(sampler: DistributedSampler[Any], batch_size: int, limit: int | None) -> list[list[int]]:
    order = list(sampler)
    out = [order[i : i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
    return out[:limit] if limit is not None else out


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _progress(iterable: Sequence[Any], *, enabled: bool, desc: str) -> Iterator[Any]:
    # A bar on a terminal only: a piped log gets the one line per epoch that fit prints.
    from ._progress import progress_iter

    return progress_iter(iterable, desc=desc, enabled=enabled)


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


def fit(
    config: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    tensorboard: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Train per ``config``; return a summary (final validation metrics, paths, counts).

    Everything that can be wrong with the configuration (unknown model or strategy, severities
    outside the level tables, a data root without the ISTD layout, an incompatible checkpoint)
    raises before the first training step.

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
        from ._determinism import set_deterministic

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


def _build_run(config: TrainConfig) -> _Run:
    """Process group, device, data, model, optimizer, schedule and the adversarial trainer."""
    from .losses import SoftIoULoss
    from .models import create_model
    from .policy.schedules import schedule_action_space
    from .trainer import AdversarialCorruptionTrainer

    d = _init_distributed(config.device)
    device = _pick_device(config, d)
    action_space = schedule_action_space(config.strategy, config.corruptions, config.severities)
    train_ds, test_ds, preprocess = build_datasets(config)
    torch.manual_seed(config.seed)
    model = create_model(config.model, in_channels=1, **config.model_kwargs).to(device)
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
        policy_kwargs=dict(config.policy_kwargs) or None, in_channels=1, max_grad_norm=config.grad_clip,
        loss_fn=SoftIoULoss(reduction="none", bce_weight=config.bce_weight, bce_pos_weight=config.bce_pos_weight),
        total_steps=steps_per_epoch * config.epochs,
    )
    return _Run(
        config, d, device, Path(config.out_dir), action_space, train_ds, test_ds, preprocess, model, ddp_model,
        optimizer, schedule, scheduler, scaler, generator, sampler, steps_per_epoch, trainer,
    )


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


def _open_log(run: _Run, pos: _Position) -> _Log | None:
    """Rank 0: the output folder, ``config.json`` and the metrics log (cut back to the resumed step)."""
    if not run.d.main:
        return None
    run.out.mkdir(parents=True, exist_ok=True)
    for stale in run.out.glob(".ckpt_*.tmp"):  # left by a process killed while saving
        stale.unlink(missing_ok=True)
    (run.out / "config.json").write_text(json.dumps(run.config.to_dict(), indent=2))
    log = _Log(run.out, run.config.log_format, keep_before_epoch=pos.epoch if pos.resumed else None)
    if pos.resumed:
        log.truncate_steps(pos.global_step)
    return log


def _open_tensorboard(run: _Run, folder: str | os.PathLike[str] | None) -> Any:
    """The TensorBoard writer on rank 0; every rank checks the package first, before any training."""
    if folder is None:
        return None
    if importlib.util.find_spec("tensorboard") is None:
        raise ImportError('--tensorboard needs the tensorboard package: pip install "advcorrupt[tensorboard]"')
    if not run.d.main:
        return None
    from .integrations.tensorboard import TensorBoardWriter

    return TensorBoardWriter(folder)


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


def _scheduler_step(scheduler: Any, *, skipped: bool) -> None:
    if skipped:  # the schedule follows global_step, skipped steps included
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
            scheduler.step()
    else:
        scheduler.step()


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


def _validate(run: _Run, pos: _Position, epoch: int) -> dict[str, Any]:
    """Validation metrics as ``val_*`` log entries; a collapsed detector is warned about and recorded."""
    from .benchmark import evaluate

    val = evaluate(_unwrap(run.ddp_model), run.test_ds, preprocess=run.preprocess.to(run.device), device=run.device)
    pos.val = val
    collapsed = is_collapsed(val)
    if collapsed:
        pos.collapsed_epochs.append(epoch + 1)
        _warn_collapse(epoch + 1, val, run.out)
    return {**{f"val_{k}": v for k, v in val.items()}, "collapsed": collapsed}


def _epoch_line(epoch: int, epochs: int, row: Mapping[str, Any]) -> str:
    """The one line per epoch: ``epoch 3/10 train_loss=0.41 val_iou=0.62 ... time_s=12.3``."""
    keys = ("train_loss", "val_iou", "val_niou", "val_pd", "val_fa", "time_s")
    return f"epoch {epoch + 1}/{epochs} " + " ".join(f"{k}={round(row[k], 4)}" for k in keys if k in row)


def _tensorboard_heatmap(run: _Run, tb: Any, *, progress: bool) -> None:
    """After the last epoch: the final model's IoU per corruption x severity as a TensorBoard image."""
    from .benchmark import evaluate_robustness

    report = evaluate_robustness(
        _unwrap(run.ddp_model), run.test_ds, corruptions=list(run.action_space.corruptions),
        severities=list(run.action_space.severities), seed=run.config.seed,
        preprocess=run.preprocess.to(run.device), device=run.device, progress=progress,
        model_name=f"{run.config.model} ({run.config.strategy})",
    )
    tb.add_heatmap(report.plot_heatmap(tb.log_dir / "robustness_iou.png"), run.config.epochs)


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


# A validation IoU below this (1 point) means the detector has collapsed, typically to all-background.
COLLAPSE_IOU = 0.01


def is_collapsed(val: Mapping[str, float]) -> bool:
    """Whether validation metrics show a collapsed detector (IoU ~0: no or almost no target pixel found)."""
    iou = val.get("iou", float("nan"))
    return not math.isfinite(iou) or iou < COLLAPSE_IOU


def _collapse_message(epoch: int, val: Mapping[str, float]) -> str:
    return (
        f"the detector collapsed: validation IoU {100 * val.get('iou', float('nan')):.2f}% at epoch {epoch} "
        f"(below {100 * COLLAPSE_IOU:.0f}%: it finds no or almost no target pixel, typically all-background "
        "logits). Add --bce-weight 1 --bce-pos-weight 10 (the quick profile's loss), lower --lr or raise "
        "--warmup-epochs; do not average this run with working ones."
    )


def _warn_collapse(epoch: int, val: Mapping[str, float], out: Path) -> None:
    msg = f"{out}: " + _collapse_message(epoch, val)
    warnings.warn(msg, RuntimeWarning, stacklevel=5)  # fit's caller (fit > _finish_epoch > _validate > here)
    print(f"WARNING: {msg}", file=sys.stderr, flush=True)


class WarmupCosine:
    """Learning-rate factor: linear warm-up from 1/100 over ``warmup_steps``, then cosine to 1/100.

    A callable object (not a lambda) so ``LambdaLR`` saves and restores its fields in checkpoints.

    Args:
        total_steps: steps of the whole schedule.
        warmup_steps: warm-up steps (0: start at the full rate, a plain cosine annealing).
        floor: the final (and initial) factor.

    Example:
        >>> s = WarmupCosine(100, warmup_steps=10)
        >>> round(s(0), 3), s(10), round(s(100), 3)
        (0.01, 1.0, 0.01)
    """

    def __init__(self, total_steps: int, *, warmup_steps: int = 0, floor: float = 0.01) -> None:
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.floor = float(floor)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.floor + (1.0 - self.floor) * step / self.warmup_steps
        span = max(self.total_steps - self.warmup_steps, 1)
        t = min(max(step - self.warmup_steps, 0), span) / span
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * t))


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
