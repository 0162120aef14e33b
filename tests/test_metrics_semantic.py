"""advcorrupt.metrics.SegmentationMetrics against independent implementations and by hand.

- a brute-force numpy reference (one class at a time, the mmsegmentation formulas) on random
  inputs with ignored pixels;
- torchmetrics (``MulticlassConfusionMatrix``, ``MulticlassJaccardIndex``, ``MulticlassAccuracy``)
  wherever its conventions agree with mmsegmentation's (it scores an absent class 0, not NaN);
- the NaN conventions, accumulation, input layouts, every refused input, checkpoints, and the
  reduction over two real gloo processes.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from advcorrupt.corruptions.functional import _emulate_accelerator
from advcorrupt.metrics import SegmentationMetrics

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent


def _batch(
    seed: int, k: int, ignore: int | None, *, b: int = 2, h: int = 7, w: int = 9, present: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random logits (B, K, H, W) and targets (B, H, W) in the first ``present`` classes (all K by
    default), with about 15% ignored pixels (if any)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, k, h, w, generator=g)
    target = torch.randint(0, present or k, (b, h, w), generator=g)
    if ignore is not None:
        target = torch.where(torch.rand(b, h, w, generator=g) < 0.15, ignore, target)
    return logits, target


def _numpy_reference(pred: np.ndarray, target: np.ndarray, k: int, ignore: int | None) -> dict[str, Any]:
    """mmsegmentation's intersect_and_union / total_area_to_metrics, one class at a time."""
    keep = np.ones_like(target, dtype=bool) if ignore is None else target != ignore
    p, t = pred[keep], target[keep]
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    iou, acc = [], []
    for c in range(k):
        inter = np.sum((p == c) & (t == c))
        union = np.sum((p == c) | (t == c))
        area_target = np.sum(t == c)
        iou.append(inter / union if union else math.nan)
        acc.append(inter / area_target if area_target else math.nan)
    return {
        "confusion_matrix": cm,
        "IoU": iou,
        "Acc": acc,
        "mIoU": np.nanmean(iou) if not np.all(np.isnan(iou)) else math.nan,
        "mAcc": np.nanmean(acc) if not np.all(np.isnan(acc)) else math.nan,
        "aAcc": np.sum(p == t) / len(t) if len(t) else math.nan,
    }


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)


