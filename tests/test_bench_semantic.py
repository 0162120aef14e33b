"""The robustness benchmark for semantic segmentation models (issue 21, item 4).

A tiny fixed "oracle" model reads each pixel's class back from its colour, so its clean metrics
are known exactly (mIoU 1.0) and its corrupted ones can be recomputed by hand from the seeded
corrupted views; it refuses inputs whose size is not a multiple of 32, as every smp model does,
while the test images are 20 x 30 and 19 x 45.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from advcorrupt.bench import (
    CorruptedDataset,
    RobustnessReport,
    SemanticRobustnessReport,
    SemanticSettingResult,
    comparison_table,
    evaluate,
    evaluate_robustness,
    summary_table,
)
from advcorrupt.corruptions import _registry, register
from advcorrupt.data import SyntheticIRSTD, pad_to_multiple
from advcorrupt.tasks import SemanticTask

K = 4
IGNORE = 255
#: One colour per class; class 3 never appears in the targets (its IoU is NaN when never predicted).
PALETTE = torch.tensor([[0.1, 0.2, 0.3], [0.9, 0.15, 0.1], [0.15, 0.85, 0.2], [0.35, 0.3, 0.95]])
CORRUPTIONS = ["gaussian_noise", "contrast"]
SEVERITIES = (1, 3)
IDENTITY = "bench_semantic_identity"


def _labels(h: int, w: int, shift: int) -> Tensor:
    """Vertical bands of classes 0, 1, 2 (never 3), the top two rows ignored."""
    cols = (torch.arange(w) * 3 // w + shift) % 3
    y = cols.expand(h, w).clone()
    y[:2] = IGNORE
    return y


def _image(y: Tensor) -> Tensor:
    """The RGB image (3, H, W) whose pixels have their class's colour; ignored pixels look like class 1."""
    colours = PALETTE[torch.where(y == IGNORE, 1, y)]
    return colours.permute(2, 0, 1).contiguous()


class Scenes(torch.utils.data.Dataset):
    """Five RGB scenes of two sizes (none a multiple of 32), int64 (H, W) masks with an ignore label."""

    def __init__(self, *, with_attributes: bool = False, bad: tuple[int, int] | None = None) -> None:
        sizes = [(20, 30), (20, 30), (19, 45), (19, 45), (20, 30)]
        self.items = []
        for i, (h, w) in enumerate(sizes):
            y = _labels(h, w, i)
            image = _image(y)
            if bad is not None and bad[0] == i:
                y[5, 7] = bad[1]
            self.items.append((image, y))
        if with_attributes:
            self.num_classes, self.ignore_index = K, IGNORE
            self.class_names = ("sky", "road", "car", "bike")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.items[i]


class Oracle(nn.Module):
    """Logits = minus the squared distance to each class colour: perfect on clean images.

    Like every smp model it refuses inputs whose size is not a multiple of 32; it records the
    inputs it sees and counts its calls.
    """

    def __init__(self, num_classes: int = K) -> None:
        super().__init__()
        palette = torch.cat([PALETTE, torch.rand(num_classes - K, 3)]) if num_classes > K else PALETTE
        self.register_buffer("palette", palette[:num_classes].clone())
        self.calls = 0
        self.seen: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2] % 32 or x.shape[-1] % 32:
            raise ValueError(f"input size must be divisible by 32; got {tuple(x.shape[-2:])}")
        self.calls += 1
        self.seen.append(x.clone())
        return -10.0 * ((x.unsqueeze(1) - self.palette.view(1, -1, 3, 1, 1)) ** 2).sum(2)


