"""Is a learned policy conditioned on the image, or a fixed schedule in disguise?

A policy network maps each image to a distribution ``p(a | x)`` over the actions. If that
distribution is (nearly) the same for every image, the network buys nothing a fixed schedule
(:mod:`advcorrupt.policy.schedules`) would not give without a policy network. :func:`image_dependence`
measures how much the distribution varies across images, overall and for each factor of the
``a = k * S + j`` action grid (the corruption ``k`` and the severity ``j``):

* ``mutual_information``: ``I(x; a) = H(mean_x p(. | x)) - mean_x H(p(. | x))`` in nats, the
  information the action carries about the image when images are drawn uniformly from the set.
  0 means one distribution for all images (a schedule);
* ``normalized``: ``I / H(mean p)`` in [0, 1], the share of the action's entropy that depends on
  the image;
* ``mean_tv`` / ``max_tv``: the mean and largest total-variation distance between an image's
  distribution and the mean one (0: all the same; 1: disjoint supports).
"""

from __future__ import annotations


import torch
from torch import Tensor

__all__ = ["image_dependence"]


def _entropy(p: Tensor) -> Tensor:
    """Entropy (nats) of each row of ``p``; ``0 log 0 = 0``."""
    return -(p * p.clamp_min(1e-30).log()).sum(-1)


def _dependence(probs: Tensor) -> dict[str, float]:
    mean = probs.mean(0)
    h_mean = float(_entropy(mean))
    mi = max(0.0, h_mean - float(_entropy(probs).mean()))
    tv = 0.5 * (probs - mean).abs().sum(-1)
    return {
        "mutual_information": mi,
        "normalized": mi / h_mean if h_mean > 0 else 0.0,
        "mean_tv": float(tv.mean()),
        "max_tv": float(tv.max()),
        "entropy_of_mean": h_mean,
    }


def image_dependence(probs: Tensor, *, num_severities: int | None = None) -> dict[str, dict[str, float]]:
    """How much a policy's action distribution depends on the image (see the module docstring).

    Args:
        probs: ``p(a | x_i)`` for N images, e.g. ``strategy.probabilities(images)``; each row sums to 1.
        num_severities: ``S`` of the ``a = k * S + j`` grid; with it the corruption and severity
            marginals are measured too.

    Shape:
        probs: (N, A), N >= 2.

    Returns:
        ``{"action": {...}}``, plus ``"corruption"`` and ``"severity"`` with ``num_severities``; each
        with ``mutual_information`` (nats), ``normalized``, ``mean_tv``, ``max_tv`` and
        ``entropy_of_mean`` (nats).

    Raises:
        ValueError: ``probs`` not an (N, A) probability matrix with N >= 2, or ``num_severities``
            not dividing A.

    Example:
        >>> same = torch.tensor([[0.5, 0.25, 0.25]] * 4)  # one distribution for every image: a schedule
        >>> image_dependence(same)["action"]["mutual_information"]
        0.0
        >>> onehot = torch.eye(4)  # each image its own action: I = log 4
        >>> round(image_dependence(onehot, num_severities=2)["action"]["normalized"], 6)
        1.0
    """
    if not isinstance(probs, Tensor) or probs.dim() != 2 or probs.shape[0] < 2 or not probs.is_floating_point():
        got = f"{type(probs).__name__} of shape {tuple(probs.shape)}" if isinstance(probs, Tensor) else type(probs).__name__
        raise ValueError(f"probs must be a float (N, A) tensor of action probabilities with N >= 2 images; got {got}")
    p = probs.detach().double().cpu()
    if bool((p < 0).any()) or not torch.allclose(p.sum(-1), torch.ones(p.shape[0], dtype=p.dtype), atol=1e-4):
        raise ValueError("probs must hold probabilities: rows >= 0 that sum to 1 (softmax outputs, not logits)")
    out = {"action": _dependence(p)}
    if num_severities is not None:
        if isinstance(num_severities, bool) or not isinstance(num_severities, int) or num_severities < 1 \
                or p.shape[1] % num_severities:
            raise ValueError(f"num_severities must be a positive divisor of the {p.shape[1]} actions; got {num_severities!r}")
        grid = p.view(p.shape[0], -1, num_severities)
        out["corruption"] = _dependence(grid.sum(-1))
        out["severity"] = _dependence(grid.sum(-2))
    return out
