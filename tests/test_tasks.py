"""The task spine (issues 17/21): what a mask means, its checks, its default loss, the trainer's use.

:func:`make_task` and :func:`infer_task`, :class:`BinaryTask` (today's ISTD masks, unchanged),
:class:`SemanticTask` (class indices, ignore label, K from the model),
:class:`PerSampleCrossEntropy` against torch's own cross-entropy, and the trainer end to end with a
tiny multi-class model (a 1x1 convolution: 3 input channels, 4 classes).
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advcorrupt.losses import PerSampleCrossEntropy, SoftIoULoss
from advcorrupt.policy import ActionSpace
from advcorrupt.tasks import TASKS, BinaryTask, SemanticTask, infer_task, make_task
from advcorrupt.trainer import AdversarialCorruptionTrainer

K = 4


# --------------------------------------------------------------------------------------- make_task
def test_make_task_reads_every_input_form() -> None:
    assert TASKS == ("binary", "semantic")
    assert make_task() is None  # inferred from the first batch
    assert make_task(None) is None
    assert make_task("binary") == BinaryTask()
    assert isinstance(make_task("binary"), BinaryTask)
    semantic = make_task("semantic")
    assert isinstance(semantic, SemanticTask) and semantic.num_classes is None and semantic.ignore_index is None
    full = make_task("semantic", num_classes=11, ignore_index=255, class_weights=[1.0] * 11)
    assert isinstance(full, SemanticTask) and (full.num_classes, full.ignore_index) == (11, 255)
    assert full.class_weights is not None and full.class_weights.shape == (11,)
    given = SemanticTask(3)
    assert make_task(given) is given
    # semantic arguments alone mean semantic
    assert make_task(num_classes=5) == SemanticTask(5)
    assert make_task(ignore_index=255) == SemanticTask(ignore_index=255)
    assert make_task(class_weights=[1.0, 2.0]) == SemanticTask(class_weights=[1.0, 2.0])
    # a to_dict() mapping (checkpoints, config.json) gives the same task back
    for task in (BinaryTask(), SemanticTask(), SemanticTask(7, ignore_index=7, class_weights=[0.5] * 7)):
        assert make_task(task.to_dict()) == task


def test_task_identity_dict_equality_and_repr() -> None:
    assert BinaryTask().to_dict() == {"name": "binary"}
    assert SemanticTask(4, ignore_index=255).to_dict() == {
        "name": "semantic", "num_classes": 4, "ignore_index": 255, "class_weights": None,
    }
    assert SemanticTask(4) != SemanticTask(5) and SemanticTask(4) != BinaryTask()
    assert len({SemanticTask(4), SemanticTask(4), BinaryTask()}) == 2
    assert repr(SemanticTask(4)) == "SemanticTask(num_classes=4, ignore_index=None, class_weights=None)"
    assert (BinaryTask.primary_metric, SemanticTask.primary_metric) == ("iou", "mIoU")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"task": "instance"}, r"task must be one of \['binary', 'semantic'\] or None .*; got 'instance'"),
        ({"task": "binary", "num_classes": 3}, r"apply to task='semantic'; got them with task='binary' \(num_classes=3"),
        ({"task": "binary", "ignore_index": 255}, r"apply to task='semantic'.*ignore_index=255"),
        ({"task": BinaryTask(), "num_classes": 3}, r"given twice: set them on the Task object"),
        ({"num_classes": 1}, r"num_classes must be an int >= 2 .*; got 1"),
        ({"task": "semantic", "num_classes": 0}, r"num_classes must be an int >= 2 .*; got 0"),
        ({"task": "semantic", "num_classes": True}, r"num_classes must be an int >= 2 .*; got True"),
        ({"task": "semantic", "num_classes": 3.0}, r"num_classes must be an int >= 2 .*; got 3.0"),
        ({"task": "semantic", "ignore_index": True}, r"ignore_index must be an int or None; got True"),
        ({"num_classes": 11, "ignore_index": 3}, r"ignore_index must not be one of the 11 class labels \[0, 11\); got 3"),
        ({"num_classes": 11, "ignore_index": 0}, r"ignore_index must not be one of the 11 class labels"),
        ({"num_classes": 3, "class_weights": [1.0, 2.0]}, r"class_weights must hold num_classes = 3 weights; got shape \(2,\)"),
    ],
)
def test_make_task_refuses_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_task(**kwargs)  # type: ignore[arg-type]


def test_ignore_index_outside_the_labels_is_accepted() -> None:
    assert SemanticTask(11, ignore_index=11).ignore_index == 11
    assert SemanticTask(11, ignore_index=-1).ignore_index == -1
    assert SemanticTask(11, ignore_index=255).ignore_index == 255


# -------------------------------------------------------------------------------------- infer_task
@pytest.mark.parametrize(
    "masks, channels, expected",
    [
        (torch.zeros(2, 8, 8, dtype=torch.long), 4, SemanticTask(4)),
        (torch.zeros(2, 1, 8, 8, dtype=torch.long), 4, SemanticTask(4)),
        (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), 11, SemanticTask(11)),
        (torch.zeros(2, 8, 8), 4, SemanticTask(4)),  # (B, H, W) float: class indices
        (torch.zeros(2, 1, 8, 8), 4, BinaryTask()),  # float (B, 1, H, W): binary, whatever the model
        (torch.zeros(2, 1, 8, 8), 1, BinaryTask()),
        (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), 1, BinaryTask()),  # one output channel: binary
        (torch.zeros(2, 8, 8, dtype=torch.long), 1, BinaryTask()),
    ],
)
def test_infer_task_rules(masks: torch.Tensor, channels: int, expected: object) -> None:
    task = infer_task(masks, channels)
    assert task == expected and type(task) is type(expected)


# -------------------------------------------------------------------------------- BinaryTask masks
def test_binary_check_masks_keeps_todays_behaviour() -> None:
    task = BinaryTask()
    images = torch.rand(2, 1, 8, 8)
    masks = (torch.rand(2, 1, 8, 8) > 0.5).float()
    assert task.check_masks(masks, images) is masks  # float masks pass through untouched
    as_uint8 = task.check_masks(masks.to(torch.uint8), images)
    assert as_uint8.dtype == torch.float32 and torch.equal(as_uint8, masks)
    assert task.check_masks(masks.bool(), images).dtype == torch.float32
    half = masks.half()
    assert task.check_masks(half, images) is half
    multi = torch.ones(2, 3, 8, 8)  # (B, M, H, W) matching an M-channel model, as before
    assert task.check_masks(multi, images) is multi
    assert isinstance(task.default_loss(), SoftIoULoss) and task.default_loss().reduction == "none"


@pytest.mark.parametrize(
    "masks, error, message",
    [
        (torch.full((2, 1, 8, 8), 255.0), ValueError,
         (r"masks must be binary, 0 for background and 1 for target pixels; got values such as \[255.0\] "
         r"\(a 0-255 mask\? divide by 255 and threshold")),
        (torch.full((2, 1, 8, 8), 0.5), ValueError, r"got values such as \[0.5\]"),
        (torch.full((2, 1, 8, 8), 3, dtype=torch.long), ValueError, r"got values such as \[3.0\].*pass them as an integer"),
        (torch.zeros(2, 8, 8), ValueError, r"masks must have shape \(B, 1, H, W\) = \(2, 1, 8, 8\) to match images; got \(2, 8, 8\)"),
        (torch.zeros(3, 1, 8, 8), ValueError, r"to match images; got \(3, 1, 8, 8\)"),
        (torch.zeros(2, 1, 8, 9), ValueError, r"to match images; got \(2, 1, 8, 9\)"),
        (torch.zeros(2, 1, 8, 8).numpy(), TypeError, r"masks must be a torch.Tensor of shape \(B, 1, H, W\); got ndarray"),
    ],
)
def test_binary_check_masks_refuses_what_it_refused_before(masks: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        BinaryTask().check_masks(masks, torch.rand(2, 1, 8, 8))


# ------------------------------------------------------------------------------ SemanticTask masks
IMAGES = torch.rand(2, 3, 4, 5)


def _labels(dtype: torch.dtype = torch.long) -> torch.Tensor:
    return torch.arange(40).remainder(K).view(2, 4, 5).to(dtype)


@pytest.mark.parametrize("dtype", [torch.long, torch.int32, torch.uint8, torch.int16])
def test_semantic_check_masks_accepts_integer_indices_as_int64_bhw(dtype: torch.dtype) -> None:
    task = SemanticTask(K)
    for masks in (_labels(dtype), _labels(dtype)[:, None]):
        out = task.check_masks(masks, IMAGES)
        assert out.shape == (2, 4, 5) and out.dtype == torch.int64
        assert torch.equal(out, _labels())


def test_semantic_check_masks_accepts_float_whole_numbers() -> None:
    out = SemanticTask(K).check_masks(_labels(torch.float32), IMAGES)
    assert out.dtype == torch.int64 and torch.equal(out, _labels())
    assert torch.equal(SemanticTask(K).check_masks(_labels(torch.float64)[:, None], IMAGES), _labels())


def test_semantic_check_masks_accepts_the_ignore_label() -> None:
    masks = _labels()
    masks[1, 2, 3] = 255
    out = SemanticTask(K, ignore_index=255).check_masks(masks, IMAGES)
    assert int(out[1, 2, 3]) == 255


@pytest.mark.parametrize(
    "masks, message",
    [
        (_labels(torch.float32) + 0.5, (r"masks must be class indices; got a float mask with non-integer values such as "
                                       r"\[0.5, 1.5, 2.5, 3.5\] \(resized with bilinear interpolation\?")),
        (_labels() > 1, r"masks must be integer class indices; got dtype torch.bool"),
        (F.one_hot(_labels(), K).permute(0, 3, 1, 2), (r"got shape \(2, 4, 4, 5\), which looks one-hot \(B, K, H, W\): "
                                                      r"pass masks.argmax\(1\)")),
        (torch.zeros(2, 4, 6, dtype=torch.long), (r"masks must have shape \(B, H, W\) = \(2, 4, 5\) or \(B, 1, H, W\) to "
                                                 r"match images; got \(2, 4, 6\)")),
        (torch.zeros(3, 4, 5, dtype=torch.long), r"to match images; got \(3, 4, 5\)"),
        (torch.zeros(2, 20, dtype=torch.long), r"to match images; got \(2, 20\)"),
        (torch.zeros(2, 2, 4, 6, dtype=torch.long), r"to match images; got \(2, 2, 4, 6\)"),
    ],
)
def test_semantic_check_masks_refuses_bad_masks(masks: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SemanticTask(K).check_masks(masks, IMAGES)


def test_semantic_check_masks_refuses_a_non_tensor() -> None:
    with pytest.raises(TypeError, match=r"masks must be a torch.Tensor of class indices, \(B, H, W\); got list"):
        SemanticTask(K).check_masks([[0, 1]], IMAGES)


@pytest.mark.parametrize("ignore_index, ignore_text", [(None, r" \(no ignore label set\)"), (255, " or the ignore label 255")])
@pytest.mark.parametrize("bad", [K, 7, 254, -1])
def test_semantic_check_masks_refuses_a_label_out_of_range_naming_value_and_place(
    bad: int, ignore_index: int | None, ignore_text: str
) -> None:
    masks = _labels()
    masks[1, 3, 2] = bad
    masks[1, 3, 4] = bad  # the first one (in memory order) is named
    with pytest.raises(ValueError) as info:
        SemanticTask(K, ignore_index=ignore_index).check_masks(masks, IMAGES)
    assert re.fullmatch(
        rf"masks must hold class indices in \[0, {K}\){ignore_text}; got {bad} at \(sample 1, row 3, col 2\)",
        str(info.value),
    ), str(info.value)


def test_semantic_labels_wait_for_k_when_it_is_not_known() -> None:
    masks = _labels()
    masks[0, 0, 0] = 9
    task = SemanticTask()
    assert torch.equal(task.check_masks(masks, IMAGES), masks)  # K unknown: nothing to check yet
    with pytest.raises(ValueError, match=r"got 9 at \(sample 0, row 0, col 0\)"):
        task.check_output(torch.zeros(2, K, 4, 5), masks)  # the model says K = 4


# ------------------------------------------------------------------------------------ check_output
def test_check_output_refuses_a_k_mismatch_naming_both() -> None:
    with pytest.raises(ValueError) as info:
        SemanticTask(5).check_output(torch.zeros(2, K, 4, 5), _labels())
    message = str(info.value)
    assert "num_classes = 5 disagrees with the model's output channels" in message
    assert "(2, 4, 4, 5) (K = 4)" in message and "pass num_classes=4" in message
    SemanticTask(K).check_output(torch.zeros(2, K, 4, 5), _labels())  # agreeing: fine


def test_check_output_binds_k_when_it_was_left_to_inference() -> None:
    task = SemanticTask(ignore_index=255)
    task.check_output(torch.zeros(2, K, 4, 5), _labels())
    assert task.num_classes == K and task.to_dict()["num_classes"] == K
    with pytest.raises(ValueError, match=r"num_classes = 4 disagrees"):  # bound: a later K = 3 output is refused
        task.check_output(torch.zeros(2, 3, 4, 5), _labels().clamp(max=2))
    weighted = SemanticTask(class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"class_weights must hold num_classes = 4 weights; got shape \(2,\)"):
        weighted.check_output(torch.zeros(2, K, 4, 5), _labels())


def test_check_output_refuses_one_channel_for_a_semantic_task() -> None:
    with pytest.raises(ValueError, match=r"needs a model that returns \(B, K, H, W\) logits with K >= 2 classes; got "
                                         r"\(2, 1, 4, 5\) \(for one foreground class use task='binary'\)"):
        SemanticTask().check_output(torch.zeros(2, 1, 4, 5), _labels().clamp(max=0))


def test_semantic_make_metrics_needs_k_and_default_loss_carries_ignore_and_weights() -> None:
    with pytest.raises(ValueError, match=r"num_classes is not known yet"):
        SemanticTask().make_metrics()
    loss = SemanticTask(3, ignore_index=255, class_weights=[1.0, 2.0, 3.0]).default_loss()
    assert isinstance(loss, PerSampleCrossEntropy) and loss.ignore_index == 255 and loss.reduction == "none"
    assert loss.weight is not None and loss.weight.tolist() == [1.0, 2.0, 3.0]


# ------------------------------------------------------------------ the spine's uniform interface
# Everything the trainer, the training loop, the benchmark and the CLI ask a task, for both tasks.
def test_binary_task_carries_its_loss_options_into_the_default_loss() -> None:
    task = BinaryTask(bce_weight=1.0, bce_pos_weight=10.0)
    loss = task.default_loss()
    assert isinstance(loss, SoftIoULoss) and loss.reduction == "none"
    assert (loss.bce_weight, loss.bce_pos_weight) == (1.0, 10.0)
    plain = BinaryTask().default_loss()
    assert (plain.bce_weight, plain.bce_pos_weight) == (0.0, 1.0)
    g = torch.Generator().manual_seed(0)
    logits, masks = torch.randn(3, 1, 6, 6, generator=g), (torch.rand(3, 1, 6, 6, generator=g) > 0.8).float()
    expected = SoftIoULoss(reduction="none", bce_weight=1.0, bce_pos_weight=10.0)(logits, masks)
    assert torch.equal(loss(logits, masks), expected)
    assert not torch.equal(plain(logits, masks), expected)  # the options change the loss
    # a training setting, not what a mask means: checkpoints and config.json see the same task
    assert task.to_dict() == {"name": "binary"} and task == BinaryTask() and hash(task) == hash(BinaryTask())
    assert repr(task) == "BinaryTask(bce_weight=1.0, bce_pos_weight=10.0)" and repr(BinaryTask()) == "BinaryTask()"
    assert (BinaryTask.accepts_loss_options, SemanticTask.accepts_loss_options) == (True, False)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bce_weight": -1.0}, r"bce_weight must be a finite number >= 0; got -1.0"),
        ({"bce_weight": float("inf")}, r"bce_weight must be a finite number >= 0; got inf"),
        ({"bce_weight": True}, r"bce_weight must be a finite number >= 0; got True"),
        ({"bce_pos_weight": 0.0}, r"bce_pos_weight must be a finite number > 0; got 0.0"),
        ({"bce_pos_weight": "10"}, r"bce_pos_weight must be a finite number > 0; got '10'"),
    ],
)
def test_binary_task_refuses_bad_loss_options_naming_them(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BinaryTask(**kwargs)  # type: ignore[arg-type]


def test_run_task_gives_a_binary_run_the_configs_loss_knobs() -> None:
    from advcorrupt.training import TrainConfig, run_task

    task = run_task(TrainConfig(bce_weight=1.0, bce_pos_weight=10.0))
    assert isinstance(task, BinaryTask) and (task.bce_weight, task.bce_pos_weight) == (1.0, 10.0)
    assert task.to_dict() == {"name": "binary"}


def test_metric_inputs_are_probabilities_for_binary_and_the_logits_for_semantic() -> None:
    logits = torch.tensor([[[[-2.0, 0.0], [1.0, 3.0]]]])
    assert torch.equal(BinaryTask().metric_inputs(logits), torch.sigmoid(logits))
    many = torch.randn(2, K, 4, 5)
    assert SemanticTask(K).metric_inputs(many) is many


def test_check_eval_masks_leaves_binary_masks_unchecked_and_checks_semantic_labels() -> None:
    images = torch.rand(2, 1, 4, 5)
    raw = torch.full((2, 1, 4, 5), 255, dtype=torch.uint8)  # check_masks would refuse it
    assert BinaryTask().check_eval_masks(raw, images) is raw  # the 0.1 benchmark: as given, bit for bit
    with pytest.raises(ValueError, match="masks must be binary"):
        BinaryTask().check_masks(raw, images)
    checked = SemanticTask(K).check_eval_masks(_labels().unsqueeze(1), IMAGES)
    assert checked.shape == (2, 4, 5) and checked.dtype == torch.long and torch.equal(checked, _labels())
    bad = _labels()
    bad[0, 1, 1] = 9
    with pytest.raises(ValueError, match=r"got 9 at \(sample 0, row 1, col 1\)"):
        SemanticTask(K).check_eval_masks(bad, IMAGES)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((2, 2, 4, 5), r"model logits must have shape \(B, 1, H, W\) = \(2, 1, 4, 5\); got \(2, 2, 4, 5\)"),
        ((3, 1, 4, 5), r"= \(2, 1, 4, 5\); got \(3, 1, 4, 5\)"),
        ((2, 4, 5), r"= \(2, 1, 4, 5\); got \(2, 4, 5\)"),
    ],
)
def test_binary_check_logits_wants_one_map_per_image(shape: tuple[int, ...], message: str) -> None:
    x = torch.rand(2, 1, 4, 5)
    BinaryTask().check_logits(torch.zeros(2, 1, 4, 5), x)  # the right shape passes
    with pytest.raises(ValueError, match=message):
        BinaryTask().check_logits(torch.zeros(shape), x)


def test_semantic_check_logits_wants_k_channels_once_k_is_known() -> None:
    x = torch.rand(2, 3, 4, 5)
    SemanticTask(K).check_logits(torch.zeros(2, K, 4, 5), x)
    with pytest.raises(ValueError, match=r"num_classes = 4 disagrees with the model's output channels.*\(K = 3\)"):
        SemanticTask(K).check_logits(torch.zeros(2, 3, 4, 5), x)
    with pytest.raises(ValueError, match=r"shape \(B, K, H, W\) with B = 2; got \(1, 4, 4, 5\)"):
        SemanticTask(K).check_logits(torch.zeros(1, K, 4, 5), x)
    with pytest.raises(ValueError, match=r"shape \(B, K, H, W\) with B = 2; got \(2, 4, 5\)"):
        SemanticTask(K).check_logits(torch.zeros(2, 4, 5), x)
    unbound = SemanticTask()
    unbound.check_logits(torch.zeros(2, 7, 4, 5), x)  # K not known yet: any K
    assert unbound.num_classes is None  # check_logits never binds (check_output does)


def test_make_metrics_takes_the_threshold_uniformly() -> None:
    from advcorrupt.metrics import ISTDMetrics, SegmentationMetrics

    binary = BinaryTask().make_metrics(threshold=0.7)
    assert isinstance(binary, ISTDMetrics) and binary.threshold == 0.7
    assert BinaryTask().make_metrics().threshold == 0.5
    semantic = SemanticTask(K, ignore_index=255).make_metrics(threshold=0.7)  # ignored: the argmax decides
    assert isinstance(semantic, SegmentationMetrics) and (semantic.num_classes, semantic.ignore_index) == (K, 255)


def test_metric_values_are_plain_numbers_in_each_tasks_keys() -> None:
    binary = BinaryTask().metric_values({"iou": torch.tensor(0.5), "niou": 0.25, "pd": torch.tensor(1.0), "fa": 3})
    assert binary == {"iou": 0.5, "niou": 0.25, "pd": 1.0, "fa": 3.0}
    assert all(type(v) is float for v in binary.values())
    computed = {"mIoU": torch.tensor(0.5), "aAcc": 0.75, "mAcc": torch.tensor(0.6), "IoU": torch.tensor([0.25, 0.75]),
                "extra": 1}
    semantic = SemanticTask(2).metric_values(computed)
    assert semantic == {"mIoU": 0.5, "aAcc": 0.75, "mAcc": pytest.approx(0.6), "IoU": [0.25, 0.75]}
    assert type(semantic["IoU"]) is list and all(type(v) is float for v in semantic["IoU"])


def test_model_kwargs_binding_and_output_checks_per_task() -> None:
    assert BinaryTask().model_kwargs() == {} and SemanticTask().model_kwargs() == {}
    assert SemanticTask(11, ignore_index=11).model_kwargs() == {"num_classes": 11}
    assert BinaryTask().is_bound and SemanticTask(K).is_bound and not SemanticTask().is_bound
    task = SemanticTask()
    task.check_output(torch.zeros(2, K, 4, 5), _labels())
    assert task.is_bound and task.model_kwargs() == {"num_classes": K}
    assert (BinaryTask.checks_output, SemanticTask.checks_output) == (False, True)
    assert [f"robustness_{t.primary_metric.lower()}.png" for t in (BinaryTask(), SemanticTask())] == [
        "robustness_iou.png", "robustness_miou.png"]  # the TensorBoard heatmap's file names


def test_a_task_without_a_benchmark_report_is_refused_before_any_pass() -> None:
    from advcorrupt.bench import evaluate_robustness

    class Depth(BinaryTask):
        name = "depth"

    calls: list[int] = []

    def model(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return x[:, :1]

    data = [(torch.rand(1, 8, 8), torch.zeros(1, 8, 8))]
    with pytest.raises(KeyError, match=r"no benchmark report for the task 'depth'; tasks with a report: "
                                       r"\['binary', 'semantic'\]"):
        evaluate_robustness(model, data, corruptions=["contrast"], severities=(1,), progress=False, task=Depth())
    assert calls == []


# ---------------------------------------------------------------------------- PerSampleCrossEntropy
def _logits_and_target(ignore: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, K, 6, 7, generator=g)
    target = torch.randint(0, K, (3, 6, 7), generator=g)
    if ignore is not None:
        target[torch.rand(3, 6, 7, generator=g) < 0.3] = ignore
    return logits, target


@pytest.mark.parametrize("ignore", [None, 255, -1])
@pytest.mark.parametrize("weight", [None, torch.tensor([0.5, 1.0, 2.0, 4.0])])
def test_per_sample_cross_entropy_equals_torchs_mean_per_image(ignore: int | None, weight: torch.Tensor | None) -> None:
    logits, target = _logits_and_target(ignore)
    loss = PerSampleCrossEntropy(ignore_index=ignore, weight=weight)
    got = loss(logits, target)
    assert got.shape == (3,)
    expected = torch.stack([
        F.cross_entropy(logits[i : i + 1], target[i : i + 1], weight=weight,
                        ignore_index=-100 if ignore is None else ignore)
        for i in range(3)
    ])
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(loss(logits, target[:, None]), expected)  # (B, 1, H, W) targets too


def test_per_sample_cross_entropy_gives_zero_and_a_finite_gradient_for_an_all_ignored_image() -> None:
    logits, target = _logits_and_target()
    target[1] = 255
    logits.requires_grad_(True)
    for weight in (None, torch.ones(K)):
        per = PerSampleCrossEntropy(ignore_index=255, weight=weight)(logits, target)
        assert per[1].item() == 0.0 and per[0].item() > 0 and per[2].item() > 0
        (grad,) = torch.autograd.grad(per.sum(), logits)
        assert torch.isfinite(grad).all()
        assert (grad[1] == 0).all() and (grad[0] != 0).any()


def test_per_sample_cross_entropy_reductions() -> None:
    logits, target = _logits_and_target(255)
    per = PerSampleCrossEntropy(ignore_index=255)(logits, target)
    torch.testing.assert_close(PerSampleCrossEntropy(ignore_index=255, reduction="mean")(logits, target), per.mean())
    torch.testing.assert_close(PerSampleCrossEntropy(ignore_index=255, reduction="sum")(logits, target), per.sum())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"weight": torch.tensor([1.0, -1.0, 1.0, 1.0])}, r"weight must be a 1-D tensor of finite class weights >= 0"),
        ({"weight": torch.tensor([1.0, float("inf"), 1.0, 1.0])}, r"weight must be a 1-D tensor of finite"),
        ({"weight": torch.ones(2, 2)}, r"weight must be a 1-D tensor"),
        ({"reduction": "batchmean"}, r"reduction must be one of .*; got 'batchmean'"),
        ({"ignore_index": True}, r"ignore_index must be an int or None; got True"),
    ],
)
def test_per_sample_cross_entropy_refuses_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PerSampleCrossEntropy(**kwargs)  # type: ignore[arg-type]


def test_per_sample_cross_entropy_refuses_mismatched_weights_and_shapes() -> None:
    logits, target = _logits_and_target()
    with pytest.raises(ValueError, match=r"weight must hold one weight per class \(4\); got 3"):
        PerSampleCrossEntropy(weight=torch.ones(3))(logits, target)
    with pytest.raises(ValueError, match=r"logits must be \(B, K, H, W\) and target \(B, H, W\) .* got logits "
                                         r"\(3, 4, 6, 7\) and target \(3, 6, 6\)"):
        PerSampleCrossEntropy()(logits, target[:, :, :6])


@pytest.mark.gpu
def test_semantic_checks_and_loss_run_on_cuda() -> None:
    logits, target = _logits_and_target(255)
    masks = SemanticTask(K, ignore_index=255).check_masks(target.cuda(), torch.rand(3, 3, 6, 7, device="cuda"))
    assert masks.device.type == "cuda" and masks.dtype == torch.int64
    loss = PerSampleCrossEntropy(ignore_index=255, weight=torch.arange(1.0, 5.0)).cuda()
    torch.testing.assert_close(loss(logits.cuda(), masks).cpu(), loss.cpu()(logits, target))


# ------------------------------------------------------------------------------------------ trainer
@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread: None) -> None:
    """Tiny steps run faster on one thread."""


def _rgb_batch(b: int = 4, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB images whose class is a 1x1 convolution's argmax away: the argmax of (r, g, b, 0.6)."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(b, 3, size, size, generator=g)
    labels = torch.cat([images, torch.full_like(images[:, :1], 0.6)], 1).argmax(1)
    return images, labels


def _multi_class(k: int = K, lr: float = 0.05) -> tuple[nn.Module, torch.optim.Optimizer]:
    model = nn.Conv2d(3, k, 1)
    return model, torch.optim.Adam(model.parameters(), lr=lr)


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _unchanged(model: nn.Module, before: list[torch.Tensor]) -> bool:
    return all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_zero_config_infers_semantic_from_class_index_masks_and_trains() -> None:
    model, opt = _multi_class()
    trainer = AdversarialCorruptionTrainer(model, opt, generator=torch.Generator().manual_seed(0), total_steps=30)
    assert trainer.task is None and trainer.loss_fn is None
    images, labels = _rgb_batch()
    assert set(labels.unique().tolist()) == set(range(K))
    losses = [float(trainer.step(images, labels)["loss_clean"]) for _ in range(30)]
    assert trainer.task == SemanticTask(K) and isinstance(trainer.loss_fn, PerSampleCrossEntropy)
    assert trainer.strategy.name == SemanticTask.default_strategy == "curriculum@1-3" and trainer.policy is None
    assert trainer.last_actions is not None  # the 30th of 30 steps is in the curriculum's last third: level 3
    assert set(trainer.action_space.decode(trainer.last_actions)[1].tolist()) == {3}
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses


def test_a_named_learned_strategy_builds_its_policy_for_rgb_class_index_batches() -> None:
    model, opt = _multi_class()
    trainer = AdversarialCorruptionTrainer(model, opt, strategy="learned", generator=torch.Generator().manual_seed(0))
    trainer.step(*_rgb_batch())
    assert trainer.task == SemanticTask(K) and trainer.strategy.name == "learned"
    assert trainer.policy is not None and trainer.policy.in_channels == 3  # type: ignore[union-attr]


# ------------------------------------------------------------------- strategy=None: the task's default
class _BatchNormNet(nn.Module):
    """A model with running statistics and dropout: what a probe forward must leave alone."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout2d(0.3),
                                  nn.Conv2d(8, k, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.mark.parametrize("k, masks, expected", [
    (K, "indices", "curriculum@1-3"), (1, "float", "random@1-5"), (1, "integer (B, 1, H, W)", "random@1-5"),
])
def test_strategy_none_takes_the_default_of_the_task_the_first_batch_decides(k: int, masks: str, expected: str) -> None:
    images, labels = _rgb_batch()
    target = {"indices": labels, "float": (labels == 0).float()[:, None],
              "integer (B, 1, H, W)": (labels == 0).long()[:, None]}[masks]
    model = _BatchNormNet(k)
    trainer = AdversarialCorruptionTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), total_steps=10)
    assert not trainer.built
    with pytest.raises(RuntimeError, match="strategy=None"):
        trainer.strategy
    trainer.step(images, target)
    assert trainer.strategy.name == expected and trainer.state_dict()["strategy"] == expected
    assert trainer.policy is None  # both defaults are fixed distributions: no policy network


