"""RDIAN: receptive-field and direction induced attention network.

H. Sun, J. Bai, F. Yang, X. Bai, "Receptive-Field and Direction Induced Attention Network for
Infrared Dim Small Target Detection With a Large-Scale Dataset IRDST", IEEE TGRS 61, 2023.
Architecture as published (and as in the BasicIRSTD benchmark, 0.217M parameters, 3.718 GFLOPs
at 256x256):

* **Multi-direction guided attention** (Sec. III-B): for four directions (the two diagonals,
  vertical, horizontal) the product of the differences between a pixel and its two opposite
  neighbours at distance 2, ``(x - x_a)(x - x_b)``, summed over the directions and squashed by a
  sigmoid; it re-weights the first (full-resolution, 16-channel) feature map:
  ``f = conv1(x); f = f + f * md``. The eight difference kernels are fixed (buffers, not
  parameters). With several input channels the products are summed over the channels too.
* **Multi-receptive-field residual blocks** (Sec. III-A): after a stride-2 conv to 32 channels,
  four parallel stacks of bottleneck residual blocks (``x + CBL(CBL(x))``, 32 -> 16 -> 32
  channels, LeakyReLU) with kernels 1, 3, 5, 7 (1, 2, 2, 2 blocks), concatenated and fused by a
  3x3 conv-BN-LeakyReLU.
* **CBAM** (channel gate: a 32 -> 1 -> 32 MLP with biases on average- and max-pooled features,
  reduction 32 as in the reference code; spatial gate: 7x7 conv + BN on the channel max and
  mean), bilinear up-sampling to the input size, plus a 1x1 conv-BN-LeakyReLU projection of the first feature map, ReLU, FCN head.

Weights: Kaiming-normal (fan_out, ReLU) convolutions, zero biases except the logit layer's
(``prior_prob``, see ``init_logit_bias``), BatchNorm (1, 0). Any H and W work without padding
(one stride-2 conv; the up-sampling targets the input size).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._args import check_positive_int
from ._blocks import fcn_head
from ._common import init_logit_bias, init_weights, validate_model_input
from ._registry import register_model

__all__ = ["RDIAN", "DirectionAttention", "rdian"]


def _cbl(cin: int, cout: int, kernel_size: int = 3, *, stride: int = 1) -> nn.Sequential:
    """Conv (no bias) - BatchNorm - LeakyReLU, "same" padding."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(),
    )


class _BottleneckResidual(nn.Module):
    """RDIAN's residual block: ``x + CBL(CBL(x))`` through ``channels // 2`` with kxk kernels."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.reduce = _cbl(channels, channels // 2, kernel_size)
        self.expand = _cbl(channels // 2, channels, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.expand(self.reduce(x))


class _CBAM(nn.Module):
    """CBAM as in RDIAN's code: channel gate (MLP with biases) then spatial gate (7x7 conv + BN)."""

    def __init__(self, channels: int, *, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))
        self.spatial = nn.Sequential(nn.Conv2d(2, 1, 7, padding=3, bias=False), nn.BatchNorm2d(1))

    def forward(self, x: Tensor) -> Tensor:
        gate = self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.amax(dim=(2, 3)))
        x = x * torch.sigmoid(gate)[..., None, None]
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(pooled))


def _direction_kernels() -> Tensor:
    """(8, 1, 5, 5) kernels ``x(centre) - x(neighbour at distance 2)``; k and k + 4 are opposite."""
    offsets = [(-2, -2), (-2, 0), (-2, 2), (0, 2), (2, 2), (2, 0), (2, -2), (0, -2)]
    kernels = torch.zeros(8, 1, 5, 5)
    for k, (dy, dx) in enumerate(offsets):
        kernels[k, 0, 2, 2] = 1.0
        kernels[k, 0, 2 + dy, 2 + dx] = -1.0
    return kernels


