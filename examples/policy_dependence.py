"""Does a trained policy pick its corruption per image, or is it a fixed schedule in disguise?

For each finished run folder (``<strategy>/seed<k>/`` of ``examples/istd_dnanet.py`` or
``examples/camvid_smp.py``), load the newest checkpoint, rebuild its trainer, run the policy on
the run's own training views (the last epoch's crops, the first ``--images`` items) and print
:func:`advcorrupt.policy.diagnostics.image_dependence`: the mutual information between image and
action, as a share of the action's entropy (0: one distribution for every image; 1: the image
decides the action), overall and for the corruption and the severity factors, with the mean
severity distribution. A learned strategy whose shares are near 0 could be replaced by the fixed
schedule of its mean distribution.

``--headroom`` asks the converse with the run's final detector (any strategy): could a policy
gain by choosing per image? It scores every action of the run's action space on ``--headroom-images``
training views, twice with independent corruption noise, as the damage
``loss(corrupted) - loss(clean)`` (the default adversary's reward, the detector in eval mode) and
prints :func:`advcorrupt.policy.diagnostics.per_image_headroom`: the shares of the damage's
variation due to the action, the image and their interaction (beyond noise), and the damage a
per-image choice adds, out of sample, over the single most damaging action.

Usage::

    python examples/policy_dependence.py runs/nuaa/banded/seed0 runs/nuaa/banded/seed1 \\
        --data-root ../shared/data/NUAA-SIRST
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import torch

from advcorrupt import AdversarialCorruptionTrainer
from advcorrupt.checkpoint import latest_valid_checkpoint
from advcorrupt.policy.diagnostics import image_dependence, per_image_headroom
from advcorrupt.policy.schedules import schedule_action_space
from advcorrupt.training import TrainConfig, build_datasets, load_model, run_task
from advcorrupt.training.run import in_channels


def load_run(run_dir: Path, data_root: str | None) -> tuple[AdversarialCorruptionTrainer, TrainConfig, Any]:
    """The run's final trainer (detector, policy, action space), its config and its datasets (train, test, preprocess)."""
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
        total_steps=max(1, int(state["trainer"].get("num_steps", 1))),  # a curriculum's timetable: the run's steps
    )
    trainer.load_state_dict(state["trainer"])
    return trainer, config, build_datasets(config)


def training_views(datasets: Any, seed: int, n_images: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n_images`` training items in a seeded order: images and masks, the same on every call."""
    train = datasets[0]
    with torch.random.fork_rng(devices=[]):  # the views' random crops
        torch.manual_seed(seed)
        index = torch.randperm(len(train))[:n_images].tolist()
        items = [train[i] for i in index]
    return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


def policy_probabilities(run_dir: Path, data_root: str | None, n_images: int) -> tuple[torch.Tensor, int, str]:
    """``p(a | x)`` of the run's final policy on its training views, ``S`` and the strategy."""
    trainer, config, datasets = load_run(run_dir, data_root)
    images, _ = training_views(datasets, config.seed, n_images)
    probs = torch.cat([trainer.policy_probabilities(chunk) for chunk in images.split(32)])
    return probs, trainer.action_space.num_severities, config.strategy


@torch.no_grad()
def damage_matrix(trainer: AdversarialCorruptionTrainer, preprocess: Any, images: torch.Tensor,
                  masks: torch.Tensor, seed: int) -> torch.Tensor:
    """``loss(a(x_i)) - loss(x_i)`` for every action ``a`` and image ``i``, (N, A); the detector in eval mode."""
    model, space = trainer.model.eval(), trainer.action_space
    generator = torch.Generator().manual_seed(seed)
    clean = trainer.per_sample_loss(model(preprocess(images)), masks)
    columns = []
    for a in range(space.size):
        corrupted = space.apply(images, torch.full((len(images),), a), generator=generator)
        columns.append(trainer.per_sample_loss(model(preprocess(corrupted)), masks) - clean)
    return torch.stack(columns, 1)


def headroom(run_dir: Path, data_root: str | None, n_images: int) -> tuple[dict[str, float], str]:
    """:func:`per_image_headroom` of the run's final detector on its training views, and the strategy."""
    trainer, config, datasets = load_run(run_dir, data_root)
    images, masks = training_views(datasets, config.seed, n_images)
    reward, again = (  # two measurements with independent corruption noise
        torch.cat([damage_matrix(trainer, datasets[2], x, y, seed=seed)
                   for x, y in zip(images.split(16), masks.split(16))])
        for seed in (1, 2)
    )
    return per_image_headroom(reward, again), config.strategy


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="finished run folders (<strategy>/seed<k>/)")
    p.add_argument("--data-root", default=None, help="the dataset, if it moved since training")
    p.add_argument("--images", type=int, default=256, help="training views to run the policy on")
    p.add_argument("--headroom", action="store_true",
                   help="also score every action on the final detector: could a per-image choice gain?")
    p.add_argument("--headroom-images", type=int, default=64, help="training views for --headroom")
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
    if args.headroom:
        print("\n| run | strategy | action share | image share | interaction share | of it noise | "
              "best action - uniform | per-image best - best action |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for run in args.runs:
            h, strategy = headroom(run, args.data_root, args.headroom_images)
            print(f"| {run} | {strategy} | {h['action_share']:.3f} | {h['image_share']:.3f} | "
                  f"{h['interaction_share']:.3f} | {h['noise_share']:.3f} | {h['best_action_gain']:+.4f} | "
                  f"{h['per_image_gain']:+.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