def test_the_semantic_default_without_total_steps_is_refused_naming_it_before_any_update() -> None:
    model, opt = _multi_class()
    before = _params(model)
    message = r"strategy=None stands for the task's measured default 'curriculum@1-3'.*total_steps=.*got total_steps=None"
    with pytest.raises(ValueError, match=message):  # the task is named: refused at construction
        AdversarialCorruptionTrainer(model, opt, num_classes=K)
    trainer = AdversarialCorruptionTrainer(model, opt)  # zero-config: the first batch decides the task
    with pytest.raises(ValueError, match=message):
        trainer.step(*_rgb_batch())
    assert _unchanged(model, before) and not opt.state and trainer.num_steps == 0 and not trainer.built
    assert trainer.task is None and trainer.loss_fn is None
    binary = AdversarialCorruptionTrainer(*_multi_class(1))  # the binary default is no curriculum: no total_steps
    assert binary.corrupt(_rgb_batch()[0]).shape == _rgb_batch()[0].shape


def test_the_default_probe_changes_no_buffer_and_no_random_state() -> None:
    """Zero-config with class indices reads K from a probe forward: the step must equal one with
    ``strategy="curriculum@1-3"`` named, bit for bit (batch-norm statistics, dropout draws, corruption)."""
    images, labels = _rgb_batch()
    params = []
    for strategy in (None, "curriculum@1-3"):
        torch.manual_seed(0)
        model = _BatchNormNet(K)
        trainer = AdversarialCorruptionTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), strategy=strategy,
                                               generator=torch.Generator().manual_seed(1), total_steps=10)
        trainer.step(images, labels)
        trainer.step(images, labels)
        params.append([t.clone() for t in (*model.parameters(), *model.buffers())] + [torch.rand(3)])
    assert all(torch.equal(a, b) for a, b in zip(*params))


