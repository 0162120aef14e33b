"""Parameters, FLOPs and speed of the ISTD models with and without SFIM.

Measures, for batch 4 at 256x256 (one input channel) by default, the parameter count, the
multiply-accumulates of one eval forward of one image (``torch.utils.flop_counter``, GMAC =
FLOPs / 2, the unit BasicIRSTD's thop-based table calls "FLOPs"), the inference forward time
(eval mode, ``torch.inference_mode``) and the training forward+backward time (train mode, all
deep-supervision outputs in the loss) of:

* ``dnanet`` (baseline) vs ``sfim_dnanet`` (BALISTD's detector),
* ``acm``, ``alcnet``, ``rdian``, ``isnet`` (the other detectors of BALISTD's Table 2) and
  ``istdunet``, each vs its ``sfim_*`` variant (``insert_sfim`` at the model's default points),
* ``smp.Unet("resnet18", encoder_weights=None, in_channels=1, classes=1)`` (baseline) vs the same
  Unet after ``advcorrupt.insert_sfim`` (encoder stages and decoder blocks).

Ratios are against the baseline of each pair, measured in the same run. Times are medians over
``--repeats`` runs after ``--warmup`` runs; CUDA timings synchronise. ``--no-timing`` prints the
parameters and MACs only (they do not depend on the machine's load). The published columns are
BasicIRSTD's ``cal_params.py`` values at 256x256 (thop: it also counts BatchNorm/activation work and
skips the weights of modules it has no rule for, see ``docs/models.md``).

Usage::

    python benchmarks/model_cost.py                       # CPU, defaults
    python benchmarks/model_cost.py --no-timing           # parameters and MACs only
    python benchmarks/model_cost.py --repeats 2 --warmup 1
    python benchmarks/model_cost.py --device cuda --amp bf16 --channels-last
"""

from __future__ import annotations

import argparse
import math
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


def _zoo(name: str) -> Callable[[], nn.Module]:
    return lambda: create_model(name)


# (row name, builder, baseline row name)
MODELS: list[tuple[str, Callable[[], nn.Module], str]] = [
    ("dnanet", _zoo("dnanet"), "dnanet"),
    ("sfim_dnanet", _zoo("sfim_dnanet"), "dnanet"),
    *((name, _zoo(name), base) for base in ("acm", "alcnet", "rdian", "isnet", "istdunet") for name in (base, f"sfim_{base}")),
    ("smp_unet_r18", lambda: _smp_unet(False), "smp_unet_r18"),
    ("smp_unet_r18+sfim", lambda: _smp_unet(True), "smp_unet_r18"),
]

# BasicIRSTD's cal_params.py at 256x256 (params in M, thop "FLOPs" = MACs in G).
PUBLISHED: dict[str, tuple[float, float]] = {
    "acm": (0.397823, 0.402343),
    "alcnet": (0.426961, 0.377914),
    "dnanet": (4.696568, 14.261259),
    "isnet": (0.965746, 30.618075),
    "istdunet": (2.751873, 7.944334),
    "rdian": (0.216558, 3.718349),
}


def _deform_conv2d_flops(input_shape, weight_shape, *args, out_shape, **kwargs) -> int:  # type: ignore[no-untyped-def]
    """FLOPs of torchvision's deformable convolution: those of a dense conv of the same shape."""
    return 2 * math.prod(out_shape) * math.prod(weight_shape[1:])


def count_macs(model: nn.Module, size: int) -> float:
    """Multiply-accumulates (G) of one eval forward of a (1, 1, size, size) image.

    Convolutions, transposed convolutions, matrix products and (registered here) deformable
    convolutions; element-wise work (BatchNorm, activations, interpolation, FFTs) is not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    import torchvision  # noqa: F401  (registers torch.ops.torchvision)

    mapping = {torch.ops.torchvision.deform_conv2d: _deform_conv2d_flops}
    p = next(model.parameters())
    x = torch.rand(1, 1, size, size, device=p.device)
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    was_training = model.training
    with torch.no_grad(), counter:
        model.eval()(x)
    model.train(was_training)
    return counter.get_total_flops() / 2e9


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


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--amp", choices=["none", "fp16", "bf16"], default="none")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--no-timing", action="store_true", help="parameters and MACs only")
    parser.add_argument("--models", nargs="*", default=None, help="subset of row names")
    return parser.parse_args()


def _num(value: float, width: int, digits: int) -> str:
    return f"{value:>{width}.{digits}f}" if math.isfinite(value) else f"{'-':>{width}}"


def _print_table(
    rows: list[tuple[str, Callable[[], nn.Module], str]], results: dict[str, tuple[int, float, float, float]], size: int
) -> None:
    """The Markdown table; the published columns only at their 256x256 input size."""
    header = (
        f"| {'model':<18} | {'baseline':<12} | {'params (M)':>10} | {'published':>9} | {'GMAC':>7} | "
        f"{'published':>9} | {'fwd (ms)':>9} | {'fwd+bwd (ms)':>12} | {'params x':>8} | {'fwd+bwd x':>9} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, _, base in rows:
        p, macs, f, fb = results[name]
        pub_p, pub_macs = PUBLISHED.get(name, (math.nan, math.nan))
        pub_macs = pub_macs if size == 256 else math.nan
        bp, _, _, bfb = results.get(base, (0, math.nan, math.nan, math.nan))
        print(
            f"| {name:<18} | {base:<12} | {p / 1e6:>10.3f} | {_num(pub_p, 9, 3)} | {macs:>7.3f} | "
            f"{_num(pub_macs, 9, 3)} | {_num(f, 9, 1)} | {_num(fb, 12, 1)} | "
            f"{_num(p / bp if bp else math.nan, 8, 2)} | {_num(fb / bfb, 9, 2)} |"
        )


def main() -> None:
    args = _parse_args()
    device = torch.device(args.device)
    amp = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}[args.amp]
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    torch.manual_seed(0)
    x = torch.rand(args.batch, 1, args.size, args.size, device=device).contiguous(memory_format=memory_format)
    print(
        f"device={device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}, "
        f"{torch.get_num_threads()} threads), torch {torch.__version__}, batch {args.batch}, "
        f"{args.size}x{args.size}, amp={args.amp}, channels_last={args.channels_last}, "
        + ("no timing" if args.no_timing else f"median of {args.repeats} after {args.warmup} warm-up")
    )
    results: dict[str, tuple[int, float, float, float]] = {}
    rows = [m for m in MODELS if args.models is None or m[0] in args.models]
    for name, build, _ in rows:
        model = build().to(device=device, memory_format=memory_format)
        macs = count_macs(model, args.size)
        if args.no_timing:
            results[name] = (sum(p.numel() for p in model.parameters()), macs, math.nan, math.nan)
        else:
            n, f, fb = measure(model, x, warmup=args.warmup, repeats=args.repeats, amp=amp)
            results[name] = (n, macs, f, fb)
        del model
    _print_table(rows, results, args.size)


if __name__ == "__main__":
    main()
