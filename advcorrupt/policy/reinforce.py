"""REINFORCE for BALISTD's corruption policy (AAAI 2024, Sec. 3.2, Eq. 3-7).

The policy ``p(s | x)`` picks a corruption action per image; the detector's loss on the corrupted
image is the reward. The policy ascends the expected reward (Eq. 3)

    E = E_{x, s ~ p(s|x)} [ L(f(s(x)), y) ]

with the score-function estimator (Eq. 6)

    grad E ~= 1/B sum_i (r_i - b) grad log p(s_i | x_i)

where ``r_i`` is sample ``i``'s per-sample loss (reused from the detector's training step: no extra
forward pass) and ``b`` a baseline. On top of the paper's plain estimator this updater adds, all
optional: a moving-average reward baseline, advantage normalisation by a moving reward standard
deviation (with a clip), an entropy bonus, and a floor on every action's probability
(``p = (1 - eps) softmax + eps / K``), so no corruption is ever left unexplored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .heads import FlatHead, HierarchicalHead, floored_log_softmax

__all__ = ["PolicySample", "Reinforce", "sample_categorical"]


@dataclass
class PolicySample:
    """The actions drawn for one batch and what the policy update needs from them.

    Attributes:
        actions: (B,) long, flat action indices.
        probs: (B, K) detached action probabilities the actions were drawn from.
        log_prob: (B,) ``log p(a_i | x_i)`` attached to the policy's graph; ``None`` for
            strategies that do not learn.
        entropy: (B,) entropy of each sample's action distribution (attached to the graph for
            a learned policy).
    """

    actions: Tensor
    probs: Tensor
    log_prob: Tensor | None = None
    entropy: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.actions.shape[0])


def sample_categorical(probs: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """Draw one index per row of ``probs`` by inverting the CDF; no host-device sync.

    Args:
        probs: rows of probabilities (each summing to ~1).
        generator: optional generator on ``probs``' device.

    Shape:
        probs: (B, K). Output: (B,) long.

    Returns:
        The sampled indices.

    Example:
        >>> import torch
        >>> from advcorrupt.policy.reinforce import sample_categorical
        >>> sample_categorical(torch.tensor([[0.0, 1.0], [1.0, 0.0]])).tolist()
        [1, 0]
    """
    u = torch.rand(probs.shape[0], 1, generator=generator, device=probs.device, dtype=torch.float32)
    cdf = probs.float().cumsum(-1)
    idx = (cdf <= u * cdf[:, -1:]).sum(-1)
    return idx.clamp_(max=probs.shape[-1] - 1)


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class Reinforce:
    """Policy-gradient updater for a :class:`~advcorrupt.policy.PolicyNetwork` (Eq. 6).

    Defaults and why:

    * ``lr=1e-4`` with plain SGD, as in the paper. In practice this moves the policy slowly: with
      normalised advantages (below) the logits change by roughly ``lr`` times the squared norm of
      the policy's last features per update, so the distribution stays close to uniform for the
      first thousands of updates and the adversary acts at first like a random augmentation that
      gradually specialises. Raise ``lr`` (e.g. 1e-2) for a policy that adapts within a few
      hundred updates.
    * ``normalize_advantage=True``: advantages are divided by a moving standard deviation of the
      rewards and clipped to ``advantage_clip`` (5), so the step size does not depend on the
      detector loss's scale (a Soft-IoU of 0.9 vs 0.1) and one outlier batch cannot blow the
      policy up.
    * ``baseline_momentum=0.9``: the baseline ``b`` is a moving average of the mean reward
      (initialised from the first batch); it reduces the estimator's variance without bias since
      ``b`` does not depend on the current actions.
    * ``per_action_baseline=False``: with ``True`` each action ``a`` gets its own moving average
      ``b_a`` of the rewards it earned, and the advantage is ``r_i - b_{a_i}``. This changes the
      objective, on purpose: an action that pays more than the others *on average* earns no
      advantage, only an image on which it pays more than its own average does. The policy can
      then gain only by choosing per image; what it does not choose per image stays near the
      action space's uniform draw (the ``relative`` adversaries, ``docs/trainer.md``). Actions not
      drawn yet use the global ``b``.
    * ``entropy_coef=0.01``: a small bonus on the policy's entropy against premature collapse.
    * ``min_prob=0.1``: actions are drawn from ``(1 - min_prob) softmax + min_prob / K``, so each
      action keeps probability at least ``min_prob / K`` and every corruption stays explored
      (the log-probabilities used for the gradient are those of this mixture).

    Distributed: when ``torch.distributed`` is initialised with more than one process, the
    constructor broadcasts rank 0's policy weights, and :meth:`update` runs exactly one collective,
    an ``all_reduce`` of one flat buffer holding the policy gradient and the reward sums, so
    every rank applies the same averaged gradient and the baseline follows the global mean
    reward. Every rank must call :meth:`update` the same number of times.

    Args:
        policy: the policy network (``logits = policy(images)``).
        lr: learning rate of the default SGD optimizer.
        momentum: momentum of the default SGD optimizer.
        optimizer: a ready optimizer over ``policy``'s parameters, replacing the default SGD.
        baseline_momentum: EMA factor of the reward baseline(s) and of the reward variance, in [0, 1).
        per_action_baseline: one baseline per action instead of one for all (see above).
        entropy_coef: weight of the entropy bonus (>= 0).
        min_prob: the uniform mixing weight ``eps`` in [0, 1) of the default flat head (0.1).
        head: the action distribution over the policy's outputs (:class:`FlatHead` or
            :class:`HierarchicalHead`); ``None`` is a flat floored softmax with ``min_prob``.
        normalize_advantage: divide advantages by the moving reward standard deviation.
        advantage_clip: clip advantages to ``[-c, c]`` after normalisation; ``None`` disables.
        max_grad_norm: clip the policy gradient's norm; ``None`` disables.
        process_group: the ``torch.distributed`` group to average over (default: the world).

    Example:
        >>> import torch
        >>> from advcorrupt.policy import PolicyNetwork, Reinforce
        >>> updater = Reinforce(PolicyNetwork(1, 6), lr=1e-2)
        >>> sample = updater.act(torch.rand(8, 1, 64, 64))
        >>> stats = updater.update(sample, rewards=torch.rand(8))
        >>> sorted(stats)
        ['advantage_std', 'baseline', 'policy_entropy', 'reward']
    """

    def __init__(
        self,
        policy: nn.Module,
        lr: float = 1e-4,
        *,
        momentum: float = 0.0,
        optimizer: torch.optim.Optimizer | None = None,
        baseline_momentum: float = 0.9,
        entropy_coef: float = 0.01,
        min_prob: float | None = None,
        head: FlatHead | HierarchicalHead | None = None,
        normalize_advantage: bool = True,
        advantage_clip: float | None = 5.0,
        max_grad_norm: float | None = None,
        per_action_baseline: bool = False,
        process_group: Any = None,
    ) -> None:
        if not isinstance(policy, nn.Module):
            raise TypeError(f"policy must be an nn.Module; got {type(policy).__name__}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0; got {lr}")
        if not 0.0 <= baseline_momentum < 1.0:
            raise ValueError(f"baseline_momentum must be in [0, 1); got {baseline_momentum}")
        if not entropy_coef >= 0:
            raise ValueError(f"entropy_coef must be >= 0; got {entropy_coef}")
        if head is not None and min_prob is not None:
            raise ValueError(
                f"min_prob applies to the default flat head only; got min_prob={min_prob} and head={head!r} "
                "(set the floor on the head instead)"
            )
        if head is not None and not isinstance(head, (FlatHead, HierarchicalHead)):
            raise TypeError(f"head must be a FlatHead, a HierarchicalHead or None; got {type(head).__name__}")
        min_prob = 0.1 if min_prob is None else min_prob
        if not isinstance(min_prob, (int, float)) or not 0.0 <= min_prob < 1.0:
            raise ValueError(f"min_prob must be in [0, 1); got {min_prob}")
        if advantage_clip is not None and not advantage_clip > 0:
            raise ValueError(f"advantage_clip must be > 0 or None; got {advantage_clip}")
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0 or None; got {max_grad_norm}")
        if not isinstance(per_action_baseline, bool):
            raise TypeError(f"per_action_baseline must be a bool; got {type(per_action_baseline).__name__}")
        self.policy = policy
        self.params = [p for p in policy.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("policy has no trainable parameters")
        if optimizer is None:
            optimizer = torch.optim.SGD(self.params, lr=lr, momentum=momentum)
        elif not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer or None; got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.lr = lr
        self.baseline_momentum = float(baseline_momentum)
        self.entropy_coef = float(entropy_coef)
        self.head = head
        self.min_prob = float(head.min_prob if head is not None else min_prob)
        self.normalize_advantage = bool(normalize_advantage)
        self.advantage_clip = advantage_clip
        self.max_grad_norm = max_grad_norm
        self.per_action_baseline = per_action_baseline
        self.process_group = process_group
        self.num_updates = 0
        device = self.params[0].device
        self._baseline = torch.zeros((), device=device)
        self._reward_var = torch.ones((), device=device)
        self._count = torch.zeros((), device=device)
        # Per-action baselines and how often each was updated; sized on the first update.
        self._action_baseline = torch.zeros(0, device=device)
        self._action_count = torch.zeros(0, device=device)
        if _world() > 1:
            self.broadcast_parameters()

    # ---------------------------------------------------------------- distribution
    @property
    def baseline(self) -> Tensor:
        """The moving-average reward baseline (0-dim tensor on the policy's device)."""
        return self._baseline

    def log_probabilities(self, logits: Tensor) -> Tensor:
        """Log-probabilities over the flat actions, (B, K * S): the head's distribution, or by
        default the floored softmax ``(1 - eps) softmax + eps / (K * S)``."""
        if self.head is not None:
            return self.head.log_probs(logits)
        return floored_log_softmax(logits, self.min_prob)

    def probabilities(self, images: Tensor) -> Tensor:
        """Action probabilities ``p(a | x)`` per image, (B, K), without gradient."""
        with torch.no_grad():
            return self.log_probabilities(self.policy(images)).exp()

    def act(self, images: Tensor, *, generator: torch.Generator | None = None) -> PolicySample:
        """Run the policy on ``images`` and draw one action per image.

        Args:
            images: the clean batch (the policy resizes it internally).
            generator: optional generator on ``images``' device.

        Shape:
            images: (B, C, H, W). Output fields: actions (B,), probs (B, K), log_prob (B,).

        Returns:
            A :class:`PolicySample` whose ``log_prob``/``entropy`` keep the policy's graph.
        """
        with torch.enable_grad():
            logp = self.log_probabilities(self.policy(images.detach()))
            probs = logp.detach().exp()
            actions = sample_categorical(probs, generator=generator)
            log_prob = logp.gather(1, actions[:, None]).squeeze(1)
            entropy = -(logp.exp() * logp).sum(-1)
        return PolicySample(actions=actions, probs=probs, log_prob=log_prob, entropy=entropy)

    # ---------------------------------------------------------------- update
    def update(self, sample: PolicySample, rewards: Tensor, *, valid: Tensor | None = None) -> dict[str, Tensor]:
        """One policy-gradient ascent step on ``E`` (Eq. 3) with the estimator of Eq. 6.

        Samples whose reward is not finite (or where ``valid`` is false) get no weight, and the
        baseline ignores them: this guard runs on the device, without a host-device sync.

        Args:
            sample: what :meth:`act` returned for this batch.
            rewards: per-sample rewards, the detector's losses on the corrupted images.
            valid: optional bool mask (or 0-dim bool) of samples to learn from.

        Shape:
            rewards: (B,).

        Returns:
            Detached 0-dim tensors: ``reward`` (mean over valid samples), ``baseline`` (after the
            update), ``policy_entropy`` (mean), ``advantage_std``.
        """
        if sample.log_prob is None or sample.entropy is None:
            raise ValueError("sample has no log_prob: it was not drawn by this learned policy")
        if not isinstance(rewards, Tensor) or rewards.shape != sample.actions.shape:
            got = tuple(rewards.shape) if isinstance(rewards, Tensor) else type(rewards).__name__
            raise ValueError(
                f"rewards must be a (B,) = ({sample.batch_size},) tensor of per-sample losses; got {got}"
            )
        log_prob, entropy = sample.log_prob, sample.entropy
        r = rewards.detach().to(device=log_prob.device, dtype=torch.float32)
        ok = torch.isfinite(r)
        if valid is not None:
            ok = ok & valid.to(device=ok.device, dtype=torch.bool)
        w = ok.float()
        r = torch.where(ok, r, torch.zeros_like(r))
        n = w.sum()
        n1 = n.clamp(min=1.0)
        batch_mean = r.sum() / n1
        batch_var = (w * (r - batch_mean) ** 2).sum() / n1
        started = self._count > 0
        action_sums = self._action_sums(sample, r, w)
        adv = r - self._baseline_of(sample, batch_mean, action_sums)
        if self.normalize_advantage:
            var = torch.where(started, self._reward_var, batch_var)
            adv = adv / (var.sqrt() + 1e-6)
        if self.advantage_clip is not None:
            adv = adv.clamp(-self.advantage_clip, self.advantage_clip)
        adv = (adv * w).detach()
        objective = (adv * log_prob).sum() / n1 + self.entropy_coef * (w * entropy).sum() / n1
        grads = torch.autograd.grad(-objective, self.params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads)]
        sums = self._reward_sums(r, w, action_sums)
        world = _world()
        if world > 1:
            flat = torch.cat([g.reshape(-1).float() for g in grads] + [sums])
            dist.all_reduce(flat, group=self.process_group)
            sums = flat[-sums.numel():]
            flat = flat[: -sums.numel()] / world
            grads, offset = [], 0
            for p in self.params:
                grads.append(flat[offset : offset + p.numel()].view_as(p).to(p.dtype))
                offset += p.numel()
        for p, g in zip(self.params, grads):
            p.grad = g
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.optimizer.step()
        for p in self.params:
            p.grad = None
        self._update_baselines(sums)
        self.num_updates += 1
        return {
            "reward": batch_mean.detach(),
            "baseline": self._baseline.detach(),
            "policy_entropy": entropy.detach().mean(),
            "advantage_std": adv.std(correction=0) if adv.numel() else adv.sum(),
        }

    def _action_sums(self, sample: PolicySample, r: Tensor, w: Tensor) -> Tensor | None:
        """With ``per_action_baseline``: this batch's reward sum and count per action, (2, K)
        (creating the per-action baselines at the first update); else ``None``."""
        if not self.per_action_baseline:
            return None
        k = sample.probs.shape[-1]
        if self._action_baseline.numel() != k:
            if self._action_baseline.numel():
                raise ValueError(f"sample has {k} actions; this updater's per-action baselines hold "
                                 f"{self._action_baseline.numel()}")
            self._action_baseline = torch.zeros(k, device=r.device)
            self._action_count = torch.zeros(k, device=r.device)
        return torch.zeros(2, k, device=r.device).index_add(1, sample.actions, torch.stack([r, w]))

    def _baseline_of(self, sample: PolicySample, batch_mean: Tensor, action_sums: Tensor | None) -> Tensor:
        """Each sample's baseline: the global one (the batch mean before the first update) or, with
        per-action sums, its action's own (the action's mean in this batch until its first
        update, as the global one starts from the first batch's mean)."""
        if action_sums is None:
            return torch.where(self._count > 0, self._baseline, batch_mean)
        batch_a = action_sums[0] / action_sums[1].clamp(min=1.0)
        seen = self._action_count[sample.actions] > 0
        return torch.where(seen, self._action_baseline[sample.actions], batch_a[sample.actions])

    def _reward_sums(self, r: Tensor, w: Tensor, action_sums: Tensor | None) -> Tensor:
        """What the baselines need, one flat tensor (summed across ranks): the sum, count and sum of
        squares of the valid rewards, then per action the sum and count (``r`` is 0 where invalid)."""
        sums = torch.stack([r.sum(), w.sum(), (w * r * r).sum()])
        return sums if action_sums is None else torch.cat([sums, action_sums.reshape(-1)])

    def _update_baselines(self, sums: Tensor) -> None:
        """Moving averages of the (global) mean reward, its variance and the per-action means."""
        m = self.baseline_momentum
        started = self._count > 0
        gn = sums[1]
        g_mean = sums[0] / gn.clamp(min=1.0)
        g_var = (sums[2] / gn.clamp(min=1.0) - g_mean**2).clamp(min=0.0)
        has = gn > 0
        new_b = torch.where(started, m * self._baseline + (1 - m) * g_mean, g_mean)
        new_v = torch.where(started, m * self._reward_var + (1 - m) * g_var, g_var)
        self._baseline = torch.where(has, new_b, self._baseline)
        self._reward_var = torch.where(has, new_v, self._reward_var)
        self._count = self._count + has.float()
        if self.per_action_baseline:
            a_sum, a_n = sums[3:].view(2, -1)
            a_mean = a_sum / a_n.clamp(min=1.0)
            new_a = torch.where(self._action_count > 0, m * self._action_baseline + (1 - m) * a_mean, a_mean)
            self._action_baseline = torch.where(a_n > 0, new_a, self._action_baseline)
            self._action_count = self._action_count + (a_n > 0).float()

    # ---------------------------------------------------------------- distributed
    def broadcast_parameters(self, src: int = 0) -> None:
        """Copy rank ``src``'s policy weights to every rank (done once at construction)."""
        with torch.no_grad():
            for t in list(self.policy.parameters()) + list(self.policy.buffers()):
                dist.broadcast(t.data, src=src, group=self.process_group)

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Policy weights, optimizer state, baseline, reward variance and update count."""
        return {
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "baseline": self._baseline.detach().clone(),
            "reward_var": self._reward_var.detach().clone(),
            "count": self._count.detach().clone(),
            "num_updates": self.num_updates,
            **({"action_baseline": self._action_baseline.detach().clone(),
                "action_count": self._action_count.detach().clone()} if self.per_action_baseline else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (tensors move to the policy's device)."""
        missing = {"policy", "optimizer", "baseline", "reward_var", "count", "num_updates"} - set(state)
        if missing:
            raise ValueError(f"state is missing the key(s) {sorted(missing)}")
        if self.per_action_baseline != ("action_baseline" in state):
            raise ValueError(
                f"state was saved with per_action_baseline={'action_baseline' in state}; this updater has "
                f"per_action_baseline={self.per_action_baseline}"
            )
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        device = self.params[0].device
        self._baseline = state["baseline"].to(device=device, dtype=torch.float32)
        self._reward_var = state["reward_var"].to(device=device, dtype=torch.float32)
        self._count = state["count"].to(device=device, dtype=torch.float32)
        self.num_updates = int(state["num_updates"])
        if self.per_action_baseline:
            self._action_baseline = state["action_baseline"].to(device=device, dtype=torch.float32)
            self._action_count = state["action_count"].to(device=device, dtype=torch.float32)
