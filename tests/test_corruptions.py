"""Behaviour of the corruption engine: registry, batched kernels, fidelity to ImageNet-C.

The reference definitions below are written from the published ImageNet-C formulas
(Hendrycks & Dietterich, ICLR 2019; the ``imagecorruptions`` package) with numpy, OpenCV, SciPy
and PIL; the package itself no longer imports on current setuptools / scikit-image.
"""

from __future__ import annotations

import doctest
import importlib
import io
import math
import pkgutil
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from PIL import Image

import advcorrupt.corruptions
from advcorrupt.corruptions import _registry, available, corrupt, get, register
from advcorrupt.corruptions import functional as Fc
from advcorrupt.corruptions._builtins import LEVELS
from advcorrupt.corruptions.preview import describe, preview_grid

NUAA = Path(__file__).resolve().parents[2] / "shared/data/NUAA-SIRST"
BUILTINS = [
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "motion_blur", "gaussian_blur",
    "brightness", "contrast", "pixelate", "jpeg_compression",
]  # fmt: skip
RANDOM = {"gaussian_noise", "shot_noise", "impulse_noise", "motion_blur"}
DETERMINISTIC = [n for n in BUILTINS if n not in RANDOM]


# ------------------------------------------------------------------------------------------
# reference definitions (numpy / cv2 / scipy / PIL), operating on uint8 images like ImageNet-C
# ------------------------------------------------------------------------------------------
def _ref_disk(radius: float, alias_blur: float) -> np.ndarray:
    if radius <= 8:
        grid, ksize = np.arange(-8, 9), (3, 3)
    else:
        grid, ksize = np.arange(-radius, radius + 1), (5, 5)
    xx, yy = np.meshgrid(grid, grid)
    d = ((xx**2 + yy**2) <= radius**2).astype(np.float32)
    d /= d.sum()
    return cv2.GaussianBlur(d, ksize=ksize, sigmaX=alias_blur)


def ref_defocus_blur(u8: np.ndarray, p: tuple[float, float]) -> np.ndarray:
    return np.clip(cv2.filter2D(u8 / 255.0, -1, _ref_disk(int(p[0]), p[1])), 0, 1)


def ref_gaussian_blur(u8: np.ndarray, p: tuple[float]) -> np.ndarray:
    # skimage.filters.gaussian: mode="nearest", truncate=4.0
    return np.clip(ndi.gaussian_filter(u8 / 255.0, sigma=p[0], mode="nearest", truncate=4.0), 0, 1)


def _ref_shift(img: np.ndarray, dx: int, dy: int) -> np.ndarray:
    out = img
    if dx < 0:
        out = np.roll(out, img.shape[1] + dx, axis=1)
        out[:, dx:] = out[:, dx - 1 : dx]
    elif dx > 0:
        out = np.roll(out, dx, axis=1)
        out[:, :dx] = out[:, dx : dx + 1]
    if dy < 0:
        out = np.roll(out, img.shape[0] + dy, axis=0)
        out[dy:, :] = out[dy - 1 : dy, :]
    elif dy > 0:
        out = np.roll(out, dy, axis=0)
        out[:dy, :] = out[dy : dy + 1, :]
    return out


def ref_motion_blur(u8: np.ndarray, p: tuple[float, float], angle: float) -> np.ndarray:
    radius, sigma = int(p[0]), p[1]
    width = 2 * radius + 1
    k = np.exp(-(np.arange(width) ** 2) / (2 * sigma**2))
    k /= k.sum()
    point = (width * np.sin(np.deg2rad(angle)), width * np.cos(np.deg2rad(angle)))
    hyp = math.hypot(*point)
    out = np.zeros(u8.shape, np.float32)
    for i in range(width):
        dy = -math.ceil(i * point[0] / hyp - 0.5)
        dx = -math.ceil(i * point[1] / hyp - 0.5)
        if abs(dy) >= u8.shape[0] or abs(dx) >= u8.shape[1]:
            break
        out = out + k[i] * _ref_shift(u8, dx, dy)
    return np.clip(out, 0, 255) / 255.0


def ref_pixelate(u8: np.ndarray, p: tuple[float]) -> np.ndarray:
    im = Image.fromarray(u8)
    w, h = im.size
    im = im.resize((int(w * p[0]), int(h * p[0])), Image.BOX).resize((w, h), Image.BOX)
    return np.asarray(im) / 255.0


