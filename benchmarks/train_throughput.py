"""End-to-end training throughput: ``advcorrupt train`` with ``--strategy none`` vs the adversary.

Runs ``advcorrupt train`` once per strategy (default: ``none`` and ``learned``, the default
adversary) on the built-in synthetic scenes, each in its own subprocess and output folder, with
the same model, batch size, image size, precision and number of steps. Images per second come
from the training log (``metrics.jsonl``): ``steps * batch / time_s`` of the last epoch, so the
first epoch takes the warm-up (cuDNN autotuning, allocator growth, CUDA-graph capture) and the
evaluation at the end is not counted. With ``--strategy none`` each step forwards B images; with
an adversary each step forwards 2B (clean + corrupted), so the row "images/s" counts the B clean
images a user feeds in, as the issue defines it.

Usage::

    python benchmarks/train_throughput.py --device cuda --model dnanet --batch-size 16
    python benchmarks/train_throughput.py --device cuda --amp bf16 --model dnanet
    python benchmarks/train_throughput.py --device cpu --model acm --batch-size 2 --size 32 --steps 2  # smoke
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def run_one(args: argparse.Namespace, strategy: str, out_dir: Path) -> dict[str, float]:
    """Train ``--epochs`` epochs of ``--steps`` steps; images/s and step time of the last epoch."""
    cmd = [
        sys.executable, "-m", "advcorrupt", "train", "--model", args.model, "--strategy", strategy,
        "--device", args.device, "--amp", args.amp, "--batch-size", str(args.batch_size),
        "--synthetic-size", str(args.size), "--patch-size", str(args.size),
        "--synthetic-train", str(args.batch_size * args.steps), "--synthetic-test", str(args.batch_size),
        "--steps-per-epoch", str(args.steps), "--epochs", str(args.epochs), "--eval-every", str(args.epochs),
        "--num-workers", str(args.num_workers), "--out-dir", str(out_dir), "--no-progress",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"advcorrupt train failed ({strategy}, exit {done.returncode}):\n{done.stderr[-4000:]}")
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    last = [r for r in rows if "time_s" in r][-1]
    steps = args.steps
    return {
        "time_s": float(last["time_s"]),
        "images_per_s": steps * args.batch_size / float(last["time_s"]),
        "step_ms": 1e3 * float(last["time_s"]) / steps,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="dnanet")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--size", type=int, default=256, help="synthetic image and patch side")
    p.add_argument("--steps", type=int, default=30, help="steps per epoch")
    p.add_argument("--epochs", type=int, default=2, help="the last epoch is timed; earlier ones warm up")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none")
    p.add_argument("--num-workers", type=int, default=4)
    p.add_argument("--strategies", default="none,learned", help="comma-separated; the first is the baseline")
    args = p.parse_args()
    if args.epochs < 2:
        p.error(f"--epochs must be >= 2 (the first epoch warms up); got {args.epochs}")
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    results = {}
    with tempfile.TemporaryDirectory(prefix="advcorrupt_tp_") as tmp:
        for s in strategies:
            results[s] = run_one(args, s, Path(tmp) / s)
    base = results[strategies[0]]
    print(f"advcorrupt train throughput: model={args.model}, device={args.device}, amp={args.amp}, "
          f"B={args.batch_size}, {args.size}x{args.size}, epoch {args.epochs} of {args.steps} steps timed")
    print("| strategy | images/s | ms / step | throughput vs " + strategies[0] + " |")
    print("|---|---:|---:|---:|")
    for s in strategies:
        r = results[s]
        print(f"| {s} | {r['images_per_s']:.1f} | {r['step_ms']:.1f} | {r['images_per_s'] / base['images_per_s']:.3f} |")


if __name__ == "__main__":
    main()
