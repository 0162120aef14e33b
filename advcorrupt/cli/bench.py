"""``advcorrupt bench``: the robustness report of trained checkpoints, and their comparison.

Example:
    $ advcorrupt bench --checkpoint runs/a runs/b --labels balistd,random --severities 1,3
    $ advcorrupt bench --checkpoint runs/camvid --severities 1,3   # a semantic run: its CamVid test split
    $ advcorrupt bench --checkpoint runs/camvid --corrupted-root data/CamVid-C   # copies from `advcorrupt corrupt-dataset`
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from ._args import add_corruptions_argument, csv_list, error_message

__all__ = ["add_parser", "run"]


class _BenchError(Exception):
    """A user error: printed as ``advcorrupt bench: error: ...``, exit code 2."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Add the ``bench`` subcommand and its options to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "bench",
        help="corruption-robustness report of checkpoints (IoU/nIoU/Pd/Fa/RCE, or mIoU/aAcc/mAcc/mPC/rPC and "
        "per-class IoU, per corruption x severity), and a side-by-side comparison of several",
        description="Evaluate checkpoints written by `advcorrupt train` on the clean test set and on every "
        "corruption x severity (seeded, so every model sees the same corrupted images). Writes robustness.md, "
        "robustness.csv, robustness.json and a heatmap per checkpoint (semantic runs: the mIoU heatmap and a "
        "per-class IoU-drop heatmap). Without --data-root it uses the run's test set (synthetic, its ISTD data "
        "root, or the test split of its CamVid / folder data), normalised with the statistics the model was "
        "trained with. With several checkpoints it also prints and writes comparison.md: one column per model "
        "label (reports with the same label are seeds: mean +- std), BALISTD's Table 2.",
    )
    p.add_argument("--checkpoint", required=True, nargs="+",
                   help="ckpt_*.pt files, run folders (their newest checkpoint) or robustness.json reports "
                   "written by an earlier bench (read, not re-evaluated)")
    p.add_argument("--labels", type=csv_list(str), default=None,
                   help="comma-separated model label per --checkpoint (default: '<model> (<strategy>)'); "
                   "equal labels are averaged as seeds")
    p.add_argument("--data-root", default=None,
                   help="dataset folder (layout per --dataset); default: the checkpoint's data (or synthetic)")
    p.add_argument("--dataset-name", default=None)
    p.add_argument("--dataset", choices=("istd", "camvid", "folder"), default=None,
                   help="what --data-root holds (default: the checkpoint's)")
    p.add_argument("--split", choices=("test", "val"), default="test",
                   help="split of a CamVid / folder dataset to evaluate (ISTD data: always its test split)")
    p.add_argument("--task", choices=("binary", "semantic"), default=None, help="default: the checkpoint's")
    p.add_argument("--num-classes", type=int, default=None, help="classes K of a semantic task (default: the checkpoint's)")
    p.add_argument("--ignore-index", type=int, default=None, help="label never counted (default: the checkpoint's)")
    add_corruptions_argument(p)
    p.add_argument("--severities", type=csv_list(int), default=(1, 2, 3, 4, 5))
    p.add_argument("--seed", type=int, default=0, help="seed of the corrupted test sets")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    p.add_argument("--out", default=None,
                   help="one checkpoint: its report folder (default: <checkpoint folder>/bench); several: the "
                   "folder of comparison.md (default: ./bench_comparison), each report going to "
                   "<checkpoint folder>/bench")
    p.add_argument("--corrupted-root", default=None,
                   help="read the corrupted test sets from a `advcorrupt corrupt-dataset` folder (its seed) instead of "
                   "corrupting in memory: an ISTD-layout copy for an ISTD run, a CamVid / SegNet-layout copy for a "
                   "CamVid run (its --split)")
    p.add_argument("--no-progress", action="store_true")
    return p


def _resolve_checkpoint(path: Path) -> Path:
    """A checkpoint file, or the newest ``ckpt_*.pt`` of a run folder."""
    from ..checkpoint import list_checkpoints

    if not path.is_dir():
        return path
    found = list_checkpoints(path)
    if not found:
        raise _BenchError(f"no ckpt_*.pt in {path}")
    return found[-1]


#: Options that replace the checkpoint's data or task fields (the option's name is the field's).
_DATA_OPTIONS = ("dataset", "task", "num_classes", "ignore_index")


