"""Blur kernels (ImageNet-C ``defocus_blur``, ``motion_blur``, ``gaussian_blur``), batched per sample.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations" (ICLR 2019), Sec. 3 and its appendix, as the ``imagecorruptions`` package
implements them; ``docs/corruptions.md`` lists the formulas and every deliberate deviation.

Convolutions pick their algorithm by kernel size: the Gaussian blur is separable (two
depthwise 1-D convolutions); the defocus disk and the motion-blur line are large, non-separable
kernels and are applied with a batched FFT, each sample with its own kernel. :func:`blur_mix`
applies the three blurs to one batch as one FFT correlation with per-sample kernels padded to a
fixed size, with shapes that do not depend on which sample drew which blur.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import _bmax, _check_x, _finish, _param, _work

__all__ = [
    "blur_mix",
    "defocus_blur",
    "defocus_kernel",
    "gaussian_blur",
    "gaussian_blur_kernel",
    "motion_blur",
    "motion_blur_kernel",
]


# --------------------------------------------------------------------------------------------
# convolution helpers
# --------------------------------------------------------------------------------------------
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
# kernels
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
