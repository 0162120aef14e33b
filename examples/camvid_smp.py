"""Train RGB street-scene segmenters on CamVid with and without the adversarial policy, over seeds.

Trains a segmentation-models-pytorch model from scratch (no pretrained weights are downloaded)
once per strategy x seed (``none``, ``random``, ``learned``, a named adversary, a corruption or a
category); for one seed every strategy starts from the same initial weights and sees the same
data order. Every trained model is then scored on CamVid's clean test split and under every
corruption x severity (the same seeded corrupted images for every model and seed), and the script
prints clean mIoU, mIoU per corruption, mPC (the mIoU averaged over every corruption x severity)
and rPC = mPC / clean mIoU, as Kamann & Rother (CVPR 2020) and mmdetection's corruption benchmark
report them, as mean +- std over seeds, plus each strategy's per-seed paired difference against
``random``. A run whose model collapsed (a single class predicted) is marked ``failed`` and left
out of the means.

The grid machinery (flags, ``--resume``, ``--report-only``, ``--compare``, results.md/json, the
policy's shares) is the ISTD harness's, :mod:`advcorrupt.training.harness`; this script only
holds its profiles.

Profiles:

- ``smoke``: the whole pipeline in under 5 minutes on a 2-core CPU (one run: a few dozen small
  steps, the bench on 48 test images, 4 corruptions at levels 1 and 3). It checks that everything
  runs, not what the adversary does.
- ``quick`` (the default): under 30 minutes per run on one core (480 steps of a light Unet, the
  bench on the whole test split at levels 1, 3 and 5).

Examples::

    python examples/camvid_smp.py --profile smoke --data-root ../shared/data/CamVid --strategies learned \\
        --out runs/camvid_smoke
    python examples/camvid_smp.py --data-root ../shared/data/CamVid --strategies none,random,learned \\
        --seeds 0,1,2 --jobs 2 --out runs/camvid_quick
    python examples/camvid_smp.py --data-root ../shared/data/CamVid --strategies none,random,learned \\
        --seeds 0,1,2 --out runs/camvid_quick --report-only
    python examples/camvid_smp.py --compare random=runs/camvid_quick/random learned=runs/camvid_quick/learned \\
        --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import sys

from advcorrupt.training.grid import BenchSettings
from advcorrupt.training.harness import GridFlag, GridSpec, grid_main, parse_grid_args

# A light Unet: smp's mobilenet_v2 encoder with a slim decoder (smp's default decoder_channels
# (256, 128, 64, 32, 16) cost 3.3 of its 3.8 GFLOPs per 160x224 image; these 0.9 of 1.3).
# Lists, not tuples: config.json keeps lists, and a recipe compares what it saved.
_MODEL = {"model": "smp:Unet:mobilenet_v2", "model_kwargs": {"decoder_channels": [96, 48, 24, 16, 8]}}

# Each profile is a TrainConfig template; command-line options override its fields.
PROFILES: dict[str, dict[str, object]] = {
    # Under 5 minutes end to end on a 2-core CPU: 2 x 8 steps of 4 crops of 96x128 (about 0.4 s
    # each on one thread), validation once at the end, the bench below.
    "smoke": {"dataset": "camvid", **_MODEL, "epochs": 2, "steps_per_epoch": 8, "batch_size": 4,
              "crop_size": [96, 128], "lr": 2e-3, "warmup_epochs": 0, "policy_lr": 1e-2, "eval_every": 2},
    # Under 30 minutes per run on one core. Measured on one thread of this 2-core CPU with another
    # run on the other core (2026-12-06): 30 steps of B = 8 crops of 160x224 take 26-28 s without
    # corruption (strategy none), so 480 steps take about 8 minutes, twice that with the corrupted
    # half; the bench is 31 passes over the 233 test images. The first calibration, 10 epochs of
    # 30 steps, reached only 21.7% val mIoU (5 of 11 classes near 0) with its cosine already at
    # zero: 16 epochs buy the rare classes time. Adam 2e-3 with a one-epoch warm-up,
    # cosine-annealed over 16 epochs of 30 steps (240 of the 367 training images per epoch).
    "quick": {"dataset": "camvid", **_MODEL, "epochs": 16, "steps_per_epoch": 30, "batch_size": 8,
              "crop_size": [160, 224], "lr": 2e-3, "warmup_epochs": 1, "policy_lr": 1e-2, "eval_every": 4},
}
# The benchmark of each profile (training samples levels 1-3; the test adds the unseen level 5).
BENCH: dict[str, BenchSettings] = {
    "smoke": BenchSettings(severities=(1, 3), corruptions=("gaussian_noise", "motion_blur", "contrast",
                                                           "jpeg_compression"), images=48),
    "quick": BenchSettings(severities=(1, 3, 5)),
}
# The recipe fields named above the tables.
RECIPE_SHOWN = ("model", "model_kwargs", "data", "device", "epochs", "steps_per_epoch", "batch_size", "crop_size",
                "lr", "warmup_epochs", "policy_lr", "lam", "amp")


def _default_profile(args: argparse.Namespace) -> str:
    return "quick"


def spec() -> GridSpec:
    """This script as a grid: its profiles (as they stand when called) and its own flags."""
    return GridSpec(
        description=__doc__ or "",
        profiles=PROFILES,
        bench=BENCH,
        default_profile=_default_profile,
        profile_help="default: quick",
        flags=(GridFlag("--crop-size", "crop_size", int, "training crop (after a random 0.5-2x rescale)", nargs=2,
                        metavar=("H", "W")),
               GridFlag("--model-kwargs", "model_kwargs", json.loads,
                        'JSON for the model factory, e.g. \'{"decoder_channels": [64, 32, 16, 16, 8]}\'')),
        default_strategies="none,random,learned",
        default_out="runs/camvid",
        data_help="the CamVid folder in SegNet's layout (train/, trainannot/, val/, valannot/, test/, testannot/), "
                  "e.g. ../shared/data/CamVid",
        data_required=True,
        recipe_shown=RECIPE_SHOWN,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return parse_grid_args(spec(), argv)


def main(argv: list[str] | None = None) -> int:
    return grid_main(spec(), argv)


if __name__ == "__main__":
    sys.exit(main())
