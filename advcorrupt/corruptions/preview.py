"""Human-readable views of the registered corruptions: a level table and a preview grid.

``describe()`` lists every corruption with its category and the parameters of each severity
level (the ImageNet-C tables of Hendrycks & Dietterich, ICLR 2019, for the built-ins);
``preview_grid`` renders one image under every corruption and level into a labelled PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from ._registry import available, corrupt, get

__all__ = ["describe", "preview_grid"]


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def describe(corruptions: Sequence[str] | None = None) -> str:
    """A plain-text table of corruptions, their category and the parameters of each level.

    Args:
        corruptions: names to list; default all registered, in ``available()`` order.

    Returns:
        The table, one row per corruption; a level with several parameters is shown as a tuple.

    Example:
        >>> from advcorrupt.corruptions.preview import describe
        >>> print(describe(["contrast"]).splitlines()[2])  # doctest: +NORMALIZE_WHITESPACE
        contrast  digital  factor  0.4  0.3  0.2  0.1  0.05
    """
    names = list(available() if corruptions is None else corruptions)
    specs = [get(n) for n in names]
    n_levels = max((s.num_levels for s in specs), default=0)
    header = ["corruption", "category", "parameters"] + [f"level {i}" for i in range(1, n_levels + 1)]
    rows = []
    for s in specs:
        cells = [
            _fmt(lv[0]) if len(lv) == 1 else "(" + ", ".join(_fmt(v) for v in lv) + ")" for lv in s.levels
        ]
        rows.append([s.name, s.category, ", ".join(s.param_names)] + cells + [""] * (n_levels - len(cells)))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _default_image() -> Tensor:
    from ..data import SyntheticIRSTD  # local import: keep the package import light

    return SyntheticIRSTD(1, size=256, seed=0)[0][0]


def preview_grid(
    image: Tensor | None,
    path: str | Path,
    *,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    corruptions: Sequence[str] | None = None,
    seed: int = 0,
) -> Path:
    """Write a PNG grid of one image under each corruption (rows) and severity (columns).

    The first column is the clean image; a level a corruption does not define stays blank.

    Args:
        image: (1, H, W) or (3, H, W) float in [0, 1]; ``None`` takes a synthetic infrared scene
            (``advcorrupt.data.SyntheticIRSTD(1, size=256, seed=0)``).
        path: where to write the PNG (parent folders are created).
        severities: the 1-based levels to show, one column each.
        corruptions: names to show; default all registered.
        seed: seed of the generator for the random corruptions, for a reproducible figure.

    Shape:
        image: (C, H, W) with C in {1, 3} (a (H, W) gray image is accepted).

    Returns:
        The path written.

    Example:
        >>> import tempfile, torch
        >>> from advcorrupt.corruptions.preview import preview_grid
        >>> out = preview_grid(torch.rand(1, 32, 32), tempfile.mkdtemp() + "/g.png", corruptions=["contrast"])
        >>> out.suffix
        '.png'
    """
    img = _default_image() if image is None else image
    if not isinstance(img, Tensor):
        raise TypeError(f"image must be a torch.Tensor of shape (C, H, W) or None; got {type(img).__name__}")
    if img.ndim == 2:
        img = img.unsqueeze(0)
    if img.ndim != 3 or img.shape[0] not in (1, 3) or not img.is_floating_point():
        raise ValueError(
            f"image must be float in [0, 1] with shape (1, H, W) or (3, H, W); got {img.dtype} of shape "
            f"{tuple(img.shape)}"
        )
    sevs = [int(s) for s in severities]
    if not sevs:
        raise ValueError("severities must name at least one level; got an empty sequence")
    names = list(available() if corruptions is None else corruptions)
    specs = [get(n) for n in names]
    x = img.detach().float().cpu().unsqueeze(0)

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    def show(ax: object, t: Tensor) -> None:
        arr = t[0].permute(1, 2, 0).numpy() if t.shape[1] == 3 else t[0, 0].numpy()
        ax.imshow(arr, cmap=None if t.shape[1] == 3 else "gray", vmin=0.0, vmax=1.0)  # type: ignore[attr-defined]

    cols = 1 + len(sevs)
    fig, axes = plt.subplots(len(specs), cols, figsize=(1.6 * cols, 1.6 * len(specs) + 0.3), squeeze=False)
    gen = torch.Generator().manual_seed(seed)
    for r, spec in enumerate(specs):
        show(axes[r][0], x)
        axes[r][0].set_ylabel(spec.name, fontsize=7, rotation=0, ha="right", va="center")
        for c, s in enumerate(sevs, start=1):
            if 1 <= s <= spec.num_levels:
                show(axes[r][c], corrupt(x, spec.name, s, generator=gen))
        for c in range(cols):
            axes[r][c].set_xticks([])
            axes[r][c].set_yticks([])
            if r == 0:
                axes[r][c].set_title("clean" if c == 0 else f"level {sevs[c - 1]}", fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
