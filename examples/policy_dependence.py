"""Does a trained policy pick its corruption per image, or is it a fixed schedule in disguise?

For each finished run folder (``<strategy>/seed<k>/`` of ``examples/istd_dnanet.py`` or
``examples/camvid_smp.py``), load the newest checkpoint, rebuild its trainer, run the policy on
the run's own training views (the last epoch's crops, the first ``--images`` items) and print
:func:`advcorrupt.policy.diagnostics.image_dependence`: the mutual information between image and
action, as a share of the action's entropy (0: one distribution for every image; 1: the image
decides the action), overall and for the corruption and the severity factors, with the mean
severity distribution. A learned strategy whose shares are near 0 could be replaced by the fixed
schedule of its mean distribution.

Usage::

    python examples/policy_dependence.py runs/nuaa/banded/seed0 runs/nuaa/banded/seed1 \\
        --data-root ../shared/data/NUAA-SIRST
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from advcorrupt import AdversarialCorruptionTrainer
from advcorrupt.checkpoint import latest_valid_checkpoint
from advcorrupt.policy.diagnostics import image_dependence
from advcorrupt.policy.schedules import schedule_action_space
from advcorrupt.training import build_datasets, load_model, run_task
from advcorrupt.training.run import in_channels


def policy_probabilities(run_dir: Path, data_root: str | None, n_images: int) -> tuple[torch.Tensor, int, str]:
    """``p(a | x)`` of the run's final policy on its training views, ``S`` and the strategy."""
    found = latest_valid_checkpoint(run_dir, quarantine=False)
    if found is None:
        raise FileNotFoundError(f"run {run_dir} has no ckpt_*.pt checkpoint")
    model, config, state = load_model(found[0])
    if data_root is not None:
        config = dataclasses.replace(config, data_root=data_root)
    space = schedule_action_space(config.strategy, config.corruptions, config.severities)
    trainer = AdversarialCorruptionTrainer(
        model, torch.optim.Adam(model.parameters()), action_space=space, strategy=config.strategy,
        policy_kwargs=dict(config.policy_kwargs) or None, reinforce_kwargs=dict(config.reinforce_kwargs) or None,
        in_channels=in_channels(config), task=run_task(config),
    )
    trainer.load_state_dict(state["trainer"])
    train, _, _ = build_datasets(config)
    with torch.random.fork_rng(devices=[]):  # the views' random crops: the same on every call
        torch.manual_seed(config.seed)
        index = torch.randperm(len(train))[:n_images].tolist()  # type: ignore[arg-type]
        images = torch.stack([train[i][0] for i in index])
    probs = torch.cat([trainer.policy_probabilities(chunk) for chunk in images.split(32)])
    return probs, space.num_severities, config.strategy


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="finished run folders (<strategy>/seed<k>/)")
    p.add_argument("--data-root", default=None, help="the dataset, if it moved since training")
    p.add_argument("--images", type=int, default=256, help="training views to run the policy on")
    args = p.parse_args(argv)
    print("| run | strategy | I(x; a) / H(a) | corruption | severity | severity mean TV | mean severity shares |")
    print("|---|---|---|---|---|---|---|")
    for run in args.runs:
        probs, s, strategy = policy_probabilities(run, args.data_root, args.images)
        d = image_dependence(probs, num_severities=s)
        shares = probs.view(len(probs), -1, s).sum(1).mean(0)
        print(f"| {run} | {strategy} | {d['action']['normalized']:.4f} | {d['corruption']['normalized']:.4f} | "
              f"{d['severity']['normalized']:.4f} | {d['severity']['mean_tv']:.4f} | "
              f"{' / '.join(f'{v:.2f}' for v in shares.tolist())} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
