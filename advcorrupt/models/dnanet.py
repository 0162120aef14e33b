"""DNANet and SFIM-DNANet.

DNANet: B. Li, C. Xiao, L. Wang, Y. Wang, Z. Lin, M. Li, W. An, Y. Guo, "Dense Nested Attention
Network for Infrared Small Target Detection", IEEE Transactions on Image Processing 32, 2023.
Architecture as published (Sec. III, Fig. 2-4): a UNet++-style dense nested encoder-decoder with
filters [16, 32, 64, 128, 256] and [2, 2, 2, 2] residual blocks per deep level, every node a
residual block with channel attention followed by spatial attention (CBAM, "Res_CBAM_block"),
nodes fed by their same-level predecessors, the up-sampled node below and the down-sampled node
above; a feature-pyramid fusion that up-samples the last node of every level to full resolution
(1x1 convolutions to 16 channels) and fuses them with one more block; and four deep-supervision
heads (1x1 convolutions on nodes X^{0,1}, X^{0,2}, X^{0,3} and the fused map).

SFIM-DNANet: the detector of BALISTD (AAAI 2024), DNANet whose channel-spatial
attention modules are replaced by the spatial-frequency interaction module
(:class:`advcorrupt.layers.SFIM`), "we replace the spatial-channel attention modules of the
baseline with SFIM".

Weights: Kaiming-normal (fan_out, ReLU) convolutions, zero biases except the logit heads', which
start at the target prior ``log(p / (1 - p))`` with ``prior_prob`` p = 0.01 (``None``: zero, as
published), BatchNorm (1, 0); SFIM keeps
its own initialisation (identity at start). Inputs of any size are replicate-padded to a multiple
of 16 (four 2x poolings) and the logits cropped back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers.sfim import SFIM
from ._common import init_logit_bias, init_weights, pad_to_multiple, validate_model_input
from ._registry import register_model

__all__ = ["ChannelAttention", "DNANet", "ResAttentionBlock", "SpatialAttention", "dnanet", "sfim_dnanet"]


class ChannelAttention(nn.Module):
    """CBAM channel attention: sigmoid(MLP(avgpool) + MLP(maxpool)), a (B, C, 1, 1) weight.

    The hidden width is ``channels // reduction`` (at least 1), reduction 16 as in DNANet.

    Args:
        channels: number of channels C.
        reduction: ratio of C to the hidden width of the shared MLP.

    Shape:
        - Input: (B, C, H, W). Output: (B, C, 1, 1) in (0, 1).

    Example:
        >>> ChannelAttention(32)(torch.randn(2, 32, 8, 8)).shape
        torch.Size([2, 32, 1, 1])
    """

    def __init__(self, channels: int, *, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        avg = self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1))))
        mx = self.fc2(F.relu(self.fc1(F.adaptive_max_pool2d(x, 1))))
        return torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    """CBAM spatial attention: sigmoid(conv7x7([mean_c(x), max_c(x)])), a (B, 1, H, W) weight.

    Args:
        kernel_size: odd size of the convolution.

    Shape:
        - Input: (B, C, H, W). Output: (B, 1, H, W) in (0, 1).

    Example:
        >>> SpatialAttention()(torch.randn(2, 32, 8, 8)).shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class ResAttentionBlock(nn.Module):
    """DNANet's Res_CBAM_block, or its SFIM variant.

    ``relu(attend(BN(conv3x3(relu(BN(conv3x3(x)))))) + shortcut(x))`` where ``attend`` is channel
    then spatial attention (``attention="cbam"``, DNANet) or an SFIM (``attention="sfim"``,
    SFIM-DNANet); the shortcut is a 1x1 conv + BN when the channel count changes. Convolutions
    carry biases, as in the published code.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        attention: ``"cbam"`` or ``"sfim"``.

    Shape:
        - Input: (B, in_channels, H, W). Output: (B, out_channels, H, W).

    Example:
        >>> ResAttentionBlock(1, 16)(torch.randn(2, 1, 16, 16)).shape
        torch.Size([2, 16, 16, 16])
    """

    def __init__(self, in_channels: int, out_channels: int, *, attention: str = "cbam") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module | None = None
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels))
        self.attention = attention
        if attention == "cbam":
            self.ca: nn.Module | None = ChannelAttention(out_channels)
            self.sa: nn.Module | None = SpatialAttention()
            self.sfim: SFIM | None = None
        elif attention == "sfim":
            self.ca = self.sa = None
            self.sfim = SFIM(out_channels)
        else:
            raise ValueError(f"attention must be 'cbam' or 'sfim'; got {attention!r}")

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.shortcut is None else self.shortcut(x)
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.sfim is not None:
            out = self.sfim(out)
        else:
            assert self.ca is not None and self.sa is not None
            out = self.ca(out) * out
            out = self.sa(out) * out
        return F.relu(out + residual)


