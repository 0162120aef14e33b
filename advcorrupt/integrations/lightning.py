"""Adversarial corruption training for PyTorch Lightning: one callback, one changed return line.

Add the callback and let ``training_step`` return its per-sample losses::

    trainer = L.Trainer(callbacks=[AdversarialCorruption()])          # (1)

    def training_step(self, batch, batch_idx):
        images, masks = batch
        per_sample = self.loss_fn(self(images), masks)                   # reduction="none": (N,)
        return {"loss": per_sample.mean(), "per_sample_loss": per_sample}   # (2)

Before each training step the callback draws a corruption per image (the policy, as in
:meth:`advcorrupt.AdversarialCorruptionTrainer.corrupt`) and turns the batch ``[images, masks, ...]``
into ``[cat(images, corrupted), cat(masks, masks), ...]``: the step sees the clean images followed by
their corrupted copies, one forward pass as in BALISTD's Alg. 1, and ``per_sample.mean()`` is the
paper's Eq. 1 with ``lambda = 1`` (halved). After the step the per-sample losses of the corrupted
half are the policy's reward (:meth:`~advcorrupt.AdversarialCorruptionTrainer.update_policy`).
Validation and test batches are left alone.

The policy, its optimizer and its reward baseline are saved in Lightning checkpoints (the callback's
``state_dict``) and restored by ``trainer.fit(..., ckpt_path=...)``. Under Lightning's DDP strategies
every process starts from the same policy and the policy gradient is averaged over processes.
Logged through the module's logger: ``advcorrupt/loss_clean``, ``advcorrupt/loss_corrupted``,
``advcorrupt/policy_entropy`` (per step and epoch) and ``advcorrupt/share/<corruption>``, the share
of each corruption among the actions drawn in the epoch, over all processes.

Install with ``pip install "advcorrupt[lightning]"``.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, MutableSequence, Sequence
from typing import Any

import torch
from torch import Tensor

try:  # the unified package first, then the standalone one: the callback must match the Trainer's package
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover - depends on what is installed
    try:
        import pytorch_lightning as pl  # type: ignore[no-redef]
    except ImportError as e:
        raise ImportError(
            'advcorrupt.integrations.lightning needs PyTorch Lightning: pip install "advcorrupt[lightning]"'
        ) from e

from ..policy.schedules import parse_schedule, schedule_action_space
from ..trainer import AdversarialCorruptionTrainer

__all__ = ["AdversarialCorruption"]

PER_SAMPLE_KEY = "per_sample_loss"


class AdversarialCorruption(pl.Callback):
    """Lightning callback: BALISTD's learned corruption adversary around any ``LightningModule``.

    Args:
        strategy: ``None`` (default): the task's default, as
            :class:`~advcorrupt.AdversarialCorruptionTrainer` decides it (``"random@1-5"`` for a one-channel
            output, the curriculum ``"curriculum@1-3"`` for K > 1 classes; pass ``task=`` /
            ``num_classes=`` to say it), or any
            strategy of the trainer (``"learned"``, ``"random"``, a corruption name, a
            schedule such as ``"random@3"``; a ``"curriculum@..."`` timetable spans
            ``trainer.estimated_stepping_batches`` unless ``total_steps=`` is given, the default's too).
        corruptions: corruption names of the action space (default: all registered).
        severities: severity levels of the action space (widened to the levels a schedule draws).
        policy_lr: the policy's learning rate.
        image_key: where the images are in the batch: an index for list batches (default 0), a
            key for dict batches (default ``"image"``). Images must be float in [0, 1] (normalise
            inside the module, after corruption).
        in_channels: image channels; default ``None``: inferred from the first batch.
        seed: seed of the corruption draws (offset by the process rank); ``None``: global RNG.
        **trainer_kwargs: further arguments of :class:`~advcorrupt.AdversarialCorruptionTrainer`
            (``policy_kwargs``, ``reinforce_kwargs``...).

    Attributes:
        adversary: the :class:`~advcorrupt.AdversarialCorruptionTrainer` (built at ``on_fit_start``).

    Example:
        >>> import lightning as L  # doctest: +SKIP
        >>> from advcorrupt.integrations.lightning import AdversarialCorruption
        >>> L.Trainer(callbacks=[AdversarialCorruption(severities=(1, 2, 3))]).fit(module)  # doctest: +SKIP
    """

    def __init__(
        self,
        strategy: str | None = None,
        *,
        corruptions: Sequence[str] | None = None,
        severities: Sequence[int] = (1, 2, 3),
        policy_lr: float = 1e-2,
        image_key: int | str | None = None,
        in_channels: int | None = None,
        seed: int | None = None,
        **trainer_kwargs: Any,
    ) -> None:
        super().__init__()
        _check_no_probe(strategy)
        # validates names and levels now; a schedule such as "random@1-5" widens the levels it draws
        self.action_space = schedule_action_space(strategy, corruptions, severities)
        self.strategy = strategy
        self.policy_lr = policy_lr
        self.image_key = image_key
        self.in_channels = in_channels
        self.seed = seed
        self.trainer_kwargs = trainer_kwargs
        self.adversary: AdversarialCorruptionTrainer | None = None
        self._pending_state: dict[str, Any] | None = None
        self._batch_size = 0
        self._counts: Tensor | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(strategy=self.strategy, actions=self.action_space.labels())

    # ------------------------------------------------------------------ setup and checkpoints
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.optimizers:
            raise RuntimeError("AdversarialCorruption needs the module's optimizer: configure_optimizers() returned none")
        generator = None
        if self.seed is not None:
            generator = torch.Generator(device=pl_module.device).manual_seed(int(self.seed) + trainer.global_rank)
        extra: dict[str, Any] = {"in_channels": self.in_channels} if self.in_channels is not None else {}
        schedule = parse_schedule(self.strategy)
        curriculum = self.strategy is None or (schedule is not None and schedule.kind == "curriculum")
        if curriculum and "total_steps" not in self.trainer_kwargs:  # None: the task's default may be one
            extra["total_steps"] = int(trainer.estimated_stepping_batches)  # the timetable spans the whole fit
        self.adversary = AdversarialCorruptionTrainer(
            pl_module, trainer.optimizers[0], action_space=self.action_space, strategy=self.strategy,
            policy_lr=self.policy_lr, generator=generator, **extra, **self.trainer_kwargs,
        )
        if self._pending_state is not None:
            self.adversary.load_state_dict(self._pending_state)
            self._pending_state = None

    def state_dict(self) -> dict[str, Any]:
        if self.adversary is not None:
            return {"adversary": self.adversary.state_dict()}
        return {"adversary": self._pending_state} if self._pending_state is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning restores callbacks before on_fit_start: keep the state until the adversary exists.
        state = state_dict.get("adversary")
        if state is None:
            return
        if self.adversary is not None:
            self.adversary.load_state_dict(state)
        else:
            self._pending_state = state

    # ------------------------------------------------------------------ training
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        assert self.adversary is not None
        key = self._key(batch)
        images = batch[key]
        corrupted = self.adversary.corrupt(images)
        b = self._batch_size = int(images.shape[0])
        if self._counts is None:
            self._counts = torch.zeros(self.action_space.size, device=images.device)
        actions = self.adversary.last_actions
        if actions is not None and actions.numel():
            self._counts += torch.bincount(actions, minlength=self.action_space.size).to(self._counts)
        for k in (range(len(batch)) if isinstance(batch, MutableSequence) else list(batch)):
            value = batch[k]
            if k == key:
                batch[k] = torch.cat([images, corrupted])
            elif isinstance(value, Tensor) and value.ndim and value.shape[0] == b:
                batch[k] = torch.cat([value, value])

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        assert self.adversary is not None
        b = self._batch_size
        per_sample = outputs.get(PER_SAMPLE_KEY) if isinstance(outputs, Mapping) else None
        if not isinstance(per_sample, Tensor):
            got = f"a dict with keys {sorted(outputs)}" if isinstance(outputs, Mapping) else type(outputs).__name__
            raise ValueError(
                f"AdversarialCorruption needs the per-sample losses of each training step: return "
                f'{{"loss": loss, "{PER_SAMPLE_KEY}": per_sample}} from training_step, per_sample of shape '
                f"(2B,) = ({2 * b},) (clean images first, then their corrupted copies; a loss with "
                f"reduction='none'); training_step returned {got}"
            )
        if per_sample.shape != (2 * b,):
            raise ValueError(
                f"training_step's {PER_SAMPLE_KEY!r} must have shape (2B,) = ({2 * b},): one loss per clean image, "
                f"then one per corrupted copy; got {tuple(per_sample.shape)}"
            )
        per_sample = per_sample.detach().float()
        stats = self.adversary.update_policy(per_sample[b:], clean_loss=per_sample[:b])
        pl_module.log_dict(
            {
                "advcorrupt/loss_clean": per_sample[:b].mean(),
                "advcorrupt/loss_corrupted": per_sample[b:].mean(),
                "advcorrupt/policy_entropy": stats["policy_entropy"],
            },
            on_step=True, on_epoch=True, sync_dist=True, batch_size=b,
        )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._counts is None:
            return
        counts = trainer.strategy.reduce(self._counts.clone(), reduce_op="sum")
        per_corruption = counts.view(self.action_space.num_corruptions, self.action_space.num_severities).sum(1)
        shares = per_corruption / per_corruption.sum().clamp_min(1)
        pl_module.log_dict(
            {f"advcorrupt/share/{name}": shares[k] for k, name in enumerate(self.action_space.corruptions)},
            on_step=False, on_epoch=True,
        )
        self._counts.zero_()

    def _key(self, batch: Any) -> int | str:
        if isinstance(batch, MutableMapping):
            key = "image" if self.image_key is None else self.image_key
            if key not in batch:
                raise KeyError(f"image_key {key!r} is not in the training batch; its keys: {sorted(batch)}")
            return key
        if isinstance(batch, MutableSequence):
            key = 0 if self.image_key is None else self.image_key
            if not isinstance(key, int) or not -len(batch) <= key < len(batch):
                raise KeyError(f"image_key must index the training batch of length {len(batch)}; got {key!r}")
            return key % len(batch)
        raise TypeError(
            "AdversarialCorruption replaces the images in the training batch, so the batch must be a list or a "
            f"dict (as DataLoader's default collate makes them); got {type(batch).__name__}"
        )


def _check_no_probe(strategy: object) -> None:
    """Adversaries rewarded with ``"progress"`` need a second forward after the update: not done here."""
    from ..policy.adversaries import get_adversary, needs_losses_after

    if needs_losses_after(strategy):
        adversary = get_adversary(strategy)  # type: ignore[arg-type]
        raise ValueError(
            f"strategy={strategy!r}: adversary {adversary.name!r} is rewarded with {adversary.reward!r}, which "
            "needs the losses recomputed after each optimizer step; the Lightning callback does not run that "
            "extra forward. Use another adversary (e.g. 'banded') or AdversarialCorruptionTrainer.step / the "
            "two-line integration with update_policy(..., corrupted_loss_after=, clean_loss_after=)"
        )
