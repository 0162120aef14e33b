"""Tables over reports: the paper-style summary and the model comparison (BALISTD's Table 2).

:func:`summary_table` puts one row per report (clean IoU, IoU per corruption, mean corrupted IoU,
mean RCE of Eq. 9); :func:`comparison_table` puts one column per model with the mean ± sample
standard deviation over its training seeds. Both are Markdown, IoU, nIoU, Pd and RCE in percent,
Fa in units of 1e-6.

Semantic reports (:class:`~advcorrupt.bench.SemanticRobustnessReport`) get the same two tables in
their own metrics: clean mIoU, mIoU per corruption, mPC (the mIoU averaged over every corruption x
severity) and rPC = mPC / clean mIoU, as Kamann & Rother (CVPR 2020) and mmdetection's corruption
benchmark report them. One table holds one kind of report.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence

from .report import RobustnessReport
from .semantic_report import SemanticRobustnessReport

#: Either kind of report: binary (:class:`RobustnessReport`) or semantic.
AnyReport = RobustnessReport | SemanticRobustnessReport


def _fmt_metric(key: str, value: float, digits: int) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}" if key == "fa" else f"{100 * value:.{digits}f}"


def _one_kind(reports: Sequence[AnyReport]) -> bool:
    """Whether the reports are semantic (``True``) or binary; ``ValueError`` for a mix or a non-report."""
    bad = [type(r).__name__ for r in reports if not isinstance(r, (RobustnessReport, SemanticRobustnessReport))]
    if bad:
        raise TypeError(f"reports must be RobustnessReport or SemanticRobustnessReport objects; got {bad}")
    kinds = {isinstance(r, SemanticRobustnessReport) for r in reports}
    if len(kinds) > 1:
        raise ValueError(
            "reports must all score one task (all binary or all semantic): IoU and mIoU are not comparable; "
            f"got {sum(isinstance(r, SemanticRobustnessReport) for r in reports)} semantic and "
            f"{sum(not isinstance(r, SemanticRobustnessReport) for r in reports)} binary reports"
        )
    return kinds == {True}


def summary_table(reports: Sequence[AnyReport], *, digits: int = 2) -> str:
    """The paper-style Markdown table: one row per model, IoU per corruption and the means.

    Columns: model, clean IoU, each corruption's IoU averaged over the severities, the mean
    corrupted IoU and the mean RCE (all in %). Corruptions are the union, in first-seen order;
    a model that lacks one shows ``n/a``. For semantic reports: model, clean mIoU, each
    corruption's mIoU, mPC and rPC (all in %).

    Args:
        reports: one report per model (or per training setting), all binary or all semantic.
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
    semantic = _one_kind(reports)
    names: list[str] = []
    for rep in reports:
        names.extend(n for n in rep.corruptions if n not in names)
    if semantic:
        return _semantic_summary(reports, names, digits)  # type: ignore[arg-type]
    head = ["model", "clean IoU", *names, "mean IoU", "mean RCE"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for i, rep in enumerate(reports):
        per = rep.per_corruption
        cells = [rep.model_name or f"model {i}", _fmt_metric("iou", rep.clean.get("iou", math.nan), digits)]
        cells += [_fmt_metric("iou", per[n]["iou"], digits) if n in per else "n/a" for n in names]
        cells += [_fmt_metric("iou", rep.mean_corrupted_iou, digits), _fmt_metric("rce", rep.mean_rce, digits)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _semantic_summary(reports: Sequence[SemanticRobustnessReport], names: list[str], digits: int) -> str:
    """:func:`summary_table` of semantic reports: clean mIoU, mIoU per corruption, mPC, rPC."""
    head = ["model", "clean mIoU", *names, "mPC", "rPC"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for i, rep in enumerate(reports):
        per = rep.per_corruption
        cells = [rep.model_name or f"model {i}", _fmt_metric("mIoU", rep.clean.get("mIoU", math.nan), digits)]
        cells += [_fmt_metric("mIoU", per[n]["mIoU"], digits) if n in per else "n/a" for n in names]
        cells += [_fmt_metric("mIoU", rep.mean_corrupted, digits), _fmt_metric("rPC", rep.relative_robustness, digits)]
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

#: The same rows for semantic reports: clean metrics, mPC and rPC (per-corruption mIoU follow).
_SEMANTIC_ROWS: tuple[tuple[str, str, Callable[[SemanticRobustnessReport], float], bool], ...] = (
    ("clean mIoU", "mIoU", lambda r: r.clean.get("mIoU", math.nan), True),
    ("clean aAcc", "aAcc", lambda r: r.clean.get("aAcc", math.nan), True),
    ("clean mAcc", "mAcc", lambda r: r.clean.get("mAcc", math.nan), True),
    ("mPC (mean corrupted mIoU)", "mIoU", lambda r: r.mean_corrupted, True),
    ("rPC (mPC / clean mIoU)", "rPC", lambda r: r.relative_robustness, True),
)


def _check_comparison_input(
    reports: Mapping[str, AnyReport | Sequence[AnyReport]],
) -> dict[str, list[AnyReport]]:
    """``{label: [report, ...]}``, every group non-empty and evaluated on one benchmark."""
    if not isinstance(reports, Mapping) or not reports:
        raise ValueError(
            "reports must be a non-empty mapping {model label: report or list of reports (one per seed)}; "
            f"got {type(reports).__name__ if not isinstance(reports, Mapping) else 'an empty mapping'}"
        )
    groups: dict[str, list[AnyReport]] = {}
    for label, value in reports.items():
        group = [value] if isinstance(value, (RobustnessReport, SemanticRobustnessReport)) else list(value)
        bad = [type(r).__name__ for r in group if not isinstance(r, (RobustnessReport, SemanticRobustnessReport))]
        if not group or bad:
            raise TypeError(
                f"reports[{label!r}] must be a RobustnessReport or a non-empty list of them; "
                f"got {bad or 'an empty list'}"
            )
        groups[str(label)] = group
    _one_kind([r for g in groups.values() for r in g])
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


def _per_corruption_getter(name: str, key: str) -> Callable[[AnyReport], float]:
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
    reports: Mapping[str, AnyReport | Sequence[AnyReport]], *, digits: int = 2
) -> str:
    """Several models side by side, mean ± std over seeds: BALISTD's Table 2 as Markdown.

    One column per model label; rows: clean IoU, nIoU, Pd, Fa; the mean corrupted IoU and mean
    RCE; then, per corruption (union over the reports, first-seen order), its IoU and RCE averaged
    over the severities. A cell is the mean over the label's reports (one per training seed) and,
    with two or more, ``± the sample standard deviation``; ``n/a`` where a model lacks the value.
    The best mean of each row is bold (highest IoU/nIoU/Pd, lowest Fa/RCE). IoU, nIoU, Pd and RCE
    are in %, Fa in units of 1e-6.

    Semantic reports give the rows clean mIoU, aAcc, mAcc, mPC and rPC, then each corruption's
    mIoU (all in %, higher is better).

    Args:
        reports: ``{label: report or [report per seed]}``, e.g. ``{"ACM": [r0, r1, r2],
            "ACM + SFIM": [s0, s1, s2]}``; all evaluated on the same test set with the same
            benchmark seed (else ``ValueError``).
        digits: decimals.

    Returns:
        The Markdown table (a header line naming the seeds per model, then the table).

    Raises:
        ValueError: empty input, reports from different test sets / benchmark seeds, or binary
            and semantic reports mixed.
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
    semantic = isinstance(next(iter(groups.values()))[0], SemanticRobustnessReport)
    rows: list[tuple[str, str, Callable[[AnyReport], float], bool]]
    if semantic:
        rows = list(_SEMANTIC_ROWS)  # type: ignore[arg-type]
        rows += [(f"{name} mIoU", "mIoU", _per_corruption_getter(name, "mIoU"), True) for name in names]
        units = "mIoU, aAcc, mAcc, mPC, rPC in %"
    else:
        rows = list(_SUMMARY_ROWS)  # type: ignore[arg-type]
        for name in names:
            rows.append((f"{name} IoU", "iou", _per_corruption_getter(name, "iou"), True))
            rows.append((f"{name} RCE", "rce", _per_corruption_getter(name, "rce"), False))
        units = "IoU, nIoU, Pd, RCE in %, Fa in 1e-6"
    seeds = ", ".join(f"{label}: {len(g)}" for label, g in groups.items())
    lines = [
        f"Reports per model (seeds): {seeds}. Mean ± sample std over seeds; {units}; per-corruption values "
        "averaged over severities; best mean in bold.",
        "",
        "| metric | " + " | ".join(groups) + " |",
        "|---|" + "---:|" * len(groups),
    ]
    for title, key, getter, better in rows:
        stats = [_mean_std([getter(r) for r in group]) for group in groups.values()]
        lines.append(_comparison_row(title, key, stats, better, digits))
    return "\n".join(lines) + "\n"
