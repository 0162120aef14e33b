"""Adversarial corruption training around any segmentation model (BALISTD, AAAI 2024, Alg. 1).

One :meth:`AdversarialCorruptionTrainer.step`:

1. the policy looks at the clean batch ``x`` and draws a corruption action per image
   (``s ~ p(s | x)``, Eq. 2);
2. the action space corrupts each image with its action (``x_hat = s(x)``), on the [0, 1] image a
   camera would produce; ``preprocess`` (e.g. mean/std normalisation) runs after that;
3. one forward pass on ``cat[x, x_hat]`` gives per-sample losses ``l`` (2B,);
4. the detector minimises ``L = mean(l[:B]) + lam * mean(l[B:])`` (Eq. 1, Eq. 8);
5. the policy ascends ``E`` (Eq. 3) by REINFORCE (Eq. 6). The paper rewards it with ``l[B:]``, the
   detector's losses on the corrupted images (``strategy="paper"``); the default adversary is
   rewarded with each image's damage ``l[B:] - l[:B]`` and keeps every corruption's probability in
   a band around uniform (:mod:`advcorrupt.policy.adversaries`). Either reward comes from the same
   forward pass: no extra one.

Users who keep their own loop add two calls instead: ``x_hat = trainer.corrupt(x)`` before their
forward pass and ``trainer.update_policy(loss_on_x_hat, clean_loss=loss_on_x)`` (per-sample
losses) after their backward pass.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from ._graphs import GraphedCall
from ._skips import SkipCounter, finite_flag, step_unless_non_finite
from ._trainer_args import check_trainer_args
from .corruptions._registry import validate_images
from .corruptions.functional import _host_reads_ok
from ._outputs import output_heads
from .policy.action_space import ActionSpace
from .policy.adversaries import is_adversary, needs_losses_after
from .policy.reinforce import PolicySample
from .policy.schedules import parse_schedule, schedule_action_space, schedule_levels
from .policy.strategies import Strategy, make_strategy
from .tasks import DEFAULT_STRATEGIES, BinaryTask, Task, default_strategy, infer_task, make_task

__all__ = ["AdversarialCorruptionTrainer", "frozen_buffers"]


class AdversarialCorruptionTrainer:
    """Train a segmentation model against a learned corruption adversary (Alg. 1).

    Args:
        model: the detector; ``model(images)`` returns logits (B, 1, H, W), a list/tuple of them
            (deep supervision: the loss averages the heads) or a dict with key ``"out"``. It may
            be wrapped in ``DistributedDataParallel`` and be in ``channels_last``.
        optimizer: the detector's optimizer; must hold (some of) ``model``'s parameters.
        loss_fn: per-sample loss ``loss_fn(logits, masks) -> (N,)``; default
            the task's: ``SoftIoULoss(reduction="none")`` (the paper's loss) for binary masks,
            :class:`~advcorrupt.losses.PerSampleCrossEntropy` for class indices.
        action_space: the (corruption, severity) grid; default ``ActionSpace()`` (all registered
            corruptions, severities 1-3, plus any level a schedule strategy draws).
        strategy: ``None`` (default): the task's :attr:`~advcorrupt.tasks.Task.default_strategy`,
            chosen by measurement: the schedule ``"random@1-5"`` for binary masks, ``"random"``
            for semantic ones (docs/results.md); ``"learned"`` where ``policy``,
            ``policy_kwargs`` or ``reinforce_kwargs`` configure a policy. Without ``task`` /
            ``num_classes`` it is decided at the first batch, as the task is (float (B, 1, H, W)
            masks: binary; otherwise one no-grad probe forward that changes no buffer reads the
            model's output channels: K > 1 is semantic). Or ``"learned"``, an adversary's name
            (``"paper"``, ``"banded"``, ... see :func:`~advcorrupt.policy.adversaries.list_adversaries`),
            ``"random"``, ``"none"``, a corruption name, a category (``"noise"``, ``"blur"``,
            ``"digital"``), a fixed severity schedule (``"random@3"``, ``"random@1:10+2:10+3:80"``,
            ``"random@1-5"``, ``"curriculum@1-3"``; :mod:`~advcorrupt.policy.schedules`) or a
            :class:`~advcorrupt.policy.Strategy`.
        lam: weight ``lambda`` of the corrupted-sample loss (Eq. 1), >= 0.
        policy_lr: learning rate of the policy's SGD (paper: 1e-4, which barely moves the policy
            within a training run; default 1e-2, see docs/trainer.md).
        preprocess: applied to the concatenated clean + corrupted batch before the model.
        generator: generator (on the images' device) for the policy's sampling and the
            corruptions' randomness; ``None`` uses the global RNG.
        scaler: a ``torch.amp.GradScaler`` for fp16 training.
        autocast_dtype: if set, the forward pass and loss run under
            ``torch.autocast(device_type, dtype=autocast_dtype)``; you may also call
            :meth:`step` inside your own ``torch.autocast`` block.
        skip_non_finite: check, once per step, that the loss and the gradient norm are finite and
            skip the updates if not. This is the step's one host-device sync; ``False`` removes it
            (then only a ``scaler`` protects the detector's weights; the policy is always guarded
            on the device).
        max_grad_norm: clip the detector's gradient norm (after unscaling) to this value.
        cuda_graphs: on CUDA, replay the corruption of each batch as a CUDA graph (captured at
            the first batch of each shape, falling back to eager with one warning if capture
            fails); ``False`` runs it eagerly. See ``docs/trainer.md``, "Host-device
            synchronisation".
        in_channels: image channels the policy network sees; ``None`` (default) infers them from
            the first batch, when the policy is built on that batch's device.
        policy: a ready policy network for ``"learned"`` (default: :class:`PolicyNetwork`).
        policy_kwargs: extra arguments of :class:`PolicyNetwork`.
        reinforce_kwargs: extra arguments of :class:`Reinforce` (baseline, entropy, floor...).
        task: ``"binary"`` (masks (B, 1, H, W) in {0, 1}), ``"semantic"`` (class indices), a
            :class:`~advcorrupt.tasks.Task`, or ``None``: inferred from the first batch (integer or
            (B, H, W) masks with a model returning K > 1 channels mean semantic).
        num_classes: semantic task: K (default: the model's output channels); implies semantic.
        ignore_index: semantic task: the label left out of the loss (e.g. 255); implies semantic.
        total_steps: the run's training steps (``epochs * len(loader)``); needed only by a
            ``"curriculum@..."`` strategy, which places its timetable on it (the semantic task's
            default is one: with ``strategy=None`` and class-index masks, pass it).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from advcorrupt.trainer import AdversarialCorruptionTrainer
        >>> model = nn.Conv2d(1, 1, 3, padding=1)
        >>> trainer = AdversarialCorruptionTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1))
        >>> x, y = torch.rand(4, 1, 32, 32), (torch.rand(4, 1, 32, 32) > 0.95).float()
        >>> stats = trainer.step(x, y)
        >>> sorted(stats)[:4]
        ['baseline', 'loss', 'loss_clean', 'loss_corrupted']
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
        *,
        action_space: ActionSpace | None = None,
        strategy: str | Strategy | None = None,
        lam: float = 1.0,
        policy_lr: float = 1e-2,
        preprocess: Callable[[Tensor], Tensor] | None = None,
        generator: torch.Generator | None = None,
        scaler: Any = None,
        autocast_dtype: torch.dtype | None = None,
        skip_non_finite: bool = True,
        cuda_graphs: bool = True,
        max_grad_norm: float | None = None,
        in_channels: int | None = None,
        policy: nn.Module | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        reinforce_kwargs: dict[str, Any] | None = None,
        total_steps: int | None = None,
        task: str | Task | None = None,
        num_classes: int | None = None,
        ignore_index: int | None = None,
    ) -> None:
        opt_params = check_trainer_args(
            model, optimizer, lam=lam, loss_fn=loss_fn, preprocess=preprocess, generator=generator, scaler=scaler,
            max_grad_norm=max_grad_norm, in_channels=in_channels,
        )
        self.model = model
        self.optimizer = optimizer
        self.task: Task | None = make_task(task, num_classes=num_classes, ignore_index=ignore_index)
        defaulted = strategy is None
        if strategy is None:
            wants_policy = policy is not None or bool(policy_kwargs) or bool(reinforce_kwargs)
            strategy = default_strategy(self.task, wants_policy=wants_policy)
        self._strategy_pending = strategy is None  # the task's default, decided at the first batch
        self.loss_fn = loss_fn if loss_fn is not None or self.task is None else self.task.default_loss()
        self._loss_from_task = False  # whether loss_fn is the default of a task inferred from a batch
        # after the strategy is known: a default strategy of the task may draw levels beyond 1-3
        self._default_space = action_space is None
        if action_space is None:  # the default levels, plus those a schedule such as "random@1-5" draws
            action_space = schedule_action_space(strategy)
        elif not isinstance(action_space, ActionSpace):
            raise TypeError(f"action_space must be an ActionSpace or None; got {type(action_space).__name__}")
        self.action_space = action_space
        if defaulted and strategy is not None:
            self._check_default_steps(strategy, total_steps)
            if not self._default_space:
                self._check_default_fits(strategy)
        self.lam = float(lam)
        self.preprocess = preprocess
        self.generator = generator
        self.scaler = scaler
        self.autocast_dtype = autocast_dtype
        self.skip_non_finite = bool(skip_non_finite)
        self.cuda_graphs = bool(cuda_graphs)
        self._skips = SkipCounter()
        self.max_grad_norm = None if max_grad_norm is None else float(max_grad_norm)
        self.device = next(model.parameters()).device
        self._strategy_name = strategy if isinstance(strategy, str) or strategy is None else strategy.name
        self._strategy_args: dict[str, Any] = dict(
            strategy=strategy, action_space=action_space, device=self.device, policy=policy,
            policy_lr=policy_lr, policy_kwargs=policy_kwargs, reinforce_kwargs=reinforce_kwargs,
            total_steps=total_steps,
        )
        self._strategy: Strategy | None = None
        needs_channels = isinstance(strategy, str) and policy is None and is_adversary(strategy)
        if strategy is None:
            pass  # the task's default: built with the first batch
        elif in_channels is not None or not needs_channels:
            self._build_strategy(in_channels or 1)
        else:  # fail fast on bad kwargs (without touching the global RNG); the policy waits for a batch
            with torch.random.fork_rng(devices=[]):
                make_strategy(in_channels=1, **{**self._strategy_args, "device": None})
        self._opt_params = opt_params
        # The corruption of a batch as a CUDA graph: only where it reads nothing on the host.
        self._graphed_apply = GraphedCall(
            self._apply_actions, name="the trainer's corruption step (ActionSpace.apply)", generators=[generator],
            enabled=self.cuda_graphs and action_space._resolve_grouping(self.device) != "subset",
        )
        self._pending: PolicySample | None = None
        self._probe: tuple[Tensor, Tensor] | None = None  # the step's batch, kept for "progress" rewards
        # (B,) actions drawn by the last corrupt() call (empty for "none"), for logging.
        self.last_actions: Tensor | None = None
        self.num_steps = 0

    # ------------------------------------------------------------------ the strategy, built lazily
    def _build_strategy(self, in_channels: int) -> Strategy:
        self._strategy = make_strategy(in_channels=in_channels, **self._strategy_args)
        return self._strategy

    def _resolve_default(self, images: Tensor) -> None:
        """``strategy=None``: take the task's default; before the task is known, the model's output
        channels on this batch say which task's (K > 1: semantic), read by a no-grad forward that
        changes no buffer and no random state."""
        if self.task is not None:
            self._use_strategy(self.task.default_strategy)  # type: ignore[arg-type]
            return
        x = self.preprocess(images) if self.preprocess is not None else images
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.no_grad(), frozen_buffers(self.model), torch.random.fork_rng(devices=devices), self._autocast(x):
                channels = int(output_heads(self.model(x))[-1].shape[1])
        except Exception as e:
            raise RuntimeError(
                "strategy=None stands for the task's default, and with no task given the trainer reads it from "
                f"the model's output channels on the first batch; that forward failed ({type(e).__name__}: {e}). "
                "Name the strategy (e.g. strategy='learned' or 'random') or the task (task=, num_classes=)"
            ) from e
        self._use_strategy(default_strategy(output_channels=channels))  # type: ignore[arg-type]

    def _use_strategy(self, name: str) -> None:
        """Fix the strategy ``strategy=None`` stands for (widening a default action space to its levels)."""
        self._check_default_steps(name, self._strategy_args["total_steps"])
        if self._default_space:
            self.action_space = schedule_action_space(name)
        else:
            self._check_default_fits(name)
        self._strategy_name = name
        self._strategy_args.update(strategy=name, action_space=self.action_space)

    @staticmethod
    def _check_default_steps(name: str, total_steps: int | None) -> None:
        """A default that is a curriculum (the semantic task's) needs the run's length to place its levels."""
        schedule = parse_schedule(name)
        if total_steps is None and schedule is not None and schedule.kind == "curriculum":
            raise ValueError(
                f"strategy=None stands for the task's measured default {name!r}, a curriculum whose levels "
                "rise over the run: it needs total_steps= (the run's training steps, e.g. epochs * "
                "len(loader)); got total_steps=None. Pass it, or name a strategy, e.g. strategy='random'"
            )

    def _check_default_fits(self, name: str) -> None:
        """An action space the user built must hold the levels of the default that ``strategy=None`` stands for."""
        levels = list(schedule_levels(name))
        missing = sorted(set(levels) - set(self.action_space.severities))
        if missing:
            raise ValueError(
                f"strategy=None stands for the task's measured default {name!r}, which draws levels "
                f"{levels}; action_space holds levels {list(self.action_space.severities)} "
                f"(missing {missing}): add them (ActionSpace(..., severities={levels})) or "
                "name a strategy, e.g. strategy='random' (uniform over the action space)"
            )

    @property
    def strategy(self) -> Strategy:
        """The corruption strategy (for a learned one without ``in_channels``: built at the first batch)."""
        if self._strategy is None and self._strategy_name is None:
            raise RuntimeError(
                "the strategy (strategy=None: the task's default) is built from the first batch: call step() or "
                "corrupt() first, or name the strategy (e.g. strategy='learned')"
            )
        if self._strategy is None:
            raise RuntimeError(
                f"the {self._strategy_name!r} policy is built from the first batch (in_channels=None): call "
                "step() or corrupt() first, or pass in_channels= to the trainer"
            )
        return self._strategy

    @property
    def built(self) -> bool:
        """Whether the strategy (and its policy network) exists yet."""
        return self._strategy is not None

    # ------------------------------------------------------------------ inspection
    @property
    def policy(self) -> nn.Module | None:
        """The policy network (``None`` for strategies that do not learn, or before the first batch)."""
        return getattr(self._strategy, "policy", None)

    @property
    def needs_losses_after(self) -> bool:
        """Whether :meth:`update_policy` needs the losses recomputed after the detector's update."""
        if self._strategy is not None:
            return self._strategy.needs_after
        if self._strategy_name is None:  # not decided yet: whether either task's default would need them
            return any(needs_losses_after(name) for name in DEFAULT_STRATEGIES)
        return needs_losses_after(self._strategy_name)

    def policy_probabilities(self, images: Tensor) -> Tensor:
        """Action probabilities ``p(a | x)`` the strategy would draw from, (B, ``action_space.size``).

        For ``"none"`` the rows are all zero (no corruption is drawn).
        """
        self._check_images(images)
        return self.strategy.probabilities(images)

    # ------------------------------------------------------------------ two-line integration
    def corrupt(self, images: Tensor) -> Tensor:
        """Draw an action per image and return the corrupted batch (no gradient).

        The drawn actions and their log-probabilities are kept until :meth:`update_policy`.
        With ``strategy="none"`` the result is an empty (0, C, H, W) batch, so
        ``torch.cat([images, trainer.corrupt(images)])`` is the clean batch.

        Args:
            images: clean images, float in [0, 1] (before any normalisation).

        Shape:
            images: (B, C, H, W). Output: (B, C, H, W), or (0, C, H, W) for ``"none"``.

        Returns:
            The corrupted images, same dtype and device as ``images``.
        """
        self._check_images(images)
        sample = self.strategy.sample(images, generator=self.generator)
        self._pending = sample
        self.last_actions = sample.actions.detach() if self.strategy.corrupts else sample.actions[:0]
        if not self.strategy.corrupts:
            return images[:0]
        with torch.no_grad():
            return self._graphed_apply(images.detach(), sample.actions)

    def _apply_actions(self, images: Tensor, actions: Tensor) -> Tensor:
        return self.action_space.apply(images, actions, generator=self.generator)

    def update_policy(
        self, per_sample_corrupted_loss: Tensor, *, clean_loss: Tensor | None = None,
        valid: Tensor | None = None, corrupted_loss_after: Tensor | None = None,
        clean_loss_after: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Update the policy with the detector's per-sample losses on the last :meth:`corrupt` batch.

        Non-finite losses get no weight (on the device, no sync). Call it on every rank in
        distributed runs.

        Args:
            per_sample_corrupted_loss: the detector's loss on each corrupted image.
            clean_loss: its loss on the same clean images, in the same order. Adversaries rewarded
                with damage (``loss(corrupted) - loss(clean)``, the default) need it; pass it always.
            valid: optional bool tensor; false entries (or a false 0-dim tensor) are ignored.
            corrupted_loss_after: the corrupted loss recomputed after the detector's optimizer
                step (no grad, e.g. ``torch.no_grad()`` forward of the same batch). Only
                adversaries rewarded with ``"progress"`` need it (:attr:`needs_losses_after`);
                :meth:`step` computes it itself.
            clean_loss_after: the clean loss recomputed the same way, for the same adversaries.

        Shape:
            every loss: (B,), B as in the last :meth:`corrupt` call (0 for "none").

        Returns:
            Detached 0-dim tensors: ``reward``, ``policy_entropy`` (+ ``baseline`` for "learned").
        """
        sample = self._pending
        if sample is None:
            raise RuntimeError("update_policy() needs a batch from corrupt() first; call trainer.corrupt(images)")
        loss = per_sample_corrupted_loss
        if not isinstance(loss, Tensor) or loss.shape != sample.actions.shape:
            got = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(
                f"per_sample_corrupted_loss must have shape (B,) = ({sample.batch_size},), one loss per "
                f"corrupted image; got {got} (use a loss with reduction='none')"
            )
        if not self.strategy.corrupts:
            self._pending = None
            zero = torch.zeros((), device=loss.device)
            return {"reward": zero, "policy_entropy": zero}
        after = None
        if corrupted_loss_after is not None or clean_loss_after is not None:
            if corrupted_loss_after is None or clean_loss_after is None:
                raise ValueError("corrupted_loss_after and clean_loss_after go together; got only one of them")
            after = (corrupted_loss_after, clean_loss_after)
        stats = self.strategy.update(sample, loss, clean_loss=clean_loss, valid=valid, after=after)
        self._pending = None  # only once the update went through: a bad clean_loss can be retried
        return stats

    # ------------------------------------------------------------------ all-in-one
    def step(self, images: Tensor, masks: Tensor) -> dict[str, Tensor]:
        """Run Alg. 1 once: corrupt, one forward on clean + corrupted, detector step, policy step.

        Args:
            images: clean images, float in [0, 1].
            masks: target masks, as the task reads them (:attr:`task`).

        Shape:
            images: (B, C, H, W); masks: binary (B, 1, H, W) (or (B, M, H, W) matching the model
            output), or semantic class indices (B, H, W) / (B, 1, H, W).

        Returns:
            Detached 0-dim tensors (on an accelerator: no host-device sync, the non-finite check
            included; on CPU the check reads its flag on the host):
            ``loss``, ``loss_clean``, ``loss_corrupted``, ``reward`` (mean corrupted loss),
            ``policy_entropy``, ``baseline`` (0 for non-learned strategies) and ``skipped`` (1.0
            if the updates were skipped for a non-finite loss or gradient).
        """
        b = self._check_images(images, build=False)
        fresh_task = self.task is None
        masks = self._check_masks(masks, images)  # bad masks raise before a lazy policy is built
        fresh = self._strategy is None
        try:
            per_sample, loss, loss_clean, loss_corrupted = self._forward(images, masks)
        except Exception:
            if fresh:  # e.g. the model refused the batch: forget the policy built from it
                self._strategy, self._pending = None, None
                if self._strategy_pending:  # and the default decided from it
                    self._strategy_name = None
            if fresh_task:  # and the task decided from it (with the default loss it brought)
                self._forget_task()
            raise
        grads, gnorm = self._backward(loss)
        if self.skip_non_finite and not _host_reads_ok(loss.device):
            ok_flag, policy_stats = self._update_on_device(b, per_sample, loss, grads, gnorm)
            skipped = (~ok_flag).float()
        else:
            ok, policy_stats = self._update_on_host(b, per_sample, loss, grads, gnorm)
            skipped = torch.full((), 0.0 if ok else 1.0, device=loss.device)
        zero = torch.zeros((), device=loss.device)
        reward = policy_stats.get("reward", loss_corrupted.detach() if self.strategy.corrupts else zero)
        return {
            "loss": loss.detach(),
            "loss_clean": loss_clean.detach(),
            "loss_corrupted": loss_corrupted.detach(),
            "reward": reward,
            "policy_entropy": policy_stats.get("policy_entropy", zero),
            "baseline": policy_stats.get("baseline", zero),
            "skipped": skipped,
        }

    def _forward(self, images: Tensor, masks: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Corrupt, one forward pass on clean + corrupted: per-sample losses (2B,) and Eq. 1's ``L``."""
        b = images.shape[0]
        corrupted = self.corrupt(images)
        inputs = torch.cat([images, corrupted]) if self.strategy.corrupts else images
        targets = torch.cat([masks, masks]) if self.strategy.corrupts else masks
        if self.preprocess is not None:
            inputs = self.preprocess(inputs)
        if self._model_channels_last():
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with self._autocast(inputs):
            outputs = self.model(inputs)
        if self.task is None:  # zero-config: the first batch's masks and outputs decide
            masks = self._infer_task(masks, images, outputs)
            targets = torch.cat([masks, masks]) if self.strategy.corrupts else masks
        with self._autocast(inputs):
            per_sample = self.per_sample_loss(outputs, targets)
        self._probe = (inputs, targets) if self.strategy.needs_after else None
        loss_clean = per_sample[:b].mean()
        if self.strategy.corrupts:
            loss_corrupted = per_sample[b:].mean()
            return per_sample, loss_clean + self.lam * loss_corrupted, loss_clean, loss_corrupted
        return per_sample, loss_clean, loss_clean, torch.zeros_like(loss_clean)

    def _backward(self, loss: Tensor) -> tuple[list[Tensor], Tensor | None]:
        """Gradients of ``loss`` (unscaled), clipped to ``max_grad_norm``; returns them and their norm if known."""
        self.optimizer.zero_grad(set_to_none=True)
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        grads = [p.grad for p in self._opt_params if p.grad is not None]
        gnorm: Tensor | None = None
        if self.max_grad_norm is not None and grads:
            gnorm = torch.nn.utils.clip_grad_norm_(
                [p for p in self._opt_params if p.grad is not None], self.max_grad_norm
            )
        return grads, gnorm

    def _update_on_host(
        self, b: int, per_sample: Tensor, loss: Tensor, grads: list[Tensor], gnorm: Tensor | None
    ) -> tuple[bool, dict[str, Tensor]]:
        """Detector and policy updates, skipped if the loss or gradient is not finite (CPU: one read)."""
        ok = True
        if self.skip_non_finite:
            # With a scaler, inf/NaN gradients of a finite loss are the scaler's business.
            ok = bool(finite_flag(loss, grads, gnorm, check_grads=self.scaler is None))  # the one sync
        if ok:
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
            else:
                self.optimizer.step()
        else:
            self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.update()
        policy_stats: dict[str, Tensor] = {}
        if ok:
            policy_stats = self._policy_step(b, per_sample)
        elif self.strategy.learns and _distributed():
            # Keep the policy's all_reduce matched across ranks: contribute nothing this step.
            policy_stats = self._policy_step(b, per_sample, valid=torch.zeros((), dtype=torch.bool, device=loss.device))
        else:
            self._pending = self._probe = None
        self.num_steps += 1
        self._skips.count_host(ok, self.num_steps)
        return ok, policy_stats

    def _policy_step(self, b: int, per_sample: Tensor, valid: Tensor | None = None) -> dict[str, Tensor]:
        """The policy update of :meth:`step`, with the losses after the detector's update if needed."""
        after: dict[str, Tensor] = {}
        probe, self._probe = self._probe, None
        if probe is not None and self._pending is not None:
            again = self._losses_now(*probe)
            after = {"corrupted_loss_after": again[b:], "clean_loss_after": again[:b]}
        return self.update_policy(per_sample[b:].detach(), clean_loss=per_sample[:b].detach(), valid=valid, **after)

    @torch.no_grad()
    def _losses_now(self, inputs: Tensor, targets: Tensor) -> Tensor:
        """Per-sample losses of the same batch with the current weights, the model's buffers left as they were.

        The forward runs in the model's current (training) mode, as the step's did, so the two
        losses differ by the update only; running statistics and other buffers are restored.
        """
        with frozen_buffers(self.model), self._autocast(inputs):
            return self.per_sample_loss(self.model(inputs), targets).float()

    def _autocast(self, inputs: Tensor) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=inputs.device.type, dtype=self.autocast_dtype)

    # ------------------------------------------------------------------ the sync-free accelerator step
    def _update_on_device(
        self, b: int, per_sample: Tensor, loss: Tensor, grads: list[Tensor], gnorm: Tensor | None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Detector and policy updates, applied or skipped by a device-side finite flag (no sync).

        ``ok = isfinite(loss) & isfinite(gradient norm)`` never leaves the device;
        :func:`~advcorrupt._skips.step_unless_non_finite` changes no weight where it is false, and the
        policy update gets ``valid=ok``. Skips are counted on the device (see :attr:`num_skipped`).
        """
        ok = finite_flag(loss, grads, gnorm, check_grads=self.scaler is None)
        step_unless_non_finite(self.optimizer, grads, ok, self.scaler)
        policy_stats = self._policy_step(b, per_sample, valid=ok)
        self._skips.count_device((~ok).float())
        self.num_steps += 1
        return ok, policy_stats

    @property
    def num_skipped(self) -> int:
        """Steps whose updates were skipped for a non-finite loss or gradient.

        On an accelerator the step counts skips on the device; reading this (or
        :attr:`consecutive_skips`) copies the count to the host, one sync: read it once per log
        interval, not every step (a ``RuntimeWarning`` reports skips found by the read).
        """
        return self._skips.total

    @num_skipped.setter
    def num_skipped(self, value: int) -> None:
        self._skips.total = value

    @property
    def consecutive_skips(self) -> int:
        """Skipped steps since the last finite one (a loop may stop after N); see :attr:`num_skipped`."""
        return self._skips.run

    @consecutive_skips.setter
    def consecutive_skips(self, value: int) -> None:
        self._skips.run = value

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Action space identity, strategy name, policy + its optimizer + baseline, step counts.

        The detector and its optimizer are not included (save them as usual).
        """
        return {
            "action_space": self.action_space.state_dict(),
            "strategy": self._strategy_name,
            # before the first batch a lazily built policy does not exist yet: nothing to save
            "strategy_state": self._strategy.state_dict() if self._strategy is not None else {},
            "num_steps": self.num_steps,
            "num_skipped": self.num_skipped,
            **({"task": self.task.to_dict()} if self.task is not None else {}),
        }

    def check_state_dict(self, state: Any) -> None:
        """Raise ``ValueError`` (changing nothing) unless ``state`` fits this trainer."""
        if not isinstance(state, dict) or "action_space" not in state:
            raise ValueError("state must be a dict from AdversarialCorruptionTrainer.state_dict()")
        saved_task = state.get("task")  # first: another task also means another default strategy and space
        if saved_task is not None and self.task is not None and saved_task != self.task.to_dict():
            raise ValueError(f"state was saved for the task {saved_task}; expected this trainer's {self.task.to_dict()}")
        if state.get("strategy") != self._expected_strategy(state):
            raise ValueError(
                f"state was saved with strategy {state.get('strategy')!r}; expected this trainer's "
                f"{self._expected_strategy(state)!r}"
            )
        mine = self.action_space.state_dict()
        if self._strategy_name is None and self._default_space and state.get("strategy"):
            mine = schedule_action_space(state["strategy"]).state_dict()  # as loading it will widen the space
        if state["action_space"] != mine:
            raise ValueError(
                f"state was saved with a different action space {state['action_space']}; expected this "
                f"trainer's {mine}"
            )

    def _expected_strategy(self, state: dict[str, Any]) -> str | None:
        """The strategy a state must name: this trainer's, or for an undecided ``strategy=None`` the
        default of the task (this trainer's, else the state's); with neither known, either task's. A state
        saved before the first batch of a ``strategy=None`` trainer names none and fits one."""
        if state.get("strategy") is None and self._strategy_pending:
            return None
        if self._strategy_name is not None or not state.get("strategy"):
            return self._strategy_name
        task = self.task if self.task is not None else (make_task(state["task"]) if state.get("task") else None)
        if task is not None:
            return task.default_strategy
        return state["strategy"] if state["strategy"] in DEFAULT_STRATEGIES else None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; a different action space or strategy is a ValueError
        raised before anything changes."""
        self.check_state_dict(state)
        if self.task is None and state.get("task") is not None:
            self._set_task(make_task(state["task"]))  # type: ignore[arg-type]
        if self._strategy_name is None and state.get("strategy"):
            self._use_strategy(state["strategy"])
            if not is_adversary(state["strategy"]):  # no policy to wait for: built now, as at construction
                self._build_strategy(1)
        strategy_state = state.get("strategy_state") or {}
        if self._strategy is None:
            if not strategy_state:  # saved before its first batch too: nothing to restore yet
                self.num_steps = int(state.get("num_steps", 0))
                self.num_skipped = int(state.get("num_skipped", 0))
                return
            self._build_strategy(_saved_in_channels(strategy_state))
        elif not strategy_state and self.strategy.learns:
            return  # a state saved before the first batch: the policy stays as it is
        self.strategy.load_state_dict(strategy_state)
        self.num_steps = int(state.get("num_steps", 0))
        self.num_skipped = int(state.get("num_skipped", 0))
        self.consecutive_skips = 0

    # ------------------------------------------------------------------ validation helpers
    def _check_images(self, images: object, *, build: bool = True) -> int:
        validate_images(images, "images")
        assert isinstance(images, Tensor)
        if images.shape[0] == 0:
            raise ValueError("images must hold at least one sample; got an empty batch")
        if self._strategy is None and build:
            if self._strategy_name is None:
                self._resolve_default(images)
            self._build_strategy(int(images.shape[1]))  # zero-config: the policy sees the batch's channels
        pol = self.policy
        if pol is not None and images.shape[1] != getattr(pol, "in_channels", images.shape[1]):
            raise ValueError(
                f"images must have C = {pol.in_channels} channel(s), as the policy was built with "
                f"in_channels={pol.in_channels}; got shape {tuple(images.shape)}"
            )
        return int(images.shape[0])

    def _check_masks(self, masks: object, images: Tensor) -> Tensor:
        """The task checks the masks; before the task is known, float (B, 1, H, W) masks mean binary
        and integer or (B, H, W) masks wait for the model's output channels (:func:`infer_task`)."""
        if self.task is None and isinstance(masks, Tensor) and masks.ndim == 4 and masks.is_floating_point():
            masks = BinaryTask().check_masks(masks, images)  # decided only once the masks pass
            self._set_task(BinaryTask())
            return masks
        if self.task is not None:
            return self.task.check_masks(masks, images)
        if not isinstance(masks, Tensor):
            raise TypeError(f"masks must be a torch.Tensor, (B, 1, H, W) or (B, H, W); got {type(masks).__name__}")
        b, h, w = images.shape[0], images.shape[2], images.shape[3]
        if tuple(masks.shape) not in ((b, h, w), (b, 1, h, w)):
            raise ValueError(
                f"masks must have shape (B, 1, H, W) = ({b}, 1, {h}, {w}) or, class indices, (B, H, W) = ({b}, {h}, "
                f"{w}) to match images; got {tuple(masks.shape)}"
            )
        return masks

    def _infer_task(self, masks: Tensor, images: Tensor, outputs: object) -> Tensor:
        """Decide the task from the first batch (masks and the model's output channels); check the masks."""
        task = infer_task(masks, int(output_heads(outputs)[-1].shape[1]))
        masks = task.check_masks(masks, images)
        self._set_task(task)
        return masks

    def _set_task(self, task: Task) -> None:
        self.task = task
        if self.loss_fn is None:
            self.loss_fn = task.default_loss()
            self._loss_from_task = True

    def _forget_task(self) -> None:
        """Undo a task decided by a first step that failed, and the default loss it brought."""
        if self._loss_from_task:
            self.loss_fn, self._loss_from_task = None, False
        self.task = None

    def _model_channels_last(self) -> bool:
        for p in self.model.parameters():
            if p.ndim == 4:
                return p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
        return False

    def per_sample_loss(self, outputs: object, targets: Tensor) -> Tensor:
        """The per-sample loss the trainer trains with and rewards the policy with.

        ``loss_fn`` (the task's default loss unless given) on each output head, averaged over the
        heads (deep supervision). Useful in a two-line loop, and to score actions offline.

        Args:
            outputs: the model's output on N images (logits, a list/tuple of them or a dict with
                ``"out"``).
            targets: their masks, as the task reads them (the task must be known: given, or
                decided by a first :meth:`step`).

        Shape:
            outputs: (N, C, H, W) per head; targets: as for :meth:`step`. Output: (N,) float32.
        """
        if self.task is None:
            raise RuntimeError(
                "per_sample_loss() needs the task (what the masks mean): pass task= (or num_classes=) to the "
                "trainer, or call step() once so that the first batch decides it"
            )
        heads = output_heads(outputs)
        n = targets.shape[0]
        total: Tensor | None = None
        for i, h in enumerate(heads):
            if h.ndim != 4 or h.shape[0] != n or h.shape[-2:] != targets.shape[-2:]:
                raise ValueError(
                    f"model output {i} must have shape ({n}, *, {targets.shape[-2]}, {targets.shape[-1]}) "
                    f"to match the masks' spatial size; got {tuple(h.shape)}"
                )
            self.task.check_output(h, targets)  # type: ignore[union-attr]
            per = self.loss_fn(h, targets)  # type: ignore[misc]
            if not isinstance(per, Tensor) or per.shape != (n,):
                got = tuple(per.shape) if isinstance(per, Tensor) else type(per).__name__
                raise ValueError(
                    f"loss_fn must return per-sample losses of shape (N,) = ({n},); got {got}. The "
                    "trainer needs one loss per image: the clean and corrupted halves are weighted "
                    "separately (Eq. 1) and each corrupted image's loss is the policy's reward. "
                    "Use e.g. SoftIoULoss(reduction='none')."
                )
            per = per.float()
            total = per if total is None else total + per
        assert total is not None
        return total / len(heads)


@contextlib.contextmanager
def frozen_buffers(module: nn.Module) -> Iterator[None]:
    """Restore every buffer of ``module`` (batch-norm running statistics, counters) on exit.

    For a probe forward in training mode that must not count as training, e.g. the losses after
    the update that ``"progress"`` rewards need::

        with torch.no_grad(), frozen_buffers(model):
            again = loss_fn(model(torch.cat([images, x_hat])), torch.cat([masks, masks]))
    """
    saved = [(buf, buf.detach().clone()) for buf in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


def _saved_in_channels(strategy_state: dict[str, Any]) -> int:
    """The image channels a saved policy was built for (its first convolution's input channels)."""
    weights = strategy_state.get("policy", {})
    for value in weights.values() if isinstance(weights, dict) else ():
        if isinstance(value, Tensor) and value.ndim == 4:
            return int(value.shape[1])
    raise ValueError("strategy_state holds no policy convolution to infer in_channels from; pass in_channels=")


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
