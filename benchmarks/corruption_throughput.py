"""Throughput of advcorrupt's batched corruptions vs per-image albumentations (and kornia).

One run measures, on the same machine and in the same process:

- each built-in corruption at one severity (default 3) on a batch of 16 x 1 x 256 x 256
  float32 images, as ``advcorrupt.corruptions.corrupt(x, name, s)``;
- a mixed batch: random actions over the 10 corruptions x levels 1-3 grid, as
  ``ActionSpace(grouping=...).apply(x, actions)`` for each grouping ("subset": each
  corruption once on its samples, one host copy; "masked": every corruption on the whole
  batch, no sync; "fused": as masked with the noises and the blurs each one fixed-shape kernel,
  the accelerator default);
- the same work done the usual way, a Python loop over the images calling the closest
  albumentations 2.x transform (``GaussNoise``, ``ShotNoise``, ``SaltAndPepper``, ``Defocus``,
  ``MotionBlur``, ``GaussianBlur``, ``RandomBrightnessContrast``, ``Downscale``,
  ``ImageCompression``) on numpy arrays prepared in advance (the tensor <-> numpy conversion is
  not timed, which favours albumentations), and kornia's batched function where it has the op.

``--channels 3 --size 180 240`` times RGB batches (the CamVid case: 16 x 3 x 180 x 240);
albumentations then gets ``(H, W, 3)`` arrays.

It prints ms per batch (median over repeats after warm-up) and the ratio
advcorrupt / albumentations (below 1 means advcorrupt is faster).

``--threads 1`` compares single-core against single-core (albumentations/OpenCV work per
image on one core). On a machine whose cores are busy with other processes, torch's default
OpenMP threads wait on descheduled peers at every parallel op, which can slow advcorrupt by an
order of magnitude; measure on an idle machine or with ``--threads 1`` there.

``--bf16`` feeds advcorrupt bfloat16 images and ``--channels-last`` channels-last ones (what a
bf16 + channels_last training step hands the corruptions); albumentations always gets float32.

Usage:
    python benchmarks/corruption_throughput.py [--device cuda] [--batch 16] [--size 256 | --size H W]
        [--channels 1|3] [--severity 3] [--repeats 15] [--threads N] [--bf16] [--channels-last]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

from advcorrupt.corruptions import available, corrupt, get
from advcorrupt.policy.action_space import ActionSpace


def timeit(fn: Callable[[], object], *, repeats: int, warmup: int, sync: Callable[[], None]) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def albumentations_transforms(severity: int) -> dict[str, object]:
    """The closest albumentations 2.x transform for each built-in at ``severity`` (p=1)."""
    import albumentations as A
    import cv2

    def lv(name: str) -> tuple[float, ...]:
        return get(name).levels[severity - 1]

    r_motion = int(lv("motion_blur")[0])
    return {
        "gaussian_noise": A.GaussNoise(std_range=(lv("gaussian_noise")[0],) * 2, mean_range=(0, 0), p=1),
        "shot_noise": A.ShotNoise(scale_range=(1 / lv("shot_noise")[0],) * 2, p=1),
        "impulse_noise": A.SaltAndPepper(amount=(lv("impulse_noise")[0],) * 2, salt_vs_pepper=(0.5, 0.5), p=1),
        "defocus_blur": A.Defocus(radius=(int(lv("defocus_blur")[0]),) * 2, alias_blur=(lv("defocus_blur")[1],) * 2, p=1),
        "motion_blur": A.MotionBlur(blur_limit=(2 * r_motion + 1,) * 2, angle_range=(0, 90), p=1),
        "gaussian_blur": A.GaussianBlur(blur_limit=0, sigma_limit=(lv("gaussian_blur")[0],) * 2, p=1),
        "brightness": A.RandomBrightnessContrast(
            brightness_limit=(lv("brightness")[0],) * 2, contrast_limit=(0, 0), p=1
        ),
        "contrast": A.RandomBrightnessContrast(
            brightness_limit=(0, 0), contrast_limit=(lv("contrast")[0] - 1,) * 2, p=1
        ),
        "pixelate": A.Downscale(
            scale_range=(lv("pixelate")[0],) * 2,
            interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_NEAREST},
            p=1,
        ),
        "jpeg_compression": A.ImageCompression(quality_range=(int(lv("jpeg_compression")[0]),) * 2, p=1),
    }


def kornia_ops(severity: int, batch: int, device: torch.device) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Kornia's batched function for the corruptions it has (same parameters where possible)."""
    try:
        import kornia
    except ImportError:
        return {}

    def lv(name: str) -> tuple[float, ...]:
        return get(name).levels[severity - 1]

    def full(v: float) -> torch.Tensor:
        return torch.full((batch,), float(v), device=device)

    sg = lv("gaussian_blur")[0]
    ks = 2 * int(4 * sg + 0.5) + 1
    r_motion = int(lv("motion_blur")[0])
    angle = torch.rand(batch, device=device) * 90 - 45
    return {
        "gaussian_noise": lambda x: (x + torch.randn_like(x) * lv("gaussian_noise")[0]).clamp(0, 1),
        "motion_blur": lambda x: kornia.filters.motion_blur(x, 2 * r_motion + 1, angle, full(0.0), "replicate"),
        "gaussian_blur": lambda x: kornia.filters.gaussian_blur2d(
            x, (ks, ks), torch.full((batch, 2), sg, device=device), "replicate"
        ),
        "brightness": lambda x: kornia.enhance.adjust_brightness(x, full(lv("brightness")[0])),
        "contrast": lambda x: kornia.enhance.adjust_contrast_with_mean_subtraction(x, full(lv("contrast")[0])),
        # kornia's JPEG takes RGB only: gray is fed as 3 equal channels (more work than C=1).
        "jpeg_compression": lambda x: kornia.enhance.jpeg_codec_differentiable(
            x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x, full(lv("jpeg_compression")[0])
        ),
    }


