"""Losses: Soft-IoU for binary masks (infrared small targets) and per-image cross-entropy for class indices.

``SoftIoULoss`` is the loss BALISTD (AAAI 2024) trains with (``L`` in Eq. 1 and Eq. 8): one minus the
soft intersection over union of the sigmoid probabilities and the binary mask, per sample, as in
the BasicIRSTD / DNANet code base. ``reduction="none"`` gives the per-sample losses that
:class:`advcorrupt.AdversarialCorruptionTrainer` needs: their corrupted half is the policy's reward.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PerSampleCrossEntropy", "SoftIoULoss"]

_REDUCTIONS = ("mean", "sum", "none")


class SoftIoULoss(nn.Module):
    r"""Soft IoU loss on logits, per sample.

    For each sample ``i``, with ``p = sigmoid(logits)`` and mask ``y``, summed over (C, H, W):

    .. math::
        \ell_i = 1 - \frac{\sum p y + s}{\sum p + \sum y - \sum p y + s}

    The smooth term ``s`` (default 1, as in BasicIRSTD) keeps the loss defined for an empty mask
    and an empty prediction (``0 / 0``), gives such a sample loss ~0 when the prediction is empty,
    and softens the gradient on samples whose target covers only a few pixels. It is computed in
    float32 whatever the autocast dtype of the logits.

    With ``bce_weight=w > 0`` each sample's loss also gets ``w`` times its mean binary
    cross-entropy. Soft IoU alone has a dead end: once every logit is far below zero (the
    all-background collapse seen on NUAA-SIRST), ``sigmoid'`` is ~0 and no gradient reaches the
    target pixels; the cross-entropy's gradient ``p - y`` on a target pixel stays ~ -1 there.
    ``bce_pos_weight=k`` multiplies the target pixels' cross-entropy by ``k`` (torch's
    ``pos_weight``): with targets ~0.1% of the pixels, a plain mean lets the background's pull
    toward zero outweigh the targets' pull up ~10 to 1 at the start of training.

    Args:
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per-sample losses, shape (B,)).
        smooth: the smooth term ``s``; must be >= 0.
        bce_weight: weight of the per-sample mean binary cross-entropy term (0: Soft IoU only).
        bce_pos_weight: weight of the target pixels inside that term (1: unweighted); > 0.

    Shape:
        logits: (B, C, H, W) raw model outputs. target: (B, C, H, W) (or broadcastable) in {0, 1}.
        Output: () for ``"mean"``/``"sum"``, (B,) for ``"none"``.

    Returns:
        The loss.

    Example:
        >>> import torch
        >>> from advcorrupt.losses import SoftIoULoss
        >>> logits, mask = torch.randn(2, 1, 8, 8), (torch.rand(2, 1, 8, 8) > 0.9).float()
        >>> SoftIoULoss(reduction="none")(logits, mask).shape
        torch.Size([2])
    """

    def __init__(
        self, reduction: str = "mean", *, smooth: float = 1.0, bce_weight: float = 0.0, bce_pos_weight: float = 1.0
    ) -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {list(_REDUCTIONS)}; got {reduction!r}")
        if not smooth >= 0:
            raise ValueError(f"smooth must be >= 0; got {smooth}")
        if isinstance(bce_weight, bool) or not isinstance(bce_weight, (int, float)) or not bce_weight >= 0:
            raise ValueError(f"bce_weight must be a number >= 0; got {bce_weight!r}")
        if isinstance(bce_pos_weight, bool) or not isinstance(bce_pos_weight, (int, float)) or not (
            0 < bce_pos_weight < math.inf
        ):
            raise ValueError(f"bce_pos_weight must be a finite number > 0; got {bce_pos_weight!r}")
        self.reduction = reduction
        self.smooth = float(smooth)
        self.bce_weight = float(bce_weight)
        self.bce_pos_weight = float(bce_pos_weight)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if not isinstance(logits, Tensor) or logits.ndim < 2:
            raise ValueError(
                f"logits must be a tensor of shape (B, C, H, W); got "
                f"{tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__}"
            )
        p = torch.sigmoid(logits.float())
        y = target.to(device=p.device, dtype=torch.float32).expand_as(p)
        dims = tuple(range(1, p.ndim))
        inter = (p * y).sum(dims)
        union = p.sum(dims) + y.sum(dims) - inter
        loss = 1.0 - (inter + self.smooth) / (union + self.smooth)
        if self.bce_weight > 0:
            x = logits.float()
            # torch's pos_weight form, with the weight a Python float: no tensor built per call
            bce = (1.0 - y) * x + (1.0 + (self.bce_pos_weight - 1.0) * y) * F.softplus(-x)
            loss = loss + self.bce_weight * bce.mean(dims)
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss

    def extra_repr(self) -> str:
        return (f"reduction={self.reduction!r}, smooth={self.smooth}, bce_weight={self.bce_weight}, "
                f"bce_pos_weight={self.bce_pos_weight}")


class PerSampleCrossEntropy(nn.Module):
    r"""Cross-entropy per image for class-index masks: the semantic task's default loss.

    For image ``i`` with logits ``z`` (K, H, W) and labels ``y`` (H, W), over its pixels ``P_i``
    whose label is not ``ignore_index``:

    .. math::
        \ell_i = \frac{\sum_{p \in P_i} w_{y_p} \, \mathrm{CE}(z_p, y_p)}{\sum_{p \in P_i} w_{y_p}}

    (``w`` = 1 without class weights): the mean over the image's non-ignored pixels, torch's
    weighted-mean convention per image. An image whose pixels are all ignored gives 0, never NaN.
    ``reduction="none"`` gives the (B,) losses :class:`advcorrupt.AdversarialCorruptionTrainer`
    needs.

    Args:
        ignore_index: label of pixels left out of the loss (``None``: every pixel counts).
        weight: optional (K,) class weights, >= 0.
        reduction: ``"none"`` (per image, (B,)), ``"mean"`` or ``"sum"`` over the images.

    Shape:
        logits: (B, K, H, W); target: (B, H, W) or (B, 1, H, W) int64 class indices.

    Example:
        >>> import torch
        >>> loss = PerSampleCrossEntropy(ignore_index=255, reduction="none")
        >>> target = torch.zeros(2, 4, 4, dtype=torch.long); target[1] = 255   # image 1: all ignored
        >>> loss(torch.randn(2, 3, 4, 4), target)[1].item()
        0.0
    """

    def __init__(
        self, *, ignore_index: int | None = None, weight: Tensor | None = None, reduction: str = "none",
    ) -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {list(_REDUCTIONS)}; got {reduction!r}")
        if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
            raise ValueError(f"ignore_index must be an int or None; got {ignore_index!r}")
        if weight is not None:
            weight = torch.as_tensor(weight, dtype=torch.float32)
            if weight.ndim != 1 or not bool(torch.isfinite(weight).all()) or bool((weight < 0).any()):
                raise ValueError(f"weight must be a 1-D tensor of finite class weights >= 0; got {weight.tolist()}")
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if target.ndim == 4 and target.shape[1] == 1:
            target = target[:, 0]
        if logits.ndim != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
            raise ValueError(
                f"logits must be (B, K, H, W) and target (B, H, W) with the same B, H, W; got logits "
                f"{tuple(logits.shape)} and target {tuple(target.shape)}"
            )
        if self.weight is not None and self.weight.numel() != logits.shape[1]:
            raise ValueError(f"weight must hold one weight per class ({logits.shape[1]}); got {self.weight.numel()}")
        target = target.long()
        ignore = -100 if self.ignore_index is None else self.ignore_index
        per_pixel = F.cross_entropy(logits.float(), target, weight=self.weight, ignore_index=ignore, reduction="none")
        kept = target != ignore
        if self.weight is None:
            denom = kept.sum(dim=(1, 2)).float()
        else:
            denom = torch.where(kept, self.weight[target.clamp(0, logits.shape[1] - 1)], 0.0).sum(dim=(1, 2))
        per_image = per_pixel.sum(dim=(1, 2)) / denom.clamp(min=torch.finfo(torch.float32).tiny)
        per_image = torch.where(denom > 0, per_image, torch.zeros_like(per_image))
        if self.reduction == "none":
            return per_image
        return per_image.mean() if self.reduction == "mean" else per_image.sum()