def ref_jpeg_compression(u8: np.ndarray, p: tuple[float]) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, "JPEG", quality=int(p[0]))
    return np.asarray(Image.open(buf)) / 255.0


def ref_brightness(u8: np.ndarray, p: tuple[float]) -> np.ndarray:
    if u8.ndim == 2:
        return np.clip(u8 / 255.0 + p[0], 0, 1)
    from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

    hsv = rgb_to_hsv(u8 / 255.0)
    hsv[..., 2] = np.clip(hsv[..., 2] + p[0], 0, 1)
    return np.clip(hsv_to_rgb(hsv), 0, 1)


def ref_contrast(u8: np.ndarray, p: tuple[float]) -> np.ndarray:
    x = u8 / 255.0
    m = x.mean(axis=(0, 1), keepdims=True)
    return np.clip((x - m) * p[0] + m, 0, 1)


REFERENCES: dict[str, Callable[[np.ndarray, tuple[float, ...]], np.ndarray]] = {
    "defocus_blur": ref_defocus_blur,
    "gaussian_blur": ref_gaussian_blur,
    "brightness": ref_brightness,
    "contrast": ref_contrast,
    "pixelate": ref_pixelate,
    "jpeg_compression": ref_jpeg_compression,
}
TOLERANCE_255 = {"pixelate": 3.0}  # mean abs diff in 1/255 units; default 1


def ref_noise(name: str, x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    if name == "gaussian_noise":
        return np.clip(x + rng.normal(size=x.shape, scale=p), 0, 1)
    if name == "shot_noise":
        return np.clip(rng.poisson(x * p) / p, 0, 1)
    # skimage.util.random_noise(mode="s&p", amount=p, salt_vs_pepper=0.5)
    out = x.copy()
    flipped = rng.random(x.shape) <= p
    salted = rng.random(x.shape) <= 0.5
    out[flipped & salted] = 1.0
    out[flipped & ~salted] = 0.0
    return out


# ------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nuaa_gray() -> list[np.ndarray]:
    """Three real NUAA-SIRST frames as uint8 gray arrays."""
    if not (NUAA / "images").is_dir():
        pytest.skip(f"NUAA-SIRST not found at {NUAA}")
    paths = sorted((NUAA / "images").glob("*.png"))[:3]
    return [np.asarray(Image.open(p).convert("L")) for p in paths]


@pytest.fixture(scope="module")
def nuaa_rgb(nuaa_gray: list[np.ndarray]) -> np.ndarray:
    """A colourful odd-sized RGB image built from real frames (channels differ)."""
    a, b, c = (g[:201, :233] for g in nuaa_gray)
    return np.ascontiguousarray(np.stack([a, np.roll(b, 17, 0), 255 - c], -1))


@pytest.fixture
def scratch_registry() -> Iterator[None]:
    """Undo registrations made by a test."""
    before = dict(_registry._REGISTRY)
    yield
    _registry._REGISTRY.clear()
    _registry._REGISTRY.update(before)


def _t(u8: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(u8 / 255.0).float()
    return t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]


def _np(t: torch.Tensor) -> np.ndarray:
    a = t[0].double().numpy()
    return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)


def _mad255(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean() * 255)


# ------------------------------------------------------------------------------------------
# registry contents
# ------------------------------------------------------------------------------------------
def test_builtins_are_registered_in_public_order() -> None:
    assert available()[: len(BUILTINS)] == BUILTINS
    assert available("noise") == BUILTINS[:3]
    assert available("blur") == BUILTINS[3:6]
    assert available("digital") == BUILTINS[6:]


def test_every_registered_corruption_has_a_fidelity_or_statistics_test() -> None:
    covered = set(REFERENCES) | {"gaussian_noise", "shot_noise", "impulse_noise", "motion_blur"}
    assert set(available()) <= covered, f"untested corruptions: {set(available()) - covered}"


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_has_five_imagenet_c_levels(name: str) -> None:
    spec = get(name)
    assert spec.num_levels == 5
    assert spec.levels == tuple(tuple(float(v) for v in lv) for lv in LEVELS[name][2])
    assert len(spec.param_names) == len(spec.levels[0])


def test_describe_lists_every_corruption_with_its_levels() -> None:
    text = describe()
    for name in available():
        line = next(ln for ln in text.splitlines() if ln.startswith(name + " "))
        assert get(name).category in line
    assert "(10, 0.5)" in text and "0.38" in text


