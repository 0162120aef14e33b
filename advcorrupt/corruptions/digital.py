"""Digital kernels (ImageNet-C ``brightness``, ``contrast``, ``pixelate``, ``jpeg_compression``), batched.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations" (ICLR 2019), Sec. 3 and its appendix, as the ``imagecorruptions`` package
implements them (PIL's ``BOX`` resampling for pixelate, libjpeg's baseline coder for JPEG);
``docs/corruptions.md`` lists the formulas and every deliberate deviation. Each kernel takes
images (B, C, H, W) float in [0, 1] and one (B,) parameter tensor and returns the input's shape
and dtype, clamped to [0, 1]; none of them is random.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import _bmax, _check_x, _finish, _host_reads_ok, _param, _work

__all__ = ["brightness", "contrast", "jpeg_compression", "pixelate"]


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
    out = xf * (v_new / v.clamp(min=1e-12))  # where V = 0 every channel is 0, and so is out
    if not _host_reads_ok(x.device) or not bool(v.gt(0).all()):
        out = torch.where(v > 0, out, v_new)
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
    c = x.shape[1]
    if c == 1:
        y = _jpeg_plane(v[:, 0] - 128.0, luma_t, dct2) + 128.0
        return _finish((y.clamp_(0.0, 255.0) / 255.0).unsqueeze(1), x)
    return _finish(_jpeg_ycc(v, q, luma_t, dct2).mul_(1.0 / 255.0), x)


def _jpeg_ycc(v: Tensor, q: Tensor, luma_t: Tensor, dct2: Tensor) -> Tensor:
    """The C = 3 path of :func:`jpeg_compression` on (B, 3, H, W) in 0-255: JFIF YCbCr, 4:2:0.

    Returns the decoded RGB in 0-255 (unclamped), a fresh tensor the caller may scale in place.
    """
    b, _, h, w = v.shape
    r, g, bl = v.unbind(1)
    yy = 0.299 * r + 0.587 * g + 0.114 * bl
    chroma = v.new_empty(b, 2, h, w)  # level-shifted (centred at 0)
    cb, cr = chroma.unbind(1)
    torch.mul(r, -0.168735892, out=cb).sub_(0.331264108 * g).add_(0.5 * bl)
    torch.mul(r, 0.5, out=cr).sub_(0.418687589 * g).sub_(0.081312411 * bl)
    if h % 2 or w % 2:
        chroma = F.pad(chroma, (0, w % 2, 0, h % 2), mode="replicate")
    # 2x2 mean (the order of avg_pool2d's sum, so bit for bit the same)
    chroma = (chroma[..., 0::2, 0::2] + chroma[..., 0::2, 1::2] + chroma[..., 1::2, 0::2]).add_(
        chroma[..., 1::2, 1::2]
    ).div_(4.0)
    chroma_t = _quant_tables(q, "chroma").to(v.dtype)
    h2, w2 = chroma.shape[-2:]
    cc = _jpeg_plane(chroma.view(b * 2, h2, w2), chroma_t.repeat_interleave(2, 0), dct2)
    cc = (cc.view(b, 2, h2, w2) + 128.0).clamp_(0.0, 255.0)
    cc = F.interpolate(cc, scale_factor=2.0, mode="bilinear", align_corners=False)[..., :h, :w].sub_(128.0)
    y = (_jpeg_plane(yy.sub_(128.0), luma_t, dct2) + 128.0).clamp_(0.0, 255.0).unsqueeze(1)
    cb, cr = cc[:, :1], cc[:, 1:]
    rgb = v.new_empty(b, 3, h, w)
    torch.add(y, cr, alpha=1.402, out=rgb[:, :1])
    torch.sub(y, cb, alpha=0.344136286, out=rgb[:, 1:2]).sub_(cr, alpha=0.714136286)
    torch.add(y, cb, alpha=1.772, out=rgb[:, 2:])
    return rgb
