"""Behaviour of ActionSpace: the (corruption, severity) grid the policy samples from."""

from __future__ import annotations

import pytest
import torch

from advcorrupt.corruptions import available, corrupt, get
from advcorrupt.policy.action_space import ActionSpace

RANDOM = {"gaussian_noise", "shot_noise", "impulse_noise", "motion_blur"}


def test_default_space_is_every_corruption_times_three_levels() -> None:
    space = ActionSpace()
    assert space.corruptions == tuple(available())
    assert space.severities == (1, 2, 3)
    assert space.size == len(available()) * 3
    assert space.labels()[:2] == [f"{available()[0]}@1", f"{available()[0]}@2"]


def test_decode_then_encode_round_trips_every_action() -> None:
    space = ActionSpace(["gaussian_noise", "contrast", "pixelate"], severities=(2, 5))
    actions = torch.arange(space.size)
    kind, sev = space.decode(actions)
    assert kind.tolist() == [0, 0, 1, 1, 2, 2]
    assert sev.tolist() == [2, 5, 2, 5, 2, 5]
    assert torch.equal(space.encode(kind, sev), actions)


@pytest.mark.parametrize("channels", [1, 3])
def test_mixed_batch_equals_per_sample_corrupt_for_deterministic_corruptions(channels: int) -> None:
    names = [n for n in available() if n not in RANDOM]
    space = ActionSpace(names, severities=(1, 3, 5))
    x = torch.rand(2 * space.size, channels, 23, 19, generator=torch.Generator().manual_seed(0))
    actions = torch.randperm(space.size, generator=torch.Generator().manual_seed(1)).repeat(2)
    out = space.apply(x, actions)
    kind, sev = space.decode(actions)
    for i in range(x.shape[0]):
        ref = corrupt(x[i : i + 1], names[int(kind[i])], int(sev[i]))
        torch.testing.assert_close(out[i : i + 1], ref, atol=2e-5, rtol=0)


