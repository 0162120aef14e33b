"""Property-based fuzzing of the public entry points (GitHub issue 13).

Each test throws random shapes, dtypes, value ranges (NaN, inf, empty, huge, 0-255),
integer/boolean tensors and wrong types at one entry point and asserts the contract: the call
either returns a valid result (right shape and dtype, finite, in range) or raises the documented
error type (``TypeError``/``ValueError``/``KeyError``) with a message naming the argument. A valid
input that raises, or an invalid one that returns, fails the test.

Example counts are bounded (the default profile costs a few seconds); set
``ADVCORRUPT_FUZZ=long`` for a profile with 20x more examples.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from advcorrupt import ActionSpace, AdversarialCorruptionTrainer, PolicyNetwork, SFIM, corruptions, metrics  # noqa: E402
from advcorrupt.data import BadFileError, ISTDDataset, SyntheticIRSTD  # noqa: E402
from advcorrupt.models import create_model  # noqa: E402

settings.register_profile(
    "ci", max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
settings.register_profile("long", max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile("long" if os.environ.get("ADVCORRUPT_FUZZ") == "long" else "ci")

pytestmark = pytest.mark.usefixtures("one_thread")

DOCUMENTED = (TypeError, ValueError, KeyError)
FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
OTHERS = (torch.uint8, torch.int64, torch.int32, torch.bool)
VALUES = ("unit", "byte", "nan", "inf", "neg_inf", "huge", "negative", "zeros", "ones")
# Inputs a module with float32 weights can take: float32, or a non-float dtype it refuses itself.
# Another float dtype meets torch's own dtype-mismatch RuntimeError (tested apart, see below).
AS_WEIGHTS = (torch.float32, *OTHERS)
# Finite values of a sane size: "huge" (1e30) is a finite input to a module that imposes no
# range, for whose output nothing is promised (tested apart: accepted, right shape).
SANE = tuple(v for v in VALUES if v != "huge")


# ------------------------------------------------------------------------------- input generators
def _fill(shape: tuple[int, ...], dtype: torch.dtype, values: str, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    if values == "byte":
        x = (x * 255).round()
    elif values == "huge":
        x = x * 1e30
    elif values == "negative":
        x = x - 1.5
    elif values == "zeros":
        x = torch.zeros(shape, dtype=torch.float64)
    elif values == "ones":
        x = torch.ones(shape, dtype=torch.float64)
    elif values in ("nan", "inf", "neg_inf") and x.numel():
        flat = x.view(-1)
        flat[int(torch.randint(0, flat.numel(), (), generator=g))] = {"nan": math.nan, "inf": math.inf, "neg_inf": -math.inf}[values]
    if dtype.is_floating_point:
        return x.to(dtype)
    if dtype == torch.bool:
        return x > 0.5
    return x.clamp(-1e9, 1e9).to(dtype) if dtype != torch.uint8 else x.clamp(0, 255).to(dtype)


@st.composite
def tensors(
    draw: st.DrawFn, *, channels: tuple[int, ...] = (1, 1, 3, 0, 2, 4), max_side: int = 24,
    dtypes: tuple[torch.dtype, ...] = FLOATS + OTHERS, values: tuple[str, ...] = VALUES,
) -> Any:
    """Mostly 4-D tensors (B, C, H, W), sometimes another rank; a dtype of ``dtypes`` (mostly
    float32/float64 among them); a value pattern of ``values``."""
    if draw(st.integers(0, 9)) == 0:
        ndim = draw(st.sampled_from([0, 1, 2, 3, 5]))
        shape = tuple(draw(st.integers(0, 4)) for _ in range(ndim))
    else:
        shape = (
            draw(st.integers(0, 3)), draw(st.sampled_from(channels)),
            draw(st.integers(0, max_side)), draw(st.integers(0, max_side)),
        )
    common = [d for d in FLOATS[:2] if d in dtypes]
    dtype = draw(st.sampled_from(dtypes) if draw(st.integers(0, 3)) == 0 else st.sampled_from(common))
    pattern = draw(st.one_of(st.just("unit"), st.sampled_from(values)))  # about half valid values
    return _fill(shape, dtype, pattern, draw(st.integers(0, 2**31 - 1)))


WRONG_TYPES = st.sampled_from([None, 3, 0.5, "image", [[0.5]], ((0.1,),), object()])


def images_or_junk(**kw: Any) -> st.SearchStrategy[Any]:
    return st.one_of(tensors(**kw), tensors(**kw), tensors(**kw), tensors(**kw), tensors(**kw), WRONG_TYPES)


@st.composite
def masks_for(draw: st.DrawFn, images: Any) -> Any:
    """Mostly a binary mask shaped like ``images`` (1 channel); sometimes junk."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or draw(st.integers(0, 4)) == 0:
        return draw(images_or_junk(channels=(1, 1, 2)))
    b, _, h, w = images.shape
    m = (torch.rand(b, 1, h, w, generator=torch.Generator().manual_seed(draw(st.integers(0, 999)))) > 0.9).float()
    return draw(st.sampled_from([m, m, m, m * 255, m * 0.5, m.bool(), m.long()]))