def test_strategy_none_is_decided_at_construction_when_the_task_is_named() -> None:
    model, opt = _multi_class()
    assert AdversarialCorruptionTrainer(model, opt, num_classes=K, total_steps=10).strategy.name == "curriculum@1-3"
    binary = AdversarialCorruptionTrainer(model, opt, task="binary", in_channels=3)
    assert binary.strategy.name == "random@1-5"
    assert tuple(binary.action_space.severities) == (1, 2, 3, 4, 5)  # the default space widened to its levels
    assert (BinaryTask.default_strategy, SemanticTask.default_strategy) == ("random@1-5", "curriculum@1-3")
    # policy arguments ask for a policy: the default adversary, whatever the task
    named = AdversarialCorruptionTrainer(model, opt, num_classes=K, in_channels=3, policy_kwargs={"widths": (4, 4, 4, 4, 4)})
    assert named.strategy.name == "learned" and named.policy is not None


def test_the_two_line_loop_reads_the_default_from_the_models_output_channels() -> None:
    images, _ = _rgb_batch()
    for k, expected in ((K, "curriculum@1-3"), (1, "random@1-5")):
        model, opt = _multi_class(k)
        trainer = AdversarialCorruptionTrainer(model, opt, total_steps=10)
        assert trainer.corrupt(images).shape == images.shape
        assert trainer.strategy.name == expected and trainer.task is None
        assert max(trainer.action_space.severities) == (5 if k == 1 else 3)  # widened to the schedule's levels