class DirectionAttention(nn.Module):
    """RDIAN's multi-direction guided attention map (fixed kernels, no parameters).

    ``sigmoid(sum_{c, d} (x_c - x_c[p + o_d]) * (x_c - x_c[p - o_d]))`` over the four directions
    ``o_d`` at distance 2 (zero padding at the border, as in the reference).

    Args:
        in_channels: image channels C.

    Shape:
        - Input: (B, C, H, W). Output: (B, 1, H, W) in (0, 1).

    Example:
        >>> DirectionAttention(1)(torch.rand(2, 1, 9, 11)).shape
        torch.Size([2, 1, 9, 11])
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.register_buffer("kernels", _direction_kernels().repeat(in_channels, 1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        diffs = F.conv2d(x, self.kernels.to(x.dtype), padding=2, groups=c).view(b, c, 8, h, w)
        products = diffs[:, :, :4] * diffs[:, :, 4:]
        return torch.sigmoid(products.sum(dim=(1, 2)).unsqueeze(1))


class RDIAN(nn.Module):
    """RDIAN (Sun et al., TGRS 2023); returns logits.

    Args:
        in_channels: image channels.
        num_classes: output logit channels.
        width: channels of the first feature map (16); the trunk has twice as many.
        prior_prob: initial target probability of the logit layer (``None``: zero bias).

    Shape:
        - Input: (B, in_channels, H, W), any H and W. Output: (B, num_classes, H, W) logits.

    Example:
        >>> RDIAN(in_channels=1).eval()(torch.rand(1, 1, 33, 47)).shape
        torch.Size([1, 1, 33, 47])
    """

    #: Where ``insert_sfim(model)`` puts SFIM by default: after the stride-2 trunk conv and the
    #: multi-receptive-field fusion (before CBAM).
    sfim_targets: tuple[str, ...] = ("conv2", "conv_cat")

    def __init__(
        self, *, in_channels: int = 1, num_classes: int = 1, width: int = 16, prior_prob: float | None = 0.01
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        check_positive_int("num_classes", num_classes)
        c = check_positive_int("width", width)
        self.direction = DirectionAttention(in_channels)
        self.conv1 = _cbl(in_channels, c)
        self.conv2 = _cbl(c, 2 * c, stride=2)
        self.branches = nn.ModuleList(
            nn.Sequential(*(_BottleneckResidual(2 * c, k) for _ in range(n))) for k, n in ((1, 1), (3, 2), (5, 2), (7, 2))
        )
        self.conv_cat = _cbl(8 * c, 2 * c)
        self.cbam = _CBAM(2 * c, reduction=2 * c)  # CBAM(32, 32) in the reference: one hidden unit
        self.conv_res = _cbl(c, 2 * c, 1)
        self.head = fcn_head(2 * c, num_classes)
        init_weights(self)
        init_logit_bias([self.head[-1]], prior_prob)

    def forward(self, x: Tensor) -> Tensor:
        validate_model_input(x, self.in_channels)
        h, w = x.shape[-2:]
        f1 = self.conv1(x)
        trunk = self.conv2(f1 + f1 * self.direction(x))
        fused = self.conv_cat(torch.cat([branch(trunk) for branch in self.branches], dim=1))
        up = F.interpolate(self.cbam(fused), size=(h, w), mode="bilinear", align_corners=False)
        return self.head(F.relu(up + self.conv_res(f1)))


@register_model
def rdian(*, in_channels: int = 1, num_classes: int = 1, **kwargs: object) -> RDIAN:
    """RDIAN (Sun et al., TGRS 2023): direction attention, receptive-field blocks (k = 1, 3, 5, 7), CBAM.

    Example:
        >>> rdian(in_channels=1).eval()(torch.rand(1, 1, 32, 32)).shape
        torch.Size([1, 1, 32, 32])
    """
    return RDIAN(in_channels=in_channels, num_classes=num_classes, **kwargs)  # type: ignore[arg-type]