def _assert_results_equal(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert torch.equal(got["confusion_matrix"], torch.as_tensor(want["confusion_matrix"]))
    for key in ("mIoU", "mAcc", "aAcc"):
        assert _same(got[key], float(want[key])), f"{key}: {got[key]} vs {want[key]}"
    for key in ("IoU", "Acc"):
        assert len(got[key]) == len(want[key])
        assert all(_same(a, float(b)) for a, b in zip(got[key], want[key])), f"{key}: {got[key]} vs {want[key]}"


# ------------------------------------------------------------------ independent references
def _small_case(seed: int, ignore: int | None) -> tuple[int, torch.Tensor, torch.Tensor]:
    """K up to 10 over 24 pixels, targets in the lower K - 2 classes: classes predicted only, or absent."""
    k = 4 + 2 * seed
    return (k, *_batch(seed, k, ignore, b=2, h=3, w=4, present=k - 2))


@pytest.mark.parametrize("ignore", [255, -100, 0, None])
@pytest.mark.parametrize("seed", range(4))
def test_every_output_equals_a_brute_force_numpy_reference_with_ignored_pixels(seed: int, ignore: int | None) -> None:
    k, logits, target = _small_case(seed, ignore)
    m = SegmentationMetrics(k, ignore_index=ignore)
    m.update(logits, target)
    want = _numpy_reference(logits.argmax(1).numpy(), target.numpy(), k, ignore)
    _assert_results_equal(m.compute(), want)


def test_a_small_random_case_exercises_both_nan_kinds() -> None:
    # Guards the reference test above: its inputs must contain the cases the conventions are about.
    kinds = set()
    for seed in range(4):
        k, logits, target = _small_case(seed, 255)
        ref = _numpy_reference(logits.argmax(1).numpy(), target.numpy(), k, 255)
        kinds |= {"iou_nan" for v in ref["IoU"] if math.isnan(v)}
        kinds |= {"acc_nan_iou_zero" for a, i in zip(ref["Acc"], ref["IoU"]) if math.isnan(a) and i == 0}
    assert kinds == {"iou_nan", "acc_nan_iou_zero"}


@pytest.fixture(scope="module")
def torchmetrics_classes() -> Any:
    return pytest.importorskip("torchmetrics.classification")


@pytest.mark.parametrize("ignore", [255, None])
def test_confusion_matrix_iou_and_accuracy_agree_with_torchmetrics(torchmetrics_classes: Any, ignore: int | None) -> None:
    tm, k = torchmetrics_classes, 5
    m = SegmentationMetrics(k, ignore_index=ignore)
    refs = {
        "cm": tm.MulticlassConfusionMatrix(k, ignore_index=ignore),
        "iou": tm.MulticlassJaccardIndex(k, average=None, ignore_index=ignore),
        "acc": tm.MulticlassAccuracy(k, average=None, ignore_index=ignore),
        "aacc": tm.MulticlassAccuracy(k, average="micro", ignore_index=ignore),
    }
    for seed in range(3):
        logits, target = _batch(seed, k, ignore, b=2, h=16, w=12)
        logits[:, 4] -= 10.0  # class 4 is never predicted ...
        target[target == 4] = 3  # ... and never present: mmseg says NaN, torchmetrics 0
        m.update(logits, target)
        for ref in refs.values():
            ref.update(logits, target)
    out = m.compute()
    assert torch.equal(out["confusion_matrix"], refs["cm"].compute())
    tm_iou, tm_acc = refs["iou"].compute().tolist(), refs["acc"].compute().tolist()
    assert math.isnan(out["IoU"][4]) and math.isnan(out["Acc"][4]) and tm_iou[4] == 0.0 and tm_acc[4] == 0.0
    assert out["IoU"][:4] == pytest.approx(tm_iou[:4], abs=1e-6)
    assert out["Acc"][:4] == pytest.approx(tm_acc[:4], abs=1e-6)
    assert out["mIoU"] == pytest.approx(float(np.mean(tm_iou[:4])), abs=1e-6)  # NaN class left out
    assert out["aAcc"] == pytest.approx(float(refs["aacc"].compute()), abs=1e-6)


# ------------------------------------------------------------------ conventions by hand
def test_a_class_predicted_but_never_present_scores_iou_zero_and_accuracy_nan() -> None:
    # K = 4. Class 0: 2 target px, 1 hit. Class 1: 1 px, hit, plus a false positive. Class 2: only
    # predicted (IoU 0, Acc NaN). Class 3: nowhere (both NaN). One ignored pixel predicted 3.
    target = torch.tensor([[[0, 0, 1, 255, 1]]])
    pred = torch.tensor([[[0, 2, 1, 3, 1]]])
    m = SegmentationMetrics(4, ignore_index=255)
    m.update(pred, target)
    out = m.compute()
    iou, acc = out["IoU"], out["Acc"]
    assert iou[:3] == [0.5, 1.0, 0.0] and math.isnan(iou[3])
    assert acc[:2] == [0.5, 1.0] and math.isnan(acc[2]) and math.isnan(acc[3])
    assert out["mIoU"] == pytest.approx(0.5)  # (0.5 + 1 + 0) / 3: NaN left out, the 0 kept
    assert out["mAcc"] == pytest.approx(0.75)
    assert out["aAcc"] == pytest.approx(3 / 4)  # the ignored pixel is in no total
    assert out["confusion_matrix"].sum() == 4


def test_nothing_counted_gives_nan_everywhere_and_an_all_zero_matrix() -> None:
    m = SegmentationMetrics(3, ignore_index=255)
    empty = m.compute()
    m.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 255))
    for out in (empty, m.compute()):
        assert all(math.isnan(out[key]) for key in ("mIoU", "mAcc", "aAcc"))
        assert all(math.isnan(v) for v in out["IoU"] + out["Acc"])
        assert torch.equal(out["confusion_matrix"], torch.zeros(3, 3, dtype=torch.long))


