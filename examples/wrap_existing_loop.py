"""Add BALISTD's adversarial corruption training to an existing training loop: two added lines.

The loop below is an ordinary segmentation-models-pytorch loop (own loss, own optimizer, own
AMP scaler on CUDA, own logging). The adversary enters with:

    x_hat = trainer.corrupt(images)                  # (1) before the forward pass
    ...
    trainer.update_policy(per_sample[b:].detach(), clean_loss=per_sample[:b].detach())  # (2) after the step

Adversaries rewarded with learning progress (``strategy="learnable"``; ``trainer.needs_losses_after``)
also want the same losses once more after the optimizer step; the loop computes them only then.

Runs in well under a minute on CPU (64x64 synthetic infrared scenes, a few dozen steps).

    python examples/wrap_existing_loop.py
    python examples/wrap_existing_loop.py learnable      # any strategy name
"""

from __future__ import annotations

import sys
import time

import segmentation_models_pytorch as smp
import torch
from torch.utils.data import DataLoader

from advcorrupt.data import SyntheticIRSTD
from advcorrupt.losses import SoftIoULoss
from advcorrupt.trainer import AdversarialCorruptionTrainer, frozen_buffers


def main(steps: int = 30, batch_size: int = 4, size: int = 64, strategy: str = "learned") -> None:
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = smp.Unet("resnet18", encoder_weights=None, in_channels=1, classes=1).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    loss_fn = SoftIoULoss(reduction="none")  # per-sample losses: the policy's reward
    loader = DataLoader(SyntheticIRSTD(steps * batch_size, size=size, seed=0), batch_size=batch_size)

    # The adversary. It never owns the loop: it only corrupts and learns from the losses.
    trainer = AdversarialCorruptionTrainer(
        model, optimizer, loss_fn, strategy=strategy, generator=torch.Generator(device=device).manual_seed(0),
    )

    start = time.perf_counter()
    for step, (images, masks) in enumerate(loader):
        images, masks = images.to(device), masks.to(device)
        b = images.shape[0]
        x_hat = trainer.corrupt(images)  # (1) corrupted copies, one policy-chosen corruption per image
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            logits = model(torch.cat([images, x_hat]))
            per_sample = loss_fn(logits, torch.cat([masks, masks]))
        loss = per_sample[:b].mean() + 1.0 * per_sample[b:].mean()  # Eq. 1, lambda = 1
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        # (2) REINFORCE on the same losses: the default adversary is rewarded with each image's
        # damage, loss(corrupted) - loss(clean), so it gets the clean losses too
        after = {}
        if trainer.needs_losses_after:  # "progress" rewards: the losses again, with the updated weights
            # (a probe, not training: frozen_buffers keeps batch-norm statistics as the step left them)
            with torch.no_grad(), frozen_buffers(model), \
                    torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                again = loss_fn(model(torch.cat([images, x_hat])), torch.cat([masks, masks])).float()
            after = {"corrupted_loss_after": again[b:], "clean_loss_after": again[:b]}
        stats = trainer.update_policy(per_sample[b:].detach(), clean_loss=per_sample[:b].detach(), **after)
        if step % 10 == 0:
            print(
                f"step {step:3d}  loss {loss.item():.3f}  clean {per_sample[:b].mean().item():.3f}  "
                f"corrupted {per_sample[b:].mean().item():.3f}  policy entropy "
                f"{stats['policy_entropy'].item():.3f}"
            )
    probs = trainer.policy_probabilities(images).mean(0)
    labels = trainer.action_space.labels()
    top = probs.topk(3)
    print("policy's current favourite corruptions:",
          ", ".join(f"{labels[i]} ({p:.3f})" for p, i in zip(top.values.tolist(), top.indices.tolist())))
    print(f"{steps} steps in {time.perf_counter() - start:.1f} s on {device}")


if __name__ == "__main__":
    main(strategy=sys.argv[1] if len(sys.argv) > 1 else "learned")
