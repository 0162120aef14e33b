"""Behaviour of the SFIM layer (BALISTD Fig. 2c) and of ``insert_sfim`` on timm / smp models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advcorrupt.layers import SFIM, SFIMAfter, default_sfim_targets, insert_sfim

from _zoo import TINY

timm = pytest.importorskip("timm")
smp = pytest.importorskip("segmentation_models_pytorch")

cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _trained_like(channels: int, **kwargs: object) -> SFIM:
    """An SFIM whose paths are all active (not the identity a fresh one is)."""
    return SFIM(channels, zero_init_last=False, **kwargs).eval()  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------- SFIM


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (16, 16), (33, 47), (8, 3)])
def test_sfim_keeps_shape_for_any_height_and_width(size: tuple[int, int]) -> None:
    x = torch.randn(2, 4, *size)
    y = _trained_like(4)(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_fresh_sfim_is_the_identity_so_it_can_be_inserted_into_trained_nets() -> None:
    x = torch.randn(2, 6, 9, 11)
    assert torch.equal(SFIM(6).eval()(x), x)
    assert not torch.allclose(_trained_like(6)(x), x)


def test_sfim_gradcheck_passes_in_float64() -> None:
    sfim = _trained_like(2, dtype=torch.float64)
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(sfim, (x,), eps=1e-6, atol=1e-5)


def test_sfim_parameters_all_receive_gradients_after_one_step() -> None:
    sfim = SFIM(4)  # zero-initialised last layers: the first step must still move them
    sfim(torch.randn(2, 4, 8, 8)).square().mean().backward()
    assert sfim.real_branch.pw_weight.grad is not None and sfim.real_branch.pw_weight.grad.abs().sum() > 0
    assert sfim.imag_branch.pw_weight.grad is not None and sfim.imag_branch.pw_weight.grad.abs().sum() > 0
    assert sfim.bn2.weight.grad is not None and sfim.bn2.weight.grad.abs().sum() > 0


def test_frequency_branch_gives_every_pixel_an_image_wide_receptive_field() -> None:
    sfim = _trained_like(2, dtype=torch.float64)
    x = torch.zeros(1, 2, 15, 17, dtype=torch.float64)
    poked = x.clone()
    poked[0, 0, 0, 0] = 1.0
    diff = (sfim.frequency_branch(poked) - sfim.frequency_branch(x)).abs()
    # A 3x3 spatial conv could reach only the 2x2 corner; the spectrum reaches the far side.
    assert diff[..., 7:, 8:].amax() > 1e-6


def test_sfim_channels_last_input_matches_contiguous() -> None:
    sfim = _trained_like(8)
    x = torch.randn(2, 8, 13, 10)
    y_cl = sfim(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(y_cl, sfim(x), rtol=1e-4, atol=1e-5)


def test_sfim_under_cpu_autocast_returns_autocast_dtype_and_stays_close_to_float32() -> None:
    sfim = _trained_like(4)
    x = torch.randn(2, 4, 12, 9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = sfim(x)
    assert y.dtype == torch.bfloat16
    ref = sfim(x)
    assert (y.float() - ref).abs().max() < 0.1 * ref.abs().max()


def test_sfim_follows_device_and_dtype_arguments() -> None:
    sfim = SFIM(4, device="cpu", dtype=torch.float64)
    assert all(p.dtype == torch.float64 and p.device.type == "cpu" for p in sfim.parameters())
    assert sfim(torch.randn(1, 4, 6, 6, dtype=torch.float64)).dtype == torch.float64


def test_bfloat16_sfim_without_autocast_returns_bfloat16() -> None:
    sfim = _trained_like(4, dtype=torch.bfloat16)
    y = sfim(torch.randn(1, 4, 7, 9, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()


def test_sfim_traces_in_one_graph_with_torch_compile_on_cpu() -> None:
    sfim = _trained_like(4)
    x = torch.randn(2, 4, 11, 13)
    compiled = torch.compile(sfim, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), sfim(x))


@pytest.mark.slow
def test_sfim_compiles_with_inductor_on_cpu() -> None:
    sfim = _trained_like(4)
    x = torch.randn(2, 4, 11, 13)
    torch.testing.assert_close(torch.compile(sfim)(x), sfim(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [((0,), {}, "channels"), ((4,), {"kernel_size": 2}, "kernel_size")],
)
def test_sfim_rejects_bad_constructor_arguments(args: tuple, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SFIM(*args, **kwargs)


def test_sfim_rejects_wrong_channel_count_naming_expected_and_received() -> None:
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\).*\(1, 3, 5, 5\)"):
        SFIM(4)(torch.randn(1, 3, 5, 5))


@cuda_only
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_sfim_under_cuda_autocast_returns_autocast_dtype(dtype: torch.dtype) -> None:
    sfim = _trained_like(8, device="cuda")
    x = torch.randn(2, 8, 33, 47, device="cuda")  # odd sizes: cuFFT rejects these in half
    with torch.autocast("cuda", dtype=dtype):
        y = sfim(x)
    assert y.dtype == dtype and y.device.type == "cuda"
    ref = sfim(x)
    assert (y.float() - ref).abs().max() < 0.05 * ref.abs().max()


@cuda_only
@pytest.mark.gpu
def test_sfim_channels_last_on_cuda_matches_contiguous() -> None:
    sfim = _trained_like(16, device="cuda")
    x = torch.randn(2, 16, 31, 40, device="cuda")
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        torch.testing.assert_close(
            sfim(x.contiguous(memory_format=torch.channels_last)), sfim(x), rtol=1e-4, atol=1e-5
        )


# ---------------------------------------------------------------------------- insert_sfim


def _count_sfim(model: nn.Module) -> int:
    return sum(isinstance(m, SFIMAfter) for m in model.modules())


@pytest.mark.parametrize(
    ("build", "x_shape", "expected_targets"),
    [
        (lambda: timm.create_model("resnet18", pretrained=False, num_classes=5), (2, 3, 32, 32), 4),
        (lambda: timm.create_model("resnet18", pretrained=False, features_only=True), (2, 3, 32, 32), 4),
        (
            lambda: smp.Unet("resnet18", encoder_weights=None, in_channels=1, classes=1),
            (2, 1, 32, 32),
            9,
        ),
    ],
    ids=["timm_resnet18", "timm_resnet18_features_only", "smp_unet_resnet18"],
)
def test_insert_sfim_keeps_outputs_and_adds_trainable_parameters(
    build: object, x_shape: tuple[int, ...], expected_targets: int
) -> None:
    model = build().eval()  # type: ignore[operator]
    x = torch.randn(x_shape)
    before = model(x)
    n_before = sum(p.numel() for p in model.parameters())

    assert insert_sfim(model, input_size=(32, 32)) is model
    assert _count_sfim(model) == expected_targets
    after = model(x)
    outs_before = before if isinstance(before, list) else [before]
    outs_after = after if isinstance(after, list) else [after]
    assert [o.shape for o in outs_after] == [o.shape for o in outs_before]
    for a, b in zip(outs_after, outs_before):
        torch.testing.assert_close(a, b)  # a fresh SFIM is the identity

    new = [p for n, p in model.named_parameters() if ".sfim." in n]
    assert new and all(p.requires_grad for p in new)
    assert sum(p.numel() for p in model.parameters()) == n_before + sum(p.numel() for p in new)
    model.train()
    loss = sum(o.float().square().mean() for o in (model(x) if isinstance(after, list) else [model(x)]))
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in new)


def test_insert_sfim_dry_run_leaves_training_mode_and_batchnorm_statistics_alone() -> None:
    model = timm.create_model("resnet18", pretrained=False, num_classes=2).train()
    stats = model.bn1.running_mean.clone()
    insert_sfim(model, ["layer1", "layer3"])
    assert model.training and model.layer1.sfim.training
    assert torch.equal(model.bn1.running_mean, stats)
    assert model.layer1.sfim.channels == 64 and model.layer3.sfim.channels == 256


def test_insert_sfim_accepts_glob_patterns_per_dotted_segment_on_a_custom_network() -> None:
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.Flatten()
    )
    insert_sfim(net, ["[02]"], input_size=(9, 9))
    assert isinstance(net[0], SFIMAfter) and isinstance(net[2], SFIMAfter)
    assert net[0].sfim.channels == 4 and net[2].sfim.channels == 6
    assert net(torch.randn(1, 1, 9, 9)).shape == (1, 6 * 81)


def test_insert_sfim_accepts_a_single_name_as_a_string() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 2, 1))
    insert_sfim(net, "1", input_size=(8, 8))
    assert isinstance(net[1], SFIMAfter) and not isinstance(net[0], SFIMAfter)


def test_insert_sfim_wraps_nested_targets_without_losing_the_inner_one() -> None:
    net = nn.Sequential(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()), nn.Conv2d(4, 2, 1))
    insert_sfim(net, ["0", "0.0"], input_size=(8, 8))
    assert isinstance(net[0], SFIMAfter) and isinstance(net[0].module[0], SFIMAfter)
    assert net(torch.randn(1, 1, 8, 8)).shape == (1, 2, 8, 8)


def test_insert_sfim_raises_for_unknown_names_and_non_image_outputs() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten())
    with pytest.raises(ValueError, match="matches no submodule"):
        insert_sfim(net, ["decoder"])
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        insert_sfim(net, ["1"], input_size=(8, 8))


def test_default_targets_need_names_for_an_unknown_architecture() -> None:
    assert default_sfim_targets(timm.create_model("resnet18", pretrained=False)) == [
        "layer1",
        "layer2",
        "layer3",
        "layer4",
    ]
    with pytest.raises(ValueError, match="pass names"):
        default_sfim_targets(nn.Sequential(nn.Conv2d(1, 1, 1)))


# ------------------------------------------------------------------ insert_sfim on the zoo

_ZOO_TINY = TINY


def test_every_zoo_detector_is_covered_by_the_insert_sfim_tests() -> None:
    from advcorrupt.models import _registry, list_models

    library = [n for n in list_models() if _registry._MODELS[n].__module__.startswith("advcorrupt.models")]
    # The sfim_* variants are built by insert_sfim itself; sfim_dnanet is a model of its own.
    assert {n for n in library if not n.startswith("sfim_")} | {"sfim_dnanet"} == set(_ZOO_TINY)


#: The default insertion points of every zoo detector, as they were when ``layers/insert.py`` held
#: the table (before issue 17 moved each one into its model class as ``sfim_targets``).
ZOO_DEFAULT_TARGETS = {
    "acm": ["layer1", "layer2", "layer3", "uplayer2", "uplayer1"],
    "alcnet": ["layer1", "layer2", "layer3", "fuse23", "fuse12"],
    "isnet": ["layer1", "layer2", "layer3", "uplayer2", "uplayer1"],
    "rdian": ["conv2", "conv_cat"],
    "dnanet": ["conv0_0", "conv1_0", "conv2_0", "conv3_0", "conv4_0"],
    "sfim_dnanet": ["conv0_0", "conv1_0", "conv2_0", "conv3_0", "conv4_0"],
    "istdunet": ["up1", "up2", "up3"],
}


@pytest.mark.parametrize("name", list(ZOO_DEFAULT_TARGETS))
def test_every_zoo_detector_keeps_its_default_insertion_points(name: str) -> None:
    from advcorrupt.models import create_model

    assert set(ZOO_DEFAULT_TARGETS) == set(_ZOO_TINY)
    model = create_model(name, **_ZOO_TINY[name])
    assert default_sfim_targets(model) == ZOO_DEFAULT_TARGETS[name]

    class Subclass(type(model)):  # type: ignore[misc]
        pass

    assert default_sfim_targets(Subclass(**_ZOO_TINY[name])) == ZOO_DEFAULT_TARGETS[name]


def test_an_instance_sfim_targets_overrides_the_zoo_default() -> None:
    from advcorrupt.models import create_model

    model = create_model("acm", **_ZOO_TINY["acm"])
    model.sfim_targets = ("layer2",)
    assert default_sfim_targets(model) == ["layer2"]
    assert _count_sfim(insert_sfim(model)) == 1


@pytest.mark.parametrize("name", list(_ZOO_TINY))
def test_insert_sfim_without_arguments_on_every_zoo_model_keeps_outputs_and_trains(name: str) -> None:
    from advcorrupt.models import create_model

    torch.manual_seed(0)
    model = create_model(name, **_ZOO_TINY[name]).eval()
    x = torch.rand(2, 1, 37, 45)
    with torch.no_grad():
        before = model(x)
    targets = default_sfim_targets(model)
    assert insert_sfim(model) is model
    assert _count_sfim(model) == len(targets) > 0
    assert all(isinstance(model.get_submodule(t), SFIMAfter) for t in targets)
    with torch.no_grad():
        torch.testing.assert_close(model(x), before)  # fresh SFIMs are the identity
    out = model.train()(x)
    sum(o.sigmoid().mean() for o in (out if isinstance(out, list) else [out])).backward()
    sfim_params = [p for n, p in model.named_parameters() if ".sfim." in n]
    assert sfim_params and all(p.grad is not None for p in sfim_params)


def test_sfim_variants_are_registered_and_start_as_their_base_model() -> None:
    from advcorrupt.models import create_model

    for base in ("acm", "alcnet", "rdian", "isnet", "istdunet"):
        torch.manual_seed(0)
        plain = create_model(base, **_ZOO_TINY[base]).eval()
        torch.manual_seed(0)
        variant = create_model(f"sfim_{base}", **_ZOO_TINY[base]).eval()
        assert _count_sfim(variant) == len(default_sfim_targets(plain))
        x = torch.rand(2, 1, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(variant(x), plain(x))


def test_insert_sfim_unknown_target_names_what_was_asked_and_what_exists() -> None:
    from advcorrupt.models import create_model

    model = create_model("acm", **_ZOO_TINY["acm"])
    with pytest.raises(ValueError, match=r"'layer9' matches no submodule of ACM.*'layer1'.*close matches"):
        insert_sfim(model, ["layer9"])
    assert _count_sfim(model) == 0  # nothing was inserted


def test_a_sfim_targets_attribute_declares_the_default_points_of_a_custom_model() -> None:
    class Net(nn.Module):
        sfim_targets = ("body",)

        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Conv2d(1, 4, 3, padding=1)
            self.head = nn.Conv2d(4, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.body(x))

    net = insert_sfim(Net(), input_size=(9, 9))
    assert isinstance(net.body, SFIMAfter) and not isinstance(net.head, SFIMAfter)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"names": []}, "at least one submodule"),
        ({"input_size": (32.5, 32)}, r"input_size must be two integers \(H, W\) >= 1; got \(32.5, 32\)"),
        ({"input_size": (0, 32)}, "input_size must be two integers"),
        ({"input_size": 32}, "input_size must be two integers"),
    ],
)
def test_insert_sfim_rejects_bad_names_and_sizes_before_changing_the_model(kwargs: dict, match: str) -> None:
    from advcorrupt.models import create_model

    model = create_model("rdian", width=4)
    with pytest.raises(ValueError, match=match):
        insert_sfim(model, **kwargs)
    assert _count_sfim(model) == 0