_VIEWS = {"view", "unsqueeze", "squeeze", "select", "slice", "permute", "expand", "_unsafe_view", "t", "transpose",
          "reshape", "alias", "detach", "as_strided", "unbind", "split"}


def count_ops(x: torch.Tensor, actions: torch.Tensor, groupings: list[str]) -> None:
    """Print the ATen ops (views excluded; a proxy for kernel launches) of one mixed batch per
    grouping, with the accelerator code paths forced on (no timing: any machine will do)."""
    import collections

    from torch.utils._python_dispatch import TorchDispatchMode

    from advcorrupt.corruptions.functional import _emulate_accelerator

    class Count(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.n: collections.Counter[str] = collections.Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            name = func.overloadpacket.__name__
            if name not in _VIEWS:
                self.n[name] += 1
            return func(*args, **(kwargs or {}))

    try:
        from advcorrupt._checks import set_value_checks
    except ImportError:  # pragma: no cover - older versions have no value checks
        def set_value_checks(enabled: bool) -> None:
            return None
    set_value_checks(False)
    with _emulate_accelerator():
        for grouping in groupings:
            space = ActionSpace(grouping=grouping)
            space.apply(x, actions)  # builds the cached tables
            with Count() as c:
                space.apply(x, actions)
            print(f"mixed 10x3 {grouping:<10} {sum(c.n.values()):5d} ops (views excluded)")
    set_value_checks(True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, nargs="+", default=[256], help="square side, or H W")
    ap.add_argument("--channels", type=int, choices=(1, 3), default=1, help="1 (infrared) or 3 (RGB)")
    ap.add_argument("--severity", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch and OpenCV threads (default: library default)")
    ap.add_argument("--no-kornia", action="store_true")
    ap.add_argument("--bf16", action="store_true", help="bfloat16 images for advcorrupt (and kornia)")
    ap.add_argument("--channels-last", action="store_true", help="channels-last images for advcorrupt")
    ap.add_argument("--groupings", default="subset,masked,fused", help="mixed-batch groupings to time")
    ap.add_argument("--count-ops", action="store_true",
                    help="only count the ops of a mixed batch per sync-free grouping (CPU, no timing)")
    args = ap.parse_args()
    if len(args.size) not in (1, 2):
        ap.error(f"--size takes one side or H W; got {args.size}")
    height, width = args.size[0], args.size[-1]

    import cv2

    warnings.filterwarnings("ignore")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(0)
    x_cpu = torch.rand(args.batch, args.channels, height, width, generator=g) * 0.8 + 0.1
    x = x_cpu.to(device)
    if args.bf16:
        x = x.to(torch.bfloat16)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    # (H, W) or (H, W, 3) float32 for albumentations
    images = [(img[0] if args.channels == 1 else img.permute(1, 2, 0)).numpy().copy() for img in x_cpu]
    gen = torch.Generator(device=device).manual_seed(0)
    kw = {"repeats": args.repeats, "warmup": args.warmup, "sync": sync}
    if args.count_ops:
        actions = torch.randint(0, 30, (args.batch,), generator=g)
        count_ops(x_cpu, actions, [gr for gr in args.groupings.split(",") if gr.strip() in ("masked", "fused")])
        return

    try:
        albu: dict[str, object] | None = albumentations_transforms(args.severity)
    except ImportError:  # e.g. on a GPU machine without albumentations: advcorrupt timings only
        albu = None
    korn = {} if args.no_kornia else kornia_ops(args.severity, args.batch, device)
    print(
        f"# corruption throughput: batch {args.batch}x{args.channels}x{height}x{width}, severity "
        f"{args.severity}, {x.dtype}, channels_last={args.channels_last}, device {device}, torch threads {torch.get_num_threads()}, "
        f"median of {args.repeats} (ms/batch)"
    )
    header = f"{'corruption':<22}{'advcorrupt':>11}{'albument.':>11}{'ratio':>8}{'kornia':>9}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    worst = 0.0
    for name in available()[:10]:
        t_ours = timeit(lambda: corrupt(x, name, args.severity, generator=gen), **kw)
        a_cols = " " * 19
        if albu is not None:
            tf = albu[name]
            t_albu = timeit(lambda: [tf(image=im)["image"] for im in images], **kw)
            worst = max(worst, t_ours / t_albu)
            a_cols = f"{t_albu:11.2f}{t_ours / t_albu:8.2f}"
        k = ""
        if name in korn:
            t_k = timeit(lambda: korn[name](x), **kw)
            k = f"{t_k:9.2f}{t_ours / t_k:8.2f}"
        print(f"{name:<22}{t_ours:11.2f}{a_cols}{k}")

    actions = torch.randint(0, 30, (args.batch,), generator=g)
    actions_dev = actions.to(device)
    t_albu_mixed = None
    if albu is not None:
        space = ActionSpace()
        per_level = {s: albumentations_transforms(s) for s in space.severities}
        plan = []
        for a in actions.tolist():
            k, j = divmod(a, space.num_severities)
            plan.append(per_level[space.severities[j]][space.corruptions[k]])
        t_albu_mixed = timeit(lambda: [tf(image=im)["image"] for tf, im in zip(plan, images)], **kw)
    for grouping in [g.strip() for g in args.groupings.split(",") if g.strip()]:
        space = ActionSpace(grouping=grouping)  # 10 corruptions x levels 1-3
        t_ours = timeit(lambda: space.apply(x, actions_dev, generator=gen), **kw)
        label = f"mixed 10x3 {grouping}"
        if t_albu_mixed is None:
            print(f"{label:<22}{t_ours:11.2f}")
        else:
            print(f"{label:<22}{t_ours:11.2f}{t_albu_mixed:11.2f}{t_ours / t_albu_mixed:8.2f}")
    if albu is not None:
        print(f"# worst single-corruption ratio advcorrupt/albumentations: {worst:.2f}")
    if "jpeg_compression" in korn and args.channels == 1:
        print("# kornia jpeg_compression runs on 3 channels (it accepts RGB only)")


if __name__ == "__main__":
    main()
