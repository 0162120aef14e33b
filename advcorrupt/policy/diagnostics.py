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

:func:`per_image_headroom` asks the converse: could a policy gain by choosing per image? It takes
the reward (e.g. the damage ``loss(corrupted) - loss(clean)``) of every action on every image,
measured twice with independent corruption noise, and splits its variation into the action's
effect, the image's effect and the image x action interaction (the only part a per-image choice
can exploit), and measures out of sample how much reward choosing the best action per image adds
over the best single action for all images.
"""

from __future__ import annotations


import torch
from torch import Tensor

__all__ = ["image_dependence", "per_image_headroom"]


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


def per_image_headroom(reward: Tensor, replicate: Tensor) -> dict[str, float]:
    """How much reward a per-image choice of action could add over one action for every image.

    Args:
        reward: ``r[i, a]``, the reward of action ``a`` on image ``i`` (e.g. the damage
            ``loss(a(x_i)) - loss(x_i)``).
        replicate: the same matrix measured again with independent corruption noise; it
            separates true image x action interaction from noise and keeps the oracle honest.

    Shape:
        reward, replicate: (N, A), N >= 2 images, A >= 2 actions.

    Returns:
        On the mean of the two measurements, shares of its variance around the grand mean
        (summing to 1): ``action_share`` (the action's main effect: what a fixed schedule can
        exploit), ``image_share`` (the image's main effect: no choice of action changes it) and
        ``interaction_share`` (image x action), of which ``noise_share`` is what measurement noise
        puts there (a cell's noise variance, that of the replicates' difference / 4, times the
        interaction's ``(N - 1)(A - 1) / NA`` share of the cells' degrees of freedom). Out of sample (choose on one
        measurement, score on the other, both ways averaged): ``best_action_gain``, the reward
        of the single best action over a uniformly drawn one, and ``per_image_gain``, the reward of
        each image's own best action over that single best action (what an image-conditioned
        policy could add at most; <= 0 in expectation when there is nothing to add).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> r = torch.tensor([0.0, 1.0, 2.0]).expand(50, 3)  # the same action is best for every image
        >>> out = per_image_headroom(r + 0.01 * torch.randn(50, 3), r + 0.01 * torch.randn(50, 3))
        >>> round(out["action_share"], 3), out["per_image_gain"] <= 0.0
        (1.0, True)
    """
    for name, m in (("reward", reward), ("replicate", replicate)):
        if not isinstance(m, Tensor) or m.dim() != 2 or m.shape[0] < 2 or m.shape[1] < 2 or not m.is_floating_point():
            got = f"shape {tuple(m.shape)}" if isinstance(m, Tensor) else type(m).__name__
            raise ValueError(f"{name} must be a float (N, A) tensor with N >= 2 images and A >= 2 actions; got {got}")
    if replicate.shape != reward.shape:
        raise ValueError(f"replicate must have reward's shape {tuple(reward.shape)}; got {tuple(replicate.shape)}")
    r1, r2 = reward.detach().double().cpu(), replicate.detach().double().cpu()
    if not (torch.isfinite(r1).all() and torch.isfinite(r2).all()):
        raise ValueError("reward and replicate must be finite")
    r, (n, k) = (r1 + r2) / 2, r1.shape
    centred = r - r.mean()
    action = r.mean(0, keepdim=True) - r.mean()
    image = r.mean(1, keepdim=True) - r.mean()
    total = float(centred.pow(2).mean())
    share = (lambda v: float(v) / total) if total > 0 else (lambda v: 0.0)
    gains = [_choice_gains(a, b) for a, b in ((r1, r2), (r2, r1))]
    return {
        "action_share": share(action.pow(2).mean()),
        "image_share": share(image.pow(2).mean()),
        "interaction_share": share((centred - action - image).pow(2).mean()),
        "noise_share": share((r1 - r2).pow(2).mean() / 4 * (n - 1) * (k - 1) / (n * k)),
        "best_action_gain": sum(g[0] for g in gains) / 2,
        "per_image_gain": sum(g[1] for g in gains) / 2,
    }


def _choice_gains(choose: Tensor, score: Tensor) -> tuple[float, float]:
    """Choose on ``choose``, score on ``score``: (best single action - uniform, per-image best - best single)."""
    best = int(choose.mean(0).argmax())
    per_image = score.gather(1, choose.argmax(1, keepdim=True)).mean()
    return float(score[:, best].mean() - score.mean()), float(per_image - score[:, best].mean())