@pytest.fixture
def identity() -> Iterator[str]:
    """A user corruption that changes nothing, removed again after the test."""

    @register(IDENTITY, severities=(0.0, 0.0, 0.0))
    def _identity(x: Tensor, param: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return x.clone()

    yield IDENTITY
    _registry._REGISTRY.pop(IDENTITY, None)


@pytest.fixture(scope="module")
def report() -> SemanticRobustnessReport:
    got = evaluate_robustness(Oracle(), Scenes(with_attributes=True), corruptions=CORRUPTIONS, severities=SEVERITIES,
                              batch_size=2, progress=False, model_name="oracle")
    assert isinstance(got, SemanticRobustnessReport)
    return got


def by_hand(model: nn.Module, dataset: Any, corruption: str | None, severity: int | None) -> dict[str, Any]:
    """mIoU / aAcc / mAcc / per-class IoU computed independently: one image at a time, own confusion matrix."""
    view = dataset if corruption is None else CorruptedDataset(dataset, corruption, severity, seed=0)
    cm = torch.zeros(K, K, dtype=torch.float64)
    with torch.no_grad():
        for i in range(len(dataset)):
            x, _ = view[i]
            y = dataset[i][1]
            padded, (h, w) = pad_to_multiple(x.unsqueeze(0), 32)
            pred = model(padded)[0, :, :h, :w].argmax(0)
            keep = y != IGNORE
            cm += torch.bincount(y[keep] * K + pred[keep], minlength=K * K).view(K, K).double()
    tp = cm.diagonal()
    iou = tp / (cm.sum(0) + cm.sum(1) - tp)
    acc = tp / cm.sum(1)
    return {"mIoU": float(iou.nanmean()), "aAcc": float(tp.sum() / cm.sum()), "mAcc": float(acc.nanmean()),
            "IoU": iou.tolist()}


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12, abs=1e-12)


# ------------------------------------------------------------------------------------------------
# The report's numbers
# ------------------------------------------------------------------------------------------------


def test_a_perfect_model_scores_miou_1_clean_and_the_ignore_label_is_never_counted(report):
    # Ignored pixels look like class 1 and are predicted as class 1: counted, they would lower
    # class 0's and class 2's IoU and raise none; class 3 is absent from targets and predictions.
    assert report.clean["mIoU"] == 1.0 and report.clean["aAcc"] == 1.0 and report.clean["mAcc"] == 1.0
    assert report.clean["IoU"][:3] == [1.0, 1.0, 1.0] and math.isnan(report.clean["IoU"][3])


def test_every_setting_matches_an_independent_computation_on_the_seeded_views(report):
    model = Oracle()
    for r in report.results:
        expected = by_hand(model, Scenes(), r.corruption, r.severity)
        assert same(r.miou, expected["mIoU"]) and same(r.aacc, expected["aAcc"]) and same(r.macc, expected["mAcc"])
        assert all(same(a, b) for a, b in zip(r.class_iou, expected["IoU"], strict=True))
    assert report.result("contrast", 3).miou < 1.0  # the corruption did something


def test_mpc_is_the_mean_miou_of_every_setting_and_rpc_divides_it_by_the_clean_miou(report):
    settings = [report.result(c, s).miou for c in CORRUPTIONS for s in SEVERITIES]
    assert len(report.results) == len(settings) == 4
    assert report.mean_corrupted == pytest.approx(sum(settings) / 4, rel=1e-12)
    assert report.relative_robustness == pytest.approx(report.mean_corrupted / report.clean["mIoU"], rel=1e-12)
    assert report.primary_metric == "mIoU" and report.task == SemanticTask(K, ignore_index=IGNORE)
    contrast = report.per_corruption["contrast"]
    assert contrast["mIoU"] == pytest.approx((report.result("contrast", 1).miou + report.result("contrast", 3).miou) / 2)
    assert contrast["rPC"] == pytest.approx(contrast["mIoU"] / report.clean["mIoU"])


def test_per_class_iou_uses_the_dataset_class_names_and_skips_nan_over_severities(report):
    assert report.class_names == ("sky", "road", "car", "bike") and report.num_classes == K
    assert report.ignore_index == IGNORE
    for r in report.results:  # class 3 is never a target: NaN unless predicted (then 0)
        assert len(r.class_iou) == K and (math.isnan(r.class_iou[3]) or r.class_iou[3] == 0.0)
    per = report.class_iou("contrast")
    rows = [report.result("contrast", s) for s in SEVERITIES]
    assert per["car"] == pytest.approx(sum(r.class_iou[2] for r in rows) / 2)
    drop = report.class_iou_drop()
    assert drop["contrast"]["car"] == pytest.approx(1.0 - per["car"])
    assert math.isnan(drop["contrast"]["bike"])  # NaN clean: no drop to speak of
    assert set(drop) == {*CORRUPTIONS, "all corruptions"}
    assert drop["all corruptions"]["sky"] == pytest.approx((drop["gaussian_noise"]["sky"] + drop["contrast"]["sky"]) / 2)


