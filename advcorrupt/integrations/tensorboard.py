"""TensorBoard event files for ``advcorrupt train --tensorboard DIR``.

Per epoch: the training losses (``train/loss``, ``train/loss_clean``, ``train/loss_corrupted``,
``train/policy_entropy``...), the learning rate (``lr``), the validation metrics (``val/iou``,
``val/niou``, ``val/pd``, ``val/fa``), the policy's action shares as stacked per-corruption scalars
(``policy_share/<corruption>``, summing to 1) and as a histogram over action indices
(``policy/actions``). At the end: the robustness heatmap (``robustness/iou``) as an image.

Needs ``pip install "advcorrupt[tensorboard]"``; view with ``tensorboard --logdir DIR``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["TensorBoardWriter"]


class TensorBoardWriter:
    """Write a training run's epochs and its robustness heatmap as TensorBoard events.

    Args:
        log_dir: the event folder (created if needed).

    Raises:
        ImportError: ``tensorboard`` is not installed (the message says how to install it).

    Example:
        >>> w = TensorBoardWriter("runs/tb")  # doctest: +SKIP
        >>> w.add_epoch(1, {"train_loss": 0.5, "lr": 1e-3, "val_iou": 0.7}, ["noise@1"], [1.0])  # doctest: +SKIP
        >>> w.close()  # doctest: +SKIP
    """

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # torch raises this when the tensorboard package is missing
            raise ImportError(
                f'--tensorboard needs the tensorboard package: pip install "advcorrupt[tensorboard]" ({e})'
            ) from None
        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def add_epoch(self, step: int, row: Mapping[str, Any], labels: Sequence[str], shares: Sequence[float]) -> None:
        """One epoch's log row (keys ``lr``, ``train_*``, ``val_*``) and the shares of the sampled actions.

        Args:
            step: the x axis (:func:`advcorrupt.training.fit` uses the epoch number, 1-based).
            row: the epoch's metrics; non-numeric values are skipped.
            labels: action labels ``"<corruption>@<severity>"`` in action order.
            shares: share of each action among those sampled in the epoch.
        """
        for key, value in row.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if key == "lr":
                self.writer.add_scalar("lr", value, step)
            elif key.startswith(("train_", "val_")):
                split, name = key.split("_", 1)
                self.writer.add_scalar(f"{split}/{name}", value, step)
        if labels and len(shares) == len(labels) and sum(shares) > 0:
            per_corruption: dict[str, float] = {}
            for label, share in zip(labels, shares):
                name = label.split("@")[0]
                per_corruption[name] = per_corruption.get(name, 0.0) + float(share)
            for name, share in per_corruption.items():
                self.writer.add_scalar(f"policy_share/{name}", share, step)
            self._add_action_histogram(shares, step)
        self.writer.flush()

    def _add_action_histogram(self, shares: Sequence[float], step: int) -> None:
        import numpy as np

        counts = np.asarray(shares, dtype=np.float64)
        idx = np.arange(len(counts), dtype=np.float64)
        total = counts.sum()
        self.writer.add_histogram_raw(
            "policy/actions", min=0.0, max=float(len(counts) - 1), num=float(total),
            sum=float((idx * counts).sum()), sum_squares=float((idx * idx * counts).sum()),
            bucket_limits=(idx + 0.5).tolist(), bucket_counts=counts.tolist(), global_step=step,
        )

    def add_heatmap(self, png: str | Path, step: int, tag: str = "robustness/iou") -> None:
        """Add a saved heatmap PNG (e.g. :meth:`RobustnessReport.plot_heatmap`'s) as an image."""
        import numpy as np
        from PIL import Image

        with Image.open(png) as img:
            arr = np.asarray(img.convert("RGB"))
        self.writer.add_image(tag, arr, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
