"""ISNet: shape matters for infrared small target detection.

M. Zhang, R. Zhang, Y. Yang, H. Bai, J. Zhang, J. Guo, "ISNet: Shape Matters for Infrared Small
Target Detection", CVPR 2022. Architecture as in the paper and the BasicIRSTD benchmark (0.966M
parameters, 30.618 GFLOPs at 256x256):

* **Segmentation trunk**: ACM's stem and three stages of 4 basic blocks (channels [8, 16, 32,
  64], stride 16), a decoder of two steps (4x4 stride-2 transposed conv, TOAA fusion with the
  encoder skip, 4 basic blocks), FCN head at full resolution.
* **Taylor-finite-difference-inspired orientation-aware aggregation (TOAA, Sec. 3.2)**: both
  inputs pass a shared 1x1 bottleneck (C -> C/2 -> C); a deformable 3x1 (column) and a
  deformable 1x3 (row) convolution of the low-level input gate the high-level one,
  ``a = (low + sigmoid(dcn_col(low)) * high) + (low + sigmoid(dcn_row(low)) * high)``. The
  deformable convolutions are DCNv1 (offsets from a zero-initialised convolution of the same
  shape) through ``torchvision.ops.deform_conv2d``: pure PyTorch, no compiled extension.
* **Edge branch with TFD blocks (Sec. 3.3)**: the image gradient magnitude
  ``sqrt(dx^2 + dy^2 + 1e-6)`` (central differences) is lifted to 64 channels by a 1x1 conv and
  refined by three Taylor finite difference blocks, each gated by one side output (1x1 convs of
  the deepest encoder stage and of the two decoder stages, up-sampled to full resolution):
  ``u1, d0 = res1(u0); u2 = relu(branch(res2, u1)); u3 = 3 d0 + u2 + gated_conv(u2, side)``.
  A 1x1 conv gives the edge logits ``e``; the decoder's full-resolution features are modulated
  ``f * sigmoid(e) + f`` before the head.

Outputs: eval mode returns the segmentation logits; training mode returns ``[edge_logits,
logits]``, so ``advcorrupt``'s trainer (which averages the per-sample loss over the heads)
supervises both with the mask, while the reference code supervises the edge head with the
mask's gradient magnitude (``docs/models.md`` explains the difference). With several input
channels the gradient is taken of the channel mean.

Weights: Kaiming-normal (fan_out, ReLU) convolutions, zero biases except the two logit layers'
(``prior_prob``; the edge logit conv gets a bias for it, one parameter more than the reference),
zero offsets, BatchNorm (1, 0). Inputs of any size are replicate-padded to a multiple of 16 and
the logits cropped back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._args import check_positive_int, check_widths
from ._blocks import fcn_head, resnet_stage, resnet_stem
from ._common import init_logit_bias, init_weights, pad_to_multiple, validate_model_input
from ._registry import register_model

__all__ = ["ISNet", "TFDBlock", "TOAA", "DeformConv2d", "isnet"]


class DeformConv2d(nn.Module):
    """DCNv1: a convolution sampled at learned offsets (``torchvision.ops.deform_conv2d``).

    The offsets come from an ordinary convolution of the same kernel shape on the input,
    zero-initialised, so a fresh layer is a plain convolution.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: (kh, kw), odd sizes; "same" padding.

    Shape:
        - Input: (B, in_channels, H, W). Output: (B, out_channels, H, W).

    Example:
        >>> DeformConv2d(4, 4, (3, 1))(torch.randn(2, 4, 7, 9)).shape
        torch.Size([2, 4, 7, 9])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int]) -> None:
        super().__init__()
        kh, kw = kernel_size
        self.padding = (kh // 2, kw // 2)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kh, kw))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.offset = nn.Conv2d(in_channels, 2 * kh * kw, kernel_size, padding=self.padding)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.bias)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    def forward(self, x: Tensor) -> Tensor:
        from torchvision.ops import deform_conv2d  # imported on first use: keeps `import advcorrupt` light

        offset = self.offset(x)
        return deform_conv2d(x, offset, self.weight.to(x.dtype), self.bias.to(x.dtype), padding=self.padding)


class TOAA(nn.Module):
    """ISNet's orientation-aware aggregation of a decoder (low) and an encoder (high) feature.

    Args:
        channels: channels C of both inputs.
        kernel_size: length of the column (kx1) and row (1xk) deformable kernels.

    Shape:
        - Inputs: low and high, both (B, C, H, W). Output: (B, C, H, W).

    Example:
        >>> TOAA(8)(torch.randn(2, 8, 6, 5), torch.randn(2, 8, 6, 5)).shape
        torch.Size([2, 8, 6, 5])
    """

    def __init__(self, channels: int, *, kernel_size: int = 3) -> None:
        super().__init__()
        self.preprocess = nn.Sequential(
            nn.Conv2d(channels, max(channels // 2, 1), 1), nn.Conv2d(max(channels // 2, 1), channels, 1)
        )
        self.dcn_col = DeformConv2d(channels, channels, (kernel_size, 1))
        self.dcn_row = DeformConv2d(channels, channels, (1, kernel_size))

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        low, high = self.preprocess(low), self.preprocess(high)
        col = low + torch.sigmoid(self.dcn_col(low)) * high
        row = low + torch.sigmoid(self.dcn_row(low)) * high
        return row + col


class _BranchBlock(nn.Module):
    """Basic block that also returns its residual branch: ``relu(x + g(x)), relu(g(x))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        branch = self.body(x)
        return F.relu(x + branch), F.relu(branch)


class _GatedConv(nn.Module):
    """Gated 1x1 conv (GSCNN): ``conv1x1(x * (1 + alpha))``, alpha from ``cat[x, side]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.BatchNorm2d(channels + 1),
            nn.Conv2d(channels + 1, channels + 1, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels + 1, 1, 1),
            nn.BatchNorm2d(1),
            nn.Sigmoid(),
        )
        self.conv = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: Tensor, side: Tensor) -> Tensor:
        alpha = self.gate(torch.cat([x, side], dim=1))
        return self.conv(x * (alpha + 1))


class TFDBlock(nn.Module):
    """Taylor finite difference block of ISNet's edge branch (Sec. 3.3).

    Args:
        channels: channels C of the edge features.

    Shape:
        - Inputs: x (B, C, H, W) and the side output (B, 1, H, W). Output: (B, C, H, W).

    Example:
        >>> TFDBlock(4)(torch.randn(2, 4, 6, 6), torch.randn(2, 1, 6, 6)).shape
        torch.Size([2, 4, 6, 6])
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.res1 = _BranchBlock(channels)
        self.res2 = _BranchBlock(channels)
        self.gate = _GatedConv(channels)

    def forward(self, x: Tensor, side: Tensor) -> Tensor:
        u1, delta0 = self.res1(x)
        _, u2 = self.res2(u1)
        return 3 * delta0 + u2 + self.gate(u2, side)


def _gradient_magnitude(x: Tensor) -> Tensor:
    """``sqrt(dy^2 + dx^2 + 1e-6)`` of the channel mean, central differences, zero padding."""
    g = F.pad(x.mean(dim=1, keepdim=True), (1, 1, 1, 1))
    dy = g[..., 2:, 1:-1] - g[..., :-2, 1:-1]
    dx = g[..., 1:-1, 2:] - g[..., 1:-1, :-2]
    return torch.sqrt(dy.square() + dx.square() + 1e-6)


def _resize(x: Tensor, size: tuple[int, int], *, align_corners: bool) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


class ISNet(nn.Module):
    """ISNet (Zhang et al., CVPR 2022); returns logits (and edge logits in training).

    Args:
        in_channels: image channels.
        num_classes: output logit channels of the segmentation head.
        channels: stem width then the widths of the three stages, e.g. [8, 16, 32, 64].
        layers: basic blocks per encoder stage (the decoder stages reuse the first two counts).
        edge_channels: width of the edge branch (64).
        prior_prob: initial target probability of both logit layers (``None``: zero bias).

    Shape:
        - Input: (B, in_channels, H, W), any H and W.
        - Output: (B, num_classes, H, W) logits in eval mode; ``[edge_logits (B, 1, H, W),
          logits]`` in training mode.

    Example:
        >>> ISNet(in_channels=1).eval()(torch.rand(1, 1, 33, 47)).shape
        torch.Size([1, 1, 33, 47])
    """

    size_multiple = 16
    #: Where ``insert_sfim(model)`` puts SFIM by default: after the three encoder stages past the stem
    #: and both decoder stages of the segmentation trunk.
    sfim_targets: tuple[str, ...] = ("layer1", "layer2", "layer3", "uplayer2", "uplayer1")

    def __init__(
        self,
        *,
        in_channels: int = 1,
        num_classes: int = 1,
        channels: Sequence[int] = (8, 16, 32, 64),
        layers: Sequence[int] = (4, 4, 4),
        edge_channels: int = 64,
        prior_prob: float | None = 0.01,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        check_positive_int("num_classes", num_classes)
        e = check_positive_int("edge_channels", edge_channels)
        c, n = check_widths("channels", channels, 4), check_widths("layers", layers, 3)
        self.stem = resnet_stem(in_channels, c[0])
        self.layer1 = resnet_stage(c[0] * 2, c[1], n[0])
        self.layer2 = resnet_stage(c[1], c[2], n[1], stride=2)
        self.layer3 = resnet_stage(c[2], c[3], n[2], stride=2)
        self.deconv2 = nn.ConvTranspose2d(c[3], c[2], 4, stride=2, padding=1)
        self.toaa_low = TOAA(c[2])
        self.uplayer2 = resnet_stage(c[2], c[2], n[1])
        self.deconv1 = nn.ConvTranspose2d(c[2], c[1], 4, stride=2, padding=1)
        self.toaa_high = TOAA(c[1])
        self.uplayer1 = resnet_stage(c[1], c[1], n[0])
        self.head = fcn_head(c[1], num_classes)
        # Edge branch: side outputs of three scales gate three TFD blocks on the image gradient.
        self.side = nn.ModuleList(nn.Conv2d(ch, 1, 1) for ch in (c[3], c[2], c[1]))
        self.grad_proj = nn.Conv2d(1, e, 1)
        self.tfd = nn.ModuleList(TFDBlock(e) for _ in range(3))
        self.edge_logits = nn.Conv2d(e, 1, 1)
        init_weights(self)
        for m in self.modules():
            if isinstance(m, DeformConv2d):
                m.reset_parameters()
            elif isinstance(m, _GatedConv):
                nn.init.xavier_normal_(m.conv.weight)  # as GSCNN's gated conv
        init_logit_bias([self.head[-1], self.edge_logits], prior_prob)

    def _decode(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """Side features (deepest stage, both decoder stages) and the stride-4 decoder output."""
        c1 = self.layer1(self.stem(x))
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        up2 = self.uplayer2(self.toaa_low(self.deconv2(c3), c2))
        up1 = self.uplayer1(self.toaa_high(self.deconv1(up2), c1))
        return [c3, up2, up1], up1

    def _edge(self, x: Tensor, sides: list[Tensor]) -> Tensor:
        """Edge logits at the input resolution from the image gradient and the side outputs."""
        size = (x.shape[-2], x.shape[-1])
        u = self.grad_proj(_gradient_magnitude(x))
        for conv, feat, tfd in zip(self.side, sides, self.tfd):
            u = tfd(u, _resize(conv(feat), size, align_corners=True))
        return self.edge_logits(u)

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        validate_model_input(x, self.in_channels)
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.size_multiple)
        sides, features = self._decode(x)
        edge = self._edge(x, sides)
        features = _resize(features, (x.shape[-2], x.shape[-1]), align_corners=False)
        logits = self.head(features * torch.sigmoid(edge) + features)[..., :h, :w]
        if self.training:
            return [edge[..., :h, :w], logits]
        return logits


@register_model
def isnet(*, in_channels: int = 1, num_classes: int = 1, **kwargs: object) -> ISNet:
    """ISNet (Zhang et al., CVPR 2022): TOAA fusion with deformable convs, TFD edge branch.

    Example:
        >>> isnet(in_channels=1).eval()(torch.rand(1, 1, 32, 32)).shape
        torch.Size([1, 1, 32, 32])
    """
    return ISNet(in_channels=in_channels, num_classes=num_classes, **kwargs)  # type: ignore[arg-type]
