"""Tables over reports: the paper-style summary and the model comparison (BALISTD's Table 2).

:func:`summary_table` puts one row per report (clean IoU, IoU per corruption, mean corrupted IoU,
mean RCE of Eq. 9); :func:`comparison_table` puts one column per model with the mean ± sample
standard deviation over its training seeds. Both are Markdown, IoU, nIoU, Pd and RCE in percent,
Fa in units of 1e-6.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence

from .report import RobustnessReport


def _fmt_metric(key: str, value: float, digits: int) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}" if key == "fa" else f"{100 * value:.{digits}f}"


def summary_table(reports: Sequence[RobustnessReport], *, digits: int = 2) -> str:
    """The paper-style Markdown table: one row per model, IoU per corruption and the means.

    Columns: model, clean IoU, each corruption's IoU averaged over the severities, the mean
    corrupted IoU and the mean RCE (all in %). Corruptions are the union, in first-seen order;
    a model that lacks one shows ``n/a``.

    Args:
        reports: one report per model (or per training setting).
        digits: decimals.

    Example:
        >>> from advcorrupt.bench import RobustnessReport, SettingResult
        >>> r = RobustnessReport(clean={"iou": 0.8}, corruptions=("contrast",), severities=(1,),
        ...     results=(SettingResult("contrast", 1, 0.4, 0.4, 0.5, 1.0, 0.5),), seed=0, num_images=1,
        ...     model_name="net")
        >>> print(summary_table([r]).splitlines()[2])
        | net | 80.00 | 40.00 | 40.00 | 50.00 |
    """
    if not reports:
        raise ValueError("reports must hold at least one RobustnessReport; got none")
    names: list[str] = []
    for rep in reports:
        names.extend(n for n in rep.corruptions if n not in names)
    head = ["model", "clean IoU", *names, "mean IoU", "mean RCE"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for i, rep in enumerate(reports):
        per = rep.per_corruption
        cells = [rep.model_name or f"model {i}", _fmt_metric("iou", rep.clean.get("iou", math.nan), digits)]
        cells += [_fmt_metric("iou", per[n]["iou"], digits) if n in per else "n/a" for n in names]
        cells += [_fmt_metric("iou", rep.mean_corrupted_iou, digits), _fmt_metric("rce", rep.mean_rce, digits)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Comparing models (several seeds each): BALISTD's Table 2
# --------------------------------------------------------------------------------------------

#: Rows of :func:`comparison_table` before the per-corruption ones: (label, getter, higher is better).
_SUMMARY_ROWS: tuple[tuple[str, str, Callable[[RobustnessReport], float], bool], ...] = (
    ("clean IoU", "iou", lambda r: r.clean.get("iou", math.nan), True),
    ("clean nIoU", "niou", lambda r: r.clean.get("niou", math.nan), True),
    ("clean Pd", "pd", lambda r: r.clean.get("pd", math.nan), True),
    ("clean Fa (1e-6)", "fa", lambda r: r.clean.get("fa", math.nan), False),
    ("mean corrupted IoU", "iou", lambda r: r.mean_corrupted_iou, True),
    ("mean RCE", "rce", lambda r: r.mean_rce, False),
)


def _check_comparison_input(
    reports: Mapping[str, RobustnessReport | Sequence[RobustnessReport]],
) -> dict[str, list[RobustnessReport]]:
    """``{label: [report, ...]}``, every group non-empty and evaluated on one benchmark."""
    if not isinstance(reports, Mapping) or not reports:
        raise ValueError(
            "reports must be a non-empty mapping {model label: report or list of reports (one per seed)}; "
            f"got {type(reports).__name__ if not isinstance(reports, Mapping) else 'an empty mapping'}"
        )
    groups: dict[str, list[RobustnessReport]] = {}
    for label, value in reports.items():
        group = [value] if isinstance(value, RobustnessReport) else list(value)
        bad = [type(r).__name__ for r in group if not isinstance(r, RobustnessReport)]
        if not group or bad:
            raise TypeError(
                f"reports[{label!r}] must be a RobustnessReport or a non-empty list of them; "
                f"got {bad or 'an empty list'}"
            )
        groups[str(label)] = group
    setups = {(r.dataset_name, r.num_images, r.seed) for g in groups.values() for r in g}
    if len(setups) > 1:
        raise ValueError(
            "every report must come from the same test set and benchmark seed (else the models saw "
            f"different images); got (dataset_name, num_images, seed) = {sorted(setups, key=repr)}"
        )
    return groups


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN for one value); NaN values count as missing."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else math.nan)


def _fmt_mean_std(key: str, mean: float, std: float, digits: int, bold: bool) -> str:
    if not math.isfinite(mean):
        return "n/a"
    cell = _fmt_metric(key, mean, digits)
    if math.isfinite(std):
        cell += f" ± {_fmt_metric(key, std, digits)}"
    return f"**{cell}**" if bold else cell


def _per_corruption_getter(name: str, key: str) -> Callable[[RobustnessReport], float]:
    """``report -> its `key` for corruption `name` averaged over severities`` (NaN if absent)."""
    return lambda r: r.per_corruption.get(name, {}).get(key, math.nan)


def _comparison_row(
    title: str, key: str, stats: list[tuple[float, float]], higher_is_better: bool, digits: int
) -> str:
    means = [m for m, _ in stats if math.isfinite(m)]
    best = (max if higher_is_better else min)(means) if len(means) > 1 else math.nan
    cells = [_fmt_mean_std(key, m, s, digits, m == best) for m, s in stats]
    return f"| {title} | " + " | ".join(cells) + " |"


def comparison_table(
    reports: Mapping[str, RobustnessReport | Sequence[RobustnessReport]], *, digits: int = 2
) -> str:
    """Several models side by side, mean ± std over seeds: BALISTD's Table 2 as Markdown.

    One column per model label; rows: clean IoU, nIoU, Pd, Fa; the mean corrupted IoU and mean
    RCE; then, per corruption (union over the reports, first-seen order), its IoU and RCE averaged
    over the severities. A cell is the mean over the label's reports (one per training seed) and,
    with two or more, ``± the sample standard deviation``; ``n/a`` where a model lacks the value.
    The best mean of each row is bold (highest IoU/nIoU/Pd, lowest Fa/RCE). IoU, nIoU, Pd and RCE
    are in %, Fa in units of 1e-6.

    Args:
        reports: ``{label: report or [report per seed]}``, e.g. ``{"ACM": [r0, r1, r2],
            "ACM + SFIM": [s0, s1, s2]}``; all evaluated on the same test set with the same
            benchmark seed (else ``ValueError``).
        digits: decimals.

    Returns:
        The Markdown table (a header line naming the seeds per model, then the table).

    Raises:
        ValueError: empty input or reports from different test sets / benchmark seeds.
        TypeError: a value that is not a report or a list of reports.

    Example:
        >>> from advcorrupt.bench import RobustnessReport, SettingResult
        >>> a = RobustnessReport(clean={"iou": 0.8, "niou": 0.7, "pd": 1.0, "fa": 2.0},
        ...     results=(SettingResult("contrast", 1, 0.4, 0.4, 0.5, 1.0, 0.5),),
        ...     corruptions=("contrast",), severities=(1,), seed=0, num_images=1)
        >>> b = RobustnessReport(clean={"iou": 0.6, "niou": 0.6, "pd": 1.0, "fa": 2.0},
        ...     results=(SettingResult("contrast", 1, 0.3, 0.3, 0.5, 1.0, 0.5),),
        ...     corruptions=("contrast",), severities=(1,), seed=0, num_images=1)
        >>> print(comparison_table({"net": [a, b]}).splitlines()[4])
        | clean IoU | 70.00 ± 14.14 |
    """
    groups = _check_comparison_input(reports)
    names: list[str] = []
    for group in groups.values():
        for rep in group:
            names.extend(n for n in rep.corruptions if n not in names)
    rows: list[tuple[str, str, Callable[[RobustnessReport], float], bool]] = list(_SUMMARY_ROWS)
    for name in names:
        rows.append((f"{name} IoU", "iou", _per_corruption_getter(name, "iou"), True))
        rows.append((f"{name} RCE", "rce", _per_corruption_getter(name, "rce"), False))
    seeds = ", ".join(f"{label}: {len(g)}" for label, g in groups.items())
    lines = [
        f"Reports per model (seeds): {seeds}. Mean ± sample std over seeds; IoU, nIoU, Pd, RCE in %, "
        "Fa in 1e-6; per-corruption values averaged over severities; best mean in bold.",
        "",
        "| metric | " + " | ".join(groups) + " |",
        "|---|" + "---:|" * len(groups),
    ]
    for title, key, getter, better in rows:
        stats = [_mean_std([getter(r) for r in group]) for group in groups.values()]
        lines.append(_comparison_row(title, key, stats, better, digits))
    return "\n".join(lines) + "\n"
