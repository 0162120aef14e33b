"""Action distributions on top of the policy network's logits: flat or hierarchical.

BALISTD calls its adversary *hierarchical reinforced learning*: the policy picks a corruption and a
severity. Two ways to turn the network's raw outputs into ``log p(a | x)`` over the flat actions
``a = k * S + j`` of an :class:`~advcorrupt.policy.ActionSpace`:

* :class:`FlatHead`: one softmax over the ``K * S`` actions (version 0.1; the paper as written).
* :class:`HierarchicalHead`: a distribution over the ``K`` corruptions and, conditioned on the
  corruption, one over its ``S`` severities, ``log p(a|x) = log p(k|x) + log p(j|k, x)``. The
  corruption distribution can be held inside a *band* around uniform by construction, so the
  adversary may tilt towards the corruptions that hurt but can never starve one.

Both return log-probabilities over the flat actions, so sampling, REINFORCE and the action space
are the same for either head.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["FlatHead", "HierarchicalHead", "floored_log_softmax"]


def floored_log_softmax(logits: Tensor, min_prob: float) -> Tensor:
    """``log((1 - eps) softmax(logits) + eps / n)`` along the last dim, computed stably.

    Args:
        logits: unnormalised scores.
        min_prob: the uniform mixing weight ``eps`` in [0, 1).

    Shape:
        logits: (..., n). Output: (..., n).

    Returns:
        Log-probabilities; every entry is at least ``log(eps / n)``.

    Example:
        >>> import torch
        >>> from advcorrupt.policy.heads import floored_log_softmax
        >>> [round(p, 3) for p in floored_log_softmax(torch.tensor([0.0, 100.0]), 0.2).exp().tolist()]
        [0.1, 0.9]
    """
    logp = F.log_softmax(logits.float(), dim=-1)
    if min_prob > 0:
        n = logits.shape[-1]
        floor = torch.full_like(logp, math.log(min_prob / n))
        logp = torch.logaddexp(logp + math.log1p(-min_prob), floor)
    return logp


def _check_min_prob(min_prob: float) -> float:
    if not isinstance(min_prob, (int, float)) or not 0.0 <= min_prob < 1.0:
        raise ValueError(f"min_prob must be a number in [0, 1); got {min_prob!r}")
    return float(min_prob)


class FlatHead:
    """One (floored) softmax over all ``K * S`` actions.

    Args:
        num_actions: ``K * S``.
        min_prob: uniform mixing weight; each action keeps at least ``min_prob / (K * S)``.

    Example:
        >>> import torch
        >>> from advcorrupt.policy.heads import FlatHead
        >>> head = FlatHead(6, min_prob=0.1)
        >>> torch.allclose(head.log_probs(torch.zeros(2, 6)).exp().sum(-1), torch.ones(2))
        True
    """

    kind = "flat"

    def __init__(self, num_actions: int, *, min_prob: float = 0.1) -> None:
        if not isinstance(num_actions, int) or num_actions < 1:
            raise ValueError(f"num_actions must be a positive int; got {num_actions!r}")
        self.num_actions = num_actions
        self.num_logits = num_actions
        self.min_prob = _check_min_prob(min_prob)

    def log_probs(self, logits: Tensor) -> Tensor:
        """(B, num_logits) raw outputs -> (B, K * S) log-probabilities."""
        if logits.shape[-1] != self.num_logits:
            raise ValueError(f"logits must have {self.num_logits} entries per sample; got shape {tuple(logits.shape)}")
        return floored_log_softmax(logits, self.min_prob)

    def __repr__(self) -> str:
        return f"FlatHead(num_actions={self.num_actions}, min_prob={self.min_prob})"


class HierarchicalHead:
    """``p(k, j | x) = p(k | x) p(j | k, x)``: a corruption, then a severity given the corruption.

    The network emits ``K + K * S`` numbers: ``K`` corruption logits, then ``S`` severity logits
    for each corruption (only the chosen corruption's row matters for a sample). With
    ``learn_severity=False`` it emits only the ``K`` corruption logits and severities are uniform.

    With ``band=(lo, hi)`` (multiples of the uniform share ``1/K``) every corruption's probability
    stays in ``[lo/K, hi/K]`` on every image, by construction and smoothly:
    ``p(k) = lo/K + (1 - lo) softmax(t tanh(z_k / t))``, where the squashing scale ``t`` is the
    largest for which no corruption can exceed ``hi/K``. ``band=(1, 1)`` is uniform over corruptions
    (only severities are learned); ``band=None`` is an unconstrained (floored) softmax.

    Args:
        num_corruptions: ``K``.
        num_severities: ``S``.
        band: ``(lo, hi)`` with ``0 < lo <= 1 <= hi <= K``, or ``None``.
        min_prob: uniform mixing weight of the severity distribution (and of the corruption
            distribution when ``band`` is ``None``).
        learn_severity: ``False`` draws the severity uniformly: only the corruption is chosen.

    Example:
        >>> import torch
        >>> from advcorrupt.policy.heads import HierarchicalHead
        >>> head = HierarchicalHead(10, 3, band=(0.5, 2.0))
        >>> p = head.corruption_probs(torch.tensor([[1e3] + [-1e3] * 9]))
        >>> round(p[0, 0].item(), 3), round(p[0, 1].item(), 3)  # capped at 2/K, floored at 0.5/K
        (0.2, 0.089)
    """

    kind = "hierarchical"

    def __init__(
        self,
        num_corruptions: int,
        num_severities: int,
        *,
        band: tuple[float, float] | None = (0.5, 2.0),
        min_prob: float = 0.1,
        learn_severity: bool = True,
    ) -> None:
        for name, value in (("num_corruptions", num_corruptions), ("num_severities", num_severities)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        self.num_corruptions, self.num_severities = num_corruptions, num_severities
        self.num_actions = num_corruptions * num_severities
        self.learn_severity = bool(learn_severity)
        self.num_logits = num_corruptions + (self.num_actions if self.learn_severity else 0)
        self.min_prob = _check_min_prob(min_prob)
        self.band = check_band(band, num_corruptions)
        self._lo = 0.0 if self.band is None else self.band[0] / num_corruptions
        self._scale = math.inf if self.band is None else _squash_scale(self.band, num_corruptions)

    def corruption_log_probs(self, logits: Tensor) -> Tensor:
        """(B, K) ``log p(k | x)`` from the first ``K`` raw outputs."""
        z = logits[..., : self.num_corruptions].float()
        if self.band is None:
            return floored_log_softmax(z, self.min_prob)
        k = self.num_corruptions
        if self._lo * k >= 1.0 - 1e-12 or self._scale == 0.0:  # band (1, hi) or (lo, 1): uniform
            return torch.full_like(z, -math.log(k))
        if math.isfinite(self._scale):
            z = self._scale * torch.tanh(z / self._scale)
        floor = torch.full_like(z, math.log(self._lo))
        return torch.logaddexp(F.log_softmax(z, dim=-1) + math.log1p(-self._lo * k), floor)

    def corruption_probs(self, logits: Tensor) -> Tensor:
        """(B, K) ``p(k | x)``."""
        return self.corruption_log_probs(logits).exp()

    def log_probs(self, logits: Tensor) -> Tensor:
        """(B, num_logits) raw outputs -> (B, K * S) joint log-probabilities, action ``k * S + j``."""
        if logits.shape[-1] != self.num_logits:
            what = "K + K*S" if self.learn_severity else "K"
            raise ValueError(
                f"logits must have {what} = {self.num_logits} entries per sample; got shape {tuple(logits.shape)}"
            )
        k, s = self.num_corruptions, self.num_severities
        log_pk = self.corruption_log_probs(logits)
        if self.learn_severity:
            sev = logits[..., k:].float().reshape(*logits.shape[:-1], k, s)
            log_ps = floored_log_softmax(sev, self.min_prob)
        else:
            log_ps = torch.full((*logits.shape[:-1], k, s), -math.log(s), dtype=log_pk.dtype, device=logits.device)
        return (log_pk.unsqueeze(-1) + log_ps).reshape(*logits.shape[:-1], k * s)

    def __repr__(self) -> str:
        return (f"HierarchicalHead(num_corruptions={self.num_corruptions}, num_severities={self.num_severities}, "
                f"band={self.band}, min_prob={self.min_prob}, learn_severity={self.learn_severity})")


def check_band(band: object, num_corruptions: int | None) -> tuple[float, float] | None:
    """Validate a ``(lo, hi)`` band in multiples of ``1/K``: ``0 < lo <= 1 <= hi <= K``.

    With ``num_corruptions=None`` (K not known yet) the upper limit ``hi <= K`` is not checked.
    """
    if band is None:
        return None
    k = num_corruptions if num_corruptions is not None else float("inf")
    ok = (
        isinstance(band, (tuple, list)) and len(band) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in band)
    )
    if not ok or not (0 < band[0] <= 1 <= band[1] <= k):  # type: ignore[index]
        raise ValueError(
            f"band must be None or (lo, hi) in multiples of the uniform share 1/K with 0 < lo <= 1 <= hi <= K = {num_corruptions or 'K'} "
            f"(probabilities lo/K in (0, 1/K] and hi/K in [1/K, 1]); got {band!r}"
        )
    return float(band[0]), float(band[1])  # type: ignore[index]


def _squash_scale(band: tuple[float, float], k: int) -> float:
    """Largest ``t`` such that ``lo/K + (1 - lo) * softmax(z)`` with ``|z| <= t`` stays <= ``hi/K``."""
    lo, hi = band[0] / k, band[1] / k
    if lo * k >= 1.0:
        return 0.0
    s = (hi - lo) / (1.0 - lo * k)  # the largest softmax value allowed
    if s >= 1.0 or k == 1:
        return math.inf
    if s <= 1.0 / k:
        return 0.0
    # max softmax with entries in [-t, t] is 1 / (1 + (K - 1) exp(-2t))
    return -0.5 * math.log((1.0 / s - 1.0) / (k - 1))
