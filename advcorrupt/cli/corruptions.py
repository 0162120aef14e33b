"""``advcorrupt corruptions``: the level table of every corruption, and an optional preview grid PNG.

Example:
    $ advcorrupt corruptions
    $ advcorrupt corruptions --preview grid.png --image frame.png --seed 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor

from ..corruptions.preview import describe, preview_grid

__all__ = ["add_parser", "run"]


def _load_gray(path: str | Path) -> Tensor:
    """A gray, RGB or RGBA image file as a (1, H, W) float tensor in [0, 1] (alpha dropped)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        if im.mode.startswith("I"):  # 16/32-bit integer gray
            arr, scale = np.asarray(im, dtype=np.float32), 65535.0
        elif im.mode == "F":
            arr, scale = np.asarray(im, dtype=np.float32), 1.0
        else:  # L, P, RGB, RGBA, LA, ...: ITU-R 601 luma, alpha dropped
            arr, scale = np.asarray(im.convert("L"), dtype=np.float32), 255.0
    return torch.from_numpy(arr / scale).clamp_(0.0, 1.0).unsqueeze(0)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Add the ``corruptions`` subcommand to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "corruptions",
        help="list the corruptions and their severity levels; --preview writes a grid PNG",
        description="List the registered corruptions with the parameters of each severity level.",
    )
    p.add_argument("--preview", metavar="PNG", help="write a grid of every corruption x level to this PNG")
    p.add_argument("--image", metavar="PATH", help="image for the preview (gray/RGB/RGBA; default synthetic)")
    p.add_argument("--seed", type=int, default=0, help="seed for the random corruptions (default 0)")
    p.add_argument(
        "--severities", type=int, nargs="+", default=[1, 2, 3, 4, 5], help="levels to preview (default 1-5)"
    )
    p.add_argument("--corruptions", nargs="+", metavar="NAME", help="corruptions to preview (default all)")
    return p


def run(args: argparse.Namespace) -> int:
    """Run the ``corruptions`` subcommand from parsed ``args``; returns the exit code."""
    print(describe())
    if getattr(args, "preview", None):
        image = _load_gray(args.image) if getattr(args, "image", None) else None
        out = preview_grid(
            image,
            args.preview,
            severities=args.severities,
            corruptions=args.corruptions,
            seed=args.seed,
        )
        print(f"wrote {out}")
    return 0
