"""What a grid of runs reports: Markdown tables over seeds, paired differences, the policy's shares.

The rows are those of :mod:`advcorrupt.training.grid` (one per finished run). :func:`results_tables`
puts each strategy's reports side by side as mean +- std over its seeds
(:func:`~advcorrupt.bench.comparison_table`: BALISTD's Table 2 for a binary task, clean mIoU / mPC /
rPC for a semantic one), lists the failed runs, which no mean includes, and adds
:func:`paired_table`: each strategy's per-seed difference against a reference strategy, the same
seed meaning the same initial weights and data order. :func:`plot_policy_shares` draws which
corruptions and severities the adversary sampled over training.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..bench import comparison_table
from .grid import recipe_differences, summary_names, summary_scalars

__all__ = ["DEFAULT_RECIPE_SHOWN", "paired_table", "plot_policy_shares", "policy_shares", "results_tables"]

#: The recipe fields :func:`results_tables` names above its tables by default (an ISTD grid's).
DEFAULT_RECIPE_SHOWN: tuple[str, ...] = ("model", "data", "device", "epochs", "batch_size", "patch_size", "lr",
                                         "warmup_epochs", "bce_weight", "bce_pos_weight", "policy_lr", "lam", "amp")


def results_tables(results: Sequence[dict[str, Any]], strategies: Sequence[str], *, reference: str = "random",
                   shown: Sequence[str] = DEFAULT_RECIPE_SHOWN) -> str:
    """Markdown: mean +- std over seeds per strategy, the failed runs, and paired differences vs ``reference``.

    Args:
        results: rows (:func:`~advcorrupt.training.grid.load_run`, :func:`~advcorrupt.training.grid.run_one`).
        strategies: the columns, in order (a row's ``"strategy"`` is its column).
        reference: the column the paired differences are taken against.
        shown: recipe fields named in the line above the tables when every run shares one recipe
            (a field the recipes lack is left out).

    Example:
        >>> from advcorrupt.bench import RobustnessReport, SettingResult
        >>> def row(strategy, seed, corrupted):
        ...     report = RobustnessReport(clean={"iou": 0.6}, corruptions=("contrast",), severities=(1,),
        ...         results=(SettingResult("contrast", 1, corrupted, corrupted, 1.0, 1.0, 0.5),), seed=0,
        ...         num_images=1)
        ...     return {"strategy": strategy, "seed": seed, "failed": False, "report": report}
        >>> text = results_tables([row("random", 0, 0.30), row("learned", 0, 0.33)], ["random", "learned"])
        >>> next(line for line in text.splitlines() if line.startswith("| learned | mean corrupted IoU"))
        '| learned | mean corrupted IoU | 0: +3.00 | +3.00 +- n/a | 1/1 |'
    """
    ok = [r for r in results if not r["failed"]]
    groups = {st: [r["report"] for r in ok if r["strategy"] == st] for st in strategies}
    groups = {st: reps for st, reps in groups.items() if reps}
    parts = []
    recipes = [r["recipe"] for r in results if r.get("recipe")]
    if recipes and all(not recipe_differences(recipes[0], other) for other in recipes[1:]):
        parts.append("Recipe of every run: " + ", ".join(f"{k} {recipes[0][k]}" for k in shown if k in recipes[0])
                     + "\n")
    if groups:
        seeds = sorted({r["seed"] for r in ok})
        parts.append(f"Mean +- std over the seeds {seeds} (n per strategy: "
                     + ", ".join(f"{st} {len(reps)}" for st, reps in groups.items()) + ")\n")
        parts.append(comparison_table(groups))
    failed = [r for r in results if r["failed"]]
    if failed:
        parts.append("\nFailed runs (left out of every mean):\n")
        parts += [f"- {r['strategy']} seed {r['seed']}: {r['train'].get('failure')}" for r in failed]
    paired = paired_table(ok, strategies, reference=reference)
    if paired:
        parts.append("\n" + paired)
    return "\n".join(parts)


def paired_table(results: Sequence[dict[str, Any]], strategies: Sequence[str], *, reference: str = "random") -> str:
    """Per-seed differences (strategy - reference), in points, on the seeds both have.

    Rows per strategy: the mean corrupted score, the clean score and the score at each test
    severity (mean over corruptions), in the report's task's terms (:func:`~advcorrupt.training.grid.summary_names`:
    mean corrupted IoU / clean IoU / level k IoU for a binary task, mPC / clean mIoU / level k mIoU
    for a semantic one); the per-seed values, their mean +- sample std and the seeds won.
    ``""`` when no strategy shares a seed with ``reference``.
    """
    by = {(r["strategy"], r["seed"]): summary_scalars(r["report"]) for r in results}
    kinds = {(r["strategy"], r["seed"]): summary_names(r["report"]) for r in results}
    lines = [f"Paired differences against `{reference}` (points; same seed = same initial weights and data order)\n",
             "| strategy | metric | per seed | mean +- std | wins |", "|---|---|---|---:|---:|"]
    for st in strategies:
        if st == reference:
            continue
        seeds = sorted(s for (name, s) in by if name == st and (reference, s) in by)
        if not seeds:
            continue
        names = kinds[(st, seeds[0])]
        levels = [m for m in by[(st, seeds[0])] if m.startswith("level ")]
        for metric in (names.mean_corrupted, names.clean, *levels):
            if any(metric not in by[(name, s)] for s in seeds for name in (st, reference)):
                continue
            diffs = [100 * (by[(st, s)][metric] - by[(reference, s)][metric]) for s in seeds]
            sd = f"{statistics.stdev(diffs):.2f}" if len(diffs) > 1 else "n/a"
            per_seed = ", ".join(f"{s}: {d:+.2f}" for s, d in zip(seeds, diffs, strict=True))
            wins = sum(d > 0 for d in diffs)
            lines.append(f"| {st} | {metric} | {per_seed} | {statistics.fmean(diffs):+.2f} +- {sd} | "
                         f"{wins}/{len(diffs)} |")
    return "\n".join(lines) if len(lines) > 3 else ""


# ------------------------------------------------------------------------------ the policy's shares
def policy_shares(folders: Sequence[Path]) -> tuple[list[str], list[str], list[list[float]], list[list[float]]] | None:
    """Per-epoch shares of sampled actions per corruption and per severity, averaged over runs.

    Reads each folder's ``policy_actions.json`` (written by :func:`~advcorrupt.training.fit`).

    Returns:
        ``(corruptions, severities, by_corruption, by_severity)``, one row per epoch (the fewest any
        run has); ``None`` when no run sampled any action (strategy ``none``, or no file).
    """
    runs = [json.loads((f / "policy_actions.json").read_text()) for f in folders
            if (f / "policy_actions.json").is_file()]
    runs = [r for r in runs if r["per_epoch"] and any(map(sum, r["per_epoch"]))]
    if not runs:
        return None
    labels = runs[0]["actions"]
    corruptions = list(dict.fromkeys(lab.rsplit("@", 1)[0] for lab in labels))
    severities = list(dict.fromkeys(lab.rsplit("@", 1)[1] for lab in labels))
    epochs = min(len(r["per_epoch"]) for r in runs)
    by_c, by_s = [], []
    for e in range(epochs):
        row = [statistics.fmean(r["per_epoch"][e][i] for r in runs) for i in range(len(labels))]
        by_c.append([sum(p for lab, p in zip(labels, row, strict=True) if lab.rsplit("@", 1)[0] == c)
                     for c in corruptions])
        by_s.append([sum(p for lab, p in zip(labels, row, strict=True) if lab.rsplit("@", 1)[1] == s)
                     for s in severities])
    return corruptions, severities, by_c, by_s


def plot_policy_shares(folders: Sequence[Path], path: Path, *, title: str) -> None:
    """Two stacked-area panels, shares per corruption and per severity over the epochs, as a PNG at ``path``.

    Nothing is written when :func:`policy_shares` finds no sampled action.
    """
    shares = policy_shares(folders)
    if shares is None:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corruptions, severities, by_c, by_s = shares
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), constrained_layout=True)
    epochs = range(1, len(by_c) + 1)
    for ax, names, rows, what in ((axes[0], corruptions, by_c, "corruption"), (axes[1], severities, by_s, "severity")):
        ax.stackplot(epochs, list(zip(*rows, strict=True)),
                     labels=[f"{what} {n}" if what == "severity" else n for n in names])
        ax.set(xlabel="epoch", ylabel="share of sampled actions", ylim=(0, 1), xlim=(1, max(len(rows), 2)))
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