def test_an_ignore_index_inside_the_class_range_drops_its_target_pixels_only() -> None:
    # mmseg: a pixel labelled ignore_index is dropped; predictions of that class elsewhere count.
    m = SegmentationMetrics(3, ignore_index=0)
    m.update(torch.tensor([[[0, 0, 1, 2]]]), torch.tensor([[[0, 1, 1, 2]]]))
    out = m.compute()
    assert out["confusion_matrix"].tolist() == [[0, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert out["IoU"] == [0.0, 0.5, 1.0]


# ------------------------------------------------------------------ accumulation and layouts
def test_several_updates_equal_one_update_over_the_concatenation() -> None:
    batches = [_batch(seed, 6, 255) for seed in range(4)]
    step = SegmentationMetrics(6, ignore_index=255)
    for logits, target in batches:
        step.update(logits, target)
    once = SegmentationMetrics(6, ignore_index=255)
    once.update(torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]))
    _assert_results_equal(step.compute(), once.compute())
    assert step.compute()["confusion_matrix"].sum() == sum(int((t != 255).sum()) for _, t in batches)


def test_logits_probabilities_and_labels_in_every_layout_give_the_same_result() -> None:
    logits, target = _batch(0, 5, 255, b=3)
    labels = logits.argmax(1)
    results = []
    for preds, tgt in [
        (logits, target),
        (logits.softmax(1), target),
        (logits.double(), target),
        (labels, target),
        (labels[:, None], target[:, None]),
        (labels.int(), target.to(torch.uint8)),
    ]:
        m = SegmentationMetrics(5, ignore_index=255)
        m.update(preds, tgt)
        results.append(m.compute())
    for out in results[1:]:
        _assert_results_equal(out, results[0])


def test_reset_clears_the_matrix_and_the_bad_label_flag() -> None:
    m = SegmentationMetrics(3)
    with _emulate_accelerator():  # the flag path: a bad label is remembered until reset
        m.update(torch.tensor([[[0, 1]]]), torch.tensor([[[0, 9]]]))
    m.reset()
    m.update(torch.tensor([[[0, 1]]]), torch.tensor([[[0, 1]]]))
    assert m.compute()["confusion_matrix"].tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]


# ------------------------------------------------------------------ devices and host syncs
def test_update_on_the_accelerator_path_reads_nothing_on_the_host() -> None:
    sys.path.insert(0, str(TESTS_DIR))
    from test_sync_free import NoHostReads

    logits, target = _batch(0, 4, 255)
    m = SegmentationMetrics(4, ignore_index=255)
    with _emulate_accelerator(), NoHostReads():
        m.update(logits, target)
        m.update(logits.argmax(1), target[:, None])
    ref = SegmentationMetrics(4, ignore_index=255)
    ref.update(torch.cat([logits, logits]), torch.cat([target, target]))
    _assert_results_equal(m.compute(), ref.compute())


def test_the_matrix_stays_on_the_inputs_device() -> None:
    logits, target = _batch(0, 4, 255)
    m = SegmentationMetrics(4, ignore_index=255)
    m.update(logits.to("meta"), target.to("meta"))  # a non-CPU device: the flag path, no host read
    assert m.confusion_matrix.device.type == "meta" and m.confusion_matrix.dtype == torch.int64
    with pytest.raises(ValueError, match=r"device of the earlier updates \(meta\); got cpu"):
        m.update(logits, target)


def test_an_explicit_device_receives_inputs_from_elsewhere() -> None:
    logits, target = _batch(0, 4, 255)
    m = SegmentationMetrics(4, ignore_index=255, device="cpu")
    assert m.confusion_matrix.device.type == "cpu"
    m.update(logits, target)
    assert m.compute()["confusion_matrix"].sum() == int((target != 255).sum())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_update_never_syncs_and_equals_cpu() -> None:
    logits, target = _batch(0, 11, 255, b=4, h=180, w=240)
    cpu = SegmentationMetrics(11, ignore_index=255)
    cpu.update(logits, target)
    cpu.update(logits.argmax(1), target)
    gpu = SegmentationMetrics(11, ignore_index=255)
    logits_d, target_d = logits.cuda(), target.cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        gpu.update(logits_d, target_d)
        gpu.update(logits_d.argmax(1), target_d[:, None])
        gpu.update(logits_d.argmax(1), torch.full_like(target_d, 11))  # a bad label: flagged, not synced
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert gpu.confusion_matrix.device.type == "cuda"
    assert torch.equal(gpu.confusion_matrix.cpu(), cpu.compute()["confusion_matrix"])
    with pytest.raises(ValueError, match="got label 11 that is not ignore_index"):
        gpu.compute()


