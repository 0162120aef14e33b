"""Tiny widths of every zoo model, shared by the model and SFIM tests (fast forward/backward)."""

from __future__ import annotations

TINY: dict[str, dict[str, object]] = {
    "dnanet": {"filters": (4, 8, 8, 8, 8), "num_blocks": (1, 1, 1, 1)},
    "sfim_dnanet": {"filters": (4, 8, 8, 8, 8), "num_blocks": (1, 1, 1, 1)},
    "acm": {"channels": (4, 8, 8, 8), "layers": (1, 1, 1)},
    "alcnet": {"channels": (4, 8, 8, 8), "layers": (1, 1, 1)},
    "rdian": {"width": 4},
    "isnet": {"channels": (4, 8, 8, 8), "layers": (1, 1, 1), "edge_channels": 4},
    "istdunet": {"width": 8, "blocks": (1, 1, 1, 1)},
}
