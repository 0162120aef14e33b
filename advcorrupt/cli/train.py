"""``advcorrupt train``: the argparse glue around :func:`advcorrupt.training.fit`.

Example:
    $ advcorrupt train --model sfim_dnanet --epochs 2 --out-dir runs/try
    $ advcorrupt train --model smp:Unet:resnet18 --dataset camvid --data-root ../shared/data/CamVid --out-dir runs/camvid
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys

from ._args import add_corruptions_argument, csv_list, error_message

__all__ = ["add_parser", "config_from_args", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Add the ``train`` subcommand and its options to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "train",
        help="train a segmentation model with adversarial corruptions (BALISTD): ISTD or multi-class (CamVid)",
        description="Train a segmentation model with the bi-level adversarial corruption framework: an ISTD "
        "detector (binary masks; without --data-root on built-in synthetic infrared scenes) or a multi-class "
        "model (--dataset camvid / folder, e.g. --model smp:Unet:resnet18, trained from scratch). Run under "
        "torchrun for several GPUs/processes.",
    )
    p.add_argument("--model", default="sfim_dnanet",
                   help="model name (advcorrupt.models.list_models()) or smp:<Arch>:<encoder>, e.g. smp:Unet:resnet18")
    p.add_argument("--dataset", choices=("istd", "camvid", "folder"), default="istd",
                   help="what --data-root holds: istd (images/, masks/, img_idx/; binary masks), camvid (SegNet's "
                   "layout: train/, trainannot/, val/, ...) or folder (<split>/images + <split>/masks, or images/ + "
                   "masks/ + <split>.txt; class-index masks)")
    p.add_argument("--data-root", default=None,
                   help="dataset folder (layout per --dataset); default for istd: synthetic scenes")
    p.add_argument("--dataset-name", default=None, help="split name in img_idx/train_<NAME>.txt (inferred if unique)")
    p.add_argument("--task", choices=("binary", "semantic"), default=None, help="default: the dataset's")
    p.add_argument("--num-classes", type=int, default=None,
                   help="classes K of a semantic task (default: the dataset's; CamVid 11; needed for folder)")
    p.add_argument("--ignore-index", type=int, default=None,
                   help="label left out of the loss and metrics (default: the dataset's; CamVid 11)")
    p.add_argument("--crop-size", type=int, nargs=2, default=(160, 224), metavar=("H", "W"),
                   help="semantic training crop (after a random 0.5-2x rescale); default 160 224")
    p.add_argument("--strategy", default=None,
                   help="default: the task's (binary: random@1-5; semantic: curriculum@1-3) | learned (the default adversary) | "
                        "an adversary: paper, banded, ... | random | none | <corruption> | noise | blur | digital | "
                        "a schedule: random@3, curriculum@1-3, ...")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--steps-per-epoch", type=int, default=None, help="cap on steps per epoch")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--patch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=5e-4, help="detector Adam learning rate")
    p.add_argument("--warmup-epochs", type=int, default=0, help="linear learning-rate warm-up epochs")
    p.add_argument("--grad-clip", type=float, default=None, help="clip the detector's gradient norm")
    p.add_argument("--on-bad-file", choices=("error", "skip"), default="error",
                   help="a missing or unreadable image/mask: stop with an error naming it, or skip it with a report")
    p.add_argument("--bce-weight", type=float, default=0.0,
                   help="add this weight x per-sample BCE to the Soft-IoU loss (guards against all-background collapse)")
    p.add_argument("--bce-pos-weight", type=float, default=1.0,
                   help="weight of the target pixels inside the BCE term (1: unweighted)")
    p.add_argument("--deterministic", action="store_true",
                   help="reproducible CUDA runs (deterministic kernels, no cuDNN autotuning); slower on GPU")
    p.add_argument("--policy-lr", type=float, default=1e-2, help="policy SGD learning rate (paper: 1e-4)")
    p.add_argument("--reinforce-kwargs", type=json.loads, default={},
                   help='JSON for the policy updater, e.g. \'{"min_prob": 0.2}\'')
    p.add_argument("--lam", type=float, default=1.0, help="weight of the corrupted loss (Eq. 1)")
    add_corruptions_argument(p)
    p.add_argument("--severities", type=csv_list(int), default=(1, 2, 3), help="comma-separated levels, e.g. 1,2,3")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when available)")
    p.add_argument("--out-dir", default="runs/default", help="checkpoints and logs go here")
    p.add_argument("--keep-last", type=int, default=3, help="checkpoints kept")
    p.add_argument("--checkpoint-every", type=int, default=0, help="also checkpoint every N steps (0: per epoch)")
    p.add_argument("--max-consecutive-skips", type=int, default=10, help="stop after N non-finite steps in a row")
    p.add_argument("--eval-every", type=int, default=1, help="validate every N epochs")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none")
    p.add_argument("--log-format", choices=("jsonl", "csv"), default="jsonl")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--synthetic-train", type=int, default=256, help="synthetic training images")
    p.add_argument("--synthetic-test", type=int, default=64, help="synthetic test images")
    p.add_argument("--synthetic-size", type=int, default=128, help="synthetic image side")
    p.add_argument("--model-kwargs", type=json.loads, default={}, help='JSON, e.g. \'{"deep_supervision": false}\'')
    p.add_argument("--policy-kwargs", type=json.loads, default={}, help='JSON, e.g. \'{"input_size": 32}\'')
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out-dir")
    p.add_argument("--tensorboard", default=None, metavar="DIR",
                   help='also write TensorBoard events to DIR (pip install "advcorrupt[tensorboard]")')
    p.add_argument("--no-progress", action="store_true", help="no progress bars or per-epoch lines")
    return p


def config_from_args(args: argparse.Namespace) -> object:
    """The :class:`~advcorrupt.training.TrainConfig` described by parsed ``train`` arguments."""
    from ..training import TrainConfig

    return TrainConfig(
        model=args.model, model_kwargs=args.model_kwargs, strategy=args.strategy, data_root=args.data_root,
        dataset_name=args.dataset_name, dataset=args.dataset, task=args.task, num_classes=args.num_classes,
        ignore_index=args.ignore_index, crop_size=tuple(args.crop_size), synthetic_train=args.synthetic_train, synthetic_test=args.synthetic_test,
        synthetic_size=args.synthetic_size, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size, patch_size=args.patch_size, lr=args.lr, policy_lr=args.policy_lr,
        warmup_epochs=args.warmup_epochs, grad_clip=args.grad_clip, bce_weight=args.bce_weight,
        bce_pos_weight=args.bce_pos_weight, on_bad_file=args.on_bad_file, deterministic=args.deterministic,
        reinforce_kwargs=args.reinforce_kwargs,
        lam=args.lam, corruptions=args.corruptions, severities=args.severities, seed=args.seed,
        device=args.device, out_dir=args.out_dir, keep_last=args.keep_last,
        checkpoint_every=args.checkpoint_every, max_consecutive_skips=args.max_consecutive_skips,
        eval_every=args.eval_every, num_workers=args.num_workers, amp=args.amp, log_format=args.log_format,
        policy_kwargs=args.policy_kwargs,
    )


_DISK_FULL_OR_READ_ONLY = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def run(args: argparse.Namespace) -> int:
    """Run ``advcorrupt train``.

    Returns:
        0 on success; 2 for a configuration or checkpoint error (raised before any training
        step); 3 when training stopped after too many consecutive non-finite steps; 4 when a
        checkpoint or log could not be written (disk full, read-only folder; the last checkpoint
        is intact).
    """
    from ..checkpoint import CheckpointWriteError
    from ..training import TrainingStopped, fit

    try:
        summary = fit(
            config_from_args(args), resume=args.resume, progress=not args.no_progress,  # type: ignore[arg-type]
            tensorboard=args.tensorboard,
        )
    except TrainingStopped as e:
        print(f"advcorrupt train: stopped: {e}", file=sys.stderr)
        return 3
    except CheckpointWriteError as e:
        print(f"advcorrupt train: error: {e.strerror}", file=sys.stderr)
        return 4
    except (ValueError, KeyError, FileNotFoundError, ImportError) as e:  # configuration / checkpoint errors, before training
        print(f"advcorrupt train: error: {error_message(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # a log or plot write on a full disk / read-only folder: as for a checkpoint
        if e.errno not in _DISK_FULL_OR_READ_ONLY:
            raise
        from ..checkpoint import list_checkpoints

        last = list_checkpoints(args.out_dir)[-1:]
        kept = f"the last checkpoint {last[0]} is intact" if last else "no checkpoint was written yet"
        print(f"advcorrupt train: error: could not write {e.filename or 'a file'}: {e.strerror}; {kept}. Free "
              f"space or fix the permissions, then rerun with --resume", file=sys.stderr)
        return 4
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2))
        if summary.get("failed"):
            print(f"advcorrupt train: WARNING: run marked failed: {summary['failure']}", file=sys.stderr)
    return 0