# ------------------------------------------------------------------ refused inputs
BAD_INPUTS = [
    # (logits_or_labels, target, exception, message), K = 3, ignore_index = 255
    (torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 5, dtype=torch.long), ValueError,
     r"same pixels \(B, H, W\); got logits_or_labels \(2, 3, 4, 4\) \(pixels \(2, 4, 4\)\) and target \(2, 4, 5\)"),
    (torch.randn(2, 4, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long), ValueError,
     r"K = num_classes = 3 .*got \(2, 4, 4, 4\)"),
    (torch.randn(2, 1, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long), ValueError, r"K = num_classes = 3"),
    (torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 4), TypeError, r"target must hold integer class indices.*got torch.float32"),
    (torch.zeros(2, 3, 4, 4, dtype=torch.long), torch.zeros(2, 4, 4, dtype=torch.long), ValueError,
     r"integer logits_or_labels must be labels of shape \(B, H, W\) or \(B, 1, H, W\).*got \(2, 3, 4, 4\)"),
    (torch.randn(2, 3, 4, 4), torch.zeros(4, 4, dtype=torch.long), ValueError,
     r"target must have shape \(B, H, W\) or \(B, 1, H, W\); got \(4, 4\)"),
    (torch.randn(2, 3, 4, 4).numpy(), torch.zeros(2, 4, 4, dtype=torch.long), TypeError, r"logits_or_labels must be a torch.Tensor; got ndarray"),
    (torch.randn(2, 3, 4, 4), torch.zeros(2, 3, 4, 4, dtype=torch.long), ValueError,  # one-hot target
     r"target must have shape \(B, H, W\) or \(B, 1, H, W\); got \(2, 3, 4, 4\)"),
    (torch.randn(2, 3, 4, 4, device="meta"), torch.zeros(2, 4, 4, dtype=torch.long), ValueError,
     r"logits_or_labels and target must be on one device; got meta and cpu"),
    (torch.randn(2, 3, 4, 4), torch.full((2, 4, 4), 3), ValueError, r"target must hold labels in 0..2 \(num_classes = 3\) or ignore_index; got label 3 that is not ignore_index \(255\) at target\[0, 0, 0\]"),
]  # fmt: skip


@pytest.mark.parametrize(("preds", "target", "exc", "message"), BAD_INPUTS)
def test_bad_inputs_are_refused_naming_the_argument_the_expected_and_the_received(preds: Any, target: Any, exc: type, message: str) -> None:
    m = SegmentationMetrics(3, ignore_index=255)
    with pytest.raises(exc, match=message):
        m.update(preds, target)
    assert m.compute()["confusion_matrix"].sum() == 0


@pytest.mark.parametrize(
    ("pred", "target", "message"),
    [
        ([0, 1, 2, 1], [0, 1, 7, 255], r"target must hold labels in 0..2 .*got label 7 that is not ignore_index \(255\) at target\[0, 1, 0\]"),
        ([0, 1, 2, 1], [0, -1, 2, 255], r"got label -1 that is not ignore_index \(255\) at target\[0, 0, 1\]"),
        ([0, 5, 2, 1], [0, 1, 2, 255], r"predicted labels \(logits_or_labels\) must be in 0..2 \(num_classes = 3\); got label 5 at logits_or_labels\[0, 0, 1\]"),
        ([0, 1, -2, 1], [0, 1, 2, 255], r"logits_or_labels.*got label -2 at logits_or_labels\[0, 1, 0\]"),
        ([0, 1, 2, 255], [0, 1, 2, 1], r"logits_or_labels.*got label 255 at logits_or_labels\[0, 1, 1\]"),  # ignore_index is a target label only
    ],
)
def test_a_label_out_of_range_is_named_with_its_position_on_cpu_before_anything_is_counted(
    pred: list[int], target: list[int], message: str
) -> None:
    m = SegmentationMetrics(3, ignore_index=255)
    m.update(torch.tensor([[[0, 1], [2, 0]]]), torch.tensor([[[0, 1], [2, 0]]]))
    before = m.compute()["confusion_matrix"]
    with pytest.raises(ValueError, match=message):
        m.update(torch.tensor(pred).view(1, 2, 2), torch.tensor(target).view(1, 2, 2))
    assert torch.equal(m.compute()["confusion_matrix"], before)