def test_a_model_that_fails_the_probe_gets_a_clear_error_and_an_undecided_trainer() -> None:
    model, opt = _multi_class()
    trainer = AdversarialCorruptionTrainer(model, opt, total_steps=10)
    with pytest.raises(RuntimeError, match=r"strategy=None .* failed .*Name the strategy"):
        trainer.corrupt(torch.rand(2, 1, 8, 8))  # a one-channel batch for an RGB model
    assert not trainer.built
    trainer.step(*_rgb_batch())  # a good batch still decides
    assert trainer.strategy.name == "curriculum@1-3"


def test_an_undecided_trainer_resumes_the_default_a_state_names_and_refuses_another() -> None:
    model, opt = _multi_class()
    first = AdversarialCorruptionTrainer(model, opt, total_steps=10)
    first.step(*_rgb_batch())
    resumed = AdversarialCorruptionTrainer(model, opt, total_steps=10)
    resumed.load_state_dict(first.state_dict())
    assert resumed.strategy.name == "curriculum@1-3" and resumed.task == SemanticTask(K)
    assert resumed.strategy.state_dict() == first.strategy.state_dict() == {"step": 1}
    learned = AdversarialCorruptionTrainer(model, opt, strategy="learned")
    learned.step(*_rgb_batch())
    with pytest.raises(ValueError, match="state was saved with strategy 'learned'; expected this trainer's 'curriculum@1-3'"):
        AdversarialCorruptionTrainer(model, opt, num_classes=K, total_steps=10).load_state_dict(learned.state_dict())
    with pytest.raises(ValueError, match="expected this trainer's 'curriculum@1-3'"):  # the state's own task decides
        AdversarialCorruptionTrainer(model, opt, total_steps=10).load_state_dict(learned.state_dict())
    # binary: the default schedule draws levels 1-5, so the resumed trainer's default space widens to them
    one = nn.Conv2d(1, 1, 3, padding=1)
    sgd = torch.optim.SGD(one.parameters(), lr=0.1)
    binary = AdversarialCorruptionTrainer(one, sgd)
    images, masks = torch.rand(4, 1, 16, 16), (torch.rand(4, 1, 16, 16) > 0.9).float()
    binary.step(images, masks)
    again = AdversarialCorruptionTrainer(one, sgd)
    again.load_state_dict(binary.state_dict())
    assert again.strategy.name == "random@1-5" and tuple(again.action_space.severities) == (1, 2, 3, 4, 5)
    assert torch.isfinite(again.step(images, masks)["loss"])
    with pytest.raises(ValueError, match="different action space"):  # a space the user named stays checked
        AdversarialCorruptionTrainer(one, sgd, action_space=ActionSpace()).load_state_dict(binary.state_dict())