def _is_images(x: Any, channels: tuple[int, ...] = (1, 3), *, unit: bool = True, min_side: int = 1) -> bool:
    """The documented valid input: float (B, C, H, W), C in ``channels``, finite (in [0, 1])."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim != 4 or x.shape[1] not in channels:
        return False
    if min(x.shape[2:]) < min_side:
        return False
    if not bool(torch.isfinite(x).all()):
        return False
    return not unit or x.numel() == 0 or (float(x.min()) >= 0 and float(x.max()) <= 1)


def _expect(call: Callable[[], Any], valid: bool, names: tuple[str, ...], check: Callable[[Any], None]) -> None:
    """Run ``call``: a valid input must give a result that passes ``check``; an invalid one must
    raise a documented error whose message names one of ``names``."""
    try:
        out = call()
    except DOCUMENTED as e:
        msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        assert not valid, f"a valid input raised {type(e).__name__}: {msg}"
        assert any(re.search(rf"\b{re.escape(n)}\b", msg) for n in names), f"message names none of {names}: {msg}"
    else:
        assert valid, f"an invalid input returned {type(out).__name__} instead of raising"
        check(out)


def _valid_images_out(x: torch.Tensor) -> Callable[[Any], None]:
    def check(out: Any) -> None:
        assert isinstance(out, torch.Tensor) and out.shape == x.shape and out.dtype == x.dtype
        if out.numel():
            assert bool(torch.isfinite(out).all()) and float(out.min()) >= 0 and float(out.max()) <= 1

    return check


# ------------------------------------------------------------------------------- the two silent cases
def test_an_image_in_0_255_is_refused_by_corrupt_with_the_fix() -> None:
    x = torch.rand(2, 1, 16, 16) * 255
    with pytest.raises(ValueError, match=r"x must hold finite values in \[0, 1\].*divide 8-bit data by 255"):
        corruptions.corrupt(x, "gaussian_noise", 1)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_image_is_refused_by_corruptions_and_models(bad: float) -> None:
    x = torch.rand(2, 1, 16, 16)
    x[1, 0, 3, 4] = bad
    with pytest.raises(ValueError, match=r"x must hold finite values.*1 (NaN|inf)"):
        corruptions.corrupt(x, "contrast", 2)
    with pytest.raises(ValueError, match=r"images must hold finite values"):
        _trainer("random").step(x, torch.zeros_like(x))
    model = create_model("acm", channels=(4, 8, 8, 8), layers=(1, 1, 1)).eval()
    with pytest.raises(ValueError, match=r"x must hold finite values"):
        model(x)


# ------------------------------------------------------------------------------- properties
@given(x=images_or_junk(), name=st.sampled_from(corruptions.available()[:10] + ["no_such"]), severity=st.one_of(st.integers(-1, 6), st.sampled_from([True, 2.0, "1", None])))
def test_corrupt_returns_valid_images_or_raises_naming_the_argument(x: Any, name: str, severity: Any) -> None:
    valid = _is_images(x) and name != "no_such" and type(severity) is int and 1 <= severity <= 5
    _expect(lambda: corruptions.corrupt(x, name, severity, generator=torch.Generator().manual_seed(0)),
            valid, ("x", "severity", "corruption"), _valid_images_out(x) if valid else lambda out: None)


SPACE = ActionSpace(["gaussian_noise", "defocus_blur", "pixelate", "jpeg_compression"], severities=(1, 3))


@given(x=images_or_junk(), actions=st.one_of(
    st.integers(0, 3).map(lambda b: torch.arange(b) % SPACE.size),
    st.sampled_from([torch.tensor([-1]), torch.tensor([SPACE.size]), torch.tensor([0.0]), torch.tensor([True]), [0], None]),
))
def test_action_space_apply_returns_valid_images_or_raises(x: Any, actions: Any) -> None:
    valid = (
        _is_images(x) and isinstance(actions, torch.Tensor) and actions.dtype == torch.int64
        and actions.shape == (x.shape[0],)
    )
    _expect(lambda: SPACE.apply(x, actions), valid, ("x", "actions"), _valid_images_out(x) if valid else lambda out: None)


POLICY = PolicyNetwork(1, 6, input_size=32, widths=(2, 2, 4, 4, 4)).eval()


@given(x=images_or_junk(channels=(0, 1, 1, 3), values=SANE))
def test_policy_returns_finite_logits_or_raises(x: Any) -> None:
    # Any float dtype is valid (the policy computes in float32); huge values are tested apart.
    valid = _is_images(x, (1,), unit=False)

    def check(out: Any) -> None:
        assert out.shape == (x.shape[0], 6) and bool(torch.isfinite(out).all())

    with torch.no_grad():
        _expect(lambda: POLICY(x), valid, ("x",), check)


@pytest.mark.parametrize("x", [None, torch.full((1, 1, 8, 8), math.nan), torch.zeros(1, 1, 8, 8, dtype=torch.uint8) + 255, torch.zeros(1, 1, 0, 8)])
def test_policy_refuses_junk_with_a_documented_error(x: Any) -> None:
    with torch.no_grad():
        _expect(lambda: POLICY(x), False, ("x",), lambda out: None)


@pytest.mark.parametrize("dtype", FLOATS[:2])
def test_policy_takes_finite_but_absurd_values_without_promising_finite_logits(dtype: torch.dtype) -> None:
    # The policy imposes no range, only finiteness: 1e30 is accepted; its logits may overflow.
    with torch.no_grad():
        out = POLICY(torch.full((2, 1, 8, 8), 1e30, dtype=dtype))
    assert out.shape == (2, 6) and out.dtype == torch.float32


LAYER = SFIM(2).eval()


@given(x=images_or_junk(channels=(1, 2, 3), dtypes=AS_WEIGHTS))
def test_sfim_keeps_the_shape_and_finiteness_or_raises(x: Any) -> None:
    # A layer propagates non-finite values like any torch layer (the model's input check stops
    # them first), so the contract is: any float32 (B, 2, H, W) in -> the same shape and dtype
    # out, finite when the input is finite and of a sane size (NaN/inf/1e30 in: no finiteness
    # promised, the shape still is); bad shapes and non-float dtypes raise.
    valid = isinstance(x, torch.Tensor) and x.is_floating_point() and x.ndim == 4 and x.shape[1] == 2
    valid = valid and min(x.shape[2:]) >= 1

    def check(out: Any) -> None:
        assert out.shape == x.shape and out.dtype == x.dtype
        if bool(torch.isfinite(x).all()) and (x.numel() == 0 or float(x.abs().max()) < 1e4):
            assert bool(torch.isfinite(out).all())

    with torch.no_grad():
        _expect(lambda: LAYER(x), valid, ("x",), check)


@pytest.mark.parametrize("x", [None, torch.zeros(1, 2, 0, 5)])
def test_sfim_refuses_junk_with_a_documented_error(x: Any) -> None:
    with torch.no_grad():
        _expect(lambda: LAYER(x), False, ("x",), lambda out: None)


@pytest.mark.parametrize("dtype", FLOATS[1:])
def test_sfim_with_float32_weights_refuses_another_float_dtype_with_torchs_error(dtype: torch.dtype) -> None:
    # Like any torch layer: no cast behind the user's back, torch's dtype-mismatch RuntimeError.
    with torch.no_grad(), pytest.raises(RuntimeError, match=r"scalar type|dtype|Input type"):
        LAYER(torch.rand(2, 2, 8, 8).to(dtype))


def test_sfim_passes_an_empty_batch_through() -> None:
    x = torch.zeros(0, 2, 4, 4)
    assert LAYER(x).shape == x.shape


MODELS = {
    "acm": create_model("acm", channels=(4, 8, 8, 8), layers=(1, 1, 1)).eval(),
    "dnanet": create_model("dnanet", filters=(4, 8, 8, 8, 8), num_blocks=(1, 1, 1, 1), deep_supervision=False).eval(),
    "alcnet": create_model("alcnet", channels=(4, 8, 8, 8), layers=(1, 1, 1)).eval(),
    "rdian": create_model("rdian", width=4).eval(),
    "isnet": create_model("isnet", channels=(4, 8, 8, 8), layers=(1, 1, 1), edge_channels=4).eval(),
}


@given(x=images_or_junk(channels=(0, 1, 3), dtypes=AS_WEIGHTS, values=SANE), name=st.sampled_from(sorted(MODELS)))
def test_models_return_finite_logits_of_the_input_size_or_raise(x: Any, name: str) -> None:
    valid = _is_images(x, (1,), unit=False)

    def check(out: Any) -> None:
        assert out.shape == (x.shape[0], 1, *x.shape[2:]) and out.dtype == x.dtype
        assert bool(torch.isfinite(out).all())

    with torch.no_grad():
        _expect(lambda: MODELS[name](x), valid, ("x",), check)


@pytest.mark.parametrize("dtype", FLOATS[1:])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_with_float32_weights_refuse_another_float_dtype_with_torchs_error(name: str, dtype: torch.dtype) -> None:
    with torch.no_grad(), pytest.raises(RuntimeError, match=r"scalar type|dtype|Input type"):
        MODELS[name](torch.rand(2, 1, 9, 7).to(dtype))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_take_finite_but_absurd_values_without_promising_finite_logits(name: str) -> None:
    # Models impose no range, only finiteness: 1e30 is accepted; the logits may overflow.
    with torch.no_grad():
        out = MODELS[name](torch.full((2, 1, 9, 7), 1e30))
    assert out.shape == (2, 1, 9, 7) and out.dtype == torch.float32


@given(data=st.data())
def test_metrics_return_numbers_in_range_or_raise(data: st.DataObject) -> None:
    probs = data.draw(images_or_junk(channels=(1, 1, 2)), label="probs")
    masks = data.draw(masks_for(probs), label="masks")
    ok_probs = _is_images(probs, (1,), min_side=0) or (
        # single maps are accepted too: (1, H, W) and (H, W)
        isinstance(probs, torch.Tensor) and probs.is_floating_point()
        and (probs.ndim == 2 or (probs.ndim == 3 and probs.shape[0] == 1))
        and _is_images(probs.reshape(1, 1, *probs.shape[-2:]), (1,), min_side=0)
    )
    valid = ok_probs and isinstance(masks, torch.Tensor) and masks.shape == probs.shape

    def check(out: Any) -> None:
        # NaN is documented for 0/0: no predicted and no true target pixel anywhere.
        assert isinstance(out, float)
        empty = not bool((probs > 0.5).any()) and not bool((masks.float() > 0.5).any())
        assert (math.isnan(out) and empty) or 0.0 <= out <= 1.0

    _expect(lambda: metrics.iou(probs, masks), valid, ("probs", "masks"), check)


def test_metrics_refuse_nan_probabilities() -> None:
    probs, masks = torch.full((1, 1, 4, 4), math.nan), torch.ones(1, 1, 4, 4)
    with pytest.raises(ValueError, match="probs"):
        metrics.iou(probs, masks)


def _binary(m: torch.Tensor) -> bool:
    return m.numel() == 0 or bool(((m == 0) | (m == 1)).all())


def _trainer(strategy: str) -> AdversarialCorruptionTrainer:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 1, 3, padding=1))
    return AdversarialCorruptionTrainer(
        model, torch.optim.SGD(model.parameters(), lr=0.01), action_space=SPACE, strategy=strategy,
        policy_kwargs={"input_size": 32, "widths": (2, 2, 4, 4, 4)}, generator=torch.Generator().manual_seed(0),
    )


@given(data=st.data(), strategy=st.sampled_from(["learned", "random"]))
def test_trainer_step_returns_finite_statistics_or_raises(data: st.DataObject, strategy: str) -> None:
    # The model's channel count and its weights' dtype: other images meet the model's own
    # RuntimeError (tested apart below).
    images = data.draw(images_or_junk(channels=(1,), dtypes=AS_WEIGHTS), label="images")
    masks = data.draw(masks_for(images), label="masks")
    trainer = _trainer(strategy)  # fresh: a failed step must not leak into the next example
    valid = (
        _is_images(images, (1,)) and images.shape[0] > 0 and isinstance(masks, torch.Tensor)
        and masks.ndim == 4 and masks.shape[0] == images.shape[0] and masks.shape[1] == 1
        and masks.shape[2:] == images.shape[2:] and _binary(masks)
    )

    def check(stats: Any) -> None:
        assert {"loss", "loss_clean", "loss_corrupted"} <= set(stats)
        assert all(bool(torch.isfinite(stats[k]).all()) for k in ("loss", "loss_clean", "loss_corrupted"))

    _expect(lambda: trainer.step(images, masks), valid, ("images", "masks"), check)


def test_a_step_that_fails_in_the_model_leaves_the_trainer_usable() -> None:
    trainer = _trainer("learned")
    with pytest.raises(RuntimeError, match="channels"):
        trainer.step(torch.rand(2, 3, 8, 8), torch.zeros(2, 1, 8, 8))  # the 1-channel model refuses
    trainer.step(torch.rand(2, 1, 8, 8), torch.zeros(2, 1, 8, 8))


@pytest.mark.parametrize("strategy", ["learned", "random"])
@pytest.mark.parametrize("images", [
    pytest.param(torch.rand(2, 3, 8, 8), id="3-channels"),
    *(pytest.param(torch.rand(2, 1, 8, 8).to(d), id=str(d).removeprefix("torch.")) for d in FLOATS[1:]),
])
def test_trainer_step_passes_on_the_models_refusal_of_images_it_cannot_take(strategy: str, images: torch.Tensor) -> None:
    # The trainer does not know the model's channels or dtype: the model's RuntimeError reaches
    # the caller unchanged, and the trainer is still usable after it.
    trainer = _trainer(strategy)
    with pytest.raises(RuntimeError, match=r"channels|scalar type|dtype|Input type"):
        trainer.step(images, torch.zeros(2, 1, 8, 8))
    stats = trainer.step(torch.rand(2, 1, 8, 8), torch.zeros(2, 1, 8, 8))
    assert bool(torch.isfinite(stats["loss"]))


@pytest.mark.parametrize("scale", [255.0, 0.5])
def test_trainer_step_refuses_non_binary_masks(scale: float) -> None:
    masks = (torch.rand(2, 1, 8, 8) > 0.8).float() * scale
    with pytest.raises(ValueError, match="masks"):
        _trainer("random").step(torch.rand(2, 1, 8, 8), masks)


# ------------------------------------------------------------------------------- datasets
def _png_bytes(kind: str) -> bytes:
    import io

    rng = np.random.default_rng(0)
    arr = (rng.random((12, 10)) * 255).astype(np.uint8) if kind == "image" else (rng.random((12, 10)) > 0.9).astype(np.uint8) * 255
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


GOOD = {"image": _png_bytes("image"), "mask": _png_bytes("mask")}


@st.composite
def damaged(draw: st.DrawFn, kind: str) -> bytes:
    data = bytearray(GOOD[kind])
    how = draw(st.sampled_from(["intact", "truncate", "flip", "junk", "intact"]))
    if how == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        return bytes(data)
    if how == "junk":
        return draw(st.binary(min_size=0, max_size=200))
    return bytes(data)


@given(image=damaged("image"), mask=damaged("mask"), policy=st.sampled_from(["error", "skip"]))
def test_istd_dataset_gives_valid_items_or_names_the_broken_file(image: bytes, mask: bytes, policy: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "ds")
        for sub in ("images", "masks", "img_idx"):
            os.makedirs(os.path.join(root, sub))
        for folder, name, data in (("images", "a", GOOD["image"]), ("masks", "a", GOOD["mask"]), ("images", "b", image), ("masks", "b", mask)):
            with open(os.path.join(root, folder, f"{name}.png"), "wb") as f:
                f.write(data)
        with open(os.path.join(root, "img_idx", "train_FUZZ.txt"), "w") as f:
            f.write("a\nb\n")
        # A changed file may still decode (a flipped byte in pixel data): it may be refused, an
        # intact one never is, and only a changed file can be the one named.
        changed = {folder for folder, data in (("images", image), ("masks", mask)) if data != GOOD[folder[:-1]]}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                ds = ISTDDataset(root, "train", on_bad_file=policy)  # type: ignore[arg-type]
            except BadFileError as e:
                assert policy == "error" and e.path.name == "b.png" and e.path.parent.name in changed
            else:
                _assert_valid_istd(ds, [str(w.message) for w in caught], changed)


def _assert_valid_istd(ds: ISTDDataset, warned: list[str], changed: set[str]) -> None:
    """Sample "a" is kept, "b" only if not skipped (a skip is reported); every item is valid."""
    skipped = [p for p in ds.problems if p.kind == "bad_file"]
    assert not skipped or changed, "an intact sample was skipped"
    assert ds.names == (["a"] if skipped else ["a", "b"])
    assert bool(skipped) == any("skipped 1 sample(s)" in w for w in warned), "a skip is reported"
    for i in range(len(ds)):
        x, m = ds[i]
        assert x.ndim == 3 and x.shape[0] == 1 and m.shape == x.shape
        assert bool(torch.isfinite(x).all()) and 0 <= float(x.min()) <= float(x.max()) <= 1
        assert bool(((m == 0) | (m == 1)).all())


@given(n=st.one_of(st.integers(-2, 3), st.sampled_from([True, 2.5, "3", None])),
       size=st.one_of(st.integers(-1, 40), st.tuples(st.integers(0, 40), st.integers(0, 40)), st.sampled_from([None, "64", 8.5])))
def test_synthetic_dataset_gives_valid_items_or_raises_naming_the_argument(n: Any, size: Any) -> None:
    def build() -> Any:
        ds = SyntheticIRSTD(n, size)
        return [ds[i] for i in range(len(ds))]

    h, w = (size, size) if isinstance(size, int) else size if isinstance(size, tuple) else (0, 0)
    valid = type(n) is int and n >= 0 and (type(size) is int or isinstance(size, tuple)) and min(h, w) >= 16

    def check(items: Any) -> None:
        assert len(items) == n
        for x, m in items:
            assert x.shape == m.shape == (1, h, w) and 0 <= float(x.min()) <= float(x.max()) <= 1

    _expect(build, valid, ("n", "size"), check)