def _load_for_bench(args: argparse.Namespace, ckpt: Path, device: str) -> tuple[Any, Any, Any, Any]:
    """``(model, config, test set, preprocess)`` of a checkpoint, with --data-root, --dataset, --task,
    --num-classes and --ignore-index applied (checked as a training configuration would be)."""
    from dataclasses import replace

    from ..checkpoint import CheckpointError
    from ..training import build_datasets, check_config, load_model

    try:
        model, config, state = load_model(ckpt, device=device)
        changes = {name: getattr(args, name) for name in _DATA_OPTIONS if getattr(args, name) is not None}
        if args.data_root is not None:
            changes.update(data_root=args.data_root, dataset_name=args.dataset_name)
        if changes:
            config = replace(config, **changes)
            check_config(config)
        _, test, preprocess = build_datasets(config, split=args.split)
    except (CheckpointError, ValueError, KeyError, FileNotFoundError) as e:
        raise _BenchError(error_message(e)) from None
    norm = state.get("normalize")
    if isinstance(norm, dict) and {"mean", "std"} <= set(norm):
        # The model was trained with these statistics; keep them on another test set too.
        from ..data import Normalize

        preprocess = Normalize(norm["mean"], norm["std"])
    return model, config, test, preprocess.to(device)


def _evaluate_checkpoint(args: argparse.Namespace, ckpt: Path, device: str) -> Any:
    """The robustness report of one checkpoint (in memory or from --corrupted-root)."""
    from ..benchmark import evaluate_robustness
    from ..training import run_task

    model, config, test, preprocess = _load_for_bench(args, ckpt, device)
    label = f"{config.model} ({config.strategy})"
    task = run_task(config)
    if args.corrupted_root is not None:  # folders written by `advcorrupt corrupt-dataset` (ISTD or SegNet layout)
        from ._corrupted_root import check_root_layout, evaluate_corrupted_root

        try:
            check_root_layout(args.corrupted_root, config.dataset)  # an ISTD copy for a CamVid run, or the reverse
            return evaluate_corrupted_root(
                model, args.corrupted_root, clean=test, corruptions=args.corruptions, severities=args.severities,
                dataset_name=args.dataset_name, split=args.split, task=task, preprocess=preprocess, device=device,
                progress=not args.no_progress, model_name=label,
            )
        except (ValueError, KeyError, FileNotFoundError) as e:
            raise _BenchError(error_message(e)) from None
    dataset_name = Path(config.data_root).name if config.data_root else "synthetic"
    if config.dataset != "istd":  # ISTD data has one test split whatever --split says; the others name theirs
        dataset_name = f"{dataset_name} ({args.split})"
    try:
        return evaluate_robustness(
            model, test, corruptions=args.corruptions, severities=args.severities, seed=args.seed,
            preprocess=preprocess, device=device, progress=not args.no_progress, model_name=label,
            dataset_name=dataset_name, task=task,
        )
    except (ValueError, KeyError) as e:  # a model that disagrees with the task, a bad label: named per item
        raise _BenchError(f"{ckpt}: {error_message(e)}") from None


def _report_of(args: argparse.Namespace, path: Path, device: str, out: Path | None) -> Any:
    """A saved report (``*.json``) as is, or a checkpoint evaluated and its report saved."""
    from ..benchmark import RobustnessReport

    if path.suffix == ".json":
        try:
            return RobustnessReport.from_json(path)
        except (OSError, ValueError) as e:
            raise _BenchError(f"cannot read the report {path}: {e}") from None
    ckpt = _resolve_checkpoint(path)
    report = _evaluate_checkpoint(args, ckpt, device)
    folder = out if out is not None else ckpt.parent / "bench"
    report.save(folder)
    print(report.to_markdown())
    print(f"\nreport written to {folder}")
    return report


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _compare(reports: list[Any], labels: list[str], out: Path) -> None:
    from ..benchmark import comparison_table

    groups: dict[str, list[Any]] = {}
    for label, report in zip(labels, reports):
        groups.setdefault(label, []).append(report)
    try:
        table = comparison_table(groups)
    except ValueError as e:
        raise _BenchError(str(e)) from None
    _write_atomic(out / "comparison.md", "# Model comparison\n\n" + table)
    print(table)
    print(f"comparison written to {out / 'comparison.md'}")


def run(args: argparse.Namespace) -> int:
    """Run ``advcorrupt bench``; 0 on success, 2 for a user error (bad checkpoint, labels or settings)."""
    import torch

    paths = [Path(p) for p in args.checkpoint]
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(args.out) if args.out else None
    try:
        if args.labels is not None and len(args.labels) != len(paths):
            raise _BenchError(f"--labels needs one label per --checkpoint ({len(paths)}); got {len(args.labels)}")
        reports = [_report_of(args, p, device, out if len(paths) == 1 else None) for p in paths]
        if len(paths) == 1 and paths[0].suffix == ".json":
            print(reports[0].to_markdown())
        if len(paths) > 1:
            labels = list(args.labels) if args.labels else [r.model_name or p.name for r, p in zip(reports, paths)]
            _compare(reports, labels, out if out is not None else Path("bench_comparison"))
    except _BenchError as e:
        print(f"advcorrupt bench: error: {e}", file=sys.stderr)
        return 2
    return 0