def test_zero_config_accepts_b1hw_integer_masks() -> None:
    model, opt = _multi_class()
    trainer = AdversarialCorruptionTrainer(model, opt, strategy="random")
    images, labels = _rgb_batch()
    stats = trainer.step(images, labels[:, None].to(torch.uint8))
    assert trainer.task == SemanticTask(K) and torch.isfinite(stats["loss"])
    with torch.no_grad():
        now = PerSampleCrossEntropy()(model(images), labels).mean()  # after one update: lower than at start
    assert float(stats["loss_clean"]) > float(now)


def test_zero_config_float_binary_masks_with_a_one_channel_model_stay_binary() -> None:
    model = nn.Conv2d(1, 1, 3, padding=1)
    trainer = AdversarialCorruptionTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), strategy="random")
    images = torch.rand(4, 1, 16, 16)
    masks = (torch.rand(4, 1, 16, 16) > 0.9).float()
    stats = trainer.step(images, masks)
    assert trainer.task == BinaryTask() and isinstance(trainer.loss_fn, SoftIoULoss)
    assert torch.isfinite(stats["loss"])
    assert trainer.state_dict()["task"] == {"name": "binary"}


def test_num_classes_disagreeing_with_the_model_is_refused_before_any_update() -> None:
    model, opt = _multi_class()
    before = _params(model)
    trainer = AdversarialCorruptionTrainer(model, opt, num_classes=5, total_steps=10)
    assert trainer.task == SemanticTask(5)
    with pytest.raises(ValueError, match=r"num_classes = 5 disagrees with the model's output channels.*\(K = 4\)"):
        trainer.step(*_rgb_batch())
    assert _unchanged(model, before) and not opt.state and trainer.num_steps == 0
    assert all(p.grad is None for p in model.parameters())