def test_without_ignore_index_the_message_says_so() -> None:
    with pytest.raises(ValueError, match=r"got label 255 \(ignore_index is None\) at target\[0, 0, 1\]"):
        SegmentationMetrics(3).update(torch.tensor([[[0, 1]]]), torch.tensor([[[0, 255]]]))


def test_on_an_accelerator_a_bad_label_raises_at_compute_and_its_pixels_are_not_counted() -> None:
    m = SegmentationMetrics(3, ignore_index=255)
    with _emulate_accelerator():
        m.update(torch.tensor([[[0, 1, 2, 1]]]), torch.tensor([[[0, 1, 9, 255]]]))
        m.update(torch.tensor([[[0, 1, 2, 1]]]), torch.tensor([[[0, 1, 12, -3]]]))
    with pytest.raises(ValueError, match=r"target must hold labels .*got label 12 that is not ignore_index \(255\) \(found on the device"):
        m.compute()
    assert m.confusion_matrix.tolist() == [[2, 0, 0], [0, 2, 0], [0, 0, 0]]
    p = SegmentationMetrics(3)
    with _emulate_accelerator():
        p.update(torch.tensor([[[0, -4]]]), torch.tensor([[[0, 1]]]))
    with pytest.raises(ValueError, match=r"predicted labels \(logits_or_labels\) .*got label -4 \(found on the device"):
        p.compute()


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"num_classes": 1}, ValueError, r"num_classes must be an int >= 2; got 1"),
        ({"num_classes": 3.0}, ValueError, r"num_classes must be an int >= 2; got 3.0"),
        ({"num_classes": 3, "ignore_index": 255.0}, TypeError, r"ignore_index must be an int or None; got float"),
        ({"num_classes": 3, "ignore_index": True}, TypeError, r"ignore_index must be an int or None; got bool"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any], exc: type, message: str) -> None:
    with pytest.raises(exc, match=message):
        SegmentationMetrics(**kwargs)


# ------------------------------------------------------------------ merge, checkpoints, sync
def test_merge_and_add_equal_one_object_that_saw_every_batch() -> None:
    batches = [_batch(seed, 4, 255) for seed in range(3)]
    parts = [SegmentationMetrics(4, ignore_index=255) for _ in batches]
    whole = SegmentationMetrics(4, ignore_index=255)
    for part, (logits, target) in zip(parts, batches):
        part.update(logits, target)
        whole.update(logits, target)
    summed = parts[0] + parts[1] + parts[2]
    _assert_results_equal(summed.compute(), whole.compute())
    first = parts[0].compute()
    merged = SegmentationMetrics(4, ignore_index=255).merge(parts[0]).merge(parts[1]).merge(parts[2])
    _assert_results_equal(merged.compute(), whole.compute())
    _assert_results_equal(parts[0].compute(), first)  # `+` leaves its operands alone
    with pytest.raises(ValueError, match=r"other must have num_classes = 4 and ignore_index = 255; got num_classes = 5"):
        whole.merge(SegmentationMetrics(5, ignore_index=255))
    with pytest.raises(TypeError, match="other must be a SegmentationMetrics; got dict"):
        whole.merge({})  # type: ignore[arg-type]


def test_state_dict_round_trip_resumes_the_accumulation_exactly() -> None:
    batches = [_batch(seed, 4, 255) for seed in range(3)]
    straight = SegmentationMetrics(4, ignore_index=255)
    for logits, target in batches:
        straight.update(logits, target)
    first = SegmentationMetrics(4, ignore_index=255)
    first.update(*batches[0])
    state = first.state_dict()
    assert state["confusion_matrix"].shape == (4, 4) and state["num_classes"] == 4 and state["ignore_index"] == 255
    resumed = SegmentationMetrics(4, ignore_index=255)
    resumed.load_state_dict(state)
    for logits, target in batches[1:]:
        resumed.update(logits, target)
    _assert_results_equal(resumed.compute(), straight.compute())
    assert torch.equal(first.compute()["confusion_matrix"], state["confusion_matrix"])  # a copy, not a view