def _up(x: Tensor, factor: int) -> Tensor:
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=True)


def _down(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=True)


class DNANet(nn.Module):
    """Dense Nested Attention Network (Li et al., IEEE TIP 2023), optionally with SFIM.

    Node X^{i,j} (level i, column j) is a stage of ``num_blocks[i-1]`` blocks (one block on level
    0) fed with ``cat[X^{i,0..j-1}, up(X^{i+1,j-1}), down(X^{i-1,j})]``; the last node of each
    level is projected to ``filters[0]`` channels, up-sampled to full resolution and fused with
    X^{0,4} by one more block (feature-pyramid fusion). Bilinear resampling with
    ``align_corners=True``, as in the published code.

    Args:
        in_channels: image channels (1 for infrared).
        num_classes: output logit channels.
        filters: channels per level, five entries.
        num_blocks: blocks per node on levels 1-4.
        deep_supervision: four heads (a list of four logit maps in training mode, the final map in
            eval mode); ``False`` builds a single head.
        attention: ``"cbam"`` (DNANet) or ``"sfim"`` (SFIM-DNANet, BALISTD).
        prior_prob: initial target probability of the logit heads (``None``: zero bias).

    Shape:
        - Input: (B, in_channels, H, W), any H and W.
        - Output: (B, num_classes, H, W) logits; a list of four such maps in training mode with
          deep supervision.

    Example:
        >>> net = DNANet(in_channels=1).eval()
        >>> net(torch.rand(1, 1, 33, 47)).shape
        torch.Size([1, 1, 33, 47])
    """

    size_multiple = 16
    #: Where ``insert_sfim(model)`` puts SFIM by default (DNANet and SFIM-DNANet): after every node of
    #: the encoder column.
    sfim_targets: tuple[str, ...] = ("conv0_0", "conv1_0", "conv2_0", "conv3_0", "conv4_0")

    def __init__(
        self,
        *,
        in_channels: int = 1,
        num_classes: int = 1,
        filters: Sequence[int] = (16, 32, 64, 128, 256),
        num_blocks: Sequence[int] = (2, 2, 2, 2),
        deep_supervision: bool = True,
        attention: str = "cbam",
        prior_prob: float | None = 0.01,
    ) -> None:
        super().__init__()
        if len(filters) != 5 or len(num_blocks) != 4:
            raise ValueError(
                f"filters needs 5 entries and num_blocks 4; got {len(filters)} and {len(num_blocks)}"
            )
        if in_channels < 1 or num_classes < 1:
            raise ValueError(f"in_channels and num_classes must be >= 1; got {in_channels}, {num_classes}")
        self.in_channels = in_channels
        self.deep_supervision = deep_supervision
        f, nb = list(filters), [1, *num_blocks]

        def stage(cin: int, level: int) -> nn.Sequential:
            blocks = [ResAttentionBlock(cin, f[level], attention=attention)]
            blocks += [ResAttentionBlock(f[level], f[level], attention=attention) for _ in range(nb[level] - 1)]
            return nn.Sequential(*blocks)

        # Column 0: the encoder.
        self.conv0_0 = stage(in_channels, 0)
        self.conv1_0 = stage(f[0], 1)
        self.conv2_0 = stage(f[1], 2)
        self.conv3_0 = stage(f[2], 3)
        self.conv4_0 = stage(f[3], 4)
        # Nested nodes X^{i,j}: j same-level inputs, the node below and (for i > 0) the node above.
        for j in range(1, 5):
            for i in range(0, 5 - j):
                cin = f[i] * j + f[i + 1] + (f[i - 1] if i > 0 else 0)
                self.add_module(f"conv{i}_{j}", stage(cin, i))
        # Feature-pyramid fusion.
        self.conv0_4_final = stage(f[0] * 5, 0)
        self.conv0_4_1x1 = nn.Conv2d(f[4], f[0], 1)
        self.conv0_3_1x1 = nn.Conv2d(f[3], f[0], 1)
        self.conv0_2_1x1 = nn.Conv2d(f[2], f[0], 1)
        self.conv0_1_1x1 = nn.Conv2d(f[1], f[0], 1)
        n_heads = 4 if deep_supervision else 1
        self.heads = nn.ModuleList(nn.Conv2d(f[0], num_classes, 1) for _ in range(n_heads))

        init_weights(self)
        init_logit_bias(self.heads, prior_prob)
        for m in self.modules():
            if isinstance(m, SFIM):
                m.reset_parameters()

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        validate_model_input(x, self.in_channels)
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.size_multiple)
        pool = F.max_pool2d
        x0_0 = self.conv0_0(x)
        x1_0 = self.conv1_0(pool(x0_0, 2))
        x0_1 = self.conv0_1(torch.cat([x0_0, _up(x1_0, 2)], 1))

        x2_0 = self.conv2_0(pool(x1_0, 2))
        x1_1 = self.conv1_1(torch.cat([x1_0, _up(x2_0, 2), _down(x0_1)], 1))
        x0_2 = self.conv0_2(torch.cat([x0_0, x0_1, _up(x1_1, 2)], 1))

        x3_0 = self.conv3_0(pool(x2_0, 2))
        x2_1 = self.conv2_1(torch.cat([x2_0, _up(x3_0, 2), _down(x1_1)], 1))
        x1_2 = self.conv1_2(torch.cat([x1_0, x1_1, _up(x2_1, 2), _down(x0_2)], 1))
        x0_3 = self.conv0_3(torch.cat([x0_0, x0_1, x0_2, _up(x1_2, 2)], 1))

        x4_0 = self.conv4_0(pool(x3_0, 2))
        x3_1 = self.conv3_1(torch.cat([x3_0, _up(x4_0, 2), _down(x2_1)], 1))
        x2_2 = self.conv2_2(torch.cat([x2_0, x2_1, _up(x3_1, 2), _down(x1_2)], 1))
        x1_3 = self.conv1_3(torch.cat([x1_0, x1_1, x1_2, _up(x2_2, 2), _down(x0_3)], 1))
        x0_4 = self.conv0_4(torch.cat([x0_0, x0_1, x0_2, x0_3, _up(x1_3, 2)], 1))

        fused = self.conv0_4_final(
            torch.cat(
                [
                    _up(self.conv0_4_1x1(x4_0), 16),
                    _up(self.conv0_3_1x1(x3_1), 8),
                    _up(self.conv0_2_1x1(x2_2), 4),
                    _up(self.conv0_1_1x1(x1_3), 2),
                    x0_4,
                ],
                1,
            )
        )
        if self.deep_supervision and self.training:
            return [head(feat)[..., :h, :w] for head, feat in zip(self.heads, (x0_1, x0_2, x0_3, fused))]
        return self.heads[-1](fused)[..., :h, :w]