def test_a_bad_label_is_refused_before_any_update_and_leaves_the_task_undecided() -> None:
    model, opt = _multi_class()
    before = _params(model)
    trainer = AdversarialCorruptionTrainer(model, opt, total_steps=10)
    images, labels = _rgb_batch()
    bad = labels.clone()
    bad[2, 5, 7] = 9
    with pytest.raises(ValueError, match=r"class indices in \[0, 4\) \(no ignore label set\); got 9 at "
                                         r"\(sample 2, row 5, col 7\)"):
        trainer.step(images, bad)
    assert _unchanged(model, before) and not opt.state and trainer.num_steps == 0
    assert trainer.task is None and trainer.loss_fn is None and not trainer.built
    trainer.step(images, labels)  # the same trainer then works with good labels
    assert trainer.task == SemanticTask(K) and not _unchanged(model, before)


def test_float_class_indices_refused_as_binary_leave_the_task_undecided() -> None:
    # float (B, 1, H, W) masks read as binary; class indices there are refused with a hint, and the
    # hint (pass them as integers) must work on the same trainer
    model, opt = _multi_class()
    trainer = AdversarialCorruptionTrainer(model, opt, strategy="random")
    images, labels = _rgb_batch()
    with pytest.raises(ValueError, match=r"masks must be binary.*pass them as an integer tensor"):
        trainer.step(images, labels[:, None].float())
    assert trainer.task is None and trainer.loss_fn is None
    trainer.step(images, labels[:, None])
    assert trainer.task == SemanticTask(K) and isinstance(trainer.loss_fn, PerSampleCrossEntropy)


