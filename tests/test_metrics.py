"""Behaviour of advcorrupt.metrics: hand-computed cases for every rule of IoU, nIoU, Pd, Fa and RCE."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from advcorrupt.metrics import ISTDMetrics, iou, niou, pd_fa, rce
from advcorrupt.metrics.istd import _match


def _maps(h: int, w: int, pred_px: list[tuple[int, int]], gt_px: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """A (1, 1, H, W) probability map (0.9 at pred_px) and mask (1 at gt_px)."""
    p = torch.zeros(1, 1, h, w)
    g = torch.zeros(1, 1, h, w)
    for y, x in pred_px:
        p[0, 0, y, x] = 0.9
    for y, x in gt_px:
        g[0, 0, y, x] = 1.0
    return p, g


# ---------------------------------------------------------------- IoU / nIoU
def test_iou_accumulates_totals_while_niou_averages_images() -> None:
    # Image A: I=1, U=1 (IoU 1).  Image B: pred 3 px, gt 1 px inside -> I=1, U=3 (IoU 1/3).
    pa, ga = _maps(8, 8, [(1, 1)], [(1, 1)])
    pb, gb = _maps(8, 8, [(4, 4), (4, 5), (4, 6)], [(4, 5)])
    probs, masks = torch.cat([pa, pb]), torch.cat([ga, gb])
    assert iou(probs, masks) == pytest.approx(2 / 4)
    assert niou(probs, masks) == pytest.approx((1 + 1 / 3) / 2)
    m = ISTDMetrics()
    m.update(pa, ga)
    m.update(pb, gb)
    out = m.compute()
    assert out["iou"] == pytest.approx(0.5)
    assert out["niou"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(("empty_iou", "expected"), [(1.0, (1 + 0.5) / 2), (0.0, 0.5 / 2), (None, 0.5)])
def test_niou_of_an_image_with_empty_mask_and_prediction_follows_empty_iou(empty_iou: float | None, expected: float) -> None:
    p_empty, g_empty = _maps(6, 6, [], [])
    p_half, g_half = _maps(6, 6, [(2, 2), (2, 3)], [(2, 2)])  # IoU 1/2
    probs, masks = torch.cat([p_empty, p_half]), torch.cat([g_empty, g_half])
    assert niou(probs, masks, empty_iou=empty_iou) == pytest.approx(expected)
    assert iou(probs, masks) == pytest.approx(0.5)  # empty image adds nothing to the totals


def test_threshold_is_strictly_greater_than_half_on_probabilities() -> None:
    p = torch.tensor([0.5, 0.5001, 0.49, 1.0]).view(1, 1, 1, 4)
    g = torch.tensor([1.0, 1.0, 1.0, 1.0]).view(1, 1, 1, 4)
    assert iou(p, g) == pytest.approx(2 / 4)  # 0.5 itself is negative


def test_from_logits_thresholds_sigmoid_so_logit_zero_is_negative() -> None:
    logits = torch.tensor([0.0, 0.1, -3.0, 4.0]).view(1, 1, 1, 4)
    g = torch.ones(1, 1, 1, 4)
    assert iou(logits, g, from_logits=True) == pytest.approx(2 / 4)


def test_logits_passed_as_probabilities_raise_at_compute() -> None:
    m = ISTDMetrics()
    m.update(torch.tensor([[[[-2.0, 3.0]]]]), torch.ones(1, 1, 1, 2))
    with pytest.raises(ValueError, match="from_logits"):
        m.compute()


def test_reset_clears_every_accumulator() -> None:
    p1, g1 = _maps(10, 10, [(1, 1), (7, 7)], [(1, 1), (4, 4)])
    p2, g2 = _maps(12, 12, [(3, 3)], [(3, 3)])
    fresh = ISTDMetrics()
    fresh.update(p2, g2)
    reused = ISTDMetrics()
    reused.update(p1, g1)
    reused.reset()
    reused.update(p2, g2)
    assert reused.compute() == fresh.compute()
    assert (reused.images, reused.pixels, reused.targets) == (1, 144, 1)


# ---------------------------------------------------------------- Pd / Fa
def test_diagonal_pixels_form_one_target_under_8_connectivity() -> None:
    p, g = _maps(10, 10, [(2, 2), (3, 3)], [(2, 2), (3, 3), (7, 8), (8, 7)])
    m = ISTDMetrics()
    m.update(p, g)
    out = m.compute()
    assert m.targets == 2  # two diagonal pairs, not four pixels
    assert out["pd"] == pytest.approx(1 / 2)
    assert out["fa"] == 0.0


@pytest.mark.parametrize(
    ("pred_px", "strict", "inclusive"),
    [
        ([(5, 8)], False, True),  # centroid exactly 3 px away
        ([(5, 8), (5, 9)], False, False),  # centroid 3.5 px away
        ([(5, 7), (5, 8)], True, True),  # centroid 2.5 px away
    ],
)
def test_detection_needs_centroid_within_3_px(pred_px: list[tuple[int, int]], strict: bool, inclusive: bool) -> None:
    p, g = _maps(12, 14, pred_px, [(5, 5)])
    pd_strict, fa_strict = pd_fa(p, g)
    pd_incl, _ = pd_fa(p, g, inclusive=True)
    assert pd_strict == (1.0 if strict else 0.0)
    assert pd_incl == (1.0 if inclusive else 0.0)
    expected_fa = 0.0 if strict else len(pred_px) / (12 * 14) * 1e6
    assert fa_strict == pytest.approx(expected_fa)


def test_two_predictions_near_one_target_match_one_to_one() -> None:
    # Target at (10, 10); predictions at distance 2 (left) and 1 (right), separate components.
    p, g = _maps(20, 20, [(10, 8), (10, 11)], [(10, 10)])
    pd, fa = pd_fa(p, g)
    assert pd == 1.0
    assert fa == pytest.approx(1 / 400 * 1e6)  # the farther one is a false alarm


def test_one_prediction_between_two_targets_detects_only_one() -> None:
    p, g = _maps(20, 20, [(10, 10)], [(10, 8), (10, 12)])
    pd, fa = pd_fa(p, g)
    assert pd == 0.5
    assert fa == 0.0


def test_closest_pair_is_matched_first() -> None:
    # Target T1 (5,5), T2 (5,9); prediction A at (5,7) is 2 px from both, B at (5,10) is 1 px from T2.
    # Closest-first matches (T2, B) then (T1, A): everything detected.
    p, g = _maps(12, 16, [(5, 7), (5, 10)], [(5, 5), (5, 9)])
    assert pd_fa(p, g) == (1.0, 0.0)


def test_false_alarms_count_pixels_of_unmatched_components_even_with_equal_areas() -> None:
    # Matched 3-px component and an unmatched 3-px component elsewhere: area-value matching
    # (a known reference-toolkit bug) would drop the second; we count its 3 pixels.
    p, g = _maps(20, 20, [(2, 2), (2, 3), (2, 4), (15, 15), (15, 16), (16, 16)], [(2, 3)])
    pd, fa = pd_fa(p, g)
    assert pd == 1.0
    assert fa == pytest.approx(3 / 400 * 1e6)


def test_fa_is_normalised_by_all_pixels_of_the_dataset() -> None:
    m = ISTDMetrics()
    m.update(*_maps(10, 10, [(1, 1), (1, 2), (8, 8)], []))  # 3 false-alarm pixels in 2 components
    m.update(*_maps(20, 10, [], [(5, 5)]))  # one missed target
    out = m.compute()
    assert out["fa"] == pytest.approx(3 / 300 * 1e6)
    assert out["pd"] == 0.0
    assert m.false_alarm_pixels == 3


def test_list_of_differently_sized_maps_equals_separate_updates() -> None:
    a = _maps(9, 13, [(2, 2), (6, 10)], [(2, 3)])
    b = _maps(17, 5, [(8, 2), (8, 3)], [(8, 2), (15, 1)])
    as_list = ISTDMetrics()
    as_list.update([a[0][0], b[0][0]], [a[1][0], b[1][0]])
    separate = ISTDMetrics()
    separate.update(*a)
    separate.update(*b)
    assert as_list.compute() == separate.compute()


def test_zero_padding_of_list_inputs_never_creates_positives_with_logits() -> None:
    # Differently sized logit maps are padded internally; with threshold 0.3 (logit -0.85) a
    # padding value of 0 would be positive. Every pixel is a confident negative here.
    small, big = torch.full((1, 3, 3), -5.0), torch.full((1, 8, 8), -5.0)
    m = ISTDMetrics(0.3, from_logits=True)
    m.update([small, big], [torch.zeros(1, 3, 3), torch.zeros(1, 8, 8)])
    assert m.false_alarm_pixels == 0 and m.pixels == 9 + 64
    assert math.isnan(m.compute()["iou"])


def test_size_mismatch_and_bad_layout_are_rejected() -> None:
    with pytest.raises(ValueError, match="same size"):
        ISTDMetrics().update(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        ISTDMetrics().update(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4))
    with pytest.raises(TypeError, match="floating point"):
        ISTDMetrics().update(torch.zeros(1, 1, 4, 4, dtype=torch.long), torch.zeros(1, 1, 4, 4))


def test_kdtree_matching_of_many_components_equals_closest_first_greedy() -> None:
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 200, size=(2100, 2))
    pred = gt[:2000] + rng.normal(0, 2.0, size=(2000, 2))
    pred = np.concatenate([pred, rng.uniform(0, 200, size=(100, 2))])  # 2100 x 2100 > dense limit
    got = _match(gt, pred, 3.0, False)
    d = np.sqrt(((gt[:, None] - pred[None]) ** 2).sum(-1))
    pairs = sorted((d[i, j], i, j) for i, j in zip(*np.nonzero(d < 3.0)))
    used_g, expected = set(), np.zeros(len(pred), dtype=bool)
    for _, i, j in pairs:
        if i not in used_g and not expected[j]:
            used_g.add(i)
            expected[j] = True
    np.testing.assert_array_equal(got, expected)


def test_pd_fa_scale_on_214_random_256_maps(capsys: pytest.CaptureFixture[str]) -> None:
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(214, 1, 256, 256, generator=g) ** 8  # ~8% of pixels above 0.5: many components
    masks = (torch.rand(214, 1, 256, 256, generator=g) > 0.9995).float()
    m = ISTDMetrics()
    start = time.perf_counter()
    m.update(probs, masks)
    out = m.compute()
    elapsed = time.perf_counter() - start
    with capsys.disabled():
        print(f"\n[pd/fa on 214 random 256x256 maps: {elapsed:.3f} s]")
    assert m.images == 214 and m.targets > 0
    assert 0.0 <= out["pd"] <= 1.0
    assert out["fa"] > 0


# ---------------------------------------------------------------- RCE
def test_rce_is_relative_iou_drop() -> None:
    assert rce(0.8, 0.4) == pytest.approx(0.5)
    assert rce(0.5, 0.5) == 0.0
    assert rce(0.5, 0.6) == pytest.approx(-0.2)  # the corruption helped
    out = rce(torch.tensor([0.8, 0.5]), torch.tensor([0.2, 0.5]))
    torch.testing.assert_close(out, torch.tensor([0.75, 0.0]))
    with pytest.raises(ValueError, match="iou_clean"):
        rce(0.0, 0.1)


def test_empty_metrics_compute_to_nan() -> None:
    out = ISTDMetrics().compute()
    assert all(math.isnan(v) for v in out.values())


# ---------------------------------------------------------------- CUDA
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_metrics_on_cuda_equal_cpu() -> None:
    g = torch.Generator().manual_seed(1)
    probs = torch.rand(6, 1, 64, 80, generator=g) ** 6
    masks = (torch.rand(6, 1, 64, 80, generator=g) > 0.99).float()
    cpu, gpu = ISTDMetrics(), ISTDMetrics()
    cpu.update(probs, masks)
    gpu.update(probs.cuda(), masks.cuda())
    gpu.update([probs[0].cuda(), probs[1, :, :30].cuda()], [masks[0].cuda(), masks[1, :, :30].cuda()])
    cpu.update([probs[0], probs[1, :, :30]], [masks[0], masks[1, :, :30]])
    a, b = cpu.compute(), gpu.compute()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_iou_update_without_pd_fa_keeps_counts_on_device() -> None:
    m = ISTDMetrics(pd_fa=False)
    m.update(torch.rand(2, 1, 32, 32, device="cuda"), torch.ones(2, 1, 32, 32, device="cuda"))
    assert isinstance(m._inter, torch.Tensor) and m._inter.device.type == "cuda"
    assert 0.0 <= m.compute()["iou"] <= 1.0
