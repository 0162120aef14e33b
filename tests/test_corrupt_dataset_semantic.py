"""``advcorrupt corrupt-dataset`` and ``bench --corrupted-root`` on CamVid / SegNet-layout datasets.

A tiny SegNet folder (3 test, 2 val, 2 train RGB scenes of 24x32, CamVid's 11 classes and void 11)
keeps each case well under a second. Each scene paints every pixel in its class's CamVid colour, so
a fixed 1x1 convolution (the nearest palette colour) scores mIoU 1 clean and less under corruption:
the comparisons with the in-memory benchmark mean something.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _toy import Rounded8Bit
from PIL import Image
from torch import Tensor, nn

from advcorrupt.bench import (
    CorruptedDataset,
    SemanticRobustnessReport,
    evaluate,
    evaluate_robustness,
)
from advcorrupt.cli import _corrupted_root, main
from advcorrupt.cli._corrupted_root import check_root_layout
from advcorrupt.cli.corrupt_dataset import (
    evaluate_corrupted_root,
    write_corrupted_dataset,
)
from advcorrupt.data import CamVid
from advcorrupt.tasks import SemanticTask

# The tiny copies are not SegNet's 367 / 101 / 233 images: CamVid warns, as it should.
pytestmark = pytest.mark.filterwarnings("ignore:CamVid .* SegNet's release has:UserWarning")

SPLITS = {"test": 3, "val": 2, "train": 2}
H, W = 24, 32
CORRUPTIONS = ["gaussian_noise", "contrast"]
SEVERITIES = [1, 3]
SETTINGS: dict[str, Any] = {"corruptions": CORRUPTIONS, "severities": SEVERITIES, "progress": False}


def make_segnet(root: Path) -> Path:
    """A CamVid folder in SegNet's layout: blocks of random classes 0-10 and some void (11), in CamVid colours."""
    rng = np.random.default_rng(0)
    palette = np.asarray(CamVid.palette, dtype=np.uint8)
    for split, n in SPLITS.items():
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(n):
            labels = np.kron(rng.integers(0, 12, (H // 4, W // 4)), np.ones((4, 4), np.int64)).astype(np.uint8)
            Image.fromarray(palette[labels]).save(root / split / f"{split}_{i:02d}.png")
            Image.fromarray(labels).save(root / f"{split}annot" / f"{split}_{i:02d}.png")
    return root


class NearestColour(nn.Module):
    """A fixed 1x1 convolution: logit_k = <x, c_k> - |c_k|^2 / 2, the class of the nearest CamVid colour."""

    def __init__(self) -> None:
        super().__init__()
        colours = torch.tensor(CamVid.palette[:11], dtype=torch.float32) / 255
        self.conv = nn.Conv2d(3, 11, 1)
        with torch.no_grad():
            self.conv.weight.copy_(colours[:, :, None, None])
            self.conv.bias.copy_(-0.5 * (colours**2).sum(1))

    def forward(self, x: Tensor) -> Tensor:
        return 50.0 * self.conv(x)




def camvid(root: Path, split: str) -> CamVid:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CamVid(root, split)  # type: ignore[arg-type]


@pytest.fixture
def src(tmp_path: Path) -> Path:
    return make_segnet(tmp_path / "CamVid")


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(src, dst)``: the tiny SegNet folder and its corrupted copy, seed 2."""
    base = tmp_path_factory.mktemp("segnet")
    src = make_segnet(base / "CamVid")
    return src, write_corrupted_dataset(src, base / "CamVid-C", seed=2, **SETTINGS)


# --------------------------------------------------------------------------------------- writing
def test_writes_every_split_in_the_segnet_layout_with_the_labels_unchanged(written: tuple[Path, Path]) -> None:
    src, dst = written
    manifest = json.loads((dst / "corruptions.json").read_text())
    assert manifest["layout"] == "segnet" and manifest["format"] == "8-bit RGB PNG" and manifest["seed"] == 2
    assert manifest["splits"] == ["test", "val", "train"] and manifest["corruptions"] == CORRUPTIONS
    assert sorted(p.name for p in dst.iterdir()) == ["contrast", "corruptions.json", "gaussian_noise"]
    for name in CORRUPTIONS:
        assert sorted(p.name for p in (dst / name).iterdir()) == ["1", "3"]
        for s in SEVERITIES:
            folder = dst / name / str(s)
            assert sorted(p.name for p in folder.iterdir()) == sorted([*SPLITS, *(f"{k}annot" for k in SPLITS)])
            for split in SPLITS:
                assert sorted(p.name for p in (folder / split).iterdir()) == sorted(p.name for p in (src / split).iterdir())
                for f in (src / f"{split}annot").iterdir():  # labels copied byte for byte
                    assert (folder / f"{split}annot" / f.name).read_bytes() == f.read_bytes()
                for f in (src / split).iterdir():
                    with Image.open(folder / split / f.name) as out:
                        assert out.mode == "RGB" and out.size == (W, H)


@pytest.mark.parametrize("split", list(SPLITS))
def test_each_image_is_the_in_memory_benchmark_item_up_to_8_bit_rounding(written: tuple[Path, Path], split: str) -> None:
    src, dst = written
    clean = camvid(src, split)
    for name in CORRUPTIONS:
        for s in SEVERITIES:
            memory = CorruptedDataset(clean, name, s, seed=2)
            disk = camvid(dst / name / str(s), split)
            assert disk.names == clean.names
            for i in range(len(clean)):
                diff = (disk[i][0] - memory[i][0]).abs().max().item()
                assert diff <= 0.5 / 255 + 1e-6, (name, s, split, i, diff)
                assert torch.equal(disk[i][1], clean[i][1])
    assert (camvid(dst / "gaussian_noise" / "3", split)[0][0] - clean[0][0]).abs().max() > 0.05  # really corrupted


def test_a_source_with_only_a_test_split_writes_only_that_split(tmp_path: Path) -> None:
    src = make_segnet(tmp_path / "CamVid")
    for split in ("val", "train"):
        for sub in (split, f"{split}annot"):
            for f in (src / sub).iterdir():
                f.unlink()
            (src / sub).rmdir()
    dst = write_corrupted_dataset(src, tmp_path / "dst", corruptions=["contrast"], severities=[2], progress=False)
    assert json.loads((dst / "corruptions.json").read_text())["splits"] == ["test"]
    assert sorted(p.name for p in (dst / "contrast" / "2").iterdir()) == ["test", "testannot"]


# ------------------------------------------------------------------------------------ evaluating
def test_evaluating_the_folder_gives_the_in_memory_semantic_report(written: tuple[Path, Path]) -> None:
    src, dst = written
    model, clean = NearestColour(), camvid(src, "test")
    disk = evaluate_corrupted_root(model, dst, clean=clean, pad_to=None)
    memory = evaluate_robustness(model, clean, seed=2, pad_to=None, **SETTINGS)
    assert isinstance(disk, SemanticRobustnessReport) and isinstance(memory, SemanticRobustnessReport)
    assert disk.to_dict().keys() == memory.to_dict().keys()
    assert disk.clean == memory.clean and disk.clean["mIoU"] == 1.0  # the fixed model is perfect on clean scenes
    for field in ("corruptions", "severities", "seed", "num_images", "num_classes", "ignore_index", "class_names",
                  "model_name"):
        assert getattr(disk, field) == getattr(memory, field), field
    assert disk.dataset_name == "CamVid-C (test)" and disk.class_names[0] == "Sky" and disk.ignore_index == 11
    assert [(r.corruption, r.severity) for r in disk.results] == [(r.corruption, r.severity) for r in memory.results]
    for a, b in zip(disk.results, memory.results):
        assert abs(a.miou - b.miou) < 0.02 and len(a.class_iou) == 11, (a, b)
    assert disk.mean_corrupted == pytest.approx(memory.mean_corrupted, abs=0.02)
    assert disk.relative_robustness == pytest.approx(memory.relative_robustness, abs=0.02)
    assert memory.mean_corrupted < 0.95, "the corruptions hurt, so the comparison means something"


def test_each_setting_equals_the_benchmark_on_8_bit_rounded_images(written: tuple[Path, Path]) -> None:
    src, dst = written
    model, clean, task = NearestColour(), camvid(src, "val"), SemanticTask(11, ignore_index=11)
    disk = evaluate_corrupted_root(model, dst, clean=clean, task=task, corruptions=["gaussian_noise"], severities=[3],
                                   pad_to=None)
    assert disk.dataset_name == "CamVid-C (val)" and disk.num_images == 2  # the clean set's split is read
    rounded = evaluate(model, Rounded8Bit(CorruptedDataset(clean, "gaussian_noise", 3, seed=2)), task=task, pad_to=None)
    (result,) = disk.results
    assert (result.miou, result.aacc, result.macc) == (rounded["mIoU"], rounded["aAcc"], rounded["mAcc"])
    np.testing.assert_array_equal(result.class_iou, [float(v) for v in rounded["IoU"]])  # NaN == NaN here


def test_a_task_or_split_that_does_not_fit_the_folder_is_refused(written: tuple[Path, Path], tmp_path: Path) -> None:
    src, dst = written
    clean = camvid(src, "test")
    with pytest.raises(ValueError, match=r"task must be 'semantic' \(or None\) .*CamVid / SegNet layout.*got 'binary'"):
        evaluate_corrupted_root(NearestColour(), dst, clean=clean, task="binary")
    with pytest.raises(ValueError, match=r"split must be one of the splits of .* \(test, val, train\); got 'extra'"):
        evaluate_corrupted_root(NearestColour(), dst, clean=clean, split="extra")
    with pytest.raises(ValueError, match=r"holds 2 image\(s\) \(val_00, val_01, \.\.\.\) but the clean dataset 3"):
        evaluate_corrupted_root(NearestColour(), dst, clean=clean, split="val")


# ---------------------------------------------------------------------------------- command line
def _cli(src: Path, dst: Path, *extra: str) -> int:
    return main(["corrupt-dataset", str(src), str(dst), "--corruptions", "contrast", "--severities", "1,2",
                 "--no-progress", *extra])


def test_cli_writes_the_copy_and_prints_the_summary(src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(src, tmp_path / "dst") == 0
    out = capsys.readouterr().out
    assert "wrote 1 corruption(s) x 2 severity level(s)" in out and "(segnet layout; splits test, val, train)" in out
    assert sorted(p.name for p in (tmp_path / "dst" / "contrast").iterdir()) == ["1", "2"]


def test_cli_refuses_a_source_of_neither_layout_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bare = tmp_path / "bare"
    (bare / "pictures").mkdir(parents=True)
    assert _cli(bare, tmp_path / "dst") == 2
    err = capsys.readouterr().err
    assert f"src {bare} is neither an ISTD nor a CamVid / SegNet-layout dataset" in err
    assert "lacks the ISTD layout: missing images/, masks/, img_idx/" in err
    assert "the SegNet layout: missing every split folder (test/ + testannot/, val/ + valannot/, train/ + trainannot/" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare"]  # no dst, no hidden temporary folder


def test_cli_refuses_a_segnet_split_without_its_labels(src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for f in (src / "valannot").iterdir():
        f.unlink()
    (src / "valannot").rmdir()
    assert _cli(src, tmp_path / "dst") == 2
    assert "has the SegNet layout but its 'val' split lacks valannot/" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CamVid"]


def test_an_interrupted_write_leaves_no_destination_and_no_temporary_folder(
    src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    real = _corrupted_root._save_png

    def failing(image: Tensor, path: Path) -> None:
        calls.append(path)
        if len(calls) == 5:
            raise OSError("disk full")
        real(image, path)

    monkeypatch.setattr(_corrupted_root, "_save_png", failing)
    with pytest.raises(OSError, match="disk full"):
        write_corrupted_dataset(src, tmp_path / "dst", **SETTINGS)
    assert len(calls) == 5 and calls[3].parent.name == "val"  # test (3 images) was written, then val began
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CamVid"]


# ----------------------------------------------------------------------------------------- bench
def test_the_layout_check_names_both_layouts_when_they_disagree(written: tuple[Path, Path], tmp_path: Path) -> None:
    _, dst = written
    assert check_root_layout(dst, "camvid") == "segnet"
    with pytest.raises(ValueError, match=r"holds a copy in the CamVid / SegNet layout .*dataset is 'istd', whose "
                                         r"copies have the ISTD layout \(images/, masks/, img_idx/\)"):
        check_root_layout(dst, "istd")
    with pytest.raises(ValueError, match=r"dataset is 'folder', of which `advcorrupt corrupt-dataset` writes no copy"):
        check_root_layout(dst, "folder")
    old = tmp_path / "old"  # a manifest written before the "layout" key: an ISTD copy
    old.mkdir()
    (old / "corruptions.json").write_text(json.dumps({"seed": 0, "corruptions": ["contrast"], "severities": [1]}))
    assert check_root_layout(old, "istd") == "istd"
    with pytest.raises(ValueError, match=r"holds a copy in the ISTD layout .*dataset is 'camvid', whose copies have "
                                         r"the CamVid / SegNet layout \(<split>/, <split>annot/\)"):
        check_root_layout(old, "camvid")


@pytest.fixture(scope="module")
def camvid_run(written: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> Path:
    """A one-step CamVid run (smp Unet with a tiny timm encoder, random initialisation) on the tiny folder."""
    src, _ = written
    out = tmp_path_factory.mktemp("runs") / "camvid"
    args = ["train", "--model", "smp:Unet:tu-resnet10t",
            "--model-kwargs", json.dumps({"encoder_depth": 3, "decoder_channels": [16, 8, 8]}),
            "--dataset", "camvid", "--data-root", str(src), "--crop-size", str(H), str(W), "--batch-size", "2",
            "--epochs", "1", "--corruptions", "contrast", "--severities", "1",
            "--policy-kwargs", json.dumps({"input_size": 32, "widths": [4, 4, 8, 8, 8]}), "--device", "cpu",
            "--out-dir", str(out), "--no-progress"]
    assert main(args) == 0
    return out


def test_bench_reads_a_segnet_copy_for_a_camvid_run_and_refuses_an_istd_copy(
    written: tuple[Path, Path], camvid_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, dst = written
    common = ["bench", "--checkpoint", str(camvid_run), "--device", "cpu", "--no-progress",
              "--corruptions", "contrast", "--severities", "3", "--seed", "2"]
    assert main([*common, "--out", str(tmp_path / "mem")]) == 0
    assert main([*common, "--out", str(tmp_path / "disk"), "--corrupted-root", str(dst)]) == 0
    capsys.readouterr()
    mem = SemanticRobustnessReport.from_json(tmp_path / "mem" / "robustness.json")
    disk = SemanticRobustnessReport.from_json(tmp_path / "disk" / "robustness.json")
    assert disk.clean == mem.clean and disk.seed == 2 and disk.dataset_name == "CamVid-C (test)"
    assert [(r.corruption, r.severity) for r in disk.results] == [("contrast", 3)]
    assert abs(disk.results[0].miou - mem.results[0].miou) < 0.02
    istd = tmp_path / "istd-c"
    istd.mkdir()
    (istd / "corruptions.json").write_text(json.dumps({"seed": 0, "corruptions": ["contrast"], "severities": [3],
                                                        "layout": "istd"}))
    assert main([*common, "--out", str(tmp_path / "never"), "--corrupted-root", str(istd)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("advcorrupt bench: error: ") and "ISTD layout" in err and "CamVid / SegNet layout" in err
    assert not (tmp_path / "never").exists()