def test_apply_replays_exactly_with_the_same_generator_seed() -> None:
    space = ActionSpace()
    x = torch.rand(12, 1, 20, 20, generator=torch.Generator().manual_seed(0))
    actions = torch.randint(0, space.size, (12,), generator=torch.Generator().manual_seed(2))
    a = space.apply(x, actions, generator=torch.Generator().manual_seed(5))
    b = space.apply(x, actions, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert a.shape == x.shape and a.dtype == x.dtype and 0 <= a.min() and a.max() <= 1


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_apply_keeps_dtype_and_handles_empty_batches(dtype: torch.dtype) -> None:
    space = ActionSpace(["brightness", "gaussian_blur"], severities=(1,))
    x = torch.rand(3, 1, 9, 7).to(dtype)
    assert space.apply(x, torch.tensor([0, 1, 1])).dtype == dtype
    assert space.apply(x[:0], torch.zeros(0, dtype=torch.long)).shape == (0, 1, 9, 7)


def test_actions_of_selects_corruption_and_category() -> None:
    space = ActionSpace(severities=(1, 2))
    assert space.actions_of("defocus_blur") == [6, 7]
    noise = space.actions_of("noise")
    assert noise == [0, 1, 2, 3, 4, 5]
    kinds, _ = space.decode(torch.tensor(space.actions_of("digital")))
    assert {space.corruptions[k] for k in kinds.tolist()} == set(available("digital"))
    assert {get(space.corruptions[k]).category for k in kinds.tolist()} == {"digital"}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"corruptions": ["fog"]}, KeyError, "unknown corruption 'fog'"),
        ({"corruptions": []}, ValueError, "at least one"),
        ({"corruptions": ["contrast", "contrast"]}, ValueError, "must not repeat"),
        ({"corruptions": "contrast"}, TypeError, "sequence of names"),
        ({"severities": (0, 1)}, ValueError, "severities must be in \\[1, 5\\]"),
        ({"severities": (1, 6)}, ValueError, "severities must be in \\[1, 5\\]"),
        ({"severities": ()}, ValueError, "distinct levels"),
    ],
)
def test_construction_errors_are_clear(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        ActionSpace(**kwargs)


@pytest.mark.parametrize(
    ("actions", "error", "match"),
    [
        (torch.tensor([0.0, 1.0]), TypeError, "integer tensor"),
        ([0, 1], TypeError, "integer tensor"),
        (torch.tensor([[0, 1]]), ValueError, "shape \\(B,\\)"),
        (torch.tensor([0, 1, 2]), ValueError, "\\(B,\\) = \\(2,\\)"),
        (torch.tensor([0, 4]), ValueError, "in \\[0, 3\\]"),
        (torch.tensor([-1, 0]), ValueError, "in \\[0, 3\\]"),
    ],
)
def test_apply_rejects_bad_actions(actions: object, error: type, match: str) -> None:
    space = ActionSpace(["contrast", "pixelate"], severities=(1, 2))
    with pytest.raises(error, match=match):
        space.apply(torch.rand(2, 1, 8, 8), actions)  # type: ignore[arg-type]


def test_actions_of_unknown_selector_lists_choices() -> None:
    with pytest.raises(KeyError, match="contrast.*categories"):
        ActionSpace(["contrast"]).actions_of("fog")
    with pytest.raises(ValueError, match="no corruption of category 'noise'"):
        ActionSpace(["contrast"]).actions_of("noise")


def test_state_dict_identifies_the_space() -> None:
    space = ActionSpace(["contrast", "pixelate"], severities=(1, 3))
    assert space.state_dict() == {"corruptions": ["contrast", "pixelate"], "severities": [1, 3]}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_apply_on_cuda_matches_cpu_for_deterministic_and_replays_random() -> None:
    space = ActionSpace()
    x = torch.rand(32, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    actions = torch.randint(0, space.size, (32,), generator=torch.Generator().manual_seed(1))
    xc, ac = x.cuda(), actions.cuda()
    a = space.apply(xc, ac, generator=torch.Generator(device="cuda").manual_seed(3))
    b = space.apply(xc, ac, generator=torch.Generator(device="cuda").manual_seed(3))
    assert a.device.type == "cuda" and torch.equal(a, b)
    ref = space.apply(x, actions, generator=torch.Generator().manual_seed(3))
    kind, _ = space.decode(actions)
    det = torch.tensor([space.corruptions[k] not in RANDOM for k in kind.tolist()])
    assert (a.cpu()[det] - ref[det]).abs().mean() < 5e-4


# ----------------------------------------------------------------------------- fused grouping
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("severities", [(1, 2, 3), (1, 3, 5)])
def test_fused_grouping_equals_subset_for_deterministic_corruptions(channels: int, severities: tuple) -> None:
    fused, subset = ActionSpace(severities=severities, grouping="fused"), ActionSpace(severities=severities)
    x = torch.rand(2 * fused.size, channels, 23, 19, generator=torch.Generator().manual_seed(0))
    actions = torch.arange(fused.size).repeat(2)
    a, b = fused.apply(x, actions), subset.apply(x, actions)
    kind, _ = fused.decode(actions)
    det = torch.tensor([fused.corruptions[k] not in RANDOM for k in kind.tolist()])
    torch.testing.assert_close(a[det], b[det], atol=2e-5, rtol=0)
    assert not torch.equal(a[~det], x[~det])  # random corruptions still corrupt


def test_fused_grouping_replays_and_draws_each_noise_at_its_strength() -> None:
    space = ActionSpace(["gaussian_noise", "shot_noise", "impulse_noise", "contrast"], grouping="fused")
    x = torch.full((8, 1, 64, 64), 0.5)
    actions = torch.tensor([0, 2, 3, 5, 6, 8, 9, 11])  # each noise at levels 1 and 3, contrast 1 and 3
    a = space.apply(x, actions, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, space.apply(x, actions, generator=torch.Generator().manual_seed(4)))
    std = (a - x).std(dim=(1, 2, 3))
    assert std[0] == pytest.approx(0.08, rel=0.1) and std[1] == pytest.approx(0.18, rel=0.1)
    assert std[2] == pytest.approx((0.5 / 60) ** 0.5, rel=0.1) and std[3] == pytest.approx((0.5 / 12) ** 0.5, rel=0.1)
    frac = (a[4:6] != 0.5).float().mean(dim=(1, 2, 3))
    assert torch.allclose(frac, torch.tensor([0.03, 0.09]), atol=0.015)
    torch.testing.assert_close(a[6:], corrupt(x[6:], "contrast", torch.tensor([1, 3])))


def test_fused_grouping_runs_digital_corruptions_and_a_lone_noise_masked() -> None:
    names = ["gaussian_blur", "brightness", "shot_noise"]  # a lone noise gains nothing from its family
    fused, subset = ActionSpace(names, grouping="fused"), ActionSpace(names, grouping="subset")
    assert [(f.members[0], ks) for f, ks in fused._families] == [("defocus_blur", [0])]
    x = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    actions = torch.tensor([0, 1, 2, 3, 4, 5])
    torch.testing.assert_close(fused.apply(x, actions), subset.apply(x, actions), atol=2e-5, rtol=0)


def test_grouping_auto_is_fused_off_cpu() -> None:
    space = ActionSpace()
    assert space._resolve_grouping(torch.device("cpu")) == "subset"
    assert space._resolve_grouping(torch.device("cuda")) == "fused"
    assert [f.members[0] for f, _ in space._families] == ["gaussian_noise", "defocus_blur", "pixelate"]


def test_fused_motion_blur_draws_the_angles_motion_blur_draws() -> None:
    space = ActionSpace(["defocus_blur", "motion_blur"], severities=(1, 3, 5), grouping="fused")
    x = torch.rand(6, 1, 48, 40, generator=torch.Generator().manual_seed(0))
    actions = torch.tensor([3, 0, 4, 5, 1, 3])  # motion at levels 1, 3, 5
    out = space.apply(x, actions, generator=torch.Generator().manual_seed(9))
    _, sev = space.decode(actions)
    p = get("motion_blur").params_for(sev)
    from advcorrupt.corruptions import functional as Fc

    ref = Fc.motion_blur(x, p[:, 0], p[:, 1], generator=torch.Generator().manual_seed(9))
    motion = torch.tensor([True, False, True, True, False, True])
    torch.testing.assert_close(out[motion], ref[motion], atol=2e-5, rtol=0)
    torch.testing.assert_close(out[~motion], corrupt(x[~motion], "defocus_blur", sev[~motion]), atol=2e-5, rtol=0)
