"""The fast three-channel paths equal the implementations they replaced (to float rounding).

Frozen copies of the previous ``brightness``, ``jpeg_compression`` and ``ActionSpace.apply``
subset loop are the oracles: for C = 3 the new outputs match them within 1e-5 on [0, 1]
images, for C = 1 bit for bit (the golden training run depends on it).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from advcorrupt import ActionSpace
from advcorrupt.corruptions import available, corrupt, digital
from advcorrupt.corruptions._common import _finish, _param, _work

SHAPES = [(1, 3, 13, 11), (2, 3, 17, 8), (5, 3, 9, 7), (2, 3, 180, 240)]
GRAY = [(1, 1, 13, 11), (2, 1, 17, 8), (5, 1, 9, 7), (2, 1, 180, 240)]
TOL = 1e-5


# ---- frozen oracles: the implementations before the three-channel speed-up -------------------
def _old_brightness(x: Tensor, delta: Tensor) -> Tensor:
    xf = _work(x)
    d = _param(delta, x, "delta").to(xf.dtype).view(-1, 1, 1, 1)
    if x.shape[1] == 1:
        return _finish(xf + d, x)
    v = xf.amax(1, keepdim=True)
    v_new = (v + d).clamp_(max=1.0)
    scale = torch.where(v > 0, v_new / v.clamp(min=1e-12), torch.zeros_like(v))
    out = torch.where(v > 0, xf * scale, v_new.expand_as(xf))
    return _finish(out, x)


def _old_jpeg(x: Tensor, quality: Tensor) -> Tensor:
    xf = x.float() if x.dtype != torch.float64 else x
    q = _param(quality, x, "quality")
    dct2 = digital._constant("dct", x.device, xf.dtype)
    luma_t = digital._quant_tables(q, "luma").to(xf.dtype)
    plane = digital._jpeg_plane
    v = xf * 255.0
    b, c, h, w = x.shape
    if c == 1:
        y = plane(v[:, 0] - 128.0, luma_t, dct2) + 128.0
        return _finish((y.clamp_(0.0, 255.0) / 255.0).unsqueeze(1), x)
    r, g, bl = v.unbind(1)
    yy = 0.299 * r + 0.587 * g + 0.114 * bl
    cb = -0.168735892 * r - 0.331264108 * g + 0.5 * bl
    cr = 0.5 * r - 0.418687589 * g - 0.081312411 * bl
    chroma = torch.stack((cb, cr), 1)
    if h % 2 or w % 2:
        chroma = F.pad(chroma, (0, w % 2, 0, h % 2), mode="replicate")
    chroma = F.avg_pool2d(chroma, 2)
    chroma_t = digital._quant_tables(q, "chroma").to(xf.dtype)
    h2, w2 = chroma.shape[-2:]
    cc = plane(chroma.reshape(b * 2, h2, w2), chroma_t.repeat_interleave(2, 0), dct2)
    cc = (cc.view(b, 2, h2, w2) + 128.0).clamp_(0.0, 255.0)
    cc = F.interpolate(cc, scale_factor=2.0, mode="bilinear", align_corners=False)[..., :h, :w] - 128.0
    y = (plane(yy - 128.0, luma_t, dct2) + 128.0).clamp_(0.0, 255.0)
    cb, cr = cc.unbind(1)
    rgb = torch.stack((y + 1.402 * cr, y - 0.344136286 * cb - 0.714136286 * cr, y + 1.772 * cb), 1)
    return _finish(rgb / 255.0, x)


def _old_subset_apply(space: ActionSpace, x: Tensor, actions: Tensor, generator: torch.Generator) -> Tensor:
    kind, severity = space.decode(actions)
    order = torch.argsort(kind, stable=True)
    counts = torch.bincount(kind, minlength=space.num_corruptions).tolist()
    out = torch.empty_like(x)
    start = 0
    for spec, n in zip(space.specs, counts):
        if n:
            idx = order[start : start + n]
            part = spec.fn(x[idx], spec.params_for(severity[idx]), generator)
            out[idx] = part.to(x.dtype).clamp_(0.0, 1.0)
            start += n
    return out


OLD = {"brightness": _old_brightness, "jpeg_compression": _old_jpeg}
LEVELS = {"brightness": (0.1, 0.2, 0.3, 0.4, 0.5), "jpeg_compression": (25.0, 18.0, 15.0, 10.0, 7.0)}


def _images(shape: tuple[int, ...], seed: int = 0) -> Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


# ---- tests ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(OLD))
@pytest.mark.parametrize("shape", SHAPES)
def test_rgb_kernel_matches_old_implementation_to_rounding(name: str, shape: tuple[int, ...]) -> None:
    x = _images(shape)
    for level, p in enumerate(LEVELS[name], 1):
        old = OLD[name](x, torch.full((shape[0],), p))
        new = corrupt(x, name, level)
        assert (new - old).abs().max().item() <= TOL, (name, level)


@pytest.mark.parametrize("name", sorted(OLD))
def test_rgb_kernel_matches_old_with_per_sample_levels_and_black_pixels(name: str) -> None:
    x = _images((5, 3, 19, 14), seed=1)
    x[:, :, :3, :4] = 0.0  # V = 0: brightness' gray branch
    levels = torch.tensor([1, 2, 3, 4, 5])
    params = torch.tensor(LEVELS[name])[levels - 1]
    assert (corrupt(x, name, levels) - OLD[name](x, params)).abs().max().item() <= TOL


@pytest.mark.parametrize("name", sorted(OLD))
@pytest.mark.parametrize("shape", GRAY)
def test_gray_kernel_is_bit_identical_to_old_implementation(name: str, shape: tuple[int, ...]) -> None:
    x = _images(shape, seed=2)
    for level, p in enumerate(LEVELS[name], 1):
        assert torch.equal(corrupt(x, name, level), OLD[name](x, torch.full((shape[0],), p))), (name, level)


def _mixed(c: int, b: int = 16, h: int = 45, w: int = 60) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(b, c, h, w, generator=g) * 0.8 + 0.1
    return x, torch.randint(0, 30, (b,), generator=g)


@pytest.mark.parametrize("c", [1, 3])
def test_subset_apply_matches_old_loop_with_the_same_random_draws(c: int) -> None:
    space = ActionSpace(grouping="subset")
    x, actions = _mixed(c)
    new = space.apply(x, actions, generator=torch.Generator().manual_seed(5))
    old = _old_subset_apply(space, x, actions, torch.Generator().manual_seed(5))
    if c == 1:
        assert torch.equal(new, old)
    else:
        assert (new - old).abs().max().item() <= TOL


def test_subset_apply_every_corruption_and_level_rgb_matches_old_loop() -> None:
    space = ActionSpace(grouping="subset", severities=(1, 2, 3, 4, 5))
    x = _images((space.size, 3, 23, 18), seed=3)
    actions = torch.randperm(space.size, generator=torch.Generator().manual_seed(4))
    new = space.apply(x, actions, generator=torch.Generator().manual_seed(6))
    old = _old_subset_apply(space, x, actions, torch.Generator().manual_seed(6))
    assert (new - old).abs().max().item() <= TOL
    assert len(space.corruptions) == len(available())


def test_subset_apply_still_rejects_out_of_range_images() -> None:
    space = ActionSpace(grouping="subset")
    x, actions = _mixed(3, b=4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        space.apply(x * 255.0, actions)
