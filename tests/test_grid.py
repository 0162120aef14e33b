"""The experiment-grid machinery (advcorrupt.training.grid, grid_report, harness) beyond ISTD.

The ISTD harness's own behaviour is tested through examples/istd_dnanet.py in test_adversaries.py
(its tables byte for byte against the committed results were checked when the machinery moved);
here: the tables speak the report's task (semantic reports give clean mIoU, mPC, rPC, level k
mIoU), the recipe compares values in their JSON form, and a pool worker dies with its parent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from advcorrupt.bench import (
    RobustnessReport,
    SemanticRobustnessReport,
    SemanticSettingResult,
    SettingResult,
)
from advcorrupt.training import TrainConfig
from advcorrupt.training.grid import (
    recipe,
    recipe_differences,
    summary_names,
    summary_scalars,
)
from advcorrupt.training.grid_report import paired_table, results_tables

REPO = Path(__file__).resolve().parents[1]


def _semantic(clean: float, by_level: dict[int, float]) -> SemanticRobustnessReport:
    results = tuple(SemanticSettingResult(c, s, v - d, 0.9, 0.5, (v - d, v - d))
                    for c, d in (("contrast", 0.0), ("gaussian_noise", 0.1)) for s, v in by_level.items())
    return SemanticRobustnessReport(clean={"mIoU": clean, "aAcc": 0.9, "mAcc": 0.5, "IoU": [clean, clean]},
                                    results=results, corruptions=("contrast", "gaussian_noise"),
                                    severities=tuple(by_level), seed=0, num_images=4, num_classes=2)


def test_semantic_summaries_are_clean_miou_mpc_rpc_levels_and_corruptions() -> None:
    report = _semantic(0.8, {1: 0.6, 3: 0.4})
    scores = summary_scalars(report)
    assert list(scores) == ["clean mIoU", "mPC", "rPC", "level 1 mIoU", "level 3 mIoU", "contrast mIoU",
                            "gaussian_noise mIoU"]
    assert scores["mPC"] == pytest.approx(report.mean_corrupted) == pytest.approx(0.45)
    assert scores["rPC"] == pytest.approx(0.45 / 0.8)
    assert scores["level 1 mIoU"] == pytest.approx(0.55) and scores["level 3 mIoU"] == pytest.approx(0.35)
    assert scores["gaussian_noise mIoU"] == pytest.approx(0.4)
    binary = RobustnessReport(clean={"iou": 0.6}, corruptions=("contrast",), severities=(1,), seed=0, num_images=1,
                              results=(SettingResult("contrast", 1, 0.3, 0.3, 1.0, 1.0, 0.5),))
    assert list(summary_scalars(binary)) == ["clean IoU", "mean corrupted IoU", "mean RCE", "level 1 IoU",
                                             "contrast IoU"]
    assert summary_names(report).relative == "rPC" and summary_names(binary).relative == "mean RCE"


def test_grid_tables_of_semantic_runs_pair_mpc_clean_miou_and_levels() -> None:
    rows = [{"strategy": st, "seed": seed, "failed": False, "report": _semantic(0.7 + bump, {1: 0.5 + bump, 3: 0.3})}
            for seed, (r, lrn) in enumerate(((0.00, 0.02), (0.01, 0.00))) for st, bump in (("random", r), ("learned", lrn))]
    text = results_tables(rows, ["random", "learned"])
    assert "| metric | random | learned |" in text and "| mPC (mean corrupted mIoU) |" in text
    assert "IoU RCE" not in text and "mean corrupted IoU" not in text  # no binary row anywhere
    mpc = next(line for line in text.splitlines() if line.startswith("| learned | mPC |"))
    assert "0: +1.00, 1: -0.50 |" in mpc and "| 1/2 |" in mpc  # half of level 1's +2.00 / -1.00
    assert next(line for line in text.splitlines() if line.startswith("| learned | clean mIoU |"))
    level = next(line for line in text.splitlines() if line.startswith("| learned | level 1 mIoU |"))
    assert "0: +2.00, 1: -1.00 |" in level
    assert "| learned | level 3 mIoU | 0: +0.00, 1: +0.00 |" in text
    assert paired_table(rows, ["random", "learned"], reference="nobody") == ""


def test_recipe_compares_values_in_their_json_form() -> None:
    asked = TrainConfig(model="acm", model_kwargs={"decoder_channels": (16, 8)}, severities=(1, 2)).to_dict()
    saved = {**asked, "model_kwargs": {"decoder_channels": [16, 8]}, "severities": [1, 2], "seed": 4}
    assert recipe_differences(recipe(asked), recipe(saved)) == []
    assert recipe_differences(recipe(asked), recipe({**saved, "model_kwargs": {"decoder_channels": [16, 4]}}))


_POOL = """
import multiprocessing as mp, os, sys, time
from concurrent.futures import ProcessPoolExecutor

if __name__ == "__main__":
    watch = sys.argv[1] == "watch"
    if watch:
        from advcorrupt.training.grid import _exit_with_parent
    kw = dict(initializer=_exit_with_parent, initargs=(os.getpid(),)) if watch else {}
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), **kw) as pool:
        print(pool.submit(os.getpid).result(), flush=True)
        pool.submit(time.sleep, 120)
        time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_a_pool_worker_stops_when_its_parent_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "pool.py"
    script.write_text(textwrap.dedent(_POOL))
    for watch in (False, True):  # without the watchdog the worker outlives its parent: the check can fail
        parent = subprocess.Popen([sys.executable, str(script), "watch" if watch else "plain"], cwd=REPO,
                                  stdout=subprocess.PIPE, text=True)
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + (10 if watch else 3)  # the watchdog looks once a second
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        survived = _alive(worker)
        if survived:
            os.kill(worker, signal.SIGKILL)  # the worker this test started
        assert survived is not watch


@pytest.mark.parametrize("state", [None, "ckpt_00000002.pt", "metrics.jsonl"])
def test_a_run_that_fails_leaves_no_half_made_folder_but_keeps_its_training_state(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state: str | None) -> None:
    """run_one removes the folders it created when the run wrote no training state; a checkpoint or
    a logged step stays for --resume. A sibling run's folder keeps the shared parent."""
    from advcorrupt.training import grid

    (tmp_path / "out" / "banded" / "seed0").mkdir(parents=True)  # a sibling run
    folder = tmp_path / "out" / "random" / "seed1"

    def failing_fit(config: TrainConfig, **_: object) -> dict[str, object]:
        Path(config.out_dir, "config.json").write_text("{}")
        if state is not None:
            Path(config.out_dir, state).write_text("x")
        raise RuntimeError("the model refused the batch")

    monkeypatch.setattr(grid, "fit", failing_fit)
    config = TrainConfig(model="acm", strategy="random", seed=1, out_dir=str(folder))
    with pytest.raises(RuntimeError, match="refused"):
        grid.run_one(config, grid.BenchSettings(), log=True)
    assert folder.is_dir() == (state is not None)
    assert not (tmp_path / "out" / "random").exists() or state is not None
    assert (tmp_path / "out" / "banded" / "seed0").is_dir()
