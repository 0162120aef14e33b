"""``advcorrupt corrupt-dataset``: corrupted copies of an ISTD or a CamVid / SegNet-layout dataset.

``DST/<corruption>/<severity>/`` has the source's layout: ISTD (``images/``, ``masks/``,
``img_idx/``; 8-bit gray PNGs) or CamVid's SegNet layout (``<split>/`` + ``<split>annot/``; 8-bit RGB
PNGs). The work is done by :func:`write_corrupted_dataset` (re-exported here with
:func:`evaluate_corrupted_root`, which ``advcorrupt bench --corrupted-root`` uses to read such a folder).

Example:
    $ advcorrupt corrupt-dataset data/NUAA-SIRST data/NUAA-SIRST-C --severities 1,3 --seed 0
    $ advcorrupt corrupt-dataset ../shared/data/CamVid data/CamVid-C --severities 1,3
"""

from __future__ import annotations

import argparse
import json
import sys

from ._args import add_corruptions_argument, csv_list, error_message
from ._corrupted_root import MANIFEST, evaluate_corrupted_root, write_corrupted_dataset

__all__ = ["add_parser", "evaluate_corrupted_root", "run", "write_corrupted_dataset"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Add the ``corrupt-dataset`` subcommand and its options to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "corrupt-dataset",
        help="write corrupted copies of an ISTD or CamVid / SegNet-layout dataset (DST/<corruption>/<severity>/, 8-bit PNG)",
        description="Corrupt every image of SRC with each corruption x severity (seeded exactly as `advcorrupt bench` "
        "does) and write DST/<corruption>/<severity>/ in SRC's layout, so other toolkits can test on the same "
        "corrupted images. ISTD (images/, masks/, img_idx/): the images of the split files, as 8-bit gray PNGs. "
        "CamVid / SegNet (test/ + testannot/, val/ + valannot/, train/ + trainannot/): every image of the splits "
        "present, as 8-bit RGB PNGs; label folders copied unchanged. Written to a temporary folder and renamed when "
        "complete.",
    )
    p.add_argument("src", help="dataset folder: ISTD layout (images/, masks/, img_idx/) or CamVid's SegNet layout "
                   "(<split>/ and <split>annot/ for test, val and/or train)")
    p.add_argument("dst", help="output folder (must not exist or be empty, unless --overwrite)")
    add_corruptions_argument(p)
    p.add_argument("--severities", type=csv_list(int), default=(1, 2, 3, 4, 5), help="comma-separated levels (default 1-5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the corrupted images (as `advcorrupt bench --seed`)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty DST once the new copy is complete")
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``advcorrupt corrupt-dataset``; 0 on success, 2 for bad input (nothing written)."""
    try:
        dst = write_corrupted_dataset(
            args.src, args.dst, corruptions=args.corruptions, severities=args.severities, seed=args.seed,
            overwrite=args.overwrite, progress=not args.no_progress,
        )
    except (ValueError, KeyError, TypeError, FileNotFoundError, FileExistsError) as e:
        print(f"advcorrupt corrupt-dataset: error: {error_message(e)}", file=sys.stderr)
        return 2
    manifest = json.loads((dst / MANIFEST).read_text())
    print(f"wrote {len(manifest['corruptions'])} corruption(s) x {len(manifest['severities'])} severity level(s) to {dst} "
          f"({manifest['layout']} layout; splits {', '.join(manifest['splits'])})")
    return 0
