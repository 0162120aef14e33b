"""examples/camvid_smp.py: the ISTD harness's grid machinery on CamVid (issue 21, item 6).

End to end on a synthetic folder in CamVid's SegNet layout (a few 32x48 scenes), with the smoke
profile shrunk further by flags: training + bench of two strategies, the semantic report of every
run, ``--resume``, ``--report-only`` (tables in mIoU / mPC / rPC, the recipe check, the missing
runs) and ``--compare``. The real smoke profile on ../shared/data/CamVid is the ``slow`` test.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CAMVID = REPO.parent / "shared" / "data" / "CamVid"
SPLITS = {"train": 6, "val": 2, "test": 3}
# Shrinks the smoke profile further: 2 steps of 2 crops of 32x32, validation once.
TINY = ["--profile", "smoke", "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2", "--crop-size", "32", "32",
        "--device", "cpu", "--no-progress"]


def _example() -> ModuleType:
    path = REPO / "examples" / "camvid_smp.py"
    spec = importlib.util.spec_from_file_location("camvid_smp_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _camvid(root: Path, size: tuple[int, int] = (32, 48)) -> Path:
    """A CamVid-layout folder: class blocks (labels 0-10, a void strip of 11), each class its own colour."""
    rng = np.random.default_rng(0)
    palette = rng.integers(0, 256, (12, 3))
    h, w = size
    for split, n in SPLITS.items():
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(n):
            labels = np.repeat(np.repeat(rng.integers(0, 11, (4, 6)), h // 4, 0), w // 6, 1).astype(np.uint8)
            labels[:, :2] = 11  # void, ignored by the loss and the metrics
            image = np.clip(palette[labels] + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(image).save(root / split / f"{i:04d}.png")
            Image.fromarray(labels).save(root / f"{split}annot" / f"{i:04d}.png")
    return root


def _quiet_main(ex: ModuleType, argv: list[str]) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a split of 6 images is not SegNet's 367; 2-step models collapse
        return int(ex.main(argv))


def test_the_grid_trains_benchmarks_and_tabulates_camvid_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ex = _example()
    root, out = _camvid(tmp_path / "CamVid"), tmp_path / "grid"
    argv = [*TINY, "--data-root", str(root), "--strategies", "random,learned,none", "--seeds", "0", "--out", str(out)]
    assert _quiet_main(ex, argv) == 0
    assert "profile=smoke model=smp:Unet:mobilenet_v2 data=" in capsys.readouterr().out
    runs = json.loads((out / "results.json").read_text())
    assert sorted((r["strategy"], r["seed"]) for r in runs) == [("learned", 0), ("none", 0), ("random", 0)]
    for r in runs:
        folder = out / r["strategy"] / "seed0"
        report = r["report"]
        assert report["task"] == {"name": "semantic", "num_classes": 11, "ignore_index": 11}
        assert report["corruptions"] == ["gaussian_noise", "motion_blur", "contrast", "jpeg_compression"]
        assert report["severities"] == [1, 3] and report["num_images"] == SPLITS["test"]  # the test split, all 3
        assert len(report["clean"]["IoU"]) == 11 and report["primary_metric"] == "mIoU"
        assert (folder / "bench" / "robustness_class_iou_drop.png").is_file()
        config = json.loads((folder / "config.json").read_text())
        assert config["dataset"] == "camvid" and config["crop_size"] == [32, 32] and config["steps_per_epoch"] == 2
        assert config["model_kwargs"] == {"decoder_channels": [96, 48, 24, 16, 8]}
    assert (out / "learned_shares.png").is_file() and not (out / "none_shares.png").exists()  # none samples nothing
    assert _quiet_main(ex, [*argv, "--resume"]) == 0  # reuses every finished run
    assert json.loads((out / "results.json").read_text()) == runs

    # Two-step models may collapse (then they are listed as failed, never averaged); mark the runs as
    # working to see the tables of their real reports.
    for r in runs:
        done = out / r["strategy"] / "seed0" / "done.json"
        done.write_text(json.dumps({**json.loads(done.read_text()), "failed": False}))
    assert _quiet_main(ex, [*argv, "--report-only", "--seeds", "0,1"]) == 0
    text = (out / "results.md").read_text()
    assert "| metric | random | learned | none |" in text and "| clean mIoU |" in text and "| mPC (mean corrupted mIoU) |" in text
    assert "| contrast mIoU |" in text and "IoU RCE" not in text and "mean corrupted IoU" not in text
    # `learned` starts from a uniform policy and draws what `random` draws: two steps leave them equal;
    # `none` (clean batches only) trains another model
    scores = {r["strategy"]: r["report"] for r in runs}
    getters = {"mPC": lambda rep: rep["mean_corrupted"], "clean mIoU": lambda rep: rep["clean"]["mIoU"]}
    for strategy in ("learned", "none"):
        for metric, get in getters.items():
            diff = 100 * (get(scores[strategy]) - get(scores["random"]))
            assert f"0: {diff:+.2f} |" in _line(text, f"| {strategy} | {metric} | 0: ")
        assert _line(text, f"| {strategy} | level 3 mIoU | 0: ")
    assert "0: +0.00 |" not in _line(text, "| none | mPC | 0: ")
    assert text.startswith("Recipe of every run: model smp:Unet:mobilenet_v2, model_kwargs {'decoder_channels': "
                           "[96, 48, 24, 16, 8]}, data CamVid, device cpu, epochs 1, steps_per_epoch 2, batch_size 2, "
                           "crop_size [32, 32], lr 0.002")
    assert text.rstrip().endswith("Not finished yet: random seed 1, learned seed 1, none seed 1")
    # a finished run of another recipe is refused, never tabulated beside this one
    with pytest.raises(SystemExit, match=r"another recipe.*crop_size: \[32, 32\] vs \[64, 64\].*give another --out"):
        _quiet_main(ex, [*argv, "--report-only", "--crop-size", "64", "64"])

    capsys.readouterr()
    assert _quiet_main(ex, ["--compare", f"R={out / 'random'}", f"N={out / 'none'}", "--seeds", "0"]) == 0
    compared = capsys.readouterr().out
    assert compared.startswith("Every column was trained with the same recipe.")
    diff = 100 * (scores["none"]["mean_corrupted"] - scores["random"]["mean_corrupted"])
    assert "| metric | R | N |" in compared and f"0: {diff:+.2f} |" in _line(compared, "| N | mPC | 0: ")


def _line(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(start))


def test_the_camvid_grid_refuses_bad_flags_before_training(tmp_path: Path) -> None:
    ex = _example()
    out = tmp_path / "x"
    with pytest.raises(SystemExit, match="--data-root is required: the CamVid folder"):
        ex.main(["--out", str(out)])
    root = _camvid(tmp_path / "CamVid")
    with pytest.raises(ValueError, match="crop_size must be"):
        ex.main(["--data-root", str(root), "--crop-size", "0", "32", "--out", str(out)])
    with pytest.raises(SystemExit, match="must not repeat"):
        ex.main(["--data-root", str(root), "--seeds", "1,1", "--out", str(out)])
    assert not out.exists()
    args = ex.parse_args(["--data-root", str(root)])
    assert args.strategies == "none,random,learned" and args.profile is None and args.out == "runs/camvid"


@pytest.mark.slow
@pytest.mark.skipif(not (CAMVID / "test").is_dir(), reason="../shared/data/CamVid is not here")
def test_the_smoke_profile_runs_on_camvid_in_under_five_minutes(tmp_path: Path) -> None:
    ex = _example()
    out = tmp_path / "smoke"
    start = time.perf_counter()
    assert ex.main(["--profile", "smoke", "--data-root", str(CAMVID), "--strategies", "learned", "--device", "cpu",
                    "--out", str(out), "--no-progress"]) == 0
    seconds = time.perf_counter() - start
    runs: list[dict[str, Any]] = json.loads((out / "results.json").read_text())
    assert len(runs) == 1 and runs[0]["report"]["num_images"] == 48
    assert runs[0]["report"]["dataset_name"] == "CamVid (48 of 233 images)"
    assert seconds < 300, f"the smoke profile took {seconds:.0f} s"
