"""``advcorrupt corrupt-dataset``: corrupted ISTD-layout copies, and evaluating on them.

A tiny ISTD folder of synthetic scenes (two image sizes, 8-bit PNGs) keeps each case well under a
second; the checks compare against the in-memory benchmark (CorruptedDataset, evaluate).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _toy import Rounded8Bit
from PIL import Image
from torch import Tensor, nn

from advcorrupt.benchmark import CorruptedDataset, evaluate, evaluate_robustness
from advcorrupt.cli import _corrupted_root, main
from advcorrupt.cli.corrupt_dataset import (
    evaluate_corrupted_root,
    write_corrupted_dataset,
)
from advcorrupt.corruptions import available
from advcorrupt.data import ISTDDataset, SyntheticIRSTD

SETTINGS = dict(corruptions=["gaussian_noise", "contrast"], severities=[1, 3], progress=False)


def make_istd(root: Path, *, n_train: int = 2, n_test: int = 3) -> Path:
    """An ISTD folder: test images 40x48, train images 32x32, masks named <stem>_pixels0.png."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "img_idx").mkdir()
    splits = {"test": (n_test, (40, 48)), "train": (n_train, (32, 32))}
    for split, (n, size) in splits.items():
        scenes = SyntheticIRSTD(n, size=size, seed=len(split))
        stems = [f"{split}{i:03d}" for i in range(n)]
        for stem, (image, mask) in zip(stems, scenes):
            Image.fromarray(np.rint(image[0].numpy() * 255).astype(np.uint8)).save(root / "images" / f"{stem}.png")
            Image.fromarray((mask[0].numpy() * 255).astype(np.uint8)).save(root / "masks" / f"{stem}_pixels0.png")
        (root / "img_idx" / f"{split}_Tiny.txt").write_text("\n".join(stems) + "\n")
    return root


class LocalContrast(nn.Module):
    """A fixed, parameter-free detector (bright spot over its 9x9 neighbourhood): metrics without training."""

    def forward(self, x: Tensor) -> Tensor:
        return 60.0 * (x - F.avg_pool2d(x, 9, stride=1, padding=4, count_include_pad=False)) - 6.0




@pytest.fixture
def src(tmp_path: Path) -> Path:
    return make_istd(tmp_path / "src")


def test_writes_every_split_image_in_the_istd_layout_at_its_own_size(src: Path, tmp_path: Path) -> None:
    dst = write_corrupted_dataset(src, tmp_path / "dst", seed=0, **SETTINGS)
    manifest = json.loads((dst / "corruptions.json").read_text())
    assert manifest["corruptions"] == SETTINGS["corruptions"] and manifest["severities"] == [1, 3]
    assert sorted(p.name for p in dst.iterdir()) == ["contrast", "corruptions.json", "gaussian_noise"]
    for name in SETTINGS["corruptions"]:
        for s in (1, 3):
            folder = dst / name / str(s)
            assert sorted(p.name for p in folder.iterdir()) == ["images", "img_idx", "masks"]
            for f in (src / "masks").iterdir():  # masks and split files copied byte for byte
                assert (folder / "masks" / f.name).read_bytes() == f.read_bytes()
            for f in (src / "img_idx").iterdir():
                assert (folder / "img_idx" / f.name).read_bytes() == f.read_bytes()
            for f in (src / "images").iterdir():
                with Image.open(folder / "images" / f.name) as out, Image.open(f) as orig:
                    assert out.mode == "L" and out.size == orig.size
            assert len(ISTDDataset(folder, "train")) == 2 and len(ISTDDataset(folder, "test")) == 3
    assert not list(tmp_path.glob(".dst.tmp-*"))


def test_images_are_the_in_memory_benchmark_images_up_to_8_bit_rounding(src: Path, tmp_path: Path) -> None:
    dst = write_corrupted_dataset(src, tmp_path / "dst", seed=5, **SETTINGS)
    clean = ISTDDataset(src, "test")
    for name in SETTINGS["corruptions"]:
        memory = CorruptedDataset(clean, name, 3, seed=5)
        disk = ISTDDataset(dst / name / "3", "test")
        for i in range(len(clean)):
            diff = (disk[i][0] - memory[i][0]).abs().max().item()
            assert diff <= 0.5 / 255 + 1e-6, (name, i, diff)
            assert torch.equal(disk[i][1], memory[i][1])


