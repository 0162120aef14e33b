"""Parameters and speed of the ISTD models with and without SFIM.

Measures, for batch 4 at 256x256 (one input channel) by default, the parameter count, the
inference forward time (eval mode, ``torch.inference_mode``) and the training forward+backward
time (train mode, all deep-supervision outputs in the loss) of:

* ``dnanet`` (baseline) vs ``sfim_dnanet`` (BALISTD's detector),
* ``acm``,
* ``smp.Unet("resnet18", encoder_weights=None, in_channels=1, classes=1)`` (baseline) vs the same
  Unet after ``advcorrupt.insert_sfim`` (encoder stages and decoder blocks).

Ratios are against the baseline of each pair, measured in the same run (ACM against DNANet).
Times are medians over ``--repeats`` runs after ``--warmup`` runs; CUDA timings synchronise.

Usage::

    python benchmarks/model_cost.py                       # CPU, defaults
    python benchmarks/model_cost.py --repeats 2 --warmup 1
    python benchmarks/model_cost.py --device cuda --amp bf16 --channels-last
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from advcorrupt.layers import insert_sfim
from advcorrupt.models import create_model


def _smp_unet(with_sfim: bool) -> nn.Module:
    import segmentation_models_pytorch as smp

    model = smp.Unet("resnet18", encoder_weights=None, in_channels=1, classes=1)
    return insert_sfim(model) if with_sfim else model


# (row name, builder, baseline row name)
MODELS: list[tuple[str, Callable[[], nn.Module], str]] = [
    ("dnanet", lambda: create_model("dnanet"), "dnanet"),
    ("sfim_dnanet", lambda: create_model("sfim_dnanet"), "dnanet"),
    ("acm", lambda: create_model("acm"), "dnanet"),
    ("smp_unet_r18", lambda: _smp_unet(False), "smp_unet_r18"),
    ("smp_unet_r18+sfim", lambda: _smp_unet(True), "smp_unet_r18"),
]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], None], device: torch.device, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def measure(
    model: nn.Module,
    x: torch.Tensor,
    *,
    warmup: int,
    repeats: int,
    amp: torch.dtype | None,
) -> tuple[int, float, float]:
    """Parameter count, forward ms and forward+backward ms of one model."""
    device = x.device
    n_params = sum(p.numel() for p in model.parameters())

    def autocast() -> torch.autocast:
        return torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None)

    def forward() -> None:
        with torch.inference_mode(), autocast():
            model(x)

    def forward_backward() -> None:
        model.zero_grad(set_to_none=True)
        with autocast():
            out = model(x)
        outs = out if isinstance(out, list) else [out]
        sum(o.float().mean() for o in outs).backward()

    model.eval()
    fwd = _time(forward, device, warmup, repeats)
    model.train()
    fwd_bwd = _time(forward_backward, device, warmup, repeats)
    return n_params, fwd, fwd_bwd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--amp", choices=["none", "fp16", "bf16"], default="none")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--models", nargs="*", default=None, help="subset of row names")
    args = parser.parse_args()

    device = torch.device(args.device)
    amp = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}[args.amp]
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    torch.manual_seed(0)
    x = torch.rand(args.batch, 1, args.size, args.size, device=device).contiguous(memory_format=memory_format)
    print(
        f"device={device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}, "
        f"{torch.get_num_threads()} threads), torch {torch.__version__}, batch {args.batch}, "
        f"{args.size}x{args.size}, amp={args.amp}, channels_last={args.channels_last}, "
        f"median of {args.repeats} after {args.warmup} warm-up"
    )

    results: dict[str, tuple[int, float, float]] = {}
    rows = [m for m in MODELS if args.models is None or m[0] in args.models]
    for name, build, _ in rows:
        model = build().to(device=device, memory_format=memory_format)
        results[name] = measure(model, x, warmup=args.warmup, repeats=args.repeats, amp=amp)
        del model

    header = (
        f"| {'model':<18} | {'baseline':<12} | {'params (M)':>10} | {'fwd (ms)':>9} | "
        f"{'fwd+bwd (ms)':>12} | {'params x':>8} | {'fwd x':>6} | {'fwd+bwd x':>9} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, _, base in rows:
        p, f, fb = results[name]
        if base in results:
            bp, bf, bfb = results[base]
            ratios = f"{p / bp:>8.2f} | {f / bf:>6.2f} | {fb / bfb:>9.2f}"
        else:
            ratios = f"{'-':>8} | {'-':>6} | {'-':>9}"
        print(f"| {name:<18} | {base:<12} | {p / 1e6:>10.3f} | {f:>9.1f} | {fb:>12.1f} | {ratios} |")


if __name__ == "__main__":
    main()
