"""Batched corruption kernels with per-sample parameters (ImageNet-C definitions).

Every kernel takes images ``x`` of shape (B, C, H, W), float in [0, 1], C in {1, 3}, and one
parameter tensor of shape (B,) per parameter, so each sample of a batch can have its own
severity. Kernels run with torch ops on ``x``'s device, take randomness only from an optional
``torch.Generator`` and return a tensor of ``x``'s shape and dtype, clamped to [0, 1]. Half
precision inputs are computed in float32 and cast back.

The definitions follow the reference implementation of ImageNet-C, the ``imagecorruptions``
package of Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations" (ICLR 2019), Sec. 3 and its appendix; ``docs/corruptions.md``
lists the formulas and every deliberate deviation.

Convolutions pick their algorithm by kernel size: the Gaussian blur is separable (two
depthwise 1-D convolutions); the defocus disk and the motion-blur line are large, non-separable
kernels and are applied with a batched FFT, each sample with its own kernel.

For a batch that mixes corruptions on an accelerator, :func:`noise_mix` (the three noises from one
uniform draw) and :func:`blur_mix` (the three blurs as one FFT correlation with per-sample kernels
padded to a fixed size) replace three kernels each, with shapes that do not depend on which sample
drew which corruption: no host-device sync, and the work can be captured in a CUDA graph.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ._registry import validate_images

__all__ = [
    "blur_mix",
    "brightness",
    "contrast",
    "defocus_blur",
    "defocus_kernel",
    "gaussian_blur",
    "gaussian_blur_kernel",
    "gaussian_noise",
    "impulse_noise",
    "jpeg_compression",
    "motion_blur",
    "motion_blur_kernel",
    "noise_mix",
    "pixelate",
    "shot_noise",
]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _check_x(x: object, argname: str = "x") -> Tensor:
    return validate_images(x, argname)


def _param(p: Tensor | float, x: Tensor, argname: str) -> Tensor:
    """A (B,) float32 parameter on x's device (a Python number is broadcast to the batch)."""
    b = x.shape[0]
    if not isinstance(p, Tensor):
        return torch.full((b,), float(p), dtype=torch.float32, device=x.device)
    if p.ndim == 0:
        p = p.expand(b)
    if p.shape != (b,):
        raise ValueError(f"{argname} must have shape (B,) = ({b},) to match x; got {tuple(p.shape)}")
    return p.to(device=x.device, dtype=torch.float32)


def _work(x: Tensor) -> Tensor:
    """The computing copy of x: float32 for half types, else x itself."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _finish(out: Tensor, x: Tensor) -> Tensor:
    return out.clamp_(0.0, 1.0).to(x.dtype) if out is not x else out.clamp(0.0, 1.0)


_EMULATION = threading.local()


@contextlib.contextmanager
def _emulate_accelerator() -> Iterator[None]:
    """Within this block CPU tensors take the accelerator code paths (no reads of device values).

    Internal: lets CPU-only CI run the sync-free paths under a dispatch mode that fails on any
    host read (``aten._local_scalar_dense``, ``nonzero``, boolean indexing).
    """
    before = getattr(_EMULATION, "on", False)
    _EMULATION.on = True
    try:
        yield
    finally:
        _EMULATION.on = before


def _host_reads_ok(device: torch.device) -> bool:
    """Whether reading a tensor's values on the host is free: CPU, unless emulating an accelerator."""
    return device.type == "cpu" and not getattr(_EMULATION, "on", False)


def _bmax(p: Tensor, static: float | None) -> float:
    """Upper bound of ``p`` that sizes a padded kernel stack.

    On CPU the exact maximum costs nothing; on an accelerator reading it would force a
    host-device sync, so a ``static`` bound (the registry's level table) is used when given.
    The result does not depend on the bound (larger stacks are zero-padded), only the speed.
    """
    if static is not None and not _host_reads_ok(p.device):
        return float(static)
    return float(p.max()) if p.numel() else 0.0


