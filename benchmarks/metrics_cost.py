"""What Pd/Fa cost beyond IoU/nIoU over a whole ISTD test split.

Feeds the test masks of a dataset (default: the 214 NUAA-SIRST test images, at native size) as
"predictions" to :class:`advcorrupt.metrics.ISTDMetrics`, perturbed so the metrics have work to do
(masks shifted by one pixel plus a 2x2 false alarm per image), once with ``pd_fa=False`` (IoU and
nIoU only) and once with ``pd_fa=True``, in the same run; prints both times and the difference,
which is the cost of the connected-component part (the goal: well under a second).

Usage::

    python benchmarks/metrics_cost.py --data-root ../shared/data/NUAA-SIRST
    python benchmarks/metrics_cost.py --data-root PATH --repeats 5 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from advcorrupt.data import ISTDDataset
from advcorrupt.metrics import ISTDMetrics


def _predictions(masks: list[torch.Tensor]) -> list[torch.Tensor]:
    preds = []
    for m in masks:
        p = torch.roll(m, shifts=1, dims=-1).clone()
        p[..., :2, :2] = 1.0  # a false alarm in the corner
        preds.append(p)
    return preds


def _time(preds: list[torch.Tensor], masks: list[torch.Tensor], *, pd_fa: bool, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        metric = ISTDMetrics(pd_fa=pd_fa)
        t0 = time.perf_counter()
        for p, m in zip(preds, masks):
            metric.update([p], [m])
        metric.compute()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default="../shared/data/NUAA-SIRST")
    parser.add_argument("--split", default="test")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ds = ISTDDataset(args.data_root, args.split)
    masks = [ds[i][1] for i in range(len(ds))]
    preds = _predictions(masks)
    pixels = sum(m.numel() for m in masks)
    base = _time(preds, masks, pd_fa=False, repeats=args.repeats)
    full = _time(preds, masks, pd_fa=True, repeats=args.repeats)
    print(f"{len(masks)} images ({pixels / 1e6:.1f} Mpixel) of {args.data_root} [{args.split}], "
          f"torch threads {torch.get_num_threads()}, median of {args.repeats}")
    print("| metrics | seconds |")
    print("|---|---:|")
    print(f"| IoU + nIoU (pd_fa=False) | {base:.3f} |")
    print(f"| IoU + nIoU + Pd + Fa (pd_fa=True) | {full:.3f} |")
    print(f"| Pd/Fa beyond IoU/nIoU | {full - base:.3f} |")


if __name__ == "__main__":
    main()
