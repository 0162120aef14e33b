"""Tests of advcorrupt.benchmark: seeded corrupted test sets, evaluation, the robustness report."""

from __future__ import annotations

import csv
import json
import math
import statistics
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from advcorrupt import benchmark
from advcorrupt.benchmark import (
    CorruptedDataset,
    RobustnessReport,
    SettingResult,
    comparison_table,
    corruption_seed,
    evaluate,
    evaluate_robustness,
    summary_table,
)
from advcorrupt.corruptions import _registry, corrupt, register
from advcorrupt.data import SyntheticIRSTD
from advcorrupt.metrics import ISTDMetrics

IDENTITY = "bench_identity"


@pytest.fixture
def identity() -> Iterator[str]:
    """A user corruption that changes nothing, removed again after the test."""

    @register(IDENTITY, severities=(0.0, 0.0, 0.0))
    def _identity(x: Tensor, param: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return x.clone()

    yield IDENTITY
    _registry._REGISTRY.pop(IDENTITY, None)


@pytest.fixture(scope="module")
def ds() -> SyntheticIRSTD:
    return SyntheticIRSTD(6, size=64, seed=3)


class MixedSizes(torch.utils.data.Dataset):
    """Interleaves two synthetic datasets of different image sizes (like a native-size test set)."""

    def __init__(self) -> None:
        self.a = SyntheticIRSTD(3, size=64, seed=5)
        self.b = SyntheticIRSTD(3, size=(48, 80), seed=6)

    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return (self.a if i % 2 == 0 else self.b)[i // 2]


def make_oracle(dataset: torch.utils.data.Dataset) -> nn.Module:
    """A "model" that recognises each clean image of ``dataset`` and returns its mask as logits."""
    items = [dataset[i] for i in range(len(dataset))]

    class Oracle(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            out = []
            for img in x:
                masks = [m for im, m in items if im.shape == img.shape and torch.equal(im, img)]
                assert len(masks) >= 1, "oracle saw an image that is not in the dataset"
                out.append((masks[0] * 2 - 1) * 20.0)
            return torch.stack(out)

    return Oracle()


class TopHat(nn.Module):
    """A fixed, deterministic detector: bright pixels above their 7x7 neighbourhood mean."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 7, padding=3, bias=True)
        with torch.no_grad():
            self.conv.weight.fill_(-1.0 / 49)
            self.conv.weight[0, 0, 3, 3] += 1.0
            self.conv.bias.fill_(-0.1)
        self.conv.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        return 200.0 * self.conv(x)


def metrics_by_hand(
    model: nn.Module, dataset, corruption: str | None, severity: int | None, seed: int, pad: int = 1
) -> dict:
    """Corrupt every image alone with its documented seed, zero-pad the bottom/right to a multiple
    of ``pad``, run the model on it alone, crop, accumulate metrics."""
    m = ISTDMetrics(threshold=0.5)
    with torch.no_grad():
        for i in range(len(dataset)):
            image, mask = dataset[i]
            x = image.unsqueeze(0)
            if corruption is not None:
                g = torch.Generator().manual_seed(corruption_seed(seed, corruption, severity, i))
                x = corrupt(x, corruption, severity, generator=g)
            h, w = x.shape[-2:]
            x = torch.nn.functional.pad(x, (0, -w % pad, 0, -h % pad))
            m.update(torch.sigmoid(model(x))[..., :h, :w], mask.unsqueeze(0))
    return {k: float(v) for k, v in m.compute().items()}


def assert_metrics_equal(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-9), k


# ----------------------------------------------------------------------------------------------


def test_oracle_scores_perfect_clean_metrics_and_zero_rce_under_identity(ds, identity):
    report = evaluate_robustness(
        make_oracle(ds), ds, corruptions=[identity], severities=(1, 2, 3), pad_to=None, progress=False
    )
    assert report.clean["iou"] == pytest.approx(1.0)
    assert report.clean["niou"] == pytest.approx(1.0)
    assert report.clean["pd"] == pytest.approx(1.0)
    assert report.clean["fa"] == pytest.approx(0.0)
    assert len(report.results) == 3
    for row in report.results:
        assert row.iou == pytest.approx(1.0)
        assert row.rce == pytest.approx(0.0)
    assert report.mean_corrupted_iou == pytest.approx(1.0)
    assert report.mean_rce == pytest.approx(0.0)


@pytest.mark.parametrize("corruption,severity", [("gaussian_noise", 2), ("contrast", 4), ("defocus_blur", 1)])
def test_corrupted_metrics_equal_hand_corrupted_images_with_documented_seeds(ds, corruption, severity):
    model = TopHat()
    got = evaluate(model, ds, corruption=corruption, severity=severity, seed=11, batch_size=4)
    want = metrics_by_hand(model, ds, corruption, severity, seed=11)
    assert_metrics_equal(got, want)
    clean = evaluate(model, ds)
    assert_metrics_equal(clean, metrics_by_hand(model, ds, None, None, seed=11))
    assert clean != got  # the corruption changed something


def test_same_seed_gives_identical_corrupted_images_and_metrics_regardless_of_batching(ds):
    a = CorruptedDataset(ds, "gaussian_noise", 3, seed=7)
    b = CorruptedDataset(ds, "gaussian_noise", 3, seed=7)
    c = CorruptedDataset(ds, "gaussian_noise", 3, seed=8)
    assert all(torch.equal(a[i][0], b[i][0]) for i in range(len(ds)))
    assert not torch.equal(a[0][0], c[0][0])
    # Each image draws its own noise (not one noise field repeated over the set).
    assert not torch.allclose(a[0][0] - ds[0][0], a[1][0] - ds[1][0], atol=1e-3)
    # Read in reverse order: each image is still its own.
    assert all(torch.equal(a[i][0], b[i][0]) for i in reversed(range(len(ds))))

    model = TopHat()
    m1 = evaluate(model, ds, corruption="gaussian_noise", severity=3, seed=7, batch_size=1)
    m2 = evaluate(model, ds, corruption="gaussian_noise", severity=3, seed=7, batch_size=6)
    assert_metrics_equal(m1, m2)  # equal up to float32 summation order of the nIoU average
    r1 = evaluate_robustness(model, ds, corruptions=["impulse_noise"], severities=(1, 5),
                             seed=7, progress=False)
    r2 = evaluate_robustness(model, ds, corruptions=["impulse_noise"], severities=(1, 5),
                             seed=7, progress=True, batch_size=2)
    assert_metrics_equal(r1.clean, r2.clean)
    assert [(r.corruption, r.severity) for r in r1.results] == [(r.corruption, r.severity) for r in r2.results]
    for x, y in zip(r1.results, r2.results):
        assert_metrics_equal(vars(x) | {"corruption": 0}, vars(y) | {"corruption": 0})
    # Calling twice with identical arguments replays exactly.
    r3 = evaluate_robustness(model, ds, corruptions=["impulse_noise"], severities=(1, 5),
                             seed=7, progress=False)
    assert r3 == r1


def test_dataloader_workers_give_the_same_metrics(ds):
    model = TopHat()
    alone = evaluate(model, ds, corruption="shot_noise", severity=4, seed=2)
    workers = evaluate(model, ds, corruption="shot_noise", severity=4, seed=2, num_workers=2)
    assert_metrics_equal(alone, workers)


def test_seeds_differ_between_settings_and_images():
    seeds = {
        corruption_seed(0, name, s, i)
        for name in ("gaussian_noise", "shot_noise") for s in (1, 2) for i in range(50)
    }
    assert len(seeds) == 200
    assert all(0 <= s < 2**63 for s in seeds)


@pytest.fixture(scope="module")
def report(ds) -> RobustnessReport:
    return evaluate_robustness(
        TopHat(), ds, corruptions=["gaussian_noise", "contrast", "pixelate"], severities=(1, 3),
        seed=0, progress=False, model_name="tophat",
    )


def test_report_summaries_are_means_of_its_rows(report):
    rows = report.results
    assert [(r.corruption, r.severity) for r in rows] == [
        (c, s) for c in ("gaussian_noise", "contrast", "pixelate") for s in (1, 3)
    ]
    assert report.mean_corrupted_iou == pytest.approx(sum(r.iou for r in rows) / 6)
    assert report.mean_rce == pytest.approx(sum(r.rce for r in rows) / 6)
    for name, means in report.per_corruption.items():
        mine = [r for r in rows if r.corruption == name]
        assert means["iou"] == pytest.approx((mine[0].iou + mine[1].iou) / 2)
        assert means["fa"] == pytest.approx((mine[0].fa + mine[1].fa) / 2)
    clean_iou = report.clean["iou"]
    for r in rows:
        assert r.rce == pytest.approx((clean_iou - r.iou) / clean_iou)
    assert report.result("contrast", 3) == rows[3]
    with pytest.raises(KeyError, match="contrast"):
        report.result("contrast", 2)
    assert report.num_images == 6 and report.seed == 0 and report.severities == (1, 3)
    assert report.model_name == "tophat"


def test_markdown_lists_every_corruption_and_setting(report):
    md = report.to_markdown()
    for name in report.corruptions:
        assert name in md
    full_rows = [
        line for line in md.splitlines()
        if any(line.startswith(f"| {c} | {s} |") for c in report.corruptions for s in report.severities)
    ]
    assert len(full_rows) == 6
    assert f"{100 * report.mean_corrupted_iou:.2f}" in md
    assert "tophat" in md


def test_csv_has_one_row_per_corruption_and_severity(report, tmp_path):
    path = report.to_csv(tmp_path / "r.csv")
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(report.corruptions) * len(report.severities)
    assert float(rows[0]["iou"]) == report.results[0].iou
    assert {r["corruption"] for r in rows} == set(report.corruptions)


def test_json_round_trip_gives_an_equal_report(report, tmp_path):
    path = report.to_json(tmp_path / "r.json")
    data = json.loads(path.read_text())
    assert data["mean_corrupted_iou"] == pytest.approx(report.mean_corrupted_iou)
    back = RobustnessReport.from_json(path)
    assert back == report


def test_nan_metrics_survive_json_as_null(tmp_path):
    r = RobustnessReport(
        clean={"iou": 0.0, "niou": 0.0, "pd": 0.0, "fa": 0.0},
        results=(SettingResult("contrast", 1, 0.0, 0.0, 0.0, 0.0, math.nan),),
        corruptions=("contrast",), severities=(1,), seed=0, num_images=1,
    )
    text = r.to_json(tmp_path / "nan.json").read_text()
    assert "NaN" not in text and "null" in text
    assert math.isnan(RobustnessReport.from_json(tmp_path / "nan.json").results[0].rce)
    assert "n/a" in r.to_markdown()


def test_heatmap_and_save_write_valid_files(report, tmp_path):
    from PIL import Image

    paths = report.save(tmp_path / "out")
    assert set(paths) == {"markdown", "csv", "json", "heatmap"}
    for p in paths.values():
        assert p.is_file() and p.stat().st_size > 0
    with Image.open(paths["heatmap"]) as im:
        assert im.format == "PNG"
        im.verify()
    with Image.open(report.plot_heatmap(tmp_path / "fa.png", metric="fa")) as im:
        assert im.size[0] > 100 and im.size[1] > 100
    with pytest.raises(ValueError, match="metric"):
        report.plot_heatmap(tmp_path / "x.png", metric="accuracy")


def test_summary_table_has_one_row_per_model(report):
    other = RobustnessReport(
        clean={"iou": 0.5, "niou": 0.5, "pd": 1.0, "fa": 0.0},
        results=(SettingResult("contrast", 1, 0.25, 0.25, 0.5, 1.0, 0.5),),
        corruptions=("contrast",), severities=(1,), seed=0, num_images=6, model_name="other",
    )
    lines = summary_table([report, other]).splitlines()
    assert len(lines) == 4
    assert lines[0].split("|")[1].strip() == "model"
    assert "gaussian_noise" in lines[0] and "pixelate" in lines[0]
    assert lines[3].startswith("| other | 50.00 |") and "n/a" in lines[3]
    assert lines[3].rstrip(" |").endswith("50.00")  # mean RCE 0.5 -> 50 %


def test_model_modes_are_restored_and_forward_runs_in_eval_inference_mode(ds):
    seen: list[tuple[bool, bool, bool]] = []

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = TopHat()
            self.bn = nn.BatchNorm2d(1)

        def forward(self, x: Tensor) -> Tensor:
            seen.append((self.training, self.bn.training, torch.is_inference_mode_enabled()))
            return self.body(x)

    net = Net().train()
    net.bn.eval()  # a user-frozen BatchNorm inside a training model
    evaluate(net, ds, corruption="contrast", severity=2)
    assert net.training and net.body.training and not net.bn.training
    assert seen and all(s == (False, False, True) for s in seen)

    net.eval()
    evaluate_robustness(net, ds, corruptions=["contrast"], severities=(1,), progress=False)
    assert not net.training


@pytest.mark.parametrize("wrap", ["list", "tuple", "dict"])
def test_deep_supervision_and_dict_outputs_are_evaluated_like_the_final_logits(ds, wrap):
    base = TopHat()

    class Heads(nn.Module):
        def forward(self, x: Tensor):
            final = base(x)
            junk = torch.full_like(final, 50.0)  # an auxiliary head that predicts everything
            if wrap == "dict":
                return {"aux": junk, "out": final}
            heads = [junk, junk, final]
            return heads if wrap == "list" else tuple(heads)

    want = evaluate(base, ds, corruption="gaussian_noise", severity=1)
    got = evaluate(Heads(), ds, corruption="gaussian_noise", severity=1)
    assert_metrics_equal(got, want)


def test_images_of_different_sizes_in_one_dataset(identity):
    mixed = MixedSizes()
    report = evaluate_robustness(
        make_oracle(mixed), mixed, corruptions=[identity], severities=(1,), pad_to=None, batch_size=4,
        progress=False,
    )
    assert report.clean["iou"] == pytest.approx(1.0) and report.results[0].iou == pytest.approx(1.0)

    # A model that only accepts multiples of 32 works through padding; metrics stay native-size.
    class Strict(TopHat):
        def forward(self, x: Tensor) -> Tensor:
            assert x.shape[-2] % 32 == 0 and x.shape[-1] % 32 == 0, x.shape
            return super().forward(x)

    padded = evaluate(Strict(), mixed, corruption="contrast", severity=3, pad_to=32, batch_size=4)
    assert_metrics_equal(padded, metrics_by_hand(TopHat(), mixed, "contrast", 3, seed=0, pad=32))
    native = evaluate(TopHat(), mixed, corruption="contrast", severity=3, pad_to=None, batch_size=4)
    assert_metrics_equal(native, metrics_by_hand(TopHat(), mixed, "contrast", 3, seed=0))


def test_real_test_images_at_native_size_match_hand_computed_metrics(nuaa_root):
    from advcorrupt.data import ISTDDataset

    # Six NUAA-SIRST test images of six different sizes (none a multiple of 32).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the dataset reports NUAA-SIRST's known defects; not our subject
        real = torch.utils.data.Subset(ISTDDataset(nuaa_root, "test"), range(6))
    assert len({tuple(real[i][0].shape) for i in range(6)}) == 6
    got = evaluate(TopHat(), real, corruption="motion_blur", severity=2, seed=3)
    assert_metrics_equal(got, metrics_by_hand(TopHat(), real, "motion_blur", 2, seed=3, pad=32))
    assert got["pd"] > 0.0


def test_preprocess_runs_after_corruption_on_the_corrupted_image(ds):
    seen: list[Tensor] = []

    def preprocess(x: Tensor) -> Tensor:
        seen.append(x.clone())
        return (x - 0.35) / 0.14

    evaluate(TopHat(), ds, corruption="brightness", severity=5, preprocess=preprocess, batch_size=6, pad_to=None)
    corrupted = torch.stack([CorruptedDataset(ds, "brightness", 5)[i][0] for i in range(len(ds))])
    assert len(seen) == 1 and torch.equal(seen[0], corrupted)
    assert not torch.equal(corrupted, torch.stack([ds[i][0] for i in range(len(ds))]))


def test_dict_items_and_extra_fields_are_accepted(ds):
    class Dicts(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(ds)

        def __getitem__(self, i: int):
            image, mask = ds[i]
            return {"image": image, "mask": mask[0], "name": f"img{i}"}

    assert_metrics_equal(evaluate(TopHat(), Dicts()), evaluate(TopHat(), ds))


def test_bad_arguments_raise_clear_errors(ds):
    model = TopHat()
    with pytest.raises(ValueError, match="dataset must hold at least one image"):
        evaluate_robustness(model, SyntheticIRSTD(0, size=32), progress=False)
    with pytest.raises(ValueError, match="dataset must hold at least one image"):
        evaluate(model, [])
    with pytest.raises(KeyError, match="gaussian_noise"):  # the registry lists valid names
        evaluate_robustness(model, ds, corruptions=["fog"], progress=False)
    with pytest.raises(ValueError, match=r"severity must be in \[1, 5\]"):
        evaluate_robustness(model, ds, corruptions=["contrast"], severities=(1, 6), progress=False)
    with pytest.raises(ValueError, match=r"severity must be in \[1, 5\]"):
        evaluate(model, ds, corruption="contrast", severity=0)
    with pytest.raises(ValueError, match="severities must be distinct"):
        evaluate_robustness(model, ds, corruptions=["contrast"], severities=(), progress=False)
    with pytest.raises(ValueError, match="give both or neither"):
        evaluate(model, ds, corruption="contrast")
    with pytest.raises(TypeError, match="sequence of names"):
        evaluate_robustness(model, ds, corruptions="contrast", progress=False)
    with pytest.raises(ValueError, match="threshold"):
        evaluate(model, ds, threshold=1.5)
    with pytest.raises(TypeError, match="model output"):
        evaluate(lambda x: "not logits", ds)


def test_every_registered_corruption_runs_through_the_benchmark():
    # Completeness: a newly registered corruption cannot land without working here.
    tiny = SyntheticIRSTD(1, size=32, seed=1)
    names = _registry.available()
    report = evaluate_robustness(TopHat(), tiny, corruptions=names, severities=(2,), progress=False, pad_to=None)
    assert [r.corruption for r in report.results] == names
    assert all(0.0 <= r.iou <= 1.0 for r in report.results)


def test_default_corruptions_are_all_registered(ds):
    tiny = SyntheticIRSTD(1, size=32, seed=1)
    report = evaluate_robustness(TopHat(), tiny, severities=(1,), progress=False)
    assert list(report.corruptions) == _registry.available()


# ---- CUDA ------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_model_sees_the_same_corrupted_images_as_a_cpu_model(ds):
    cpu = evaluate(TopHat(), ds, corruption="gaussian_noise", severity=3, seed=4)
    cuda = evaluate(TopHat().cuda(), ds, corruption="gaussian_noise", severity=3, seed=4)
    for k in cpu:
        assert cuda[k] == pytest.approx(cpu[k], rel=1e-3, abs=1e-3), k


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_half_model_and_on_device_preprocess(ds):
    mean = torch.tensor(0.35, device="cuda")

    def preprocess(x: Tensor) -> Tensor:
        assert x.is_cuda
        return x - mean + 0.35

    model = TopHat().cuda().half()
    report = evaluate_robustness(model, ds, corruptions=["contrast", "jpeg_compression"], severities=(1, 2),
                                 preprocess=preprocess, progress=False)
    ref = evaluate_robustness(TopHat().cuda(), ds, corruptions=["contrast", "jpeg_compression"],
                              severities=(1, 2), progress=False)
    assert next(model.parameters()).dtype == torch.float16
    assert report.clean["iou"] == pytest.approx(ref.clean["iou"], abs=0.01)
    for half, full in zip(report.results, ref.results):
        assert half.iou == pytest.approx(full.iou, abs=0.01)
        assert half.pd == pytest.approx(full.pd, abs=0.1)


# ------------------------------------------------------------------ comparison_table (Table 2)


def _fake_report(clean_iou: float, corrupted: dict[str, float], *, fa: float = 3.0, **kw) -> RobustnessReport:
    results = tuple(
        SettingResult(name, s, iou * f, iou * f, 0.9, fa, (clean_iou - iou * f) / clean_iou)
        for name, iou in corrupted.items()
        for s, f in ((1, 1.0), (2, 0.5))
    )
    return RobustnessReport(
        clean={"iou": clean_iou, "niou": clean_iou - 0.05, "pd": 0.95, "fa": fa},
        results=results, corruptions=tuple(corrupted), severities=(1, 2),
        seed=kw.pop("seed", 0), num_images=kw.pop("num_images", 10), dataset_name="nuaa", **kw,
    )


def _row(table: str, title: str) -> list[str]:
    for line in table.splitlines():
        if line.startswith(f"| {title} |"):
            return [c.strip() for c in line.strip().strip("|").split("|")][1:]
    raise AssertionError(f"no row {title!r} in\n{table}")


def test_comparison_table_gives_mean_and_std_over_seeds_per_model():
    acm = [_fake_report(0.70, {"contrast": 0.5, "pixelate": 0.6}), _fake_report(0.74, {"contrast": 0.3, "pixelate": 0.6})]
    sfim = [_fake_report(0.80, {"contrast": 0.6, "pixelate": 0.7})]
    table = comparison_table({"ACM": acm, "ACM + SFIM": sfim})
    assert table.splitlines()[2] == "| metric | ACM | ACM + SFIM |"
    mean, std = statistics.fmean([0.70, 0.74]), statistics.stdev([0.70, 0.74])
    assert _row(table, "clean IoU") == [f"{100 * mean:.2f} ± {100 * std:.2f}", "**80.00**"]
    contrast = [statistics.fmean([r.iou for r in rep.results if r.corruption == "contrast"]) for rep in acm]
    assert _row(table, "contrast IoU")[0] == (
        f"{100 * statistics.fmean(contrast):.2f} ± {100 * statistics.stdev(contrast):.2f}"
    )
    assert _row(table, "mean corrupted IoU")[1] == f"**{100 * sfim[0].mean_corrupted_iou:.2f}**"
    rce = [rep.per_corruption["pixelate"]["rce"] for rep in acm]
    assert _row(table, "pixelate RCE")[0].startswith(f"{100 * statistics.fmean(rce):.2f} ±")
    # Lower is better for Fa and RCE: equal Fa -> both bold; SFIM's lower RCE is bold.
    assert _row(table, "clean Fa (1e-6)") == ["**3.00 ± 0.00**", "**3.00**"]
    assert _row(table, "mean RCE")[1].startswith("**")


def test_comparison_table_shows_missing_corruptions_as_n_a_and_accepts_single_reports():
    a = _fake_report(0.7, {"contrast": 0.5})
    b = _fake_report(0.6, {"contrast": 0.4, "jpeg_compression": 0.3})
    table = comparison_table({"a": a, "b": [b]})
    assert _row(table, "jpeg_compression IoU") == ["n/a", f"{100 * 0.3 * 0.75:.2f}"]
    assert not any("±" in line for line in table.splitlines() if line.startswith("| "))
    assert "a: 1, b: 1" in table


@pytest.mark.parametrize(
    ("reports", "error", "match"),
    [
        ({}, ValueError, "non-empty mapping"),
        ([], ValueError, "non-empty mapping"),
        ({"a": []}, TypeError, r"reports\['a'\].*empty list"),
        ({"a": ["report.json"]}, TypeError, r"reports\['a'\].*\['str'\]"),
    ],
)
def test_comparison_table_rejects_bad_input(reports, error, match):
    with pytest.raises(error, match=match):
        comparison_table(reports)


def test_comparison_table_refuses_reports_from_different_benchmarks():
    a = _fake_report(0.7, {"contrast": 0.5})
    with pytest.raises(ValueError, match="same test set and benchmark seed"):
        comparison_table({"a": a, "b": _fake_report(0.7, {"contrast": 0.5}, seed=1)})
    with pytest.raises(ValueError, match="num_images"):
        comparison_table({"a": [a, _fake_report(0.7, {"contrast": 0.5}, num_images=11)]})


# ------------------------------------------------------------------ advcorrupt bench, several models


def _tiny_bench_net(*, in_channels: int = 1) -> nn.Module:
    return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))


def _train_tiny_run(out: Path, seed: int) -> None:
    from advcorrupt.cli import main
    from advcorrupt.models import list_models, register_model

    if "_tiny_bench_net" not in list_models():
        register_model(_tiny_bench_net)
    args = [
        "train", "--model", "_tiny_bench_net", "--strategy", "random", "--corruptions", "gaussian_noise,brightness",
        "--severities", "1", "--epochs", "1", "--batch-size", "2", "--synthetic-train", "4", "--synthetic-test", "2",
        "--synthetic-size", "32", "--device", "cpu", "--out-dir", str(out), "--seed", str(seed), "--no-progress",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an untrained tiny net triggers the collapse warning
        assert main(args) == 0


def test_bench_with_several_runs_and_reports_writes_the_comparison(tmp_path, capsys):
    from advcorrupt.cli import main

    for seed in (0, 1):
        _train_tiny_run(tmp_path / f"run{seed}", seed)
    capsys.readouterr()
    common = ["--corruptions", "gaussian_noise", "--severities", "1", "--device", "cpu", "--no-progress"]
    out = tmp_path / "cmp"
    assert main(["bench", "--checkpoint", str(tmp_path / "run0"), str(tmp_path / "run1"), "--out", str(out), *common]) == 0
    printed = capsys.readouterr().out
    reports = [RobustnessReport.from_json(tmp_path / f"run{s}" / "bench" / "robustness.json") for s in (0, 1)]
    table = (out / "comparison.md").read_text()
    assert table.endswith(comparison_table({reports[0].model_name: reports}))
    assert "_tiny_bench_net (random): 2" in table and "| metric | _tiny_bench_net (random) |" in printed

    # Saved reports are read back, not re-evaluated; --labels splits them into two models.
    jsons = [str(tmp_path / f"run{s}" / "bench" / "robustness.json") for s in (0, 1)]
    assert main(["bench", "--checkpoint", *jsons, "--labels", "a,b", "--out", str(out), *common]) == 0
    assert "| metric | a | b |" in (out / "comparison.md").read_text()
    assert not list(out.glob(".*.tmp"))

    assert main(["bench", "--checkpoint", *jsons, "--labels", "a", *common]) == 2
    assert "--labels needs one label per --checkpoint (2); got 1" in capsys.readouterr().err
    assert main(["bench", "--checkpoint", jsons[0], str(tmp_path / "missing.json"), *common]) == 2
    assert "cannot read the report" in capsys.readouterr().err


def test_save_stages_the_files_and_replaces_an_earlier_report(report, tmp_path):
    out = tmp_path / "bench"
    first = report.save(out)
    (out / "robustness.md").write_text("stale")
    second = report.save(out)
    assert first == second and second["markdown"].read_text() == report.to_markdown()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench"]  # no staging folder left behind