def _grouped(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (1, B*C, H, W) for depthwise convolution with per-sample kernels."""
    b, c, h, w = x.shape
    return x.reshape(1, b * c, h, w)


def _fft_size(n: int) -> int:
    """Smallest ``m >= n`` whose prime factors are 2, 3, 5 and 7 (fast for pocketfft and cuFFT)."""
    m = n
    while True:
        r = m
        for p in (2, 3, 5, 7):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def _fft_correlate(xp: Tensor, kernel: Tensor, out_hw: tuple[int, int]) -> Tensor:
    """Correlate each padded image with its sample's kernel via FFT, keeping the valid part.

    The transform is zero-padded to a fast size; the valid outputs never reach the wrapped part.

    Args:
        xp: padded images (B, C, Hp, Wp), float32/float64.
        kernel: per-sample kernels (B, kh, kw); ``out[i, j] = sum_ab k[a, b] xp[i + a, j + b]``.
        out_hw: (H, W) of the valid output, ``H = Hp - kh + 1``.
    """
    hp, wp = xp.shape[-2:]
    kh, kw = kernel.shape[-2:]
    size = (_fft_size(hp), _fft_size(wp))
    fx = torch.fft.rfft2(xp, s=size)
    fk = torch.fft.rfft2(kernel.to(xp.dtype), s=size).conj_physical().unsqueeze(1)
    out = torch.fft.irfft2(fx.mul_(fk), s=size)
    return out[..., : out_hw[0], : out_hw[1]]


# --------------------------------------------------------------------------------------------
# noise
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# blur
# --------------------------------------------------------------------------------------------
def _reflect101(p: Tensor, half: Tensor) -> Tensor:
    """Reflect integer coordinates ``p`` into ``[-half, half]`` (cv2.BORDER_REFLECT_101)."""
    p = torch.where(p > half, 2 * half - p, p)
    return torch.where(p < -half, -2 * half - p, p)


def defocus_kernel(radius: Tensor, alias_blur: Tensor, *, size: int | None = None) -> Tensor:
    """ImageNet-C's anti-aliased disk kernels, one per sample, centred in a common stack.

    As ``imagecorruptions.disk``: a binary disk ``X^2 + Y^2 <= r^2`` on the grid
    ``[-8, 8]^2`` (radius <= 8) or ``[-r, r]^2`` (radius > 8), normalised to sum 1, then blurred
    by ``cv2.GaussianBlur`` with a 3x3 (radius <= 8) or 5x5 kernel of std ``alias_blur`` and
    reflect-101 borders at the grid's edge.

    Args:
        radius: per-sample disk radius (integer valued).
        alias_blur: per-sample anti-aliasing std.
        size: side of the returned stack (odd); default the smallest that holds every kernel.

    Shape:
        radius, alias_blur: (B,). Output: (B, size, size), float32.

    Returns:
        The kernels; each sample's kernel sits centred, zero outside its own grid.

    Example:
        >>> import torch
        >>> defocus_kernel(torch.tensor([3.0, 10.0]), torch.tensor([0.1, 0.5])).shape
        torch.Size([2, 21, 21])
    """
    r = radius.float().round()
    dev = r.device
    half = torch.where(r <= 8, torch.full_like(r, 8.0), r)  # (B,)
    if size is None:
        size = 2 * int(max(8.0, _bmax(r, None))) + 1
    big = (size - 1) // 2
    coords = torch.arange(-big, big + 1, device=dev, dtype=torch.float32)  # (G,)
    taps = torch.arange(-2, 3, device=dev, dtype=torch.float32)  # (5,)
    ksupport = torch.where(r <= 8, 1.0, 2.0)  # Gaussian half-width: 3x3 or 5x5
    s = alias_blur.float().clamp(min=1e-6)
    w = torch.exp(-(taps**2) / (2 * s[:, None] ** 2)) * (taps.abs() <= ksupport[:, None])  # (B, 5)
    w = w / w.sum(1, keepdim=True)
    # Reflected coordinates at the sample's own grid edge: (B, 5, G).
    p = _reflect101(coords[None, None, :] + taps[None, :, None], half[:, None, None])
    area = (coords[None, :, None] ** 2 + coords[None, None, :] ** 2 <= r[:, None, None] ** 2).sum((1, 2))
    disk = (p[:, :, None, :, None] ** 2 + p[:, None, :, None, :] ** 2) <= (r**2).view(-1, 1, 1, 1, 1)
    # disk[b, ty, tx, i, j]: disk value at reflected (i + ty, j + tx).
    k = torch.einsum("by,bx,byxij->bij", w, w, disk.float()) / area.view(-1, 1, 1).float()
    inside = (coords.abs()[None, :] <= half[:, None])  # (B, G)
    return k * (inside[:, :, None] & inside[:, None, :])


def defocus_blur(
    x: Tensor,
    radius: Tensor | float,
    alias_blur: Tensor | float,
    *,
    max_radius: float | None = None,
) -> Tensor:
    """Defocus blur: correlation with an anti-aliased disk, reflect-101 borders (cv2.filter2D).

    Args:
        x: images, float in [0, 1].
        radius: per-sample disk radius (ImageNet-C: 3 4 6 8 10).
        alias_blur: per-sample anti-aliasing std (ImageNet-C: .1 .5 .5 .5 .5).
        max_radius: bound on ``radius`` used to size the kernel stack on accelerators without a
            host-device sync (ignored on CPU); results do not depend on it.

    Shape:
        x: (B, C, H, W); radius, alias_blur: (B,). Output: (B, C, H, W).

    Returns:
        The blurred images, dtype of ``x``, in [0, 1].

    Example:
        >>> import torch
        >>> defocus_blur(torch.rand(2, 1, 32, 32), torch.tensor([3.0, 10.0]), torch.tensor([0.1, 0.5])).shape
        torch.Size([2, 1, 32, 32])
    """
    _check_x(x)
    xf = _work(x)
    r = _param(radius, x, "radius")
    half = int(max(8.0, math.ceil(_bmax(r, max_radius))))
    kernel = defocus_kernel(r, _param(alias_blur, x, "alias_blur"), size=2 * half + 1)
    h, w = x.shape[-2:]
    xp = _pad(xf, half, "reflect")
    return _finish(_fft_correlate(xp, kernel, (h, w)), x)


def _pad(x: Tensor, p: int, mode: str) -> Tensor:
    """Pad H and W by ``p`` on each side; reflect-101 falls back to repeated reflection for tiny images."""
    if p == 0:
        return x
    h, w = x.shape[-2:]
    if mode == "reflect" and (p >= h or p >= w):
        # Index form of reflect-101 that works for any pad size.
        def idx(n: int) -> Tensor:
            i = torch.arange(-p, n + p, device=x.device)
            if n == 1:
                return torch.zeros_like(i)
            period = 2 * (n - 1)
            i = i.remainder(period)
            return torch.where(i >= n, period - i, i)

        return x[..., idx(h)[:, None], idx(w)[None, :]]
    return F.pad(x, (p, p, p, p), mode=mode)


def motion_blur_kernel(radius: Tensor, sigma: Tensor, angle: Tensor, *, size: int | None = None) -> Tensor:
    """ImageNet-C's motion-blur line kernels, one per sample, centred in a common stack.

    As ``imagecorruptions._motion_blur``: ``2r + 1`` taps with one-sided Gaussian weights
    ``exp(-i^2 / (2 sigma^2))`` (normalised), tap ``i`` at offset
    ``(ceil(i sin(angle) - 1/2), ceil(i cos(angle) - 1/2))`` (rows, columns) from the output
    pixel.

    Args:
        radius: per-sample radius ``r`` (integer valued; the line has ``2r + 1`` taps).
        sigma: per-sample Gaussian std of the tap weights.
        angle: per-sample direction in degrees.
        size: side of the returned stack (odd); default the smallest that holds every kernel,
            ``4 max(r) + 1``.

    Shape:
        radius, sigma, angle: (B,). Output: (B, size, size), float32, for correlation.

    Returns:
        The kernels (tap weights scattered onto a centred grid).

    Example:
        >>> import torch
        >>> motion_blur_kernel(torch.tensor([10.0]), torch.tensor([3.0]), torch.tensor([0.0])).shape
        torch.Size([1, 41, 41])
    """
    r = radius.float().round()
    if size is None:
        size = 4 * int(_bmax(r, None)) + 1
    return _motion_scatter(_motion_weights(r, sigma, size), angle, size)


def _motion_weights(radius: Tensor, sigma: Tensor, n_taps: int) -> Tensor:
    """Normalised one-sided Gaussian tap weights, zero beyond tap ``2 radius``: (B, n_taps)."""
    i = torch.arange(n_taps, device=radius.device, dtype=torch.float32)  # (T,)
    r = radius.float().round()
    wts = torch.exp(-(i**2)[None, :] / (2 * sigma.float()[:, None] ** 2)) * (i[None, :] <= 2 * r[:, None])
    return wts / wts.sum(1, keepdim=True)


def _motion_scatter(wts: Tensor, angle: Tensor, size: int) -> Tensor:
    """Scatter tap weights (B, T) along each sample's direction onto a centred (B, size, size) grid."""
    b, n_taps = wts.shape
    c = (size - 1) // 2
    i = torch.arange(n_taps, device=wts.device, dtype=torch.float32)
    rad = torch.deg2rad(angle.float())[:, None]
    # float64 on the host-side of the formula is not needed: offsets are rounded to integers.
    oy = torch.ceil(i[None, :] * torch.sin(rad) - 0.5).long().clamp(-c, c)
    ox = torch.ceil(i[None, :] * torch.cos(rad) - 0.5).long().clamp(-c, c)
    flat = (oy + c) * size + (ox + c)  # (B, T)
    k = torch.zeros(b, size * size, device=wts.device, dtype=torch.float32)
    k.scatter_add_(1, flat, wts)
    return k.view(b, size, size)


def motion_blur(
    x: Tensor,
    radius: Tensor | float,
    sigma: Tensor | float,
    *,
    angle: Tensor | float | None = None,
    max_radius: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Motion blur along a random direction, replicate borders (ImageNet-C ``motion_blur``).

    Args:
        x: images, float in [0, 1].
        radius: per-sample radius (ImageNet-C: 10 15 15 15 20).
        sigma: per-sample std of the tap weights (ImageNet-C: 3 5 8 12 15).
        angle: per-sample direction in degrees; default uniform in [-45, 45] from ``generator``.
        max_radius: bound on ``radius`` used to size the kernel stack on accelerators without a
            host-device sync (ignored on CPU); results do not depend on it.
        generator: optional generator on ``x``'s device (used only when ``angle`` is None).

    Shape:
        x: (B, C, H, W); radius, sigma, angle: (B,). Output: (B, C, H, W).

    Returns:
        The blurred images, dtype of ``x``, in [0, 1].

    Example:
        >>> import torch
        >>> motion_blur(torch.rand(2, 1, 32, 32), 10.0, 3.0, angle=torch.tensor([0.0, 45.0])).shape
        torch.Size([2, 1, 32, 32])
    """
    _check_x(x)
    xf = _work(x)
    r = _param(radius, x, "radius")
    if angle is None:
        u = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=torch.float32)
        ang = u * 90.0 - 45.0
    else:
        ang = _param(angle, x, "angle")
    c = 2 * int(math.ceil(_bmax(r, max_radius)))
    kernel = motion_blur_kernel(r, _param(sigma, x, "sigma"), ang, size=2 * c + 1)
    h, w = x.shape[-2:]
    xp = F.pad(xf, (c, c, c, c), mode="replicate") if c else xf
    return _finish(_fft_correlate(xp, kernel, (h, w)), x)


def gaussian_blur(x: Tensor, sigma: Tensor | float, *, max_sigma: float | None = None) -> Tensor:
    """Gaussian blur as ``skimage.filters.gaussian``: truncate 4 sigma, replicate ('nearest') borders.

    Separable: two depthwise 1-D convolutions with per-sample kernels of radius
    ``int(4 sigma + 0.5)`` (zero-padded to the batch's largest).

    Args:
        x: images, float in [0, 1].
        sigma: per-sample std in pixels (ImageNet-C: 1 2 3 4 6).
        max_sigma: bound on ``sigma`` used to size the kernel stack on accelerators without a
            host-device sync (ignored on CPU); results do not depend on it.

    Shape:
        x: (B, C, H, W); sigma: (B,). Output: (B, C, H, W).

    Returns:
        The blurred images, dtype of ``x``, in [0, 1].

    Example:
        >>> import torch
        >>> gaussian_blur(torch.rand(2, 3, 16, 16), torch.tensor([1.0, 6.0])).shape
        torch.Size([2, 3, 16, 16])
    """
    _check_x(x)
    xf = _work(x)
    s = _param(sigma, x, "sigma")
    b, c, h, w = x.shape
    rad = int(4.0 * _bmax(s, max_sigma) + 0.5)
    if rad == 0:
        return _finish(xf.clone(), x)
    t = torch.arange(-rad, rad + 1, device=x.device, dtype=torch.float32)
    own = torch.floor(4.0 * s + 0.5)  # each sample's own truncation radius
    k = torch.exp(-0.5 * (t[None] / s.clamp(min=1e-6)[:, None]) ** 2) * (t.abs()[None] <= own[:, None])
    k = (k / k.sum(1, keepdim=True)).to(xf.dtype)
    k = k.repeat_interleave(c, 0)  # (B*C, K)
    y = _grouped(F.pad(xf, (rad, rad, rad, rad), mode="replicate"))
    y = F.conv2d(y, k.view(b * c, 1, -1, 1), groups=b * c)
    y = F.conv2d(y, k.view(b * c, 1, 1, -1), groups=b * c)
    return _finish(y.view(b, c, h, w), x)


def gaussian_blur_kernel(sigma: Tensor, *, size: int) -> Tensor:
    """2-D kernels of :func:`gaussian_blur` (truncate at ``int(4 sigma + 0.5)``), one per sample.

    Args:
        sigma: per-sample std in pixels.
        size: side of the returned stack (odd); each kernel is centred and zero beyond its own
            truncation radius.

    Shape:
        sigma: (B,). Output: (B, size, size), float32.

    Returns:
        The outer product of each sample's normalised 1-D kernel with itself.

    Example:
        >>> import torch
        >>> k = gaussian_blur_kernel(torch.tensor([1.0, 2.0]), size=17)
        >>> k.shape, bool(torch.allclose(k.sum((1, 2)), torch.ones(2)))
        (torch.Size([2, 17, 17]), True)
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd int; got {size}")
    s = sigma.float()
    rad = (size - 1) // 2
    t = torch.arange(-rad, rad + 1, device=s.device, dtype=torch.float32)
    own = torch.floor(4.0 * s + 0.5)
    k = torch.exp(-0.5 * (t[None] / s.clamp(min=1e-6)[:, None]) ** 2) * (t.abs()[None] <= own[:, None])
    k = k / k.sum(1, keepdim=True)
    return k[:, :, None] * k[:, None, :]


def blur_mix(
    x: Tensor,
    which: Tensor,
    *,
    defocus: tuple[Tensor, Tensor] | None = None,
    motion: tuple[Tensor, Tensor] | None = None,
    gaussian_sigma: Tensor | None = None,
    pad: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The three blurs on one batch, each sample its own, as one batched FFT correlation.

    Sample ``i`` gets :func:`defocus_blur` (``which[i] == 0``, reflect-101 borders),
    :func:`motion_blur` (1, replicate borders, a random angle as there) or :func:`gaussian_blur`
    (2, replicate borders); any other value leaves it unchanged (a unit kernel). Every sample's
    kernel is centred in one stack of side ``2 pad + 1``: equal to the three kernels up to
    floating-point rounding, and shapes do not depend on ``which``.

    Args:
        x: images, float in [0, 1].
        which: per-sample blur: 0 defocus, 1 motion, 2 Gaussian.
        defocus: per-sample ``(radius, alias_blur)`` (``None`` if no sample draws defocus).
        motion: per-sample ``(radius, sigma)`` (``None`` if no sample draws motion blur).
        gaussian_sigma: per-sample std (``None`` if no sample draws Gaussian blur).
        pad: half-side of the kernel stack, at least each present blur's reach (defocus
            ``max(8, radius)``, motion ``2 radius``, Gaussian ``int(4 sigma + 0.5)``); pass it on
            accelerators, as the default reads the parameters' maxima (a host-device sync).
        generator: optional generator on ``x``'s device (the motion-blur angles).

    Shape:
        x: (B, C, H, W); which and every parameter: (B,). Output: (B, C, H, W).

    Returns:
        The blurred images, dtype of ``x``, in [0, 1].

    Example:
        >>> import torch
        >>> x = torch.rand(3, 1, 32, 32)
        >>> r, s = torch.full((3,), 4.0), torch.full((3,), 2.0)
        >>> blur_mix(x, torch.tensor([0, 1, 2]), defocus=(r, s / 4), motion=(r, s), gaussian_sigma=s).shape
        torch.Size([3, 1, 32, 32])
    """
    _check_x(x)
    if not isinstance(which, Tensor) or which.shape != x.shape[:1]:
        got = tuple(which.shape) if isinstance(which, Tensor) else type(which).__name__
        raise ValueError(f"which must be a (B,) = ({x.shape[0]},) tensor; got {got}")
    kind = which.to(x.device)
    if pad is None:
        pad = _blur_reach(x, defocus, motion, gaussian_sigma)
    size = 2 * pad + 1
    kernel = torch.zeros(x.shape[0], size, size, device=x.device, dtype=torch.float32)
    kernel[:, pad, pad] = 1.0
    sel = kind.view(-1, 1, 1)
    if defocus is not None:
        k = defocus_kernel(_param(defocus[0], x, "radius"), _param(defocus[1], x, "alias_blur"), size=size)
        kernel = torch.where(sel == 0, k, kernel)
    if motion is not None:
        ang = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=torch.float32) * 90.0 - 45.0
        k = motion_blur_kernel(_param(motion[0], x, "radius"), _param(motion[1], x, "sigma"), ang, size=size)
        kernel = torch.where(sel == 1, k, kernel)
    if gaussian_sigma is not None:
        kernel = torch.where(sel == 2, gaussian_blur_kernel(_param(gaussian_sigma, x, "sigma"), size=size), kernel)
    return _correlate_per_sample(x, kernel, reflect=kind == 0 if defocus is not None else None)


def _correlate_per_sample(x: Tensor, kernel: Tensor, *, reflect: Tensor | None) -> Tensor:
    """Correlate each sample with its centred kernel (B, 2p + 1, 2p + 1) by one batched FFT.

    Borders are replicated, or reflected (reflect-101) for the samples where ``reflect`` (B,) is
    true. Output: x's shape and dtype, clamped to [0, 1].
    """
    xf = _work(x)
    pad = (kernel.shape[-1] - 1) // 2
    xp = F.pad(xf, (pad, pad, pad, pad), mode="replicate") if pad else xf
    if reflect is not None and pad:
        xp = torch.where(reflect.view(-1, 1, 1, 1), _pad(xf, pad, "reflect"), xp)
    h, w = x.shape[-2:]
    return _finish(_fft_correlate(xp, kernel, (h, w)), x)


def _blur_reach(
    x: Tensor,
    defocus: tuple[Tensor, Tensor] | None,
    motion: tuple[Tensor, Tensor] | None,
    gaussian_sigma: Tensor | None,
) -> int:
    """Smallest kernel half-side holding every present blur (reads the parameters' maxima)."""
    reach = 0
    if defocus is not None:
        reach = max(reach, int(max(8.0, math.ceil(_bmax(_param(defocus[0], x, "radius"), None)))))
    if motion is not None:
        reach = max(reach, 2 * int(math.ceil(_bmax(_param(motion[0], x, "radius"), None))))
    if gaussian_sigma is not None:
        reach = max(reach, int(4.0 * _bmax(_param(gaussian_sigma, x, "sigma"), None) + 0.5))
    return reach


# --------------------------------------------------------------------------------------------
# digital
# --------------------------------------------------------------------------------------------
def brightness(x: Tensor, delta: Tensor | float) -> Tensor:
    """Brightness: add ``delta`` to the HSV value channel (clipped); for C = 1 to the gray value.

    With hue and saturation fixed, RGB scales linearly with V = max(R, G, B), so for C = 3 the
    result is ``x * min(V + delta, 1) / V`` (and gray ``delta`` where V = 0).

    Args:
        x: images, float in [0, 1].
        delta: per-sample increase of V (ImageNet-C: .1 .2 .3 .4 .5).

    Shape:
        x: (B, C, H, W); delta: (B,). Output: (B, C, H, W).

    Returns:
        The brightened images, dtype of ``x``, in [0, 1].

    Example:
        >>> import torch
        >>> brightness(torch.zeros(1, 1, 2, 2), torch.tensor([0.3]))[0, 0, 0, 0].item()
        0.30000001192092896
    """
    _check_x(x)
    xf = _work(x)
    d = _param(delta, x, "delta").to(xf.dtype).view(-1, 1, 1, 1)
    if x.shape[1] == 1:
        return _finish(xf + d, x)
    v = xf.amax(1, keepdim=True)
    v_new = (v + d).clamp_(max=1.0)
    scale = torch.where(v > 0, v_new / v.clamp(min=1e-12), torch.zeros_like(v))
    out = torch.where(v > 0, xf * scale, v_new.expand_as(xf))
    return _finish(out, x)


def contrast(x: Tensor, factor: Tensor | float) -> Tensor:
    """Contrast: ``(x - mean) * factor + mean`` with the per-image, per-channel mean.

    Args:
        x: images, float in [0, 1].
        factor: per-sample contrast factor (ImageNet-C: .4 .3 .2 .1 .05; lower is stronger).

    Shape:
        x: (B, C, H, W); factor: (B,). Output: (B, C, H, W).

    Returns:
        The low-contrast images, dtype of ``x``, in [0, 1].

    Example:
        >>> import torch
        >>> contrast(torch.rand(2, 1, 8, 8), torch.tensor([0.4, 0.05])).shape
        torch.Size([2, 1, 8, 8])
    """
    _check_x(x)
    xf = _work(x)
    f = _param(factor, x, "factor").to(xf.dtype).view(-1, 1, 1, 1)
    mean = xf.mean((2, 3), keepdim=True)
    return _finish(torch.lerp(mean, xf, f) if xf.dtype != torch.float64 else (xf - mean) * f + mean, x)


def _box_bounds(n: int, m: Tensor, out: int) -> tuple[Tensor, Tensor]:
    """Footprints of PIL ``BOX`` downscaling from ``n`` to a per-sample ``m`` (padded to ``out``).

    PIL's BOX filter averages the input pixels whose centres fall in output pixel ``j``'s
    footprint ``(j s - 1/2, (j + 1) s - 1/2]``, ``s = n / m``; integer arithmetic reproduces
    those bounds exactly. Returns the first and last input index, (B, out) each; columns
    ``j >= m`` are filler.
    """
    m = m[:, None]
    j = torch.minimum(torch.arange(out, device=m.device)[None, :], m - 1)
    lo = torch.clamp((2 * j * n - m).div(2 * m, rounding_mode="floor") + 1, min=0)
    hi = torch.clamp((2 * (j + 1) * n - m).div(2 * m, rounding_mode="floor"), max=n - 1)
    return lo, hi


def _box_sum_last(x: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """Mean of ``x[..., lo:hi + 1]`` along the last dim per output column, from a cumulative sum."""
    n, out = x.shape[-1], lo.shape[-1]
    cs = x.new_zeros(*x.shape[:-1], n + 1)
    torch.cumsum(x, -1, out=cs[..., 1:])
    shape = (*x.shape[:-1], out)
    top = torch.gather(cs, -1, (hi + 1).view(-1, 1, 1, out).expand(shape))
    bot = torch.gather(cs, -1, lo.view(-1, 1, 1, out).expand(shape))
    return (top - bot).div_((hi - lo + 1).view(-1, 1, 1, out).to(x.dtype))


def _box_up_index(n: int, m: Tensor) -> Tensor:
    """PIL ``BOX`` upscale from ``m`` to ``n``: output ``i`` copies input ``floor((i + 1/2) m / n)``."""
    i = torch.arange(n, device=m.device)[None, :]
    return torch.minimum(((2 * i + 1) * m[:, None]) // (2 * n), m[:, None] - 1)  # (B, n)


def pixelate(x: Tensor, factor: Tensor | float, *, max_factor: float | None = None) -> Tensor:
    """Pixelate: box-downscale to ``int(factor * size)`` and box-upscale back (PIL ``BOX``).

    Args:
        x: images, float in [0, 1].
        factor: per-sample downscale factor (ImageNet-C: .6 .5 .4 .3 .25; lower is stronger).
        max_factor: bound on ``factor`` used to size the low-resolution stack on accelerators
            without a host-device sync (ignored on CPU); results do not depend on it.

    Shape:
        x: (B, C, H, W); factor: (B,). Output: (B, C, H, W).

    Returns:
        The pixelated images, dtype of ``x``, in [0, 1].

    Example:
        >>> import torch
        >>> pixelate(torch.rand(2, 1, 9, 7), torch.tensor([0.6, 0.25])).shape
        torch.Size([2, 1, 9, 7])
    """
    _check_x(x)
    f = _param(factor, x, "factor")
    fmax = min(1.0, _bmax(f, max_factor))
    return _pixelate_planned(x, _pixelate_plan(f, x.shape[-2:], max_factor=fmax))


def _pixelate_plan(factor: Tensor, hw: Sequence[int], *, max_factor: float) -> tuple[Tensor, ...]:
    """The index tables of :func:`pixelate` for images of size ``hw``, one row per factor.

    They depend only on the factor and the image size, so a caller that pixelates many batches
    at a few factors can build them once and gather each sample's row.

    Args:
        factor: downscale factors (K,).
        hw: image height and width.
        max_factor: a bound on ``factor`` that sizes the low-resolution stack.

    Returns:
        ``(lo_w, hi_w, lo_h, hi_h, up)``: box footprints along W (K, ow) and H (K, oh), and the
        flat low-resolution index of every output pixel (K, H * W); ``ow - 1``, ``oh - 1`` are
        ``int(max_factor * size)``.
    """
    h, w = int(hw[0]), int(hw[1])
    micro = torch.round(factor.float() * 1_000_000).long()  # exact integer form of int(size * factor)
    mh = torch.clamp((micro * h) // 1_000_000, 1, h)
    mw = torch.clamp((micro * w) // 1_000_000, 1, w)
    oh, ow = max(1, min(h, int(max_factor * h) + 1)), max(1, min(w, int(max_factor * w) + 1))
    lo_w, hi_w = _box_bounds(w, mw, ow)
    lo_h, hi_h = _box_bounds(h, mh, oh)
    up = _box_up_index(w, mw)[:, None, :] * oh + _box_up_index(h, mh)[:, :, None]  # (K, H, W)
    return lo_w, hi_w, lo_h, hi_h, up.reshape(-1, h * w)


def _pixelate_planned(x: Tensor, plan: Sequence[Tensor]) -> Tensor:
    """Pixelate with per-sample index tables (each (B, ...), rows of :func:`_pixelate_plan`)."""
    lo_w, hi_w, lo_h, hi_h, up = plan
    xf = x.float() if x.dtype != torch.float64 else x
    b, c, h, w = x.shape
    oh, ow = lo_h.shape[-1], lo_w.shape[-1]
    small = _box_sum_last(xf, lo_w, hi_w)  # (B, C, H, ow)
    small = _box_sum_last(small.transpose(2, 3).contiguous(), lo_h, hi_h)  # (B, C, ow, oh)
    # Upscale both axes with one gather from the flattened low-resolution image.
    out = torch.gather(small.reshape(b, c, ow * oh), 2, up.view(b, 1, h * w).expand(b, c, h * w))
    return _finish(out.view(b, c, h, w), x)


# IJG (libjpeg) standard tables, natural (row-major) order: rows are vertical frequencies.
_LUMA_Q = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
_CHROMA_Q = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
) + (99,) * 32  # fmt: skip


# Constant tensors cached per (name, device, dtype): building them on an accelerator from host
# data each call would cost a host-to-device copy, which synchronises the stream.
_CONSTANTS: dict[tuple[str, torch.device, torch.dtype], Tensor] = {}


def _constant(name: str, device: torch.device, dtype: torch.dtype) -> Tensor:
    key = (name, device, dtype)
    t = _CONSTANTS.get(key)
    if t is None:
        if name == "dct":
            # Orthonormal 8-point DCT-II: coef = D @ block @ D.T is JPEG's 2-D DCT.
            n = torch.arange(8, dtype=torch.float64)
            t = torch.cos((2 * n[None, :] + 1) * n[:, None] * math.pi / 16) * 0.5
            t[0] /= math.sqrt(2.0)
            t = torch.kron(t, t)  # 64 x 64: vec(D B D^T) = (D kron D) vec(B), row-major
        else:
            t = torch.tensor(_LUMA_Q if name == "luma" else _CHROMA_Q, dtype=torch.float64)
        t = _CONSTANTS[key] = t.to(device=device, dtype=dtype)
    return t


def _quant_tables(quality: Tensor, base: str) -> Tensor:
    """IJG ``jpeg_set_quality`` scaling with baseline clamp to [1, 255]: (B, 64) float32."""
    q = quality.round().clamp(1, 100)
    scale = torch.where(q < 50, torch.floor(5000.0 / q), 200.0 - 2.0 * q)
    t = _constant(base, q.device, torch.float32)
    return torch.floor((t * scale.view(-1, 1) + 50.0) / 100.0).clamp_(1.0, 255.0)


def _jpeg_plane(p: Tensor, table: Tensor, dct2: Tensor) -> Tensor:
    """Level-shifted planes (N, H, W) -> DCT, quantise, dequantise, inverse DCT (same shape).

    ``dct2`` is the 64 x 64 Kronecker product of the 8-point DCT with itself, so the 2-D DCT of
    every 8x8 block is one matrix product; ``table`` is (N, 64).
    """
    n, h, w = p.shape
    ph, pw = -h % 8, -w % 8
    if ph or pw:
        p = F.pad(p.unsqueeze(1), (0, pw, 0, ph), mode="replicate").squeeze(1)
    hb, wb = p.shape[1] // 8, p.shape[2] // 8
    blocks = p.view(n, hb, 8, wb, 8).permute(0, 1, 3, 2, 4).reshape(n, hb * wb, 64)
    t = table.view(n, 1, 64)
    coef = blocks @ dct2.T
    sign = torch.sign(coef)
    deq = coef.div_(t).abs_().add_(0.5).floor_().mul_(sign).mul_(t)  # IJG: round half away from 0
    rec = deq @ dct2
    return rec.view(n, hb, wb, 8, 8).permute(0, 1, 3, 2, 4).reshape(n, hb * 8, wb * 8)[:, :h, :w]


def jpeg_compression(x: Tensor, quality: Tensor | float) -> Tensor:
    """JPEG round trip at a per-sample quality, as libjpeg (PIL ``save(quality=q)``) does it.

    Baseline JPEG on 8x8 blocks: level shift by 128, orthonormal 2-D DCT, quantisation with
    the IJG luminance/chrominance tables scaled by quality, dequantisation, inverse DCT. C = 1
    is coded as one luminance plane; C = 3 as YCbCr (JFIF) with 4:2:0 chroma subsampling
    (2x2 mean down, triangle "fancy" upsampling), PIL's default. Sizes that are not multiples
    of 8 are padded by edge replication and cropped back, as libjpeg does.

    Args:
        x: images, float in [0, 1].
        quality: per-sample JPEG quality 1-100 (ImageNet-C: 25 18 15 10 7).

    Shape:
        x: (B, C, H, W); quality: (B,). Output: (B, C, H, W).

    Returns:
        The decoded images (not rounded to 8 bits), dtype of ``x``, in [0, 1].

    Example:
        >>> import torch
        >>> jpeg_compression(torch.rand(2, 1, 13, 10), torch.tensor([25.0, 7.0])).shape
        torch.Size([2, 1, 13, 10])
    """
    _check_x(x)
    xf = x.float() if x.dtype != torch.float64 else x
    q = _param(quality, x, "quality")
    dct2 = _constant("dct", x.device, xf.dtype)
    luma_t = _quant_tables(q, "luma").to(xf.dtype)
    v = xf * 255.0
    b, c, h, w = x.shape
    if c == 1:
        y = _jpeg_plane(v[:, 0] - 128.0, luma_t, dct2) + 128.0
        return _finish((y.clamp_(0.0, 255.0) / 255.0).unsqueeze(1), x)
    r, g, bl = v.unbind(1)
    yy = 0.299 * r + 0.587 * g + 0.114 * bl
    cb = -0.168735892 * r - 0.331264108 * g + 0.5 * bl
    cr = 0.5 * r - 0.418687589 * g - 0.081312411 * bl
    chroma = torch.stack((cb, cr), 1)  # level-shifted (centred at 0)
    if h % 2 or w % 2:
        chroma = F.pad(chroma, (0, w % 2, 0, h % 2), mode="replicate")
    chroma = F.avg_pool2d(chroma, 2)
    chroma_t = _quant_tables(q, "chroma").to(xf.dtype)
    h2, w2 = chroma.shape[-2:]
    cc = _jpeg_plane(chroma.reshape(b * 2, h2, w2), chroma_t.repeat_interleave(2, 0), dct2)
    cc = (cc.view(b, 2, h2, w2) + 128.0).clamp_(0.0, 255.0)
    cc = F.interpolate(cc, scale_factor=2.0, mode="bilinear", align_corners=False)[..., :h, :w] - 128.0
    y = (_jpeg_plane(yy - 128.0, luma_t, dct2) + 128.0).clamp_(0.0, 255.0)
    cb, cr = cc.unbind(1)
    rgb = torch.stack((y + 1.402 * cr, y - 0.344136286 * cb - 0.714136286 * cr, y + 1.772 * cb), 1)
    return _finish(rgb / 255.0, x)
