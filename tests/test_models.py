"""Every registered ISTD model: odd sizes, backward, train/eval outputs, parameter counts."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from advcorrupt.layers import SFIM
from advcorrupt.models import DNANet, create_model, list_models, register_model
from advcorrupt.models import _registry
from advcorrupt.models.dnanet import ChannelAttention, ResAttentionBlock, SpatialAttention

from _zoo import TINY as ZOO_TINY

cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _library_models() -> list[str]:
    """Models the library registers (tests elsewhere register throwaway ones of their own)."""
    return [n for n in list_models() if _registry._MODELS[n].__module__.startswith("advcorrupt.models")]


# Published parameter counts (one input channel), as listed by BALISTD (Tables 2, 5-6) and the
# BasicIRSTD benchmark: DNANet 4.697M (Li et al., TIP 2023), ACM 0.398M (Dai et al., WACV 2021),
# ALCNet 0.427M (Dai et al., TGRS 2021), RDIAN 0.217M (Sun et al., TGRS 2023), ISNet 0.966M
# (Zhang et al., CVPR 2022), ISTDU-Net 2.752M (Hou et al., GRSL 2022). The SFIM variants have no published count: they only have to
# exceed their base model (SFIM_BASE).
PUBLISHED_PARAMS: dict[str, float | None] = {
    "dnanet": 4.697e6,
    "acm": 0.398e6,
    "sfim_dnanet": None,
    "alcnet": 0.427e6,
    "rdian": 0.217e6,
    "isnet": 0.966e6,
    "istdunet": 2.752e6,
    "sfim_acm": None,
    "sfim_alcnet": None,
    "sfim_rdian": None,
    "sfim_isnet": None,
    "sfim_istdunet": None,
}
SFIM_BASE = {
    "sfim_dnanet": "dnanet",
    "sfim_acm": "acm",
    "sfim_alcnet": "alcnet",
    "sfim_rdian": "rdian",
    "sfim_isnet": "isnet",
    "sfim_istdunet": "istdunet",
}
# Logit maps a model returns in training mode (deep supervision, ISNet's edge head).
TRAIN_HEADS = {"dnanet": 4, "sfim_dnanet": 4, "acm": 1, "alcnet": 1, "rdian": 1, "isnet": 2, "istdunet": 1}
TRAIN_HEADS.update({name: TRAIN_HEADS[base] for name, base in SFIM_BASE.items()})
# Narrow versions with the same wiring, to keep training-mode tests fast on a CPU.
TINY = {**ZOO_TINY, **{name: ZOO_TINY[base] for name, base in SFIM_BASE.items() if name not in ZOO_TINY}}
# One-channel convolutions with a bias that are not logit layers (ISNet's side outputs and gates).
NOT_LOGITS = {"isnet": ("side.", "tfd."), "sfim_isnet": ("side.", "tfd.")}


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_registered_model_is_covered_by_these_tests() -> None:
    assert set(_library_models()) == set(PUBLISHED_PARAMS) == set(TRAIN_HEADS) == set(TINY)


def _invisible_to_thop(model: nn.Module) -> int:
    """Parameters BasicIRSTD's counter (thop) does not see.

    thop counts the parameters of the layer types it has rules for; ISNet's reference code keeps
    the weights of its deformable convolutions (DCN modules) and of its gated 1x1 convolutions
    (``_ConvNd`` subclasses) directly on modules without a rule. They are trained like any other,
    so our full count is compared with the published one plus these.
    """
    from advcorrupt.models.isnet import DeformConv2d, _GatedConv

    n = 0
    for m in model.modules():
        if isinstance(m, DeformConv2d):
            n += m.weight.numel() + m.bias.numel()
        elif isinstance(m, _GatedConv):
            n += m.conv.weight.numel()
    return n


@pytest.mark.parametrize("name", _library_models())
def test_parameter_count_matches_the_published_one(name: str) -> None:
    model = create_model(name, in_channels=1)
    n = _n_params(model)
    published = PUBLISHED_PARAMS[name]
    if published is None:
        assert n > _n_params(create_model(SFIM_BASE[name]))
    else:
        seen = n - _invisible_to_thop(model)
        assert abs(seen - published) / published < 0.02, f"{name}: {seen} parameters vs published {published:.0f}"


def test_isnet_parameters_thop_misses_are_its_deformable_and_gated_convolution_weights() -> None:
    model = create_model("isnet")
    # 4 deformable convs (32x32x3 + 32 twice, 16x16x3 + 16 twice) and 3 gated 64x64 1x1 convs.
    assert _invisible_to_thop(model) == 2 * (32 * 32 * 3 + 32) + 2 * (16 * 16 * 3 + 16) + 3 * 64 * 64
    # One parameter more than the reference: the edge logit layer's bias, which holds the prior.
    assert _n_params(model) - _invisible_to_thop(model) == 965_746 + 1


@pytest.mark.parametrize("name", _library_models())
def test_eval_forward_on_odd_size_returns_finite_logits_of_the_input_size(name: str) -> None:
    model = create_model(name).eval()
    x = torch.rand(1, 1, 17, 23)
    with torch.no_grad():
        y = model(x)
    assert isinstance(y, torch.Tensor) and y.shape == (1, 1, 17, 23)
    assert torch.isfinite(y).all()
    assert (y < 0).any() or (y > 1).any() or y.std() > 0  # logits, not a constant map


@pytest.mark.parametrize("name", _library_models())
def test_train_forward_backward_reaches_every_parameter(name: str) -> None:
    model = create_model(name, **TINY[name]).train()
    x = torch.rand(2, 1, 17, 23)
    out = model(x)
    outs = out if isinstance(out, list) else [out]
    assert len(outs) == TRAIN_HEADS[name]
    assert all(o.shape == (2, 1, 17, 23) and torch.isfinite(o).all() for o in outs)
    sum(o.sigmoid().mean() for o in outs).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", ["dnanet", "sfim_dnanet"])
def test_eval_output_is_the_last_deep_supervision_head(name: str) -> None:
    model = create_model(name, **TINY[name]).train()
    x = torch.rand(2, 1, 17, 23)
    for m in model.modules():  # same BatchNorm statistics in both calls
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    with torch.no_grad():
        train_outs = model(x)
        eval_out = model.eval()(x)
    torch.testing.assert_close(eval_out, train_outs[-1])
    assert not torch.allclose(train_outs[0], train_outs[-1])


def test_deep_supervision_off_gives_a_single_map_in_training() -> None:
    model = create_model("dnanet", deep_supervision=False, **TINY["dnanet"]).train()
    y = model(torch.rand(2, 1, 17, 23))
    assert isinstance(y, torch.Tensor) and y.shape == (2, 1, 17, 23)
    assert _n_params(model) < _n_params(create_model("dnanet", **TINY["dnanet"]))


@pytest.mark.parametrize("name", _library_models())
def test_models_take_three_channel_images_and_reject_the_wrong_channel_count(name: str) -> None:
    model = create_model(name, in_channels=3, **TINY[name]).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 17, 23)).shape == (2, 1, 17, 23)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(2, 1, 17, 23))


def test_sfim_dnanet_replaces_every_channel_spatial_attention_with_sfim() -> None:
    model = create_model("sfim_dnanet")
    blocks = [m for m in model.modules() if isinstance(m, ResAttentionBlock)]
    assert not any(isinstance(m, (ChannelAttention, SpatialAttention)) for m in model.modules())
    assert sum(isinstance(m, SFIM) for m in model.modules()) == len(blocks) > 0
    baseline = create_model("dnanet")
    assert sum(isinstance(m, ChannelAttention) for m in baseline.modules()) == len(blocks)
    assert isinstance(model, DNANet)


def test_unknown_model_name_raises_key_error_listing_the_models() -> None:
    with pytest.raises(KeyError, match="dnanet"):
        create_model("unet_from_nowhere")


def test_registering_a_name_twice_warns_and_list_models_filters() -> None:
    def tiny(*, in_channels: int = 1) -> nn.Module:
        return nn.Conv2d(in_channels, 1, 1)

    try:
        register_model(tiny)
        with pytest.warns(UserWarning, match="already registered"):
            register_model(tiny)
        assert list_models("tin?") == ["tiny"]
        assert isinstance(create_model("tiny", in_channels=2), nn.Conv2d)
    finally:
        _registry._MODELS.pop("tiny", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list_models("*dnanet") == ["dnanet", "sfim_dnanet"]


@cuda_only
@pytest.mark.gpu
@pytest.mark.parametrize("name", _library_models())
def test_channels_last_model_on_cuda_matches_contiguous(name: str) -> None:
    model = create_model(name).cuda().eval()
    x = torch.rand(2, 1, 64, 80, device="cuda")
    # Full float32 convolutions, so layout-dependent algorithm choices cannot hide behind TF32.
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        ref = model(x)
        model_cl = model.to(memory_format=torch.channels_last)
        out = model_cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-3)


@cuda_only
@pytest.mark.gpu
def test_compiled_model_runs_on_cuda_and_matches_eager() -> None:
    model = create_model("sfim_dnanet").cuda().eval()
    x = torch.rand(2, 1, 64, 64, device="cuda")
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        ref = model(x)
        out = torch.compile(model)(x)
    torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-3)


@cuda_only
@pytest.mark.gpu
def test_sfim_dnanet_trains_under_cuda_autocast() -> None:
    model = create_model("sfim_dnanet").cuda().train()
    x = torch.rand(2, 1, 64, 64, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        outs = model(x)
    assert all(o.dtype == torch.bfloat16 for o in outs)
    sum(o.float().mean() for o in outs).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", _library_models())
def test_logit_layers_start_at_the_target_prior_unless_disabled(name: str) -> None:
    import math

    def logit_biases(model: nn.Module) -> list[torch.Tensor]:
        convs = [
            m
            for n, m in model.named_modules()
            if isinstance(m, nn.Conv2d)
            and m.out_channels == 1
            and m.bias is not None
            and not n.startswith(NOT_LOGITS.get(name, ()))
        ]
        assert convs, "every ISTD model ends in a 1-channel logit convolution with a bias"
        return [c.bias.detach() for c in convs]

    small = TINY[name]
    for b in logit_biases(create_model(name, **small)):
        assert torch.allclose(b, torch.full_like(b, math.log(0.01 / 0.99)))
    for b in logit_biases(create_model(name, prior_prob=0.2, **small)):
        assert torch.allclose(b, torch.full_like(b, math.log(0.2 / 0.8)))
    for b in logit_biases(create_model(name, prior_prob=None, **small)):
        assert torch.equal(b, torch.zeros_like(b))
    with pytest.raises(ValueError, match="prior_prob"):
        create_model(name, prior_prob=1.5, **small)


@pytest.mark.parametrize("size", [(37, 91), (250, 250)])
@pytest.mark.parametrize("name", _library_models())
def test_odd_and_non_multiple_sizes_give_logits_of_the_input_size_in_both_modes(
    name: str, size: tuple[int, int]
) -> None:
    model = create_model(name, **TINY[name])
    x = torch.rand(2, 1, *size)
    with torch.no_grad():
        train_outs = model.train()(x)
        eval_out = model.eval()(x)
    outs = train_outs if isinstance(train_outs, list) else [train_outs]
    assert [o.shape for o in outs] == [(2, 1, *size)] * TRAIN_HEADS[name]
    assert isinstance(eval_out, torch.Tensor) and eval_out.shape == (2, 1, *size)
    assert torch.isfinite(eval_out).all()


@pytest.mark.parametrize("name", _library_models())
def test_trainer_step_trains_every_model(name: str) -> None:
    import advcorrupt

    torch.manual_seed(0)
    model = create_model(name, **TINY[name])
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.rand(2, 1, 32, 32)
    y = (torch.rand(2, 1, 32, 32) > 0.97).float()
    stats = advcorrupt.AdversarialCorruptionTrainer(model, opt, strategy="random").step(x, y)
    assert torch.isfinite(torch.as_tensor(stats["loss"])).all()
    moved = sum(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert moved > len(before) // 2, f"only {moved} of {len(before)} parameter tensors changed"


@pytest.mark.parametrize("name", _library_models())
@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", True])
def test_bad_in_channels_raise_naming_the_argument_and_the_value(name: str, bad: object) -> None:
    with pytest.raises(ValueError, match=rf"in_channels must be an integer >= 1; got {bad!r}"):
        create_model(name, in_channels=bad)


@pytest.mark.parametrize("name", ["alcnet", "isnet", "rdian", "istdunet", "sfim_isnet"])
def test_bad_widths_raise_naming_the_argument(name: str) -> None:
    by_width = name.endswith(("rdian", "istdunet"))
    arg, bad = ("width", 2.5) if by_width else ("channels", (8, 16.0, 32, 64))
    with pytest.raises(ValueError, match=rf"{arg}"):
        create_model(name, **{arg: bad})
    if not by_width:
        with pytest.raises(ValueError, match=r"layers must be a sequence of 3 integers"):
            create_model(name, layers=(4, 4))


def test_unknown_model_name_lists_the_new_models_too() -> None:
    with pytest.raises(KeyError) as err:
        create_model("alc_net")
    assert all(n in str(err.value) for n in ("alcnet", "rdian", "isnet", "istdunet", "acm", "dnanet"))


def test_rdian_direction_attention_is_the_product_of_opposite_differences() -> None:
    from advcorrupt.models.rdian import DirectionAttention

    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 1.0  # a point target: (1 - 0) * (1 - 0) in each of the 4 directions
    md = DirectionAttention(1)(x)
    assert md[0, 0, 4, 4] == torch.sigmoid(torch.tensor(4.0))
    assert md[0, 0, 0, 0] == 0.5  # flat background: no contrast
    # A pixel two steps right of the target: one difference is -1 (horizontal pair), times 0.
    assert md[0, 0, 4, 6] == 0.5


def test_isnet_deformable_convolution_starts_as_a_plain_convolution() -> None:
    from advcorrupt.models.isnet import DeformConv2d

    conv = DeformConv2d(3, 5, (3, 1))
    x = torch.randn(2, 3, 7, 6)
    ref = torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=(1, 0))
    torch.testing.assert_close(conv(x), ref, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        conv.offset.bias.fill_(0.5)  # shifted sampling now changes the output
    assert not torch.allclose(conv(x), ref, atol=1e-3)


@pytest.mark.parametrize("name", _library_models())
def test_models_refuse_non_finite_and_integer_images_naming_the_problem(name: str) -> None:
    model = create_model(name, **TINY[name]).eval()
    x = torch.rand(1, 1, 16, 16)
    x[0, 0, 3, 5] = float("nan")
    with pytest.raises(ValueError, match=r"(?i)nan|finite"):
        model(x)
    with pytest.raises(TypeError, match="float"):
        model(torch.zeros(1, 1, 16, 16, dtype=torch.uint8))


def test_istdunet_width_must_fit_its_grouped_split_attention() -> None:
    with pytest.raises(ValueError, match=r"width must be a multiple of 8 \(4 groups x radix 2\); got 12"):
        create_model("istdunet", width=12)


def test_istdunet_external_attention_memories_start_tied() -> None:
    from advcorrupt.models.istdunet import ExternalAttention

    att = ExternalAttention(8, memory=4)
    assert torch.equal(att.mv.weight, att.mk.weight.permute(1, 0, 2))
    assert att.mv.weight.data_ptr() != att.mk.weight.data_ptr()  # tied values, separate parameters