# ------------------------------------------------------------------------------------------
# generic kernel contract, parametrized over the registry
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", available())
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("hw", [(7, 9), (1, 1), (16, 21)])
def test_output_keeps_shape_dtype_device_and_range(
    name: str, channels: int, dtype: torch.dtype, hw: tuple[int, int]
) -> None:
    x = torch.rand(3, channels, *hw, generator=torch.Generator().manual_seed(1)).to(dtype)
    y = corrupt(x, name, torch.tensor([1, 3, 5]), generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    assert torch.isfinite(y).all()
    assert y.min() >= 0 and y.max() <= 1


@pytest.mark.parametrize("name", available())
def test_empty_batch_returns_empty_batch(name: str) -> None:
    x = torch.rand(0, 1, 8, 8)
    y = corrupt(x, name, 2)
    assert y.shape == (0, 1, 8, 8)
    y = corrupt(x, name, torch.zeros(0, dtype=torch.long))
    assert y.shape == (0, 1, 8, 8)


@pytest.mark.parametrize("name", available())
def test_corruption_changes_the_image(name: str) -> None:
    x = torch.rand(2, 1, 24, 24, generator=torch.Generator().manual_seed(3)) * 0.8 + 0.1
    y = corrupt(x, name, 3, generator=torch.Generator().manual_seed(0))
    assert (y - x).abs().mean() > 1e-3


@pytest.mark.parametrize("name", DETERMINISTIC)
@pytest.mark.parametrize("channels", [1, 3])
def test_per_sample_severity_equals_each_sample_alone(name: str, channels: int) -> None:
    x = torch.rand(5, channels, 37, 30, generator=torch.Generator().manual_seed(2))
    sev = torch.tensor([3, 1, 5, 2, 4])
    batched = corrupt(x, name, sev)
    alone = torch.cat([corrupt(x[i : i + 1], name, int(sev[i])) for i in range(5)])
    torch.testing.assert_close(batched, alone, atol=2e-5, rtol=0)


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_random_corruption_replays_with_the_same_generator_seed(name: str) -> None:
    x = torch.rand(4, 1, 20, 20, generator=torch.Generator().manual_seed(2))
    sev = torch.tensor([1, 5, 2, 4])
    a = corrupt(x, name, sev, generator=torch.Generator().manual_seed(7))
    b = corrupt(x, name, sev, generator=torch.Generator().manual_seed(7))
    c = corrupt(x, name, sev, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_motion_blur_with_fixed_angle_is_per_sample_equal_to_alone() -> None:
    x = torch.rand(3, 1, 45, 50, generator=torch.Generator().manual_seed(2))
    r, s, ang = torch.tensor([10.0, 20.0, 15.0]), torch.tensor([3.0, 15.0, 8.0]), torch.tensor([-45.0, 12.5, 45.0])
    batched = Fc.motion_blur(x, r, s, angle=ang)
    alone = torch.cat([Fc.motion_blur(x[i : i + 1], r[i : i + 1], s[i : i + 1], angle=ang[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, alone, atol=2e-5, rtol=0)


@pytest.mark.parametrize(
    ("fn", "args", "kw"),
    [
        (Fc.defocus_blur, (torch.tensor([3.0, 6.0]), torch.tensor([0.1, 0.5])), {"max_radius": 30.0}),
        (Fc.motion_blur, (torch.tensor([10.0, 15.0]), torch.tensor([3.0, 5.0])), {"max_radius": 25.0}),
        (Fc.gaussian_blur, (torch.tensor([1.0, 2.0]),), {"max_sigma": 9.0}),
        (Fc.pixelate, (torch.tensor([0.6, 0.25]),), {"max_factor": 0.95}),
    ],
)
def test_kernel_stack_bound_does_not_change_the_result(fn: Callable[..., torch.Tensor], args: tuple, kw: dict) -> None:
    x = torch.rand(2, 1, 40, 40, generator=torch.Generator().manual_seed(4))
    if fn is Fc.motion_blur:
        kw = {**kw, "angle": torch.tensor([10.0, -30.0])}
        exact = fn(x, *args, angle=kw["angle"])
    else:
        exact = fn(x, *args)
    # On CPU the exact maximum is used; emulate an accelerator's static bound by patching it where
    # the kernel looks it up (its family module, e.g. advcorrupt.corruptions.blur).
    bound = float(next(iter(v for k, v in kw.items() if k.startswith("max_"))))
    big = {k: v for k, v in kw.items() if not k.startswith("max_")}
    big_args = tuple(a.clone() for a in args)
    calls: list[float | None] = []

    def static_bound(p: torch.Tensor, static: float | None) -> float:
        calls.append(static)
        return bound

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys.modules[fn.__module__], "_bmax", static_bound)
        loose = fn(x, *big_args, **big)
    assert calls, f"{fn.__name__} never asked {fn.__module__}._bmax for its bound: the patch tested nothing"
    torch.testing.assert_close(loose, exact, atol=2e-5, rtol=0)


CORRUPTION_MODULES = sorted(
    info.name for info in pkgutil.iter_modules(advcorrupt.corruptions.__path__, "advcorrupt.corruptions.")
)


def test_kernel_families_are_modules_of_the_corruptions_package() -> None:
    for family in ("noise", "blur", "digital", "_common", "functional"):
        assert f"advcorrupt.corruptions.{family}" in CORRUPTION_MODULES


@pytest.mark.parametrize("module_name", ["advcorrupt.corruptions", *CORRUPTION_MODULES])
def test_docstring_examples_run(module_name: str, scratch_registry: None) -> None:
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{module_name}: {result.failed} of {result.attempted} doctest(s) failed"


@pytest.mark.parametrize(
    ("module_name", "kernels"),
    [
        ("advcorrupt.corruptions.noise", ["gaussian_noise", "shot_noise", "impulse_noise", "noise_mix"]),
        ("advcorrupt.corruptions.blur", ["defocus_blur", "motion_blur", "gaussian_blur", "blur_mix",
                                         "defocus_kernel", "motion_blur_kernel", "gaussian_blur_kernel"]),
        ("advcorrupt.corruptions.digital", ["brightness", "contrast", "pixelate", "jpeg_compression"]),
    ],
)
def test_every_kernel_has_a_docstring_example_that_runs(module_name: str, kernels: list[str]) -> None:
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for name in kernels:
        tests = [t for t in finder.find(getattr(module, name), name, globs=vars(module)) if t.examples]
        assert tests, f"{module_name}.{name} has no Example"
        for t in tests:
            assert runner.run(t).failed == 0, f"{module_name}.{name}: its Example fails"


def test_functional_reexports_every_kernel_from_its_family_module() -> None:
    from advcorrupt.corruptions import blur, digital, noise

    assert sorted(Fc.__all__) == sorted([*noise.__all__, *blur.__all__, *digital.__all__])
    for name in Fc.__all__:
        obj = getattr(Fc, name)
        assert obj.__module__ in {"advcorrupt.corruptions.noise", "advcorrupt.corruptions.blur",
                                  "advcorrupt.corruptions.digital"}, (name, obj.__module__)
        assert getattr(importlib.import_module(obj.__module__), name) is obj
    for private in ("_bmax", "_emulate_accelerator", "_host_reads_ok", "_motion_weights", "_motion_scatter",
                    "_correlate_per_sample", "_pixelate_plan", "_pixelate_planned"):
        assert callable(getattr(Fc, private)), private


# ------------------------------------------------------------------------------------------
# fidelity on real NUAA-SIRST frames
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(REFERENCES))
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_deterministic_corruption_matches_imagenet_c_reference(
    nuaa_gray: list[np.ndarray], name: str, severity: int
) -> None:
    params = get(name).levels[severity - 1]
    tol = TOLERANCE_255.get(name, 1.0)
    for u8 in nuaa_gray:
        got = _np(corrupt(_t(u8), name, severity))
        assert _mad255(got, REFERENCES[name](u8, params)) <= tol


@pytest.mark.parametrize("name", ["jpeg_compression", "brightness", "contrast", "defocus_blur", "pixelate"])
def test_rgb_corruption_matches_imagenet_c_reference(nuaa_rgb: np.ndarray, name: str) -> None:
    for severity in (1, 5):
        params = get(name).levels[severity - 1]
        ref = REFERENCES[name](nuaa_rgb, params) if name != "defocus_blur" else np.stack(
            [ref_defocus_blur(nuaa_rgb[..., c], params) for c in range(3)], -1
        )
        got = _np(corrupt(_t(nuaa_rgb), name, severity))
        assert _mad255(got, ref) <= TOLERANCE_255.get(name, 1.0)


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_motion_blur_with_fixed_angle_matches_reference(nuaa_gray: list[np.ndarray], severity: int) -> None:
    r, s = get("motion_blur").levels[severity - 1]
    for angle, u8 in zip((-45.0, 17.3, 45.0), nuaa_gray):
        got = _np(Fc.motion_blur(_t(u8), r, s, angle=angle))
        assert _mad255(got, ref_motion_blur(u8, (r, s), angle)) <= 1.0


def test_motion_blur_angles_are_uniform_in_plus_minus_45_degrees() -> None:
    # Across a horizontal edge, a line tilted down (angle > 0) brightens the row above the edge
    # and one tilted up (angle < 0) darkens the row below it; about half the samples each.
    x = torch.zeros(400, 1, 41, 41)
    x[:, :, 20:] = 1.0
    y = corrupt(x, "motion_blur", 1, generator=torch.Generator().manual_seed(0))
    down = y[:, 0, 19, 20] > 1e-3
    up = y[:, 0, 20, 20] < 1 - 1e-3
    assert not (down & up).any()
    assert 0.4 < down.float().mean().item() < 0.55
    assert 0.4 < up.float().mean().item() < 0.55


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "impulse_noise"])
@pytest.mark.parametrize("severity", [1, 3, 5])
def test_noise_statistics_match_reference(nuaa_gray: list[np.ndarray], name: str, severity: int) -> None:
    p = get(name).levels[severity - 1][0]
    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(0)
    ours, refs = [], []
    for u8 in nuaa_gray:
        x = u8 / 255.0
        got = _np(corrupt(_t(u8), name, severity, generator=gen)) - x
        ref = ref_noise(name, x, p, rng) - x
        if name == "impulse_noise":  # fraction of changed pixels
            ours.append(np.mean(np.abs(got) > 1e-6))
            refs.append(np.mean(np.abs(ref) > 1e-6))
        else:  # residual standard deviation and mean
            ours.append(got.std())
            refs.append(ref.std())
            assert abs(got.mean() - ref.mean()) < 0.05 * ref.std() + 1e-3
    assert abs(np.mean(ours) / np.mean(refs) - 1) < 0.05


def _psnr(y: torch.Tensor, x: torch.Tensor) -> float:
    return float(-10 * torch.log10(((y.double() - x.double()) ** 2).mean()))


@pytest.mark.parametrize("name", available())
def test_damage_grows_with_severity_on_a_real_image(nuaa_gray: list[np.ndarray], name: str) -> None:
    # Frame 2 (Misc_10): on frame 1 even the reference pixelate is not monotone (see below).
    x = _t(nuaa_gray[1])
    psnr = [
        _psnr(corrupt(x, name, s, generator=torch.Generator().manual_seed(0)), x)
        for s in range(1, get(name).num_levels + 1)
    ]
    assert all(a > b for a, b in zip(psnr, psnr[1:])), f"PSNR by level: {psnr}"


def test_pixelate_damage_follows_the_reference_where_levels_are_not_monotone(nuaa_gray: list[np.ndarray]) -> None:
    # Misc_1 has a fine texture that a factor of 0.5 preserves better than 0.6, in the
    # ImageNet-C definition too: our PSNR per level must track the reference's.
    u8 = nuaa_gray[0]
    x = _t(u8)
    ours = [_psnr(corrupt(x, "pixelate", s), x) for s in range(1, 6)]
    ref = [_psnr(_t((ref_pixelate(u8, lv) * 255).round().astype(np.uint8)), x) for lv in get("pixelate").levels]
    assert ref[1] > ref[0]  # the reference's own non-monotonicity on this frame
    assert max(abs(a - b) for a, b in zip(ours, ref)) < 0.3


# ------------------------------------------------------------------------------------------
# kernel-level behaviour
# ------------------------------------------------------------------------------------------
def test_brightness_turns_black_rgb_pixels_gray_and_keeps_hue() -> None:
    x = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.25, 0.0]]).T.reshape(1, 3, 1, 2)
    y = Fc.brightness(x, torch.tensor([0.2]))
    torch.testing.assert_close(y[0, :, 0, 0], torch.full((3,), 0.2))
    torch.testing.assert_close(y[0, :, 0, 1], torch.tensor([0.7, 0.35, 0.0]))


