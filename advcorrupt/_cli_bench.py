"""``advcorrupt bench``: the robustness report of a trained checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._cli_train import _csv

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "bench",
        help="corruption-robustness report of a checkpoint (IoU/nIoU/Pd/Fa/RCE per corruption x severity)",
        description="Evaluate a checkpoint written by `advcorrupt train` on the clean test set and on every "
        "corruption x severity (seeded, so every model sees the same corrupted images). Writes robustness.md, "
        "robustness.csv, robustness.json and robustness_iou.png. Without --data-root it uses the run's test set "
        "(synthetic or its ISTD data root), normalised with the statistics the model was trained with.",
    )
    p.add_argument("--checkpoint", required=True, help="a ckpt_*.pt file, or a run folder (its newest checkpoint)")
    p.add_argument("--data-root", default=None, help="ISTD-layout folder; default: the checkpoint's data (or synthetic)")
    p.add_argument("--dataset-name", default=None)
    p.add_argument("--corruptions", type=_csv(str), default=None, help="comma-separated names (default: all)")
    p.add_argument("--severities", type=_csv(int), default=(1, 2, 3, 4, 5))
    p.add_argument("--seed", type=int, default=0, help="seed of the corrupted test sets")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    p.add_argument("--out", default=None, help="report folder (default: <checkpoint folder>/bench)")
    p.add_argument("--corrupted-root", default=None,
                   help="read the corrupted test sets from a `advcorrupt corrupt-dataset` folder (its seed) instead of corrupting in memory")
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from .benchmark import evaluate_robustness
    from .checkpoint import CheckpointError, list_checkpoints
    from .engine import build_datasets, check_config, load_model

    ckpt = Path(args.checkpoint)
    if ckpt.is_dir():
        found = list_checkpoints(ckpt)
        if not found:
            print(f"advcorrupt bench: error: no ckpt_*.pt in {ckpt}", file=sys.stderr)
            return 2
        ckpt = found[-1]
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model, config, state = load_model(ckpt, device=device)
        if args.data_root is not None:
            from dataclasses import replace

            config = replace(config, data_root=args.data_root, dataset_name=args.dataset_name)
            check_config(config)
        _, test, preprocess = build_datasets(config)
        norm = state.get("normalize")
        if isinstance(norm, dict) and {"mean", "std"} <= set(norm):
            # The model was trained with these statistics; keep them on another test set too.
            from .data import Normalize

            preprocess = Normalize(norm["mean"], norm["std"])
    except (CheckpointError, ValueError, KeyError, FileNotFoundError) as e:
        msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        print(f"advcorrupt bench: error: {msg}", file=sys.stderr)
        return 2
    if args.corrupted_root is not None:  # folders written by `advcorrupt corrupt-dataset`
        from ._cli_corrupt import evaluate_corrupted_root

        try:
            report = evaluate_corrupted_root(
                model, args.corrupted_root, clean=test, corruptions=args.corruptions, severities=args.severities,
                dataset_name=args.dataset_name, preprocess=preprocess.to(device), device=device,
                progress=not args.no_progress, model_name=f"{config.model} ({config.strategy})",
            )
        except (ValueError, KeyError, FileNotFoundError) as e:
            print(f"advcorrupt bench: error: {str(e.args[0]) if isinstance(e, KeyError) else e}", file=sys.stderr)
            return 2
    else:
        report = evaluate_robustness(
            model, test, corruptions=args.corruptions, severities=args.severities, seed=args.seed,
            preprocess=preprocess.to(device), device=device, progress=not args.no_progress,
            model_name=f"{config.model} ({config.strategy})",
            dataset_name=Path(config.data_root).name if config.data_root else "synthetic",
        )
    out = Path(args.out) if args.out else ckpt.parent / "bench"
    report.save(out)
    print(report.to_markdown())
    print(f"\nreport written to {out}")
    return 0
