"""Overhead of one AdversarialCorruptionTrainer step against a plain training step.

Both steps process the same 2B batch with the same model, loss and optimizer:

* plain:   ``cat[x, x]`` -> forward -> per-sample SoftIoU -> backward -> optimizer step;
* trainer: ``AdversarialCorruptionTrainer.step(x, y)``: policy forward + sampling, corruption,
  ``cat[x, x_hat]`` -> forward -> loss -> backward -> optimizer step -> REINFORCE update.

Models: ``--model unet`` (segmentation-models-pytorch Unet, ``--encoder``, default resnet18) or
any name of :func:`advcorrupt.models.list_models` (e.g. ``dnanet``, deep supervision: the loss
averages the heads in both variants, as the trainer does).

``--classes K`` (K > 1) times the multi-class case: RGB input (3 channels), a K-class output,
class-index masks ``(B, H, W)`` with an ignore label K, and per-sample cross-entropy
(``PerSampleCrossEntropy``, the trainer's semantic default) in both variants. ``--size H W`` sets a
non-square image (e.g. CamVid's 180 x 240; smp models pad to a multiple of 32 is *not* done here,
so give sizes divisible by 32 for smp, e.g. 160 224).

Time: median wall time per step over ``--steps`` steps after ``--warmup`` steps (CUDA: with
``torch.cuda.synchronize()`` around each step). Peak memory: on CUDA ``torch.cuda.max_memory_allocated``
after ``reset_peak_memory_stats`` (minus the memory allocated before the first step); on CPU each
variant runs in its own fresh subprocess and the peak is the process's peak resident set size
(``resource.getrusage(...).ru_maxrss``) minus its resident set size just before the first step,
i.e. the extra memory the steps needed (activations, gradients, optimizer state, corruption buffers).

Usage::

    python benchmarks/trainer_overhead.py                 # CPU, smp Unet(resnet18), 256x256, B=8
    python benchmarks/trainer_overhead.py --device cuda
    python benchmarks/trainer_overhead.py --device cuda --bf16 --channels-last
    python benchmarks/trainer_overhead.py --device cuda --model dnanet --batch 16
    python benchmarks/trainer_overhead.py --classes 11 --encoder mobilenet_v2 --size 160 224  # CamVid-like
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import torch


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * (resource.getpagesize() // 1024)


def _build(args: argparse.Namespace) -> tuple[Any, torch.optim.Optimizer, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    device = torch.device(args.device)
    channels = 1 if args.classes == 1 else 3
    height, width = args.size[0], args.size[-1]
    if args.model == "unet":
        import segmentation_models_pytorch as smp

        model = smp.Unet(args.encoder, encoder_weights=None, in_channels=channels, classes=args.classes).to(device)
    else:
        from advcorrupt.models import create_model

        model = create_model(args.model).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, channels, height, width, generator=g).to(device)
    if args.classes == 1:
        y = (torch.rand(args.batch, 1, height, width, generator=g) > 0.995).float().to(device)
    else:  # class indices, about 5% of them the ignore label K
        y = torch.randint(0, args.classes + 1, (args.batch, height, width), generator=g)
        y = torch.where(torch.rand(y.shape, generator=g) < 0.05, args.classes, y.clamp(max=args.classes - 1)).to(device)
    return model, opt, x, y


def _worker(args: argparse.Namespace) -> dict[str, float]:
    from advcorrupt.losses import PerSampleCrossEntropy, SoftIoULoss
    from advcorrupt.policy import ActionSpace
    from advcorrupt.trainer import AdversarialCorruptionTrainer

    if args.threads:
        torch.set_num_threads(args.threads)
    model, opt, x, y = _build(args)
    device = x.device
    semantic = args.classes > 1
    loss_fn = PerSampleCrossEntropy(ignore_index=args.classes) if semantic else SoftIoULoss(reduction="none")
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if args.bf16 else None

    if args.mode == "plain":
        from advcorrupt._outputs import output_heads

        def per_sample(inp: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            heads = output_heads(model(inp))
            return sum(loss_fn(h, target).float() for h in heads) / len(heads)

        def step() -> None:
            inp = torch.cat([x, x])
            if args.channels_last:
                inp = inp.contiguous(memory_format=torch.channels_last)
            if amp is not None:
                with amp:
                    per = per_sample(inp, torch.cat([y, y]))
            else:
                per = per_sample(inp, torch.cat([y, y]))
            loss = per[: x.shape[0]].mean() + per[x.shape[0]:].mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    else:
        gen = torch.Generator(device=device).manual_seed(0)
        trainer = AdversarialCorruptionTrainer(
            model, opt, action_space=ActionSpace(), strategy=args.strategy, generator=gen,
            autocast_dtype=torch.bfloat16 if args.bf16 else None,
            skip_non_finite=not args.no_skip_check, cuda_graphs=not args.no_graphs,
            **({"num_classes": args.classes, "ignore_index": args.classes} if semantic else {}),
        )

        def step() -> None:
            trainer.step(x, y)

    if args.count_ops:
        return {"ops": _count_step_ops(step, args.warmup)}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rss0 = _rss_kib()
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(args.warmup + args.steps):
        sync()
        t = time.perf_counter()
        step()
        sync()
        if i >= args.warmup:
            times.append(time.perf_counter() - t)
    if device.type == "cuda":
        peak_mib = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    return {"time_s": statistics.median(times), "peak_mib": peak_mib}


def _count_step_ops(step: Any, warmup: int) -> int:
    """ATen ops of one step (views excluded; a proxy for kernel launches), accelerator paths forced on."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from advcorrupt._checks import set_value_checks
    from advcorrupt.corruptions.functional import _emulate_accelerator

    views = {"view", "unsqueeze", "squeeze", "select", "slice", "permute", "expand", "_unsafe_view", "t",
             "transpose", "reshape", "alias", "detach", "as_strided", "unbind", "split"}

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            if func.overloadpacket.__name__ not in views:
                self.n += 1
            return func(*args, **(kwargs or {}))

    set_value_checks(False)
    with _emulate_accelerator():
        for _ in range(max(1, warmup)):
            step()
        with Count() as c:
            step()
    return c.n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="unet", help="unet (smp, --encoder) or an advcorrupt model name")
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--size", type=int, nargs="+", default=[256], help="square side, or H W")
    p.add_argument("--classes", type=int, default=1,
                   help="1: binary, 1-channel input, SoftIoU; K > 1: RGB input, K classes + ignore label K, cross-entropy")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for both variants")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--no-skip-check", action="store_true", help="trainer: skip_non_finite=False")
    p.add_argument("--no-graphs", action="store_true", help="trainer: cuda_graphs=False (eager corruption)")
    p.add_argument("--strategy", default="learned",
                   help="the trainer's strategy, e.g. learnable (one extra no-grad forward per step) or random")
    p.add_argument("--count-ops", action="store_true",
                   help="count the ATen ops of one step per variant instead of timing (any machine; use a small --size)")
    p.add_argument("--mode", choices=["plain", "trainer"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if len(args.size) not in (1, 2) or args.classes < 1:
        p.error(f"--size takes one side or H W and --classes is >= 1; got --size {args.size} --classes {args.classes}")
    if args.classes > 1 and args.model != "unet":
        p.error(f"--classes > 1 needs --model unet (the zoo models are binary); got --model {args.model}")
    if args.mode:
        print(json.dumps(_worker(args)))
        return
    results = {}
    for mode in ("plain", "trainer"):
        cmd = [sys.executable, __file__, *sys.argv[1:], "--mode", mode]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results[mode] = json.loads(out.strip().splitlines()[-1])
    pl, tr = results["plain"], results["trainer"]
    if args.count_ops:
        print(f"ATen ops per step (views excluded, accelerator code paths): plain {pl['ops']}, "
              f"trainer {tr['ops']}, adversary adds {tr['ops'] - pl['ops']}")
        return
    mem = "CUDA max_memory_allocated" if args.device.startswith("cuda") else "peak RSS delta"
    name = f"Unet({args.encoder})" if args.model == "unet" else args.model
    kind = "binary, 1 channel" if args.classes == 1 else f"{args.classes} classes, RGB"
    print(f"{name} {args.size[0]}x{args.size[-1]} ({kind}), B={args.batch} (2B={2 * args.batch} per forward), "
          f"device={args.device}, bf16={args.bf16}, channels_last={args.channels_last}, median of {args.steps} steps after {args.warmup} warm-up")
    print(f"| step | time / step (s) | peak memory (MiB, {mem}) |")
    print("|---|---|---|")
    print(f"| plain (cat[x, x]) | {pl['time_s']:.3f} | {pl['peak_mib']:.0f} |")
    print(f"| AdversarialCorruptionTrainer.step (strategy={args.strategy!r}) | {tr['time_s']:.3f} | {tr['peak_mib']:.0f} |")
    print(f"| ratio trainer / plain | {tr['time_s'] / pl['time_s']:.3f} | {tr['peak_mib'] / pl['peak_mib']:.3f} |")


if __name__ == "__main__":
    main()