def test_load_state_dict_refuses_other_settings_and_a_bad_matrix() -> None:
    state = SegmentationMetrics(4, ignore_index=255).state_dict()
    with pytest.raises(ValueError, match=r"state must have num_classes = 5 and ignore_index = 255; got num_classes = 4"):
        SegmentationMetrics(5, ignore_index=255).load_state_dict(state)
    with pytest.raises(ValueError, match=r"ignore_index = None; got num_classes = 4 and ignore_index = 255"):
        SegmentationMetrics(4).load_state_dict(state)
    with pytest.raises(ValueError, match=r"state\['confusion_matrix'\] must be an integer tensor of shape \(4, 4\); got torch.float32"):
        SegmentationMetrics(4, ignore_index=255).load_state_dict({**state, "confusion_matrix": torch.zeros(4, 4)})


def test_sync_without_a_process_group_changes_nothing() -> None:
    assert not torch.distributed.is_initialized()
    logits, target = _batch(0, 4, 255)
    m = SegmentationMetrics(4, ignore_index=255)
    m.update(logits, target)
    before = m.compute()
    assert m.sync() is m
    _assert_results_equal(m.compute(), before)


# ------------------------------------------------------------------ two gloo processes
WORLD = 2


def _ddp_worker(out_dir: str) -> None:
    """Body of each process: its own batches, then sync (twice), a rank without data, a bad label."""
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    m = SegmentationMetrics(4, ignore_index=255)
    for seed in (10 * rank, 10 * rank + 1):
        m.update(*_batch(seed, 4, 255))
    local = m.compute()["confusion_matrix"]
    global_ = m.sync().compute()["confusion_matrix"]
    again = m.sync().compute()["confusion_matrix"]  # idempotent: the local counts are kept apart
    state = m.state_dict()["confusion_matrix"]  # this rank's own counts, for a resume

    empty = SegmentationMetrics(4, ignore_index=255)  # rank 1 has no batch at all
    if rank == 0:
        empty.update(*_batch(99, 4, 255))
    only_rank0 = empty.sync().compute()["confusion_matrix"]

    flagged = SegmentationMetrics(4, ignore_index=255)
    if rank == 1:
        with _emulate_accelerator():  # an accelerator rank meets a bad label: every rank must know
            flagged.update(torch.tensor([[[0, 1]]]), torch.tensor([[[0, 7]]]))
    try:
        flagged.sync().compute()
        error = ""
    except ValueError as e:
        error = str(e)
    torch.save(
        {"local": local, "global": global_, "again": again, "state": state, "only_rank0": only_rank0, "error": error},
        Path(out_dir) / f"rank{rank}.pt",
    )
    dist.destroy_process_group()


_CHILD = """
import sys
sys.path.insert(0, {tests!r})
import test_metrics_semantic
test_metrics_semantic._ddp_worker(sys.argv[1])
"""


def _run_two_ranks(out: Path) -> list[dict[str, Any]]:
    from torch.distributed import TCPStore

    store = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=90))
    env = {
        **os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(store.port), "WORLD_SIZE": str(WORLD),
        "TORCHELASTIC_USE_AGENT_STORE": "True", "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }  # fmt: skip
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD.format(tests=str(TESTS_DIR)), str(out)],
            env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        for rank in range(WORLD)
    ]
    deadline, logs = time.monotonic() + 120, []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=max(1.0, deadline - time.monotonic()))[0].decode(errors="replace"))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
        del store
    codes = [p.returncode for p in procs]
    assert codes == [0] * WORLD, "workers failed:\n" + "\n".join(f"--- rank {r} (exit {c}):\n{log[-3000:]}" for r, (c, log) in enumerate(zip(codes, logs)))
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def test_sync_sums_the_matrices_of_two_gloo_processes(tmp_path: Path) -> None:
    ranks = _run_two_ranks(tmp_path)
    one_process = SegmentationMetrics(4, ignore_index=255)
    for seed in (0, 1, 10, 11):
        one_process.update(*_batch(seed, 4, 255))
    want = one_process.compute()["confusion_matrix"]
    assert not torch.equal(ranks[0]["local"], ranks[1]["local"])
    assert torch.equal(ranks[0]["local"] + ranks[1]["local"], want)
    for r in ranks:
        assert torch.equal(r["global"], want) and torch.equal(r["again"], want)
        assert torch.equal(r["state"], r["local"])
    only = SegmentationMetrics(4, ignore_index=255)
    only.update(*_batch(99, 4, 255))
    assert all(torch.equal(r["only_rank0"], only.compute()["confusion_matrix"]) for r in ranks)
    assert all("got label 7 that is not ignore_index (255)" in r["error"] for r in ranks)