def test_evaluating_the_folder_equals_the_benchmark_on_8_bit_rounded_images(src: Path, tmp_path: Path) -> None:
    dst = write_corrupted_dataset(src, tmp_path / "dst", seed=1, **SETTINGS)
    model, clean = LocalContrast(), ISTDDataset(src, "test")
    report = evaluate_corrupted_root(model, dst, clean=clean, pad_to=None)
    memory = evaluate_robustness(model, clean, corruptions=SETTINGS["corruptions"], severities=(1, 3), seed=1,
                                 pad_to=None, progress=False)
    assert report.seed == 1 and report.clean == memory.clean and len(report.results) == 4
    for r in report.results:
        rounded = evaluate(model, Rounded8Bit(CorruptedDataset(clean, r.corruption, r.severity, seed=1)), pad_to=None)
        assert (r.iou, r.niou, r.pd, r.fa) == (rounded["iou"], rounded["niou"], rounded["pd"], rounded["fa"])
    assert memory.clean["iou"] > 0.1, "the fixed detector finds targets, so the comparison means something"


def test_deterministic_per_seed(src: Path, tmp_path: Path) -> None:
    settings = dict(corruptions=["shot_noise"], severities=[2], progress=False)
    a = write_corrupted_dataset(src, tmp_path / "a", seed=3, **settings)
    b = write_corrupted_dataset(src, tmp_path / "b", seed=3, **settings)
    c = write_corrupted_dataset(src, tmp_path / "c", seed=4, **settings)
    img = "shot_noise/2/images/test000.png"
    assert (a / img).read_bytes() == (b / img).read_bytes() != (c / img).read_bytes()


def _cli(src: Path, dst: Path, *extra: str) -> int:
    return main(["corrupt-dataset", str(src), str(dst), "--corruptions", "contrast", "--severities", "1",
                 "--no-progress", *extra])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--corruptions", "contrast,fog_machine"], "unknown corruption 'fog_machine'; available: " + ", ".join(available()[:3])),
        (["--severities", "0,6"], r"severities must be in [1, 5] for 'contrast'; got [0, 6]"),
    ],
)
def test_cli_rejects_bad_settings_and_writes_nothing(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert _cli(src, tmp_path / "dst", *extra) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_cli_refuses_a_source_without_the_layout_and_a_non_empty_destination(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bare" / "images").mkdir(parents=True)
    assert _cli(tmp_path / "bare", tmp_path / "dst") == 2
    assert "lacks the ISTD layout: missing masks/, img_idx/" in capsys.readouterr().err
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    assert _cli(src, dst) == 2
    assert "exists and is not empty; pass --overwrite" in capsys.readouterr().err
    assert [p.name for p in dst.iterdir()] == ["keep.txt"]
    assert _cli(src, dst, "--overwrite") == 0
    assert "wrote 1 corruption(s) x 1 severity level(s)" in capsys.readouterr().out
    assert sorted(p.name for p in dst.iterdir()) == ["contrast", "corruptions.json"]
    assert _cli(src, src, "--overwrite") == 2 and "dst must be outside src" in capsys.readouterr().err


def test_an_interrupted_run_leaves_no_partial_output(src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = _corrupted_root._save_png

    def failing(image: Tensor, path: Path) -> None:
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt
        real(image, path)

    monkeypatch.setattr(_corrupted_root, "_save_png", failing)
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "old.txt").write_text("previous run")
    with pytest.raises(KeyboardInterrupt):
        write_corrupted_dataset(src, dst, overwrite=True, **SETTINGS)
    assert len(calls) == 4
    assert [p.name for p in dst.iterdir()] == ["old.txt"], "the previous content stays until a copy is complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst", "src"]
