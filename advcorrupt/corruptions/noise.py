"""Noise kernels (ImageNet-C ``gaussian_noise``, ``shot_noise``, ``impulse_noise``), batched per sample.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations" (ICLR 2019), Sec. 3 and its appendix, as the ``imagecorruptions`` package
implements them; ``docs/corruptions.md`` lists the formulas and every deliberate deviation.
Each kernel takes images (B, C, H, W) float in [0, 1] and one (B,) parameter tensor, draws its
randomness from an optional ``torch.Generator`` on the input's device, and returns the input's
shape and dtype, clamped to [0, 1]. :func:`noise_mix` applies the three noises to one batch
from a single uniform draw, with shapes that do not depend on which sample drew which noise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import _bmax, _check_x, _finish, _param, _work

__all__ = ["gaussian_noise", "impulse_noise", "noise_mix", "shot_noise"]


def gaussian_noise(x: Tensor, sigma: Tensor | float, *, generator: torch.Generator | None = None) -> Tensor:
    """Additive white Gaussian noise: ``clip(x + sigma * n)``, ``n ~ N(0, 1)`` per pixel.

    Args:
        x: images, float in [0, 1].
        sigma: per-sample noise standard deviation (ImageNet-C: .08 .12 .18 .26 .38).
        generator: optional generator on ``x``'s device.

    Shape:
        x: (B, C, H, W); sigma: (B,). Output: (B, C, H, W).

    Returns:
        The noisy images, dtype of ``x``, in [0, 1].

    Example:
        >>> import torch
        >>> gaussian_noise(torch.full((2, 1, 8, 8), 0.5), torch.tensor([0.08, 0.38])).shape
        torch.Size([2, 1, 8, 8])
    """
    _check_x(x)
    xf = _work(x)
    s = _param(sigma, x, "sigma").to(xf.dtype).view(-1, 1, 1, 1)
    noise = torch.randn(xf.shape, generator=generator, device=x.device, dtype=xf.dtype)
    return _finish(noise.mul_(s).add_(xf), x)


def shot_noise(x: Tensor, lam: Tensor | float, *, generator: torch.Generator | None = None) -> Tensor:
    """Poisson (shot) noise: ``Poisson(lam * x) / lam`` per pixel.

    Args:
        x: images, float in [0, 1].
        lam: per-sample photon count at full intensity (ImageNet-C: 60 25 12 5 3; lower is
            noisier).
        generator: optional generator on ``x``'s device.

    Shape:
        x: (B, C, H, W); lam: (B,). Output: (B, C, H, W).

    Returns:
        The noisy images, dtype of ``x``, in [0, 1].

    Example:
        >>> import torch
        >>> shot_noise(torch.full((2, 1, 8, 8), 0.5), torch.tensor([60.0, 3.0])).shape
        torch.Size([2, 1, 8, 8])
    """
    _check_x(x)
    xf = x.float() if x.dtype != torch.float64 else x
    lm = _param(lam, x, "lam").to(xf.dtype).view(-1, 1, 1, 1)
    counts = torch.poisson(xf.clamp(min=0.0) * lm, generator=generator)
    return _finish(counts.div_(lm), x)


def impulse_noise(
    x: Tensor,
    amount: Tensor | float,
    *,
    max_amount: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Salt-and-pepper noise: a fraction ``amount`` of the values set to 0 or 1 (half each).

    As ``skimage.util.random_noise(mode="s&p")`` used by ImageNet-C, every value (every channel
    of every pixel) is replaced independently with probability ``amount``. The replaced
    positions are drawn as a Bernoulli process through geometric gaps, so only about
    ``amount`` random numbers per value are needed instead of one per value.

    Args:
        x: images, float in [0, 1].
        amount: per-sample fraction of replaced values (ImageNet-C: .03 .06 .09 .17 .27).
        max_amount: bound on ``amount`` used to size the draw on accelerators without a
            host-device sync (ignored on CPU).
        generator: optional generator on ``x``'s device.

    Shape:
        x: (B, C, H, W); amount: (B,). Output: (B, C, H, W).

    Returns:
        The noisy images, dtype of ``x``, in [0, 1].

    Example:
        >>> import torch
        >>> impulse_noise(torch.full((2, 1, 8, 8), 0.5), torch.tensor([0.03, 0.27])).shape
        torch.Size([2, 1, 8, 8])
    """
    _check_x(x)
    b = x.shape[0]
    n = x[0].numel()
    a = _param(amount, x, "amount").clamp(0.0, 1.0)
    amax = min(1.0, max(0.0, _bmax(a, max_amount)))
    mean = amax * n
    # Enough gaps that running out has probability < 1e-9 (mean + 6 std + margin).
    k = min(n, int(math.ceil(mean + 6.0 * math.sqrt(mean * (1.0 - amax)) + 16)))
    u = torch.rand(b, k, generator=generator, device=x.device, dtype=torch.float32)
    salt = torch.rand(b, k, generator=generator, device=x.device, dtype=torch.float32) < 0.5
    # Gap to the next replaced value ~ Geometric(a) on {1, 2, ...}.
    gaps = torch.floor(torch.log1p(-u) / torch.log1p(-a)[:, None].clamp(max=-1e-12)) + 1.0
    pos = torch.cumsum(gaps.clamp_(1.0, n + 1.0).long(), 1) - 1  # (B, K) positions, >= n: unused
    pos = pos.clamp_(max=n)  # slot n is a scratch column dropped below
    out = F.pad(x.reshape(b, n), (0, 1)).scatter_(1, pos, salt.to(x.dtype))
    return out[:, :n].reshape(x.shape)


