"""Adversarial corruption training for an existing PyTorch Lightning module: two changed lines.

``Segmenter`` below is an ordinary LightningModule (segmentation-models-pytorch Unet, its own loss,
optimizer and validation). BALISTD's learned adversary is turned on by:

    (1) L.Trainer(callbacks=[AdversarialCorruption()])
    (2) return {"loss": per_sample.mean(), "per_sample_loss": per_sample}   # from training_step

The callback feeds training_step the clean images followed by their corrupted copies and learns
from the per-sample losses; the policy is saved in Lightning checkpoints (resume with --resume)
and logged through the module's logger (here CSV: lightning_logs/version_*/metrics.csv).

    python examples/lightning_segmentation.py                                  # CPU, ~30 s
    python examples/lightning_segmentation.py --devices 2 --strategy ddp       # two processes
    python examples/lightning_segmentation.py --epochs 4 --resume              # continue from last.ckpt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning as L
import segmentation_models_pytorch as smp
import torch
from torch.utils.data import DataLoader

from advcorrupt.data import SyntheticIRSTD
from advcorrupt.integrations.lightning import AdversarialCorruption
from advcorrupt.losses import SoftIoULoss


class Segmenter(L.LightningModule):
    def __init__(self, lr: float = 1e-3) -> None:
        super().__init__()
        self.model = smp.Unet("resnet18", encoder_weights=None, in_channels=1, classes=1)
        self.loss_fn = SoftIoULoss(reduction="none")
        self.lr = lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        images, masks = batch
        per_sample = self.loss_fn(self(images), masks)
        self.log("train_loss", per_sample.mean())
        return {"loss": per_sample.mean(), "per_sample_loss": per_sample}  # (2) expose per-sample losses

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        images, masks = batch
        self.log("val_loss", self.loss_fn(self(images), masks).mean(), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def main() -> None:
    p = argparse.ArgumentParser(description="Lightning + advcorrupt on synthetic infrared scenes")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--strategy", default="auto", help="auto | ddp")
    p.add_argument("--out", default="runs/lightning")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.ckpt")
    args = p.parse_args()

    L.seed_everything(0)
    train = DataLoader(SyntheticIRSTD(64, size=64, seed=0), batch_size=8, shuffle=True)
    val = DataLoader(SyntheticIRSTD(16, size=64, seed=1), batch_size=8)
    trainer = L.Trainer(
        max_epochs=args.epochs, devices=args.devices, strategy=args.strategy, default_root_dir=args.out,
        callbacks=[AdversarialCorruption(seed=0), L.pytorch.callbacks.ModelCheckpoint(args.out, save_last=True)],  # (1)
        logger=L.pytorch.loggers.CSVLogger(args.out), log_every_n_steps=4,
    )
    last = Path(args.out) / "last.ckpt"
    trainer.fit(Segmenter(), train, val, ckpt_path=str(last) if args.resume and last.is_file() else None)


if __name__ == "__main__":
    main()