@register_model
def dnanet(*, in_channels: int = 1, num_classes: int = 1, deep_supervision: bool = True, **kwargs: object) -> DNANet:
    """DNANet (Li et al., IEEE TIP 2023): filters [16, 32, 64, 128, 256], blocks [2, 2, 2, 2].

    Example:
        >>> dnanet(in_channels=1).eval()(torch.rand(1, 1, 32, 32)).shape
        torch.Size([1, 1, 32, 32])
    """
    return DNANet(
        in_channels=in_channels, num_classes=num_classes, deep_supervision=deep_supervision, **kwargs  # type: ignore[arg-type]
    )


@register_model
def sfim_dnanet(
    *, in_channels: int = 1, num_classes: int = 1, deep_supervision: bool = True, **kwargs: object
) -> DNANet:
    """SFIM-DNANet (BALISTD, AAAI 2024): DNANet with every CBAM attention replaced by SFIM.

    Example:
        >>> sfim_dnanet(in_channels=1).eval()(torch.rand(1, 1, 32, 32)).shape
        torch.Size([1, 1, 32, 32])
    """
    return DNANet(
        in_channels=in_channels,
        num_classes=num_classes,
        deep_supervision=deep_supervision,
        attention="sfim",
        **kwargs,  # type: ignore[arg-type]
    )
