"""Reproduce BALISTD's experiments: train ISTD detectors with and without the adversarial policy.

Trains a detector once per strategy x seed (``none``, ``random``, ``learned``, a named adversary such
as ``paper``, a corruption name or a category); for one seed every strategy starts from the same
initial weights and sees the same data order. Every trained model is then evaluated on the clean
test set and on every corruption x severity (the same seeded corrupted images for every model and
seed) and the script prints tables shaped like the paper's Tables 3 and 6 (clean IoU, IoU per
corruption, mean corrupted IoU, mean RCE), as mean +- std over seeds, plus each strategy's per-seed
paired difference against ``random``. A run whose detector collapsed (validation IoU ~0) is marked
``failed`` and left out of the means, never averaged in silently.

Profiles:

- ``demo`` (the default without ``--data-root``): synthetic infrared scenes, a few minutes on CPU.
- ``quick``: a real dataset on a 2-core CPU, under 45 minutes per strategy.
- ``paper``: the paper's recipe for a GPU (Adam 5e-4, SGD 1e-4 for the policy, Soft-IoU,
  lambda 1, 256x256 patches, batch 16).

Examples::

    python examples/istd_dnanet.py                                   # demo on synthetic data
    python examples/istd_dnanet.py --profile quick --model acm --data-root ../shared/data/NUAA-SIRST \\
        --strategies none,random,noise,paper,learned --seeds 0,1,2 --jobs 2 --out runs/nuaa_grid
    python examples/istd_dnanet.py --profile paper --model sfim_dnanet --data-root PATH --device cuda
    # models side by side (BALISTD's Table 2 / Table 7): grids of two models, then their finished runs
    python examples/istd_dnanet.py --profile quick --model sfim_acm --data-root ../shared/data/NUAA-SIRST \
        --strategies learned --seeds 0,1,2 --jobs 2 --out runs/nuaa_sfim
    python examples/istd_dnanet.py --compare ACM=runs/nuaa_grid/learned "ACM + SFIM"=runs/nuaa_sfim/learned --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import sys

# The grid machinery is advcorrupt.training.harness; compare_runs, parse_seeds, paired_table and
# results_tables stay importable from here, as before the move.
from advcorrupt.training.grid import BenchSettings
from advcorrupt.training.grid_report import paired_table, results_tables  # noqa: F401
from advcorrupt.training.harness import (  # noqa: F401
    GridFlag,
    GridSpec,
    compare_runs,
    grid_main,
    parse_grid_args,
    parse_seeds,
)

# Each profile is a TrainConfig template; command-line options override its fields.
PROFILES: dict[str, dict[str, object]] = {
    # A few minutes on a 2-core CPU. The policy's lr is raised from the paper's 1e-4 because a
    # run this short gives it only a few hundred updates (see docs/trainer.md).
    "demo": dict(model="acm", epochs=10, batch_size=8, synthetic_train=256, synthetic_test=48, synthetic_size=96,
                 lr=5e-3, policy_lr=1e-2, eval_every=5),
    # Under 45 minutes per strategy on a 2-core CPU: ACM + SFIM, 256x256 patches, 80 epochs of NUAA-SIRST
    # (2080 steps). Adam at 5e-3 instead of 5e-4: the paper's rate needs far more steps than this.
    # A 5-epoch linear warm-up and a per-sample BCE term next to Soft-IoU keep the high rate from
    # collapsing the detector to all-background on some seeds (docs/results.md: without them seed 1
    # of `random` collapsed; with the warm-up alone seed 1 of `banded` still did). The target pixels
    # weigh 10x inside that BCE term (recipe 3): with the plain mean, `noise` seeds 0 and 2 still
    # collapsed, the background's pull down outweighing the ~0.1% of target pixels ~10 to 1. The model is ACM
    # + SFIM: over three seeds it beat ACM by 2.4 points of mean corrupted IoU under recipe 2 and by
    # 1.0 (3 of 3 seeds) under recipe 3, at 1.21x the training time (docs/results.md); the issue-9
    # grid itself is ACM (--model acm).
    "quick": dict(model="sfim_acm", epochs=80, batch_size=8, patch_size=256, lr=5e-3, warmup_epochs=5, bce_weight=1.0,
                  bce_pos_weight=10.0, policy_lr=1e-2, eval_every=20),
    # The paper's recipe (for a GPU): Adam 5e-4, policy SGD 1e-4, Soft-IoU, lambda 1, 256 patches, batch 16.
    "paper": dict(model="sfim_dnanet", epochs=400, batch_size=16, patch_size=256, lr=5e-4, policy_lr=1e-4,
                  strategy="paper"),
}
# Severities used for the report (the paper trains on levels 1-3 and tests on corrupted sets).
BENCH_SEVERITIES = {"demo": (1, 3, 5), "quick": (1, 3, 5), "paper": (1, 2, 3, 4, 5)}


def _default_profile(args: argparse.Namespace) -> str:
    return "quick" if args.data_root else "demo"


def spec() -> GridSpec:
    """This script as a grid: its profiles (as they stand when called) and its own flags."""
    return GridSpec(
        description=__doc__ or "",
        profiles=PROFILES,
        bench={name: BenchSettings(severities=levels) for name, levels in BENCH_SEVERITIES.items()},
        default_profile=_default_profile,
        profile_help="default: demo, or quick with --data-root",
        flags=(GridFlag("--bce-weight", "bce_weight", float, "weight of the BCE term next to Soft-IoU"),
               GridFlag("--bce-pos-weight", "bce_pos_weight", float, "weight of the target pixels inside the BCE term")),
        default_strategies="none,learned",
        default_out="runs/istd",
        data_help="ISTD-layout dataset (default: synthetic scenes)",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return parse_grid_args(spec(), argv)


def main(argv: list[str] | None = None) -> int:
    return grid_main(spec(), argv)


if __name__ == "__main__":
    sys.exit(main())
