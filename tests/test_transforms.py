"""advcorrupt.transforms: RandomCorruption (batched nn.Module) and the albumentations wrapper."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch

from advcorrupt.corruptions import available, corrupt
from advcorrupt.transforms import AlbumentationsCorruption, RandomCorruption


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_random_corruption_matches_the_kernel_of_each_drawn_action() -> None:
    aug = RandomCorruption(["brightness", "contrast"], severities=(2, 4))
    x = torch.rand(8, 1, 16, 16)
    out = aug(x, generator=_gen(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    kinds, sevs = aug.action_space.decode(aug.last_actions)
    for i in range(8):  # both corruptions are deterministic: per-sample kernel output must match
        want = corrupt(x[i : i + 1], aug.action_space.corruptions[int(kinds[i])], int(sevs[i]))
        torch.testing.assert_close(out[i : i + 1], want)


def test_random_corruption_replays_with_a_seeded_generator_and_draws_per_sample() -> None:
    aug = RandomCorruption()
    x = torch.rand(16, 3, 16, 16)
    a = aug(x, generator=_gen(3))
    actions = aug.last_actions.clone()
    b = aug(x, generator=_gen(3))
    assert torch.equal(a, b) and torch.equal(actions, aug.last_actions)
    assert len(set(actions.tolist())) > 1, "every sample draws its own action"
    aug(x, generator=_gen(4))
    assert not torch.equal(actions, aug.last_actions)


def test_random_corruption_p_zero_is_identity_and_p_blends_per_sample() -> None:
    x = torch.rand(32, 1, 8, 8)
    none = RandomCorruption(["contrast"], severities=(5,), p=0.0)
    assert torch.equal(none(x), x) and bool((none.last_actions == -1).all())
    half = RandomCorruption(["contrast"], severities=(5,), p=0.5)
    out = half(x, generator=_gen(0))
    kept = half.last_actions == -1
    assert 0 < int(kept.sum()) < 32
    assert torch.equal(out[kept], x[kept])
    assert not torch.equal(out[~kept], x[~kept])


def test_random_corruption_takes_a_single_image_and_the_constructor_generator() -> None:
    x = torch.rand(1, 12, 12)
    a = RandomCorruption(generator=_gen(5))(x)
    b = RandomCorruption(generator=_gen(5))(x)
    assert a.shape == (1, 12, 12) and torch.equal(a, b)


def test_random_corruption_rejects_bad_arguments_clearly() -> None:
    with pytest.raises(KeyError, match="gaussian_noise"):
        RandomCorruption(["no_such_corruption"])
    with pytest.raises(ValueError, match=r"severities must be in \[1, 5\]"):
        RandomCorruption(severities=(0, 6))
    with pytest.raises(ValueError, match="p must be a probability"):
        RandomCorruption(p=1.5)
    with pytest.raises(TypeError, match="uint8"):
        RandomCorruption()(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="C = 1 or 3"):
        RandomCorruption()(torch.rand(2, 4, 8, 8))


@pytest.mark.parametrize("shape", [(16, 16), (16, 16, 1), (16, 16, 3)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_albumentations_wrapper_keeps_shape_and_dtype(shape: tuple[int, ...], dtype: type) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, shape).astype(np.uint8)
    img = img if dtype is np.uint8 else (img / 255.0).astype(np.float32)
    out = A.Compose([AlbumentationsCorruption(["gaussian_noise"], severities=(5,), p=1.0)], seed=0)(image=img)["image"]
    assert out.shape == img.shape and out.dtype == img.dtype
    assert not np.array_equal(out, img)


def test_albumentations_wrapper_uses_the_shared_kernel_and_replays_with_compose_seed() -> None:
    img = np.random.default_rng(1).random((20, 24), dtype=np.float32)
    out = A.Compose([AlbumentationsCorruption(["defocus_blur"], severities=(3,), p=1.0)], seed=0)(image=img)["image"]
    want = corrupt(torch.from_numpy(img)[None, None], "defocus_blur", 3)[0, 0].numpy()
    np.testing.assert_allclose(out, want, atol=1e-6)
    noisy = [
        A.Compose([AlbumentationsCorruption(["shot_noise"], severities=(3,))], seed=s)(image=img)["image"]
        for s in (7, 7, 8)
    ]
    assert np.array_equal(noisy[0], noisy[1]) and not np.array_equal(noisy[0], noisy[2])


def test_albumentations_wrapper_rejects_bad_images_and_names() -> None:
    t = AlbumentationsCorruption(["contrast"], p=1.0)
    with pytest.raises(ValueError, match=r"\(H, W, 3\); got \(8, 8, 4\)"):
        t(image=np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(TypeError, match="uint8.*float.*int32"):
        t(image=np.zeros((8, 8), np.int32))
    with pytest.raises(KeyError, match=", ".join(available()[:2])):
        AlbumentationsCorruption(["nope"])