def test_a_failed_first_step_forgets_the_task_and_its_default_loss() -> None:
    class Fails(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, K, 1)
            self.fail = True

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.fail:
                raise RuntimeError("out of memory (simulated)")
            return self.conv(x)

    model = Fails()
    trainer = AdversarialCorruptionTrainer(model, torch.optim.Adam(model.parameters()), strategy="random")
    images, labels = _rgb_batch()
    with pytest.raises(RuntimeError, match="simulated"):
        trainer.step(images, (labels[:, None] > 1).float())  # binary masks, decided before the forward
    assert trainer.task is None and trainer.loss_fn is None
    model.fail = False
    trainer.step(images, labels)  # class indices next: semantic, with its own loss (not Soft-IoU)
    assert trainer.task == SemanticTask(K) and isinstance(trainer.loss_fn, PerSampleCrossEntropy)


def test_a_user_loss_is_kept_when_the_task_is_inferred_or_forgotten() -> None:
    model, opt = _multi_class()
    mine = PerSampleCrossEntropy(weight=torch.ones(K))
    trainer = AdversarialCorruptionTrainer(model, opt, mine, strategy="random")
    images, labels = _rgb_batch()
    bad = labels.clone()
    bad[0, 0, 0] = 4
    with pytest.raises(ValueError, match=r"got 4 at \(sample 0, row 0, col 0\)"):
        trainer.step(images, bad)
    assert trainer.loss_fn is mine
    trainer.step(images, labels)
    assert trainer.loss_fn is mine and trainer.task == SemanticTask(K)


