"""The command line of an experiment-grid script: profiles, flags, and what each mode writes.

A script (``examples/istd_dnanet.py``, ``examples/camvid_smp.py``) describes itself with a
:class:`GridSpec` (its profiles, each a :class:`~advcorrupt.training.TrainConfig` template and a
:class:`~advcorrupt.training.grid.BenchSettings`, and its own flags) and hands its arguments to
:func:`grid_main`, which gives every such script the same modes:

- train + benchmark the grid ``--strategies`` x ``--seeds`` into ``--out/<strategy>/seed<k>/``,
  ``--jobs`` at a time (``--resume`` continues interrupted runs and reuses finished ones);
- ``--report-only``: train nothing, tabulate the finished runs and list the missing ones;
- ``--compare LABEL=DIR ...``: train nothing, put the finished ``seed<k>/`` runs of several folders
  side by side (:func:`compare_runs`), paired against the first.

Except ``--compare``, which only prints, each mode prints the tables of
:mod:`advcorrupt.training.grid_report` and writes ``results.md``, ``results.json`` (one entry per
run) and ``<strategy>_shares.png`` (the adversary's choices over training) into ``--out``.
Configuration errors surface before the first training starts.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .config import TrainConfig, check_config
from .grid import (
    BenchSettings,
    RecipeMismatchError,
    finished_runs,
    load_run,
    recipe_differences,
    run_grid,
)
from .grid_report import DEFAULT_RECIPE_SHOWN, plot_policy_shares, results_tables

__all__ = ["GridFlag", "GridSpec", "compare_runs", "grid_main", "parse_grid_args", "parse_seeds"]

#: TrainConfig fields every grid script can override from its command line: (flag, field, type, help).
_COMMON_FLAGS: tuple[tuple[str, str, Callable[[str], Any], str | None], ...] = (
    ("--epochs", "epochs", int, None),
    ("--steps-per-epoch", "steps_per_epoch", int, None),
    ("--batch-size", "batch_size", int, None),
    ("--lr", "lr", float, None),
    ("--warmup-epochs", "warmup_epochs", int, None),
)


@dataclass(frozen=True)
class GridFlag:
    """A command-line flag that overrides one :class:`~advcorrupt.training.TrainConfig` field of the profile.

    Attributes:
        flag: e.g. ``"--bce-weight"``.
        field: the TrainConfig field it sets, e.g. ``"bce_weight"``.
        type: parses the flag's text (``int``, ``float``, ``json.loads``, ...).
        help: the ``--help`` line.
        nargs: how many values it takes (``None``: one), e.g. 2 for ``--crop-size H W``.
        metavar: their names in ``--help``.

    Example:
        >>> GridFlag("--bce-weight", "bce_weight", float, "weight of the BCE term").field
        'bce_weight'
    """

    flag: str
    field: str
    type: Callable[[str], Any]
    help: str | None = None
    nargs: int | None = None
    metavar: str | tuple[str, ...] | None = None


@dataclass(frozen=True)
class GridSpec:
    """What one grid script defines; :func:`grid_main` does the rest.

    Attributes:
        description: the ``--help`` text (the script's docstring).
        profiles: ``{name: TrainConfig fields}``; flags override them.
        bench: ``{profile name: BenchSettings}`` (its seed is replaced by ``--bench-seed``).
        default_profile: picks the profile when ``--profile`` is not given, from the arguments.
        profile_help: the ``--profile`` help line (say what ``default_profile`` picks).
        flags: the script's own overrides, besides the model, epochs, steps per epoch, batch size,
            lr, warm-up, policy lr, policy-network and policy-updater kwargs every script has.
        default_strategies: ``--strategies`` when not given.
        default_out: ``--out`` when not given.
        data_help: the ``--data-root`` help line.
        data_required: refuse to run without ``--data-root`` (no synthetic default).
        recipe_shown: the recipe fields named above the tables.
    """

    description: str
    profiles: Mapping[str, Mapping[str, Any]]
    bench: Mapping[str, BenchSettings]
    default_profile: Callable[[argparse.Namespace], str]
    profile_help: str | None = None
    flags: tuple[GridFlag, ...] = ()
    default_strategies: str = "none,learned"
    default_out: str = "runs/grid"
    data_help: str = "the dataset folder"
    data_required: bool = False
    recipe_shown: tuple[str, ...] = field(default=DEFAULT_RECIPE_SHOWN)


def parse_grid_args(spec: GridSpec, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The arguments of a grid script: the flags every grid has and ``spec.flags``."""
    p = argparse.ArgumentParser(description=spec.description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=sorted(spec.profiles), default=None, help=spec.profile_help)
    p.add_argument("--data-root", default=None, help=spec.data_help)
    p.add_argument("--model", default=None, help="a model of advcorrupt.models.list_models() (default: the profile's)")
    p.add_argument("--strategies", default=spec.default_strategies,
                   help="comma-separated, e.g. none,random,noise,paper,learned")
    p.add_argument("--seeds", default=None, help="comma-separated training seeds, e.g. 0,1,2 (default: --seed)")
    p.add_argument("--seed", type=int, default=0, help="the one training seed when --seeds is not given")
    p.add_argument("--jobs", type=int, default=1, help="trainings run at once, each in its own process")
    p.add_argument("--threads", type=int, default=None, help="torch threads per job (default: 1 with --jobs > 1)")
    p.add_argument("--bench-seed", type=int, default=0, help="seed of the corrupted test images (same for all runs)")
    for flag, _, kind, text in _COMMON_FLAGS:
        p.add_argument(flag, type=kind, default=None, help=text)
    for extra in spec.flags:
        p.add_argument(extra.flag, dest=extra.field, type=extra.type, default=None, help=extra.help,
                       nargs=extra.nargs, metavar=extra.metavar)
    p.add_argument("--policy-lr", type=float, default=None)
    p.add_argument("--reinforce-kwargs", type=json.loads, default=None,
                   help='JSON for the policy updater, e.g. \'{"min_prob": 0.5, "entropy_coef": 0.05}\'')
    p.add_argument("--policy-kwargs", type=json.loads, default=None,
                   help='JSON for the policy network, e.g. \'{"input_size": 256}\' (part of the recipe)')
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    p.add_argument("--out", default=spec.default_out, help="<strategy>/seed<k>/ per run, plus results.md/json")
    p.add_argument("--resume", action="store_true", help="resume interrupted runs; reuse finished runs and reports")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: tabulate the finished runs of the grid and list the missing ones")
    p.add_argument("--compare", nargs="+", metavar="LABEL=DIR", default=None,
                   help="train nothing: compare the finished seed<k>/ runs of several folders, e.g. "
                        "--compare ACM=runs/nuaa/banded 'ACM + SFIM'=runs/nuaa_sfim/banded (one column per label, "
                        "paired differences against the first label)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def parse_seeds(text: str | None, default: int) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``; ``None`` -> ``[default]``.

    Raises:
        ValueError: not integers, no seed, or a repeated seed (its runs would be identical).

    Example:
        >>> parse_seeds("0, 1,2", 7), parse_seeds(None, 7)
        ([0, 1, 2], [7])
    """
    if text is None:
        return [default]
    try:
        seeds = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--seeds must be comma-separated integers, e.g. 0,1,2; got {text!r}") from None
    if not seeds:
        raise ValueError(f"--seeds must name at least one seed, e.g. 0,1,2; got {text!r}")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ValueError(f"--seeds must not repeat a seed (the runs would be identical); got {text!r}, repeating {repeated}")
    return seeds


def grid_main(spec: GridSpec, argv: Sequence[str] | None = None) -> int:
    """Run a grid script: parse ``argv`` against ``spec`` and train, tabulate or compare (see the module).

    Returns:
        0 on success.

    Raises:
        SystemExit: a bad flag (naming it), or a saved run of another recipe in ``--out``.
    """
    args = parse_grid_args(spec, argv)
    if args.compare:
        try:
            only = parse_seeds(args.seeds, 0) if args.seeds is not None else None
        except ValueError as e:
            raise SystemExit(str(e)) from None
        print(compare_runs(args.compare, seeds=only, shown=spec.recipe_shown), flush=True)
        return 0
    profile = args.profile or spec.default_profile(args)
    runs, strategies, seeds = _grid(spec, args, profile)
    base = runs[0]
    print(f"profile={profile} model={base.model} data={args.data_root or 'synthetic'} device={base.device} "
          f"strategies={strategies} seeds={seeds} epochs={base.epochs} jobs={args.jobs}", flush=True)
    bench = replace(spec.bench[profile], seed=args.bench_seed)
    threads = args.threads or (1 if args.jobs > 1 else None)
    if args.report_only and not Path(args.out).is_dir():
        raise SystemExit(f"--out {args.out} is not a folder: --report-only tabulates the finished runs of an existing "
                         "grid folder (train them first, without --report-only)")
    try:
        if args.report_only:
            results, missing = finished_runs(runs)
        else:
            results, missing = run_grid(runs, bench, jobs=args.jobs, resume=args.resume,
                                        progress=not args.no_progress and args.jobs == 1, threads=threads), []
    except RecipeMismatchError as e:
        raise SystemExit(str(e)) from None
    _write_results(Path(args.out), runs, strategies, results, missing, shown=spec.recipe_shown)
    return 0


def _grid(spec: GridSpec, args: argparse.Namespace, profile: str) -> tuple[list[TrainConfig], list[str], list[int]]:
    """Every configuration of the grid (strategy x seed), checked; the strategies and the seeds in order."""
    template = dict(spec.profiles[profile])
    for key in ("model", *(f[1] for f in _COMMON_FLAGS), *(f.field for f in spec.flags), "policy_lr",
                "reinforce_kwargs", "policy_kwargs"):
        if getattr(args, key) is not None:
            template[key] = getattr(args, key)
    template.pop("strategy", None)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if not strategies or len(set(strategies)) != len(strategies):
        raise SystemExit(f"--strategies must name distinct strategies; got {args.strategies!r}")
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be >= 1; got {args.jobs}")
    if spec.data_required and args.data_root is None:
        raise SystemExit(f"--data-root is required: {spec.data_help}")
    try:
        seeds = parse_seeds(args.seeds, args.seed)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    out = Path(args.out)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    base = TrainConfig(device=device, data_root=args.data_root, **template)
    runs = [replace(base, strategy=st, seed=seed, out_dir=str(out / st / f"seed{seed}"))
            for seed in seeds for st in strategies]
    for config in runs:  # every configuration error surfaces before the first training starts
        check_config(config)
    return runs, strategies, seeds


def _write_results(out: Path, runs: list[TrainConfig], strategies: list[str], results: list[dict[str, Any]],
                   missing: list[TrainConfig], *, shown: Sequence[str]) -> None:
    """Print the tables; write results.md, results.json and each strategy's shares plot into ``out``."""
    tables = results_tables(results, strategies, shown=shown)
    if missing:
        tables += "\n\nNot finished yet: " + ", ".join(f"{c.strategy} seed {c.seed}" for c in missing)
    print("\n" + tables, flush=True)
    (out / "results.md").write_text(tables + "\n")
    for strategy in strategies:
        plot_policy_shares([Path(c.out_dir) for c in runs if c.strategy == strategy], out / f"{strategy}_shares.png",
                           title=f"{runs[0].model}, {strategy}: action shares over training (mean over seeds)")
    (out / "results.json").write_text(json.dumps(
        [{"strategy": r["strategy"], "seed": r["seed"], "failed": r["failed"], "train": r["train"],
          "report": r["report"].to_dict()} for r in results], indent=1))


def compare_runs(specs: Sequence[str], *, seeds: Sequence[int] | None = None,
                 shown: Sequence[str] = DEFAULT_RECIPE_SHOWN) -> str:
    """Markdown comparing the finished ``seed<k>/`` runs of several folders (``LABEL=DIR`` each).

    One column per label (mean +- std over its seeds, failed runs left out and listed) and the
    per-seed paired differences against the first label, on the seeds both have. ``seeds``
    (``--seeds``) keeps only those seeds, so every column averages the same ones. The header says
    what the columns' recipes differ in.

    Raises:
        SystemExit: a spec that is not ``LABEL=DIR``, a label given twice, a folder without a
            finished run, or a folder whose runs mix recipes.
    """
    folders: dict[str, Path] = {}
    for spec in specs:
        label, sep, folder = spec.partition("=")
        if not sep or not label.strip() or not folder.strip():
            raise SystemExit(f"--compare takes LABEL=DIR, e.g. ACM=runs/nuaa/banded; got {spec!r}")
        if label in folders:
            raise SystemExit(f"--compare labels must be distinct; {label!r} is given twice")
        folders[label] = Path(folder)
    results = []
    for label, folder in folders.items():
        results += _column(label, folder, seeds)
    labels = list(folders)
    first = next(r for r in results if r["strategy"] == labels[0])
    differ = sorted({d for r in results for d in recipe_differences(first["recipe"] or {}, r["recipe"] or {})})
    header = ("The columns differ in (first column vs another): " + "; ".join(differ) + "\n\n") if differ else (
        "Every column was trained with the same recipe.\n\n")
    return header + results_tables(results, labels, reference=labels[0], shown=shown)


def _column(label: str, folder: Path, seeds: Sequence[int] | None) -> list[dict[str, Any]]:
    """The finished runs of one ``--compare`` folder, all of one recipe."""
    found = sorted(int(d.name[4:]) for d in folder.glob("seed*") if d.name[4:].isdigit())
    found = [k for k in found if seeds is None or k in seeds]
    rows = [r for r in (load_run(folder / f"seed{k}", label, k) for k in found) if r is not None]
    if not rows:
        raise SystemExit(f"--compare {label}={folder}: no finished run there (expected seed<k>/done.json "
                         "and seed<k>/bench/robustness.json)")
    for row in rows[1:]:
        diff = recipe_differences(rows[0]["recipe"] or {}, row["recipe"] or {})
        if diff:
            raise SystemExit(f"--compare {label}={folder}: its runs mix recipes (seed {rows[0]['seed']} vs "
                             f"seed {row['seed']}: {'; '.join(diff)}); one column holds one recipe")
    return rows