def test_every_model_sees_the_same_seeded_corrupted_images_padded_then_cropped_back():
    model = Oracle()
    evaluate(model, Scenes(), corruption="gaussian_noise", severity=3, seed=5, batch_size=1, ignore_index=IGNORE)
    view = CorruptedDataset(Scenes(), "gaussian_noise", 3, seed=5)
    assert len(model.seen) == len(view)
    for x, (expected, _) in zip(model.seen, view, strict=True):
        h, w = expected.shape[-2:]
        assert x.shape[-2:] == ((32, 32) if (h, w) == (20, 30) else (32, 64))
        assert torch.equal(x[0, :, :h, :w], expected)
        assert x[0, :, h:].abs().sum() == 0 and x[0, :, :, w:].abs().sum() == 0  # zero padding


def test_the_oracle_really_refuses_sizes_not_divisible_by_32():
    with pytest.raises(ValueError, match="divisible by 32"):
        evaluate(Oracle(), Scenes(), pad_to=None, ignore_index=IGNORE)


def test_an_identity_corruption_keeps_the_clean_scores_mpc_equals_clean_rpc_is_1(identity):
    got = evaluate_robustness(Oracle(), Scenes(with_attributes=True), corruptions=[identity], severities=(1, 2),
                              progress=False)
    assert got.mean_corrupted == 1.0 and got.relative_robustness == 1.0
    assert all(r.miou == 1.0 and r.aacc == 1.0 for r in got.results)


# ------------------------------------------------------------------------------------------------
# Which task: given, from the dataset, or inferred
# ------------------------------------------------------------------------------------------------


def test_the_task_is_inferred_from_integer_masks_and_a_multi_channel_model():
    clean = [(_image(_labels(20, 30, 0).clamp(max=2)), _labels(20, 30, 0).clamp(max=2))]  # no ignore label
    got = evaluate_robustness(Oracle(), clean, corruptions=["contrast"], severities=(1,), progress=False)
    assert isinstance(got, SemanticRobustnessReport) and got.num_classes == K and got.ignore_index is None
    assert got.class_names is None and got.names == ("class 0", "class 1", "class 2", "class 3")


def test_arguments_and_task_objects_give_the_same_report_as_the_dataset_attributes(report):
    args = evaluate_robustness(Oracle(), Scenes(), corruptions=CORRUPTIONS, severities=SEVERITIES, batch_size=2,
                               progress=False, model_name="oracle", num_classes=K, ignore_index=IGNORE)
    task = SemanticTask(ignore_index=IGNORE)
    obj = evaluate_robustness(Oracle(), Scenes(), corruptions=CORRUPTIONS, severities=SEVERITIES, batch_size=2,
                              progress=False, model_name="oracle", task=task)
    assert task.num_classes is None  # the caller's task object is not bound by the benchmark
    expected = dataclasses.replace(report, class_names=None).to_dict()  # Scenes() declares no class names
    assert args.to_dict() == expected and obj.to_dict() == expected


def test_a_subset_of_a_dataset_with_attributes_still_supplies_them():
    subset = torch.utils.data.Subset(Scenes(with_attributes=True), [0, 2])
    got = evaluate_robustness(Oracle(), subset, corruptions=["contrast"], severities=(1,), progress=False)
    assert isinstance(got, SemanticRobustnessReport) and got.ignore_index == IGNORE and got.names[0] == "sky"
    assert got.num_images == 2 and got.clean["mIoU"] == 1.0


def test_evaluate_returns_the_semantic_metrics_with_per_class_iou():
    got = evaluate(Oracle(), Scenes(with_attributes=True), corruption="contrast", severity=1)
    assert sorted(got) == ["IoU", "aAcc", "mAcc", "mIoU"] and len(got["IoU"]) == K
    clean = evaluate(Oracle(), Scenes(with_attributes=True))
    assert clean["mIoU"] == 1.0


