"""ISTDU-Net: infrared small-target detection U-Net.

Q. Hou, L. Zhang, F. Tan, Y. Xi, H. Zheng, N. Li, "ISTDU-Net: Infrared Small-Target Detection
U-Net", IEEE Geoscience and Remote Sensing Letters 19, 2022. Architecture as in the BasicIRSTD
benchmark (2.752M parameters, 7.944 GFLOPs at 256x256):

* **Stem**: non-affine input BatchNorm, 3x3 conv to 16 channels, BN, ReLU (full resolution).
* **Encoder**: four stages of ResNeSt bottlenecks (split attention with radix 2 and cardinality 4,
  bottleneck width 16, expansion 4) with [1, 2, 4, 8] blocks and 64, 128, 256, 512 output channels
  at strides 1, 2, 4, 8; strided stages down-sample by 3x3 average pooling after the split
  attention ("avd") and average-pool + 1x1 conv shortcuts ("avg_down", ResNet-D).
* **Feature-map group attention**: an external-attention block (Guo et al., 2021; 64 memory
  units, double normalisation, residual) on each of the four encoder outputs.
* **Decoder**: three steps of 1x1 conv-BN-ReLU halving the channels, bilinear 2x up-sampling and
  addition of the next finer encoder output, then an FCN head (3x3 conv to 16, BN, ReLU, 1x1
  logit conv) at full resolution. The reference builds a second, unused head ("headDet"); it is
  not built here (the published 2.752M does not count it either).

Weights: Kaiming-normal (fan_out, ReLU) convolutions, zero biases except the logit layer's
(``prior_prob``), BatchNorm (1, 0); the external attention's second memory starts as the
transpose of the first, as in its reference. Inputs of any size are replicate-padded to a
multiple of 8 and the logits cropped back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._args import check_positive_int, check_widths
from ._common import init_logit_bias, init_weights, pad_to_multiple, validate_model_input
from ._registry import register_model

__all__ = ["ExternalAttention", "ISTDUNet", "SplitAttentionConv", "istdunet"]


class SplitAttentionConv(nn.Module):
    """ResNeSt split-attention 3x3 convolution (Zhang et al., 2020), radix R, cardinality G.

    A grouped conv gives R splits of C channels; their sum is pooled, passed through a grouped
    bottleneck (at least 32 hidden units) and a softmax over the R splits per group, and the
    splits are summed with those weights.

    Shape:
        - Input: (B, C, H, W). Output: (B, C, H, W).

    Example:
        >>> SplitAttentionConv(16)(torch.randn(2, 16, 8, 8)).shape
        torch.Size([2, 16, 8, 8])
    """

    def __init__(self, channels: int, *, radix: int = 2, groups: int = 4, reduction: int = 4) -> None:
        super().__init__()
        inter = max(channels * radix // reduction, 32)
        self.radix, self.groups = radix, groups
        self.conv = nn.Conv2d(channels, channels * radix, 3, padding=1, groups=groups * radix, bias=False)
        self.bn0 = nn.BatchNorm2d(channels * radix)
        self.fc1 = nn.Conv2d(channels, inter, 1, groups=groups)
        self.bn1 = nn.BatchNorm2d(inter)
        self.fc2 = nn.Conv2d(inter, channels * radix, 1, groups=groups)

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        splits = F.relu(self.bn0(self.conv(x))).chunk(self.radix, dim=1)
        gap = F.adaptive_avg_pool2d(sum(splits), 1)
        att = self.fc2(F.relu(self.bn1(self.fc1(gap))))
        att = att.view(b, self.groups, self.radix, -1).transpose(1, 2).softmax(dim=1).reshape(b, -1, 1, 1)
        return sum(a * s for a, s in zip(att.chunk(self.radix, dim=1), splits))


class _Bottleneck(nn.Module):
    """ResNeSt bottleneck: 1x1 -> split attention -> (avg-pool if strided) -> 1x1 (x4) + shortcut."""

    def __init__(self, in_channels: int, planes: int, *, stride: int = 1) -> None:
        super().__init__()
        width, out = planes, planes * 4  # bottleneck width 16 and cardinality 4: width = planes
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = SplitAttentionConv(width)
        self.pool = nn.AvgPool2d(3, stride, padding=1) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out:
            pool = nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False) if stride > 1 else nn.Identity()
            self.shortcut = nn.Sequential(pool, nn.Conv2d(in_channels, out, 1, bias=False), nn.BatchNorm2d(out))

    def forward(self, x: Tensor) -> Tensor:
        out = self.pool(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class ExternalAttention(nn.Module):
    """External attention (Guo et al., 2021) with ``memory`` units and a residual connection.

    ``x + BN(conv(M_v(dnorm(M_k(conv(x))))))`` where ``dnorm`` is a softmax over the positions
    followed by a normalisation over the memory units.

    Shape:
        - Input: (B, C, H, W). Output: (B, C, H, W).

    Example:
        >>> ExternalAttention(8, memory=4)(torch.randn(2, 8, 5, 6)).shape
        torch.Size([2, 8, 5, 6])
    """

    def __init__(self, channels: int, *, memory: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.mk = nn.Conv1d(channels, memory, 1, bias=False)
        self.mv = nn.Conv1d(memory, channels, 1, bias=False)
        self.conv2 = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels))
        self.reset_memory()

    def reset_memory(self) -> None:
        nn.init.normal_(self.mk.weight, 0.0, math.sqrt(2.0 / self.mk.out_channels))
        with torch.no_grad():
            self.mv.weight.copy_(self.mk.weight.permute(1, 0, 2))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        attn = self.mk(self.conv1(x).flatten(2)).softmax(dim=-1)
        attn = attn / (1e-9 + attn.sum(dim=1, keepdim=True))
        return x + self.conv2(self.mv(attn).view(b, c, h, w))


def _up_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ISTDUNet(nn.Module):
    """ISTDU-Net (Hou et al., GRSL 2022); returns logits.

    Args:
        in_channels: image channels.
        num_classes: output logit channels.
        width: stem width (16), a multiple of 8 (cardinality 4 x radix 2); the stages have 4, 8, 16,
            32 times as many channels.
        blocks: bottlenecks per stage.
        prior_prob: initial target probability of the logit layer (``None``: zero bias).

    Shape:
        - Input: (B, in_channels, H, W), any H and W. Output: (B, num_classes, H, W) logits.

    Example:
        >>> ISTDUNet(in_channels=1).eval()(torch.rand(1, 1, 33, 47)).shape
        torch.Size([1, 1, 33, 47])
    """

    size_multiple = 8
    #: Where ``insert_sfim(model)`` puts SFIM by default: after each of the three decoder steps. The
    #: encoder stages are wide at high resolution: an SFIM after ``layer2`` alone would cost
    #: 4.8 GMAC at 256x256.
    sfim_targets: tuple[str, ...] = ("up1", "up2", "up3")

    def __init__(
        self,
        *,
        in_channels: int = 1,
        num_classes: int = 1,
        width: int = 16,
        blocks: Sequence[int] = (1, 2, 4, 8),
        prior_prob: float | None = 0.01,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        check_positive_int("num_classes", num_classes)
        w = check_positive_int("width", width)
        if w % 8:
            raise ValueError(f"width must be a multiple of 8 (4 groups x radix 2); got {w}")
        n_blocks = check_widths("blocks", blocks, 4)
        self.stem = nn.Sequential(
            nn.BatchNorm2d(in_channels, affine=False),
            nn.Conv2d(in_channels, w, 3, padding=1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
        )
        planes, cin = (w, 2 * w, 4 * w, 8 * w), w
        for i, (p, n) in enumerate(zip(planes, n_blocks)):
            stage = [_Bottleneck(cin, p, stride=1 if i == 0 else 2)] + [_Bottleneck(4 * p, p) for _ in range(n - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
            cin = 4 * p
        self.attention = nn.ModuleList(ExternalAttention(4 * p) for p in planes)
        self.up1, self.up2, self.up3 = (_up_block(4 * planes[i], 4 * planes[i - 1]) for i in (3, 2, 1))
        self.head = nn.Sequential(
            nn.Conv2d(4 * w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True), nn.Conv2d(w, num_classes, 1)
        )
        init_weights(self)
        for m in self.attention:
            m.reset_memory()
        init_logit_bias([self.head[-1]], prior_prob)

    def forward(self, x: Tensor) -> Tensor:
        validate_model_input(x, self.in_channels)
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.size_multiple)
        feats, f = [], self.stem(x)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            f = layer(f)
            feats.append(f)
        x1, x2, x3, x4 = (att(f) for att, f in zip(self.attention, feats))
        out = x3 + F.interpolate(self.up1(x4), size=x3.shape[-2:], mode="bilinear", align_corners=False)
        out = x2 + F.interpolate(self.up2(out), size=x2.shape[-2:], mode="bilinear", align_corners=False)
        out = x1 + F.interpolate(self.up3(out), size=x1.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(out)[..., :h, :w]


@register_model
def istdunet(*, in_channels: int = 1, num_classes: int = 1, **kwargs: object) -> ISTDUNet:
    """ISTDU-Net (Hou et al., GRSL 2022): ResNeSt encoder, external attention, U-Net decoder.

    Example:
        >>> istdunet(in_channels=1).eval()(torch.rand(1, 1, 32, 32)).shape
        torch.Size([1, 1, 32, 32])
    """
    return ISTDUNet(in_channels=in_channels, num_classes=num_classes, **kwargs)  # type: ignore[arg-type]