def test_contrast_keeps_the_per_channel_mean() -> None:
    x = torch.rand(2, 3, 10, 12, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    y = Fc.contrast(x, torch.tensor([0.3, 0.05]))
    torch.testing.assert_close(y.mean((2, 3)), x.mean((2, 3)), atol=1e-6, rtol=0)
    assert y.std((2, 3)).lt(x.std((2, 3))).all()


def test_defocus_kernels_are_normalised_disks() -> None:
    k = Fc.defocus_kernel(torch.tensor([3.0, 10.0]), torch.tensor([0.1, 0.5]))
    assert k.shape == (2, 21, 21)
    torch.testing.assert_close(k.sum((1, 2)), torch.ones(2), atol=2e-2, rtol=0)
    for i, r in enumerate((3, 10)):
        ref = np.zeros((21, 21), np.float32)
        d = _ref_disk(r, (0.1, 0.5)[i])
        o = (21 - d.shape[0]) // 2
        ref[o : o + d.shape[0], o : o + d.shape[1]] = d
        np.testing.assert_allclose(k[i].numpy(), ref, atol=1e-6)


def test_jpeg_pads_odd_sizes_and_damage_grows_as_quality_falls() -> None:
    x = torch.rand(1, 1, 13, 11, generator=torch.Generator().manual_seed(0))
    errs = [(Fc.jpeg_compression(x, float(q)) - x).abs().mean() for q in (95, 50, 10)]
    assert errs[0] < errs[1] < errs[2]


def test_impulse_noise_sets_values_to_exact_zero_or_one() -> None:
    x = torch.full((1, 1, 100, 100), 0.5)
    y = Fc.impulse_noise(x, torch.tensor([0.2]), generator=torch.Generator().manual_seed(0))
    changed = y != 0.5
    assert set(y[changed].unique().tolist()) == {0.0, 1.0}
    assert abs(changed.float().mean().item() - 0.2) < 0.02


def test_kernel_rejects_parameter_of_wrong_length() -> None:
    with pytest.raises(ValueError, match=r"sigma must have shape \(B,\) = \(2,\)"):
        Fc.gaussian_noise(torch.rand(2, 1, 4, 4), torch.tensor([0.1, 0.2, 0.3]))


# ------------------------------------------------------------------------------------------
# registry errors and user corruptions
# ------------------------------------------------------------------------------------------
def test_unknown_name_raises_key_error_listing_names() -> None:
    with pytest.raises(KeyError, match="gaussian_noise.*jpeg_compression"):
        corrupt(torch.rand(1, 1, 4, 4), "fog", 1)


def test_user_corruption_works_in_corrupt_and_action_space(scratch_registry: None) -> None:
    from advcorrupt.policy.action_space import ActionSpace

    @register("invert_blend", severities=(0.25, 0.5, 1.0))
    def invert_blend(x: torch.Tensor, alpha: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        a = alpha.view(-1, 1, 1, 1).to(x.dtype)
        return (1 - a) * x + a * (1 - x)

    assert available()[-1] == "invert_blend" and get("invert_blend").category == "custom"
    x = torch.rand(3, 1, 6, 6)
    y = corrupt(x, "invert_blend", torch.tensor([1, 2, 3]))
    torch.testing.assert_close(y[2], 1 - x[2])
    space = ActionSpace(["contrast", "invert_blend"], severities=(1, 3))
    out = space.apply(x, torch.tensor([3, 3, 0]))
    torch.testing.assert_close(out[:2], 1 - x[:2])


def test_registering_a_name_twice_warns(scratch_registry: None) -> None:
    def dummy(x: torch.Tensor, p: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        return x

    register("twice", severities=(1.0,))(dummy)
    with pytest.warns(UserWarning, match="already registered"):
        register("twice", severities=(2.0,))(dummy)
    assert get("twice").levels == ((2.0,),)


@pytest.mark.parametrize(
    ("x", "severity", "error", "match"),
    [
        (torch.randint(0, 255, (1, 1, 8, 8), dtype=torch.uint8), 1, TypeError, "float in \\[0, 1\\].*uint8"),
        (torch.rand(1, 8, 8), 1, ValueError, "shape \\(B, C, H, W\\).*3 dimension"),
        (torch.rand(1, 2, 8, 8), 1, ValueError, "C = 1 or 3.*C = 2"),
        (torch.rand(2, 1, 8, 8), 0, ValueError, "severity must be in \\[1, 5\\]; got 0"),
        (torch.rand(2, 1, 8, 8), 6, ValueError, "severity must be in \\[1, 5\\]; got 6"),
        (torch.rand(2, 1, 8, 8), torch.tensor([1, 2, 3]), ValueError, "shape \\(B,\\) = \\(2,\\)"),
        (torch.rand(2, 1, 8, 8), torch.tensor([1.0, 2.0]), TypeError, "integer tensor.*float32"),
        (torch.rand(2, 1, 8, 8), torch.tensor([1, 6]), ValueError, "range \\[1, 6\\]"),
        (torch.rand(2, 1, 8, 8), True, TypeError, "bool"),
        ([[0.5]], 1, TypeError, "torch.Tensor"),
    ],
)
def test_bad_input_raises_clear_error(x: object, severity: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        corrupt(x, "gaussian_blur", severity)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# preview and CLI
# ------------------------------------------------------------------------------------------
def test_preview_grid_writes_a_png_with_one_row_per_corruption(tmp_path: Path) -> None:
    out = preview_grid(torch.rand(1, 24, 24), tmp_path / "g.png", corruptions=["contrast", "pixelate"], severities=(1, 5))
    with Image.open(out) as im:
        w, h = im.size
    assert out.exists() and w > h  # 3 columns, 2 rows


def test_preview_grid_rejects_bad_image(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="\\(1, H, W\\) or \\(3, H, W\\)"):
        preview_grid(torch.rand(2, 8, 8), tmp_path / "g.png")


def test_cli_lists_corruptions_and_writes_preview(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from advcorrupt.cli import main

    assert main(["corruptions"]) == 0
    listing = capsys.readouterr().out
    assert all(n in listing for n in BUILTINS)
    rgba = (np.random.default_rng(0).random((20, 18, 4)) * 255).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "in.png")
    code = main(["corruptions", "--preview", str(tmp_path / "g.png"), "--image", str(tmp_path / "in.png"),
                 "--corruptions", "brightness", "--severities", "2", "--seed", "3"])  # fmt: skip
    assert code == 0 and (tmp_path / "g.png").exists()


# ------------------------------------------------------------------------------------------
# CUDA
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BUILTINS)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_output_stays_on_device_without_host_sync_and_matches_cpu(name: str, channels: int) -> None:
    x = torch.rand(4, channels, 67, 90, generator=torch.Generator().manual_seed(0))
    sev = torch.tensor([1, 2, 4, 5])
    xc, sevc = x.cuda(), sev.cuda()
    gen = torch.Generator(device="cuda").manual_seed(0)
    corrupt(xc, name, sevc, generator=gen)  # warm-up (plans, caches)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        y = corrupt(xc, name, sevc, generator=gen)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert y.device.type == "cuda" and y.dtype == x.dtype and y.shape == x.shape
    if name not in RANDOM:
        ref = corrupt(x, name, sev)
        diff = (y.cpu() - ref).abs()
        assert diff.mean() < 5e-4
        if name != "jpeg_compression":  # a rounding flip can move one JPEG block
            assert diff.max() < 5e-3


@pytest.mark.parametrize("name", sorted(RANDOM))
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_generator_replays_random_corruptions(name: str) -> None:
    x = torch.rand(3, 1, 32, 32, device="cuda")
    a = corrupt(x, name, 3, generator=torch.Generator(device="cuda").manual_seed(1))
    b = corrupt(x, name, 3, generator=torch.Generator(device="cuda").manual_seed(1))
    assert torch.equal(a, b) and (a - x).abs().mean() > 1e-3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_half_precision_inputs_work() -> None:
    x = torch.rand(2, 3, 33, 40, device="cuda")
    for name in BUILTINS:
        for dt in (torch.float16, torch.bfloat16):
            y = corrupt(x.to(dt), name, 3, generator=torch.Generator(device="cuda").manual_seed(0))
            assert y.dtype == dt and torch.isfinite(y).all()


def test_no_warnings_on_plain_use() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in BUILTINS:
            corrupt(torch.rand(2, 1, 12, 12), name, 2, generator=torch.Generator().manual_seed(0))


# ------------------------------------------------------------------------------------------
# fixed-shape kernels for mixed batches (noise_mix, blur_mix)
# ------------------------------------------------------------------------------------------
def test_blur_mix_equals_each_blur_per_sample_with_the_same_generator() -> None:
    x = torch.rand(6, 1, 40, 36, generator=torch.Generator().manual_seed(3))
    which = torch.tensor([0, 1, 2, 2, 1, 0])
    r_def, alias = torch.tensor([3.0, 4, 6, 10, 3, 10]), torch.tensor([0.1, 0.5, 0.5, 0.5, 0.1, 0.5])
    r_mot, s_mot = torch.tensor([10.0, 15, 15, 20, 10, 15]), torch.tensor([3.0, 5, 8, 15, 3, 12])
    s_gau = torch.tensor([1.0, 2, 3, 6, 1, 4])
    mixed = Fc.blur_mix(
        x, which, defocus=(r_def, alias), motion=(r_mot, s_mot), gaussian_sigma=s_gau, pad=40,
        generator=torch.Generator().manual_seed(7),
    )
    alone = {
        0: Fc.defocus_blur(x, r_def, alias),
        1: Fc.motion_blur(x, r_mot, s_mot, generator=torch.Generator().manual_seed(7)),  # same angle draw
        2: Fc.gaussian_blur(x, s_gau),
    }
    for i, k in enumerate(which.tolist()):
        torch.testing.assert_close(mixed[i], alone[k][i], atol=2e-5, rtol=0)


def test_blur_mix_default_pad_equals_a_larger_static_pad() -> None:
    x = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(1))
    which, s = torch.tensor([2, 5]), torch.tensor([1.0, 2.0])  # 5: no blur
    exact = Fc.blur_mix(x, which, gaussian_sigma=s)
    torch.testing.assert_close(exact, Fc.blur_mix(x, which, gaussian_sigma=s, pad=30), atol=2e-5, rtol=0)
    torch.testing.assert_close(exact[1], x[1], atol=2e-6, rtol=0)


@pytest.mark.parametrize(("code", "name", "param"), [(0, "gaussian_noise", 0.18), (1, "shot_noise", 12.0)])
def test_noise_mix_residuals_match_the_single_kernel_in_distribution(code: int, name: str, param: float) -> None:
    x = torch.rand(4, 1, 128, 128, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    which = torch.full((4,), code)
    kw = {"sigma": param} if code == 0 else {"lam": param}
    mixed = Fc.noise_mix(x, which, **kw, generator=torch.Generator().manual_seed(1)) - x
    single = getattr(Fc, name)(x, param, generator=torch.Generator().manual_seed(2)) - x
    assert abs(float(mixed.std() / single.std()) - 1) < 0.03
    assert abs(float(mixed.mean() - single.mean())) < 0.02 * float(single.std())


def test_noise_mix_impulse_replaces_the_right_fraction_half_salt() -> None:
    x = torch.full((2, 1, 200, 200), 0.5)
    amount = torch.tensor([0.03, 0.27])
    out = Fc.noise_mix(x, torch.tensor([2, 2]), amount=amount, generator=torch.Generator().manual_seed(0))
    changed = (out != 0.5).float().mean((1, 2, 3))
    assert torch.allclose(changed, torch.tensor([0.03, 0.27]), atol=0.005)
    assert set(out.unique().tolist()) == {0.0, 0.5, 1.0}
    salt = (out == 1).float().sum() / (out != 0.5).float().sum()
    assert abs(float(salt) - 0.5) < 0.02


def test_noise_mix_gives_each_sample_its_own_noise_and_keeps_others() -> None:
    x = torch.full((4, 1, 64, 64), 0.5)
    out = Fc.noise_mix(
        x, torch.tensor([0, 1, 2, 3]), sigma=0.12, lam=25.0, amount=0.09, generator=torch.Generator().manual_seed(0)
    )
    res = out - x
    assert 0.1 < float(res[0].std()) < 0.14  # Gaussian: std 0.12, continuous values
    assert float(res[1].std()) == pytest.approx((0.5 / 25.0) ** 0.5, rel=0.1)  # Poisson: var = x / lam
    assert torch.allclose(out[1] * 25.0, (out[1] * 25.0).round(), atol=1e-4)  # counts / lam
    assert set(out[2].unique().tolist()) == {0.0, 0.5, 1.0}
    assert torch.equal(out[3], x[3])


def test_noise_mix_replays_and_keeps_dtype() -> None:
    x = torch.rand(3, 3, 16, 16).to(torch.bfloat16)
    kw = {"sigma": 0.1, "lam": 5.0, "amount": 0.1}
    a = Fc.noise_mix(x, torch.tensor([0, 1, 2]), **kw, generator=torch.Generator().manual_seed(3))
    b = Fc.noise_mix(x, torch.tensor([0, 1, 2]), **kw, generator=torch.Generator().manual_seed(3))
    assert a.dtype == torch.bfloat16 and torch.equal(a, b) and 0 <= float(a.min()) and float(a.max()) <= 1
    with pytest.raises(ValueError, match=r"which must be a \(B,\) = \(3,\) tensor; got \(2,\)"):
        Fc.noise_mix(x, torch.tensor([0, 1]), sigma=0.1)
