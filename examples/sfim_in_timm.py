"""Put BALISTD's SFIM into networks you did not write: a timm ResNet and an smp Unet.

``insert_sfim`` wraps the chosen submodules (by default the stages of a timm model, or the
encoder stages and decoder blocks of a segmentation-models-pytorch model) so that an SFIM
refines their output. Channel counts come from a dry forward pass; a fresh SFIM is the identity,
so the model computes exactly what it did before until training moves the new parameters.

Runs on a CPU in a few seconds; nothing is downloaded (pretrained=False / encoder_weights=None).

    python examples/sfim_in_timm.py
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
import timm
import torch

from advcorrupt.layers import SFIMAfter, insert_sfim


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    torch.manual_seed(0)

    # 1. A timm classifier: SFIM after layer1..layer4.
    clf = timm.create_model("resnet18", pretrained=False, num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    before, p0 = clf(x), n_params(clf)
    insert_sfim(clf)
    after = clf(x)
    print(f"timm resnet18 classifier: {p0:,} -> {n_params(clf):,} parameters, "
          f"output {tuple(after.shape)}, max change at init {(after - before).abs().max():.2e}")

    # 2. A timm backbone with features_only: only two stages, chosen by name.
    backbone = timm.create_model("resnet18", pretrained=False, features_only=True).eval()
    insert_sfim(backbone, ["layer3", "layer4"])
    print("timm resnet18 features_only:", [tuple(f.shape) for f in backbone(x)])

    # 3. A segmentation-models-pytorch Unet for one-channel infrared images.
    unet = smp.Unet("resnet18", encoder_weights=None, in_channels=1, classes=1)
    insert_sfim(unet)
    wrapped = [n for n, m in unet.named_modules() if isinstance(m, SFIMAfter)]
    print(f"smp Unet: SFIM after {wrapped}")

    # One training step: only the new SFIM parameters are trained here, the rest is frozen.
    for name, p in unet.named_parameters():
        p.requires_grad_(".sfim." in name)
    opt = torch.optim.AdamW((p for p in unet.parameters() if p.requires_grad), lr=1e-3)
    images = torch.rand(2, 1, 64, 64)
    masks = (torch.rand(2, 1, 64, 64) > 0.99).float()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(unet.train()(images), masks)
    loss.backward()
    opt.step()
    print(f"smp Unet: one step on the SFIM parameters only, loss {loss.item():.4f}, "
          f"output {tuple(unet.eval()(images).shape)}")


if __name__ == "__main__":
    main()