def test_deep_supervision_and_dict_outputs_are_scored_on_the_final_head():
    class Heads(Oracle):
        def forward(self, x: Tensor) -> Any:
            out = super().forward(x)
            return [torch.zeros_like(out), out]

    class Dict(Oracle):
        def forward(self, x: Tensor) -> Any:
            return {"out": super().forward(x), "aux": torch.zeros(1)}

    assert evaluate(Heads(), Scenes(with_attributes=True))["mIoU"] == 1.0
    assert evaluate(Dict(), Scenes(with_attributes=True))["mIoU"] == 1.0


# ------------------------------------------------------------------------------------------------
# Bad input: a clear error before the corrupted settings run
# ------------------------------------------------------------------------------------------------


def test_num_classes_disagreeing_with_the_model_fails_at_the_first_batch():
    model = Oracle()
    with pytest.raises(ValueError, match=r"num_classes = 5 disagrees with the model's output channels.*K = 4"):
        evaluate_robustness(model, Scenes(), num_classes=5, ignore_index=IGNORE, corruptions=CORRUPTIONS,
                            progress=False)
    assert model.calls == 1


def test_a_label_outside_the_classes_names_the_dataset_item_before_the_model_sees_it():
    model = Oracle()
    with pytest.raises(ValueError, match=r"dataset item 2: masks must hold class indices in \[0, 4\) or the ignore "
                                         r"label 255; got 7 at \(sample 0, row 5, col 7\)"):
        evaluate_robustness(model, Scenes(bad=(2, 7)), ignore_index=IGNORE, corruptions=CORRUPTIONS, batch_size=1,
                            progress=False)
    assert model.calls == 2  # items 0 and 1 only: the clean pass stopped before item 2 reached the model


def test_an_ignore_label_nobody_declared_is_refused_with_the_hint():
    with pytest.raises(ValueError, match=r"\(no ignore label set\); got 255 at \(sample 0, row 0, col 0\)"):
        evaluate_robustness(Oracle(), Scenes(), corruptions=["contrast"], severities=(1,), progress=False)


def test_a_semantic_task_given_for_a_one_channel_model_is_refused():
    one = nn.Conv2d(3, 1, 1)
    with pytest.raises(ValueError, match="K >= 2"):
        evaluate(one, Scenes(), task="semantic", ignore_index=IGNORE)


# ------------------------------------------------------------------------------------------------
# Files: JSON round trip, Markdown, CSV, plots
# ------------------------------------------------------------------------------------------------