def test_task_round_trips_through_state_dict_and_a_different_task_is_refused() -> None:
    model, opt = _multi_class()
    trainer = AdversarialCorruptionTrainer(model, opt, ignore_index=255, total_steps=10)
    trainer.step(*_rgb_batch())
    state = trainer.state_dict()
    assert state["task"] == {"name": "semantic", "num_classes": K, "ignore_index": 255, "class_weights": None}

    fresh = AdversarialCorruptionTrainer(*_multi_class(), total_steps=10)
    assert fresh.task is None
    fresh.load_state_dict(state)
    assert fresh.task == SemanticTask(K, ignore_index=255)
    assert isinstance(fresh.loss_fn, PerSampleCrossEntropy) and fresh.loss_fn.ignore_index == 255
    assert fresh.built and fresh.num_steps == 1
    images, labels = _rgb_batch()
    labels[0, 0, 0] = 255
    fresh.step(images, labels)  # the ignore label came back with the task

    for other in ({"task": "binary"}, {"num_classes": K}, {"num_classes": K, "ignore_index": 11}):
        refusing = AdversarialCorruptionTrainer(*_multi_class(), total_steps=10, **other)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"state was saved for the task \{'name': 'semantic', 'num_classes': 4"):
            refusing.load_state_dict(state)
        assert refusing.num_steps == 0


class _DeepSupervision(nn.Module):
    """Two heads: an auxiliary one and the final one (a list, deep supervision)."""

    def __init__(self) -> None:
        super().__init__()
        self.aux = nn.Conv2d(3, K, 1)
        self.head = nn.Conv2d(3, K, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.aux(x), self.head(x)]


class _DictOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, K, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.conv(x)}


@pytest.mark.parametrize("model_cls", [_DeepSupervision, _DictOutput])
def test_deep_supervision_and_dict_outputs_work_with_semantic_masks(model_cls: type[nn.Module]) -> None:
    model = model_cls()
    trainer = AdversarialCorruptionTrainer(model, torch.optim.Adam(model.parameters(), lr=0.05), strategy="random")
    images, labels = _rgb_batch()
    stats = trainer.step(images, labels)
    assert trainer.task == SemanticTask(K) and torch.isfinite(stats["loss"])
    with torch.no_grad():
        out = model(images)
        heads = out if isinstance(out, list) else [out["out"]]
        # the loss averages the heads; after one update it is below the loss the step saw
        now = sum(PerSampleCrossEntropy()(h, labels).mean() for h in heads) / len(heads)
    assert float(now) < float(stats["loss_clean"])


def test_two_line_integration_with_per_sample_cross_entropy() -> None:
    model, opt = _multi_class()
    loss_fn = PerSampleCrossEntropy(ignore_index=255)
    trainer = AdversarialCorruptionTrainer(model, opt, loss_fn, strategy="learned", generator=torch.Generator().manual_seed(0))
    images, labels = _rgb_batch()
    labels[:, :2] = 255
    b = images.shape[0]
    policy_before: list[torch.Tensor] | None = None
    for _ in range(3):
        x_hat = trainer.corrupt(images)  # (1)
        assert x_hat.shape == images.shape
        if policy_before is None:
            assert trainer.policy is not None
            policy_before = _params(trainer.policy)
        per_sample = loss_fn(model(torch.cat([images, x_hat])), torch.cat([labels, labels]))
        assert per_sample.shape == (2 * b,)
        loss = per_sample[:b].mean() + per_sample[b:].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        stats = trainer.update_policy(per_sample[b:].detach(), clean_loss=per_sample[:b].detach())  # (2)
        assert {"reward", "policy_entropy"} <= set(stats) and torch.isfinite(stats["reward"])
    assert trainer.policy is not None and not _unchanged(trainer.policy, policy_before)
    assert trainer.task is None  # the trainer never saw the masks: nothing to decide


def test_a_users_action_space_without_the_default_levels_is_refused_with_the_fix() -> None:
    """strategy=None on binary masks means the schedule random@1-5: a space the user built with levels
    1-3 cannot hold it, and the error says what strategy=None stands for and both ways out."""
    model = nn.Conv2d(1, 1, 3, padding=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    space = ActionSpace(["gaussian_noise", "contrast"])
    with pytest.raises(ValueError, match=r"strategy=None stands for .*'random@1-5'.*missing \[4, 5\].*strategy='random'"):
        AdversarialCorruptionTrainer(model, opt, action_space=space, task="binary")
    lazy = AdversarialCorruptionTrainer(model, opt, action_space=space)  # decided at the first batch
    images = torch.rand(2, 1, 16, 16)
    with pytest.raises(ValueError, match="missing \\[4, 5\\]"):
        lazy.corrupt(images)
    assert not lazy.built
    wide = ActionSpace(["gaussian_noise", "contrast"], severities=(1, 2, 3, 4, 5))
    assert AdversarialCorruptionTrainer(model, opt, action_space=wide, task="binary").strategy.name == "random@1-5"
    named = AdversarialCorruptionTrainer(model, opt, action_space=space, task="binary", strategy="random")
    assert named.corrupt(images).shape == images.shape
