"""Experiment grids: one training and one robustness benchmark per strategy x seed, and the runs read back.

A grid is a list of :class:`~advcorrupt.training.TrainConfig` that differ only in ``strategy``,
``seed`` and ``out_dir`` (``<out>/<strategy>/seed<k>/``). :func:`run_grid` trains each with
:func:`~advcorrupt.training.fit` and scores it on the test split with
:func:`~advcorrupt.bench.evaluate_robustness` (:func:`run_one`), several at once in their own
processes if asked; a finished run leaves ``done.json`` (the training summary) and
``bench/robustness.json`` (the report) in its folder, and :func:`load_run` reads the two back as
one *row*: ``{"strategy", "seed", "failed", "train", "report", ...}``.

A table holds one *recipe*: every configuration field except those that name the run (strategy,
seed, folders) or do not change what it measures (:data:`NOT_RECIPE`). :func:`recipe` reads it
from a run's ``config.json``; :func:`finished_runs` and ``resume`` refuse a saved run of another
recipe (:class:`RecipeMismatchError`) rather than tabulate it beside the others.

The report's task decides the summary a row shows (:func:`summary_names`, :func:`summary_scalars`):
a binary (ISTD) report gives clean IoU, mean corrupted IoU and mean RCE (BALISTD, Eq. 9); a
semantic one gives clean mIoU, mPC and rPC (Kamann & Rother, CVPR 2020). The tables over rows are
:mod:`advcorrupt.training.grid_report`; the command line of a grid script is
:mod:`advcorrupt.training.harness`.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import statistics
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from ..bench import RobustnessReport, SemanticRobustnessReport, evaluate_robustness
from .checkpoints import load_model
from .config import TrainConfig
from .data import build_datasets
from .loop import fit

__all__ = [
    "NOT_RECIPE",
    "BenchSettings",
    "RecipeMismatchError",
    "SummaryNames",
    "check_same_recipe",
    "finished_runs",
    "load_run",
    "recipe",
    "recipe_differences",
    "run_grid",
    "run_one",
    "summary_names",
    "summary_scalars",
]

#: Configuration fields a table compares on purpose (strategy, seed) or that do not change what a run
#: measures (where and how often it writes, how it treats bad files), and the records ``config.json``
#: keeps beside the fields (``git``: the commit the run came from); every other field is its recipe.
NOT_RECIPE = frozenset({"strategy", "seed", "out_dir", "data_root", "keep_last", "checkpoint_every",
                        "max_consecutive_skips", "num_workers", "log_format", "on_bad_file", "git"})


class RecipeMismatchError(ValueError):
    """A saved run was trained with another recipe than the one asked for."""


@dataclass(frozen=True)
class BenchSettings:
    """How every run of a grid is benchmarked (the same corrupted test images for all of them).

    Attributes:
        severities: levels evaluated.
        corruptions: names evaluated (``None``: every registered corruption).
        seed: benchmark seed of the corrupted images (:func:`~advcorrupt.bench.corruption_seed`).
        images: score only this many test images, evenly spaced over the test set (``None``: all
            of them); a smoke test's shortcut, named in the report's ``dataset_name``.

    Example:
        >>> BenchSettings(severities=(1, 3), corruptions=("contrast",)).severities
        (1, 3)
    """

    severities: tuple[int, ...] = (1, 3, 5)
    corruptions: tuple[str, ...] | None = None
    seed: int = 0
    images: int | None = None


# ------------------------------------------------------------------------------ running the grid
def run_grid(runs: Sequence[TrainConfig], bench: BenchSettings, *, jobs: int = 1, resume: bool = False,
             progress: bool = True, threads: int | None = None) -> list[dict[str, Any]]:
    """Train and benchmark every configuration, ``jobs`` at a time, each in its own process.

    With ``jobs > 1`` every job runs in a spawned process, writes its output to its folder's
    ``run.log`` and prints one line when it finishes; a job whose parent dies (killed, or its
    terminal closed) stops within a second instead of training on unseen.

    Args:
        runs: the configurations (distinct ``out_dir`` each).
        bench: the benchmark every run gets.
        jobs: trainings at once.
        resume: continue interrupted runs and reuse finished ones (of the same recipe only).
        progress: progress bars (only shown with ``jobs=1``).
        threads: torch threads per job (``None``: torch's default).

    Returns:
        One row per configuration, in order (see :func:`run_one`).

    Raises:
        RecipeMismatchError: with ``resume``, a finished run of another recipe in a run's folder.
    """
    if jobs == 1:
        return [run_one(config, bench, resume=resume, progress=progress, threads=threads) for config in runs]
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"), initializer=_exit_with_parent,
                             initargs=(os.getpid(),)) as pool:
        futures = [pool.submit(run_one, config, bench, resume=resume, progress=False, threads=threads, log=True)
                   for config in runs]
        return [f.result() for f in futures]


def _exit_with_parent(parent: int, *, interval: float = 1.0) -> None:
    """Start a daemon thread that ends this process once its parent ``parent`` is gone.

    A spawned pool worker outlives a parent killed with SIGKILL and trains on; checkpoints are
    written atomically, so ending it at any point loses at most the work since the last one.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def run_one(config: TrainConfig, bench: BenchSettings, *, resume: bool = False, progress: bool = True,
            threads: int | None = None, log: bool = False) -> dict[str, Any]:
    """Train one configuration (or reuse its finished run) and benchmark it under every corruption.

    Args:
        config: the run (its folder is ``config.out_dir``).
        bench: the benchmark.
        resume: continue an interrupted run; reuse a finished training and report.
        progress: progress bars.
        threads: ``torch.set_num_threads`` for this process (``None``: leave it).
        log: send this run's output to ``<out_dir>/run.log`` (a pool job does).

    Returns:
        The row ``{"strategy", "seed", "failed", "train", "report"}``; it prints one line with the
        report's clean and mean corrupted scores.

    Raises:
        RecipeMismatchError: with ``resume``, a finished run of another recipe in ``config.out_dir``.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    folder = Path(config.out_dir)
    if resume and (saved := load_run(folder, config.strategy, config.seed)) is not None:
        check_same_recipe(saved, config)  # resume reuses finished runs: only those of this recipe
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with contextlib.ExitStack() as stack:
            if log:  # a job's own output goes to its folder; the terminal gets one line per finished run
                stream = stack.enter_context(open(folder / "run.log", "a", buffering=1))
                stack.enter_context(contextlib.redirect_stdout(stream))
                stack.enter_context(contextlib.redirect_stderr(stream))
            summary = _train(config, resume=resume, progress=progress)
            report = _bench(config, summary, bench, resume=resume, progress=progress)
    except BaseException:
        _remove_if_unused(created)
        raise
    names, scores = summary_names(report), summary_scalars(report)
    status = f"FAILED ({summary['failure']})" if summary.get("failed") else "ok"
    print(f"[{config.strategy} seed {config.seed}] trained in {summary.get('train_seconds', '?')} s, {status}; "
          f"{names.clean} {100 * scores[names.clean]:.2f}, {names.mean_corrupted} "
          f"{100 * scores[names.mean_corrupted]:.2f}", flush=True)
    return {"strategy": config.strategy, "seed": config.seed, "failed": bool(summary.get("failed")),
            "train": summary, "report": report}


def _remove_if_unused(created: list[Path]) -> None:
    """After a run failed: remove the folders it created if it wrote no training state (no checkpoint,
    no logged step), so no half-made run folder is left behind; one with state stays, to resume."""
    if not created:
        return
    folder = created[0]
    metrics = folder / "metrics.jsonl"
    if any(folder.glob("ckpt_*.pt")) or (folder / "done.json").exists() or (metrics.exists() and metrics.stat().st_size):
        return
    for name in ("run.log", "config.json", "metrics.jsonl"):
        (folder / name).unlink(missing_ok=True)
    for made in created:
        try:
            made.rmdir()  # only if empty: a sibling run's folder keeps its parents
        except OSError:
            return


def _train(config: TrainConfig, *, resume: bool, progress: bool) -> dict[str, Any]:
    done = Path(config.out_dir) / "done.json"
    if resume and done.is_file():
        return dict(json.loads(done.read_text()))
    t0 = time.perf_counter()
    summary = fit(config, resume=resume, progress=progress)
    summary["train_seconds"] = round(time.perf_counter() - t0, 1)
    done.write_text(json.dumps(summary, indent=2))
    return summary


def _bench(config: TrainConfig, summary: dict[str, Any], bench: BenchSettings, *, resume: bool,
           progress: bool) -> RobustnessReport | SemanticRobustnessReport:
    saved = Path(config.out_dir) / "bench" / "robustness.json"
    if resume and saved.is_file():  # finished earlier: reuse its report
        return RobustnessReport.from_json(saved)
    model, config, _ = load_model(summary["checkpoint"], device=config.device or "cpu")
    _, test, preprocess = build_datasets(config, split="test")
    name = None
    if bench.images is not None and bench.images < len(test):  # type: ignore[arg-type]
        total = len(test)  # type: ignore[arg-type]
        name = f"{type(test).__name__} ({bench.images} of {total} images)"
        test = Subset(test, [i * total // bench.images for i in range(bench.images)])
    device = torch.device(config.device or "cpu")
    report = evaluate_robustness(
        model, test, corruptions=bench.corruptions, severities=bench.severities, seed=bench.seed,
        preprocess=preprocess.to(device), device=device, progress=progress,
        model_name=f"{config.model} ({config.strategy}, seed {config.seed})", dataset_name=name,
    )
    report.save(Path(config.out_dir) / "bench")
    return report


# ------------------------------------------------------------------------------ reading runs back
def finished_runs(runs: Sequence[TrainConfig]) -> tuple[list[dict[str, Any]], list[TrainConfig]]:
    """The rows of the runs whose training and benchmark are both saved, and the configurations still missing.

    Raises:
        RecipeMismatchError: a saved run trained under another recipe than ``runs`` ask for (it is
            never tabulated beside them).
    """
    done, missing = [], []
    for config in runs:
        run = load_run(Path(config.out_dir), config.strategy, config.seed)
        if run is not None:
            check_same_recipe(run, config)
            done.append(run)
        else:
            missing.append(config)
    return done, missing


def load_run(folder: Path, label: str, seed: int) -> dict[str, Any] | None:
    """A finished run (``done.json`` and ``bench/robustness.json``) as a row, else ``None``.

    Args:
        folder: the run's folder.
        label: its column in tables (the strategy, or a ``--compare`` label).
        seed: its training seed.

    Returns:
        ``{"strategy": label, "seed", "failed", "train", "recipe", "folder", "report"}``; ``recipe`` is
        ``None`` when the folder has no ``config.json``.
    """
    if not ((folder / "done.json").is_file() and (folder / "bench" / "robustness.json").is_file()):
        return None
    summary = json.loads((folder / "done.json").read_text())
    saved = folder / "config.json"
    return {"strategy": label, "seed": seed, "failed": bool(summary.get("failed")), "train": summary,
            "recipe": recipe(json.loads(saved.read_text())) if saved.is_file() else None, "folder": str(folder),
            "report": RobustnessReport.from_json(folder / "bench" / "robustness.json")}


def recipe(config: dict[str, Any]) -> dict[str, Any]:
    """What a run's numbers depend on besides its strategy and seed, from its saved ``config.json``.

    A field missing from an older ``config.json`` ran at its default (new fields default to the
    old behaviour). The device counts by kind (``cuda:1`` is ``cuda``) and the dataset by its
    folder's name, so the same data under another path is the same recipe. Values are compared
    in their JSON form (a tuple equals the list ``config.json`` keeps of it).

    Example:
        >>> a = recipe({**TrainConfig(model="acm").to_dict(), "data_root": "/data/NUAA-SIRST"})
        >>> b = recipe({**TrainConfig(model="acm").to_dict(), "data_root": "../NUAA-SIRST", "seed": 3})
        >>> a == b, a["data"], "seed" in a
        (True, 'NUAA-SIRST', False)
    """
    full = json.loads(json.dumps({**TrainConfig().to_dict(), **config}))
    out = {k: v for k, v in full.items() if k not in NOT_RECIPE}
    out["device"] = str(full["device"] or "cpu").split(":")[0]
    out["data"] = Path(full["data_root"]).name if full["data_root"] else "synthetic"
    return out


def recipe_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """``field: a vs b`` for each recipe field where ``a`` and ``b`` differ.

    Example:
        >>> recipe_differences({"lr": 0.005, "epochs": 80}, {"lr": 0.001, "epochs": 80})
        ['lr: 0.005 vs 0.001']
    """
    return [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def check_same_recipe(run: dict[str, Any], config: TrainConfig) -> None:
    """Refuse a saved run (a row of :func:`load_run`) whose recipe differs from the one ``config`` asks for.

    Raises:
        RecipeMismatchError: naming every differing field, saved vs asked.
    """
    if run["recipe"] is None:
        return
    diff = recipe_differences(run["recipe"], recipe(config.to_dict()))
    if diff:
        raise RecipeMismatchError(
            f"{run['folder']}: this finished run was trained with another recipe than the one asked for (saved vs "
            f"asked: {'; '.join(diff)}); one table holds one recipe: give another --out, or the flags it was "
            "trained with")


# ------------------------------------------------------------------------------ a row's summary
@dataclass(frozen=True)
class SummaryNames:
    """The labels of a report's summary scores in tables: the task's, never hard-coded by a harness.

    Attributes:
        clean: the clean primary metric (``"clean IoU"``, ``"clean mIoU"``).
        mean_corrupted: the primary metric averaged over every corruption x severity
            (``"mean corrupted IoU"``, ``"mPC"``).
        relative: the relative score (``"mean RCE"`` of BALISTD's Eq. 9, ``"rPC"`` = mPC / clean).
        metric: the primary metric in per-level and per-corruption labels (``"IoU"``, ``"mIoU"``).
    """

    clean: str
    mean_corrupted: str
    relative: str
    metric: str


_BINARY_NAMES = SummaryNames("clean IoU", "mean corrupted IoU", "mean RCE", "IoU")
_SEMANTIC_NAMES = SummaryNames("clean mIoU", "mPC", "rPC", "mIoU")


def summary_names(report: RobustnessReport | SemanticRobustnessReport) -> SummaryNames:
    """The labels of ``report``'s summary scores, after its task.

    Example:
        >>> binary = RobustnessReport(clean={"iou": 0.5}, results=(), corruptions=(), severities=(), seed=0,
        ...                           num_images=1)
        >>> summary_names(binary).mean_corrupted, summary_names(binary).metric
        ('mean corrupted IoU', 'IoU')
    """
    return _SEMANTIC_NAMES if isinstance(report, SemanticRobustnessReport) else _BINARY_NAMES


def summary_scalars(report: RobustnessReport | SemanticRobustnessReport) -> dict[str, float]:
    """A report's summary as ``{label: fraction}``, labels from :func:`summary_names`.

    In order: the clean primary metric, its mean over every corruption x severity, the relative
    score, ``"level k <metric>"`` (the mean over the corruptions at severity k) for each level, and
    ``"<corruption> <metric>"`` (the mean over the severities) for each corruption.

    Example:
        >>> from advcorrupt.bench import SemanticSettingResult
        >>> r = SemanticRobustnessReport(clean={"mIoU": 0.8, "IoU": [0.9, 0.7]}, corruptions=("contrast",),
        ...     severities=(1, 3), results=(SemanticSettingResult("contrast", 1, 0.6, 0.9, 0.6, (0.7, 0.5)),
        ...                                 SemanticSettingResult("contrast", 3, 0.2, 0.5, 0.2, (0.3, 0.1))),
        ...     seed=0, num_images=1, num_classes=2)
        >>> {k: round(v, 2) for k, v in summary_scalars(r).items()}
        {'clean mIoU': 0.8, 'mPC': 0.4, 'rPC': 0.5, 'level 1 mIoU': 0.6, 'level 3 mIoU': 0.2, 'contrast mIoU': 0.4}
    """
    names, key = summary_names(report), report.primary_metric
    relative = report.relative_robustness if isinstance(report, SemanticRobustnessReport) else report.mean_rce
    levels = {f"level {s} {names.metric}": statistics.fmean(_value(r, key) for r in report.results if r.severity == s)
              for s in report.severities if any(r.severity == s for r in report.results)}
    per = report.per_corruption
    return {names.clean: report.clean[key], names.mean_corrupted: report.mean_corrupted, names.relative: relative,
            **levels, **{f"{name} {names.metric}": per[name][key] for name in per}}


def _value(result: Any, key: str) -> float:
    """The primary metric ``key`` of one setting's result, binary (an attribute) or semantic."""
    return float(result.metric(key)) if hasattr(result, "metric") else float(getattr(result, key))
