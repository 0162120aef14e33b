"""Adversarial corruption training in a Hugging Face ``accelerate`` loop: the two added lines.

An ordinary accelerate loop (``Accelerator.prepare``, ``accelerator.backward``) around a
segmentation-models-pytorch Unet; the adversary enters with:

    x_hat = trainer.corrupt(images)                                      # (1) before the forward
    ...
    trainer.update_policy(per_sample[b:].detach(), clean_loss=per_sample[:b].detach())   # (2) after it

Build the trainer *after* ``accelerator.prepare`` so it sees the prepared model and optimizer. Under
``accelerate launch`` (several processes) ``update_policy`` averages the policy gradient over the
processes, like DDP does for the model, so every process keeps the same policy.

    python examples/accelerate_loop.py                     # CPU or one GPU
    accelerate launch examples/accelerate_loop.py --mixed-precision bf16

Runs in a few seconds on CPU (32 steps on 64x64 synthetic infrared scenes).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import segmentation_models_pytorch as smp
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from advcorrupt.data import SyntheticIRSTD
from advcorrupt.losses import SoftIoULoss
from advcorrupt.trainer import AdversarialCorruptionTrainer


def main(steps: int = 32, batch_size: int = 4, size: int = 64, mixed_precision: str = "no") -> dict[str, Any]:
    """Train for ``steps`` steps; return the last step's statistics and the trainer."""
    accelerator = Accelerator(mixed_precision=mixed_precision)
    torch.manual_seed(0)
    model = smp.Unet("resnet18", encoder_weights=None, in_channels=1, classes=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(SyntheticIRSTD(steps * batch_size, size=size, seed=0), batch_size=batch_size, shuffle=True)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    loss_fn = SoftIoULoss(reduction="none")  # per-sample losses: the policy's reward

    # The adversary: built on the prepared objects; it never owns the loop.
    trainer = AdversarialCorruptionTrainer(model, optimizer, loss_fn, strategy="learned", policy_lr=1e-2)

    start = time.perf_counter()
    stats: dict[str, Any] = {}
    for step, (images, masks) in enumerate(loader):
        b = images.shape[0]
        x_hat = trainer.corrupt(images)  # (1) one policy-chosen corruption per image
        with accelerator.autocast():
            per_sample = loss_fn(model(torch.cat([images, x_hat])), torch.cat([masks, masks]))
        loss = per_sample[:b].mean() + per_sample[b:].mean()  # Eq. 1, lambda = 1
        optimizer.zero_grad()
        accelerator.backward(loss)
        optimizer.step()
        policy = trainer.update_policy(per_sample[b:].detach(), clean_loss=per_sample[:b].detach())  # (2)
        stats = {"step": step, "loss": loss.item(), "policy_entropy": policy["policy_entropy"].item()}
        if step % 8 == 0:
            accelerator.print(
                f"step {step:3d}  loss {stats['loss']:.3f}  policy entropy {stats['policy_entropy']:.3f}"
            )
    accelerator.print(f"{step + 1} steps in {time.perf_counter() - start:.1f} s on {accelerator.device}")
    return {**stats, "trainer": trainer}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no")
    a = parser.parse_args()
    main(a.steps, a.batch_size, a.size, a.mixed_precision)