def test_save_writes_every_file_and_from_json_reads_the_semantic_report_back(report, tmp_path: Path):
    paths = report.save(tmp_path / "bench")
    assert set(paths) == {"markdown", "csv", "json", "heatmap", "class_heatmap"}
    for key in ("heatmap", "class_heatmap"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[key].stat().st_size > 1000
    data = json.loads(paths["json"].read_text())
    assert data["task"] == {"name": "semantic", "num_classes": K, "ignore_index": IGNORE}
    assert data["clean"]["IoU"][3] is None  # NaN written as null
    assert data["mean_corrupted"] == pytest.approx(report.mean_corrupted)
    assert data["relative_robustness"] == pytest.approx(report.relative_robustness)
    back = RobustnessReport.from_json(paths["json"])
    assert isinstance(back, SemanticRobustnessReport) and back.to_dict() == report.to_dict()
    assert SemanticRobustnessReport.from_json(paths["json"]).to_dict() == report.to_dict()
    assert math.isnan(back.clean["IoU"][3])


def test_markdown_and_csv_carry_miou_mpc_rpc_and_the_per_class_iou(report, tmp_path: Path):
    md = report.to_markdown()
    for text in ("| model | clean mIoU | gaussian_noise | contrast | mPC | rPC |", "| oracle | 100.00 |",
                 "| mIoU | aAcc | mAcc |", "| contrast | 3 |", "ignore label 255", "| bike | n/a |"):
        assert text in md, text
    rows = list(csv.DictReader(report.to_csv(tmp_path / "r.csv").open()))
    assert [r["corruption"] for r in rows] == ["clean", "gaussian_noise", "gaussian_noise", "contrast", "contrast"]
    assert float(rows[0]["mIoU"]) == 1.0 and rows[0]["IoU[bike]"] == "nan"
    assert float(rows[4]["mIoU"]) == report.result("contrast", 3).miou
    assert float(rows[4]["IoU[car]"]) == report.result("contrast", 3).class_iou[2]


def test_summary_and_comparison_tables_show_the_semantic_rows(report):
    table = summary_table([report]).splitlines()
    mpc, rpc = 100 * report.mean_corrupted, 100 * report.relative_robustness
    assert table[0] == "| model | clean mIoU | gaussian_noise | contrast | mPC | rPC |"
    assert table[2].startswith("| oracle | 100.00 |") and table[2].endswith(f"| {mpc:.2f} | {rpc:.2f} |")
    comparison = comparison_table({"a": [report, report], "b": report})
    for row in ("| clean mIoU | **100.00 ± 0.00** | **100.00** |", f"| mPC (mean corrupted mIoU) | **{mpc:.2f} ± 0.00** |",
                "| rPC (mPC / clean mIoU) |", "| contrast mIoU |", "| clean aAcc |"):
        assert row in comparison, row


def test_binary_and_semantic_reports_do_not_mix_in_one_table(report):
    binary = evaluate_robustness(nn.Conv2d(1, 1, 1), SyntheticIRSTD(1, size=32), corruptions=["contrast"],
                                 severities=(1,), progress=False)
    with pytest.raises(ValueError, match="all binary or all semantic"):
        summary_table([binary, report])
    with pytest.raises(ValueError, match="all binary or all semantic"):
        comparison_table({"binary": binary, "semantic": report})


def test_a_semantic_setting_row_round_trips_through_its_dict():
    row = SemanticSettingResult("contrast", 2, 0.5, 0.7, 0.6, (1.0, 0.0, math.nan))
    back = SemanticSettingResult.from_metrics("contrast", 2, row.to_dict())
    assert back.to_dict().keys() == row.to_dict().keys() and back.class_iou[:2] == (1.0, 0.0)
    with pytest.raises(KeyError, match="mIoU"):
        row.metric("iou")


# ------------------------------------------------------------------------------------------------
# The binary report is unchanged
# ------------------------------------------------------------------------------------------------

#: The keys of a binary report's JSON since version 0.1, in order.
BINARY_KEYS = ["model_name", "dataset_name", "seed", "num_images", "threshold", "corruptions", "severities", "clean",
               "mean_corrupted_iou", "mean_rce", "per_corruption", "results", "extra", "units"]


def test_the_binary_report_keeps_its_json_keys_csv_columns_and_files(tmp_path: Path):
    ds = SyntheticIRSTD(2, size=40)
    model = nn.Conv2d(1, 1, 3, padding=1)
    got = evaluate_robustness(model, ds, corruptions=["contrast"], severities=(1, 2), progress=False)
    assert type(got) is RobustnessReport
    paths = got.save(tmp_path / "binary")
    data = json.loads(paths["json"].read_text())
    assert list(data) == BINARY_KEYS
    assert list(data["results"][0]) == ["corruption", "severity", "iou", "niou", "pd", "fa", "rce"]
    assert list(data["clean"]) == ["iou", "niou", "pd", "fa"]
    assert paths["csv"].read_text().splitlines()[0] == "model,corruption,severity,iou,niou,pd,fa,rce,clean_iou"
    assert set(paths) == {"markdown", "csv", "json", "heatmap"}
    back = RobustnessReport.from_json(paths["json"])
    assert type(back) is RobustnessReport and back.to_dict() == got.to_dict()
    explicit = evaluate_robustness(model, ds, corruptions=["contrast"], severities=(1, 2), progress=False, task="binary")
    assert explicit.to_dict() == got.to_dict()
    assert got.primary_metric == "iou" and got.mean_corrupted == got.mean_corrupted_iou
    with pytest.raises(ValueError, match="not a semantic RobustnessReport dict"):
        SemanticRobustnessReport.from_dict(data)