def noise_mix(
    x: Tensor,
    which: Tensor,
    *,
    sigma: Tensor | float | None = None,
    lam: Tensor | float | None = None,
    amount: Tensor | float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The three noises on one batch, each sample its own: one uniform draw for all of them.

    Sample ``i`` gets :func:`gaussian_noise` (``which[i] == 0``), :func:`shot_noise` (1) or
    :func:`impulse_noise` (2); any other value leaves it unchanged. Each is equal in distribution
    to its own kernel: one uniform ``u`` per value gives the Gaussian draw ``sqrt(2) erfinv(2u - 1)``
    and the salt-and-pepper decision (replaced if ``u < amount``, salt if ``u < amount / 2``), and
    the Poisson draw runs on a rate that is zero outside shot-noise samples. Shapes do not depend
    on ``which``: no host-device sync.

    Args:
        x: images, float in [0, 1].
        which: per-sample noise: 0 Gaussian, 1 shot, 2 impulse.
        sigma: per-sample Gaussian std (``None`` if no sample draws Gaussian noise).
        lam: per-sample shot-noise photon count (``None`` if no sample draws shot noise).
        amount: per-sample impulse fraction (``None`` if no sample draws impulse noise).
        generator: optional generator on ``x``'s device.

    Shape:
        x: (B, C, H, W); which, sigma, lam, amount: (B,). Output: (B, C, H, W).

    Returns:
        The noisy images, dtype of ``x``, in [0, 1].

    Example:
        >>> import torch
        >>> x = torch.full((3, 1, 8, 8), 0.5)
        >>> noise_mix(x, torch.tensor([0, 1, 2]), sigma=0.1, lam=25.0, amount=0.09).shape
        torch.Size([3, 1, 8, 8])
    """
    _check_x(x)
    if not isinstance(which, Tensor) or which.shape != x.shape[:1]:
        got = tuple(which.shape) if isinstance(which, Tensor) else type(which).__name__
        raise ValueError(f"which must be a (B,) = ({x.shape[0]},) tensor; got {got}")
    xf = x.float() if x.dtype != torch.float64 else x
    kind = which.to(x.device).view(-1, 1, 1, 1)
    u = torch.rand(xf.shape, generator=generator, device=x.device, dtype=xf.dtype)
    out = xf
    if sigma is not None:
        s = _param(sigma, x, "sigma").to(xf.dtype).view(-1, 1, 1, 1)
        # Midpoints of the uniform grid keep erfinv finite at both ends.
        n = torch.erfinv(u.mul(2.0).sub_(1.0 - 2.0**-24).clamp_(-1.0 + 2.0**-24, 1.0 - 2.0**-24))
        out = torch.where(kind == 0, n.mul_(math.sqrt(2.0) * s).add_(xf), out)
    if lam is not None:
        lm = _param(lam, x, "lam").to(xf.dtype).view(-1, 1, 1, 1)
        rate = torch.where(kind == 1, xf.clamp(min=0.0) * lm, torch.zeros((), dtype=xf.dtype, device=x.device))
        out = torch.where(kind == 1, torch.poisson(rate, generator=generator).div_(lm), out)
    if amount is not None:
        a = _param(amount, x, "amount").clamp(0.0, 1.0).to(xf.dtype).view(-1, 1, 1, 1)
        salt = (u < a * 0.5).to(xf.dtype)
        out = torch.where((kind == 2) & (u < a), salt, out)
    return _finish(out if out is not xf else xf.clone(), x)
