"""ACM: asymmetric contextual modulation U-Net.

Y. Dai, Y. Wu, F. Zhou, K. Barnard, "Asymmetric Contextual Modulation for Infrared Small Target
Detection", WACV 2021. Configuration: ACM-U-Net with a ResNet-20-style backbone of basic residual
blocks, channels [8, 16, 32, 64] (stem width 8, stages 16/32/64), 3 blocks per stage and the
asymmetric bi-directional fusion (AsymBi, Sec. 3.2): the top-down path modulates the low-level
feature with global channel attention of the high-level one (global average pooling, 1x1
bottleneck MLP with reduction 4), the bottom-up path modulates the high-level feature with a
point-wise (per-pixel) channel attention of the low-level one, and the two are summed (x2 each)
and followed by a 3x3 conv-BN-ReLU. This is the configuration behind the 0.398M parameters listed
for ACM in BALISTD's Tables 5-6 and in the BasicIRSTD benchmark (see ``docs/models.md`` for the
measured count).

Weights: Kaiming-normal (fan_out, ReLU) convolutions, zero biases except the logit layer's, which
starts at the target prior ``log(p / (1 - p))`` with ``prior_prob`` p = 0.01 (``None``: zero, as
published; see ``init_logit_bias``), BatchNorm (1, 0). The stem
starts with a non-affine BatchNorm of the input, as the published model does. Inputs of any size
are replicate-padded to a multiple of 16 (stride-2 stem, max-pool and two stride-2 stages) and
the logits cropped back. Training needs a batch of at least 2 (BatchNorm after global pooling).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch  # noqa: F401  (used by the docstring examples)
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import init_logit_bias, init_weights, pad_to_multiple, validate_model_input
from ._registry import register_model

__all__ = ["ACM", "AsymBiChaFuse", "BasicBlock", "acm"]


class BasicBlock(nn.Module):
    """ResNet basic block: ``relu(BN(conv3x3(relu(BN(conv3x3(x))))) + shortcut(x))``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: stride of the first convolution (and of the 1x1 projection shortcut).

    Shape:
        - Input: (B, in_channels, H, W). Output: (B, out_channels, H / stride, W / stride).

    Example:
        >>> BasicBlock(8, 16, stride=2)(torch.randn(2, 8, 16, 16)).shape
        torch.Size([2, 16, 8, 8])
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + identity)


class AsymBiChaFuse(nn.Module):
    """Asymmetric bi-directional channel fusion of ACM (Dai et al., WACV 2021, Fig. 3).

    ``post(2 * x_low * topdown(x_high) + 2 * x_high * bottomup(x_low))`` with ``topdown`` a
    global (pooled) and ``bottomup`` a point-wise channel attention, both 1x1 bottlenecks with
    BatchNorm and a sigmoid.

    Args:
        channels: channels C of both inputs.
        reduction: bottleneck ratio of the attention MLPs.

    Shape:
        - Inputs: x_high and x_low, both (B, C, H, W). Output: (B, C, H, W).

    Example:
        >>> fuse = AsymBiChaFuse(16).eval()
        >>> fuse(torch.randn(1, 16, 8, 8), torch.randn(1, 16, 8, 8)).shape
        torch.Size([1, 16, 8, 8])
    """

    def __init__(self, channels: int, *, reduction: int = 4) -> None:
        super().__init__()
        mid = max(channels // reduction, 1)

        def attention(pooled: bool) -> nn.Sequential:
            layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1)] if pooled else []
            layers += [
                nn.Conv2d(channels, mid, 1),
                nn.BatchNorm2d(mid),
                nn.ReLU(inplace=True),
                nn.Conv2d(mid, channels, 1),
                nn.BatchNorm2d(channels),
                nn.Sigmoid(),
            ]
            return nn.Sequential(*layers)

        self.topdown = attention(pooled=True)
        self.bottomup = attention(pooled=False)
        self.post = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)
        )

    def forward(self, x_high: Tensor, x_low: Tensor) -> Tensor:
        fused = 2 * x_low * self.topdown(x_high) + 2 * x_high * self.bottomup(x_low)
        return self.post(fused)


class ACM(nn.Module):
    """ACM-U-Net (Dai et al., WACV 2021) with AsymBi fusion; returns logits.

    Stem (input BN, stride-2 3x3 conv, two 3x3 convs, 3x3 max-pool stride 2) -> three stages of
    basic blocks (strides 1, 2, 2) -> two decoder steps (4x4 stride-2 transposed conv, AsymBi fusion
    with the skip, a stage of basic blocks) -> FCN head (3x3 conv to C/4, BN, ReLU, dropout 0.1,
    1x1 conv) -> bilinear 4x up-sampling.

    Args:
        in_channels: image channels.
        num_classes: output logit channels.
        channels: stem width then the widths of the three stages, e.g. [8, 16, 32, 64].
        layers: basic blocks per stage (the decoder stages reuse the first two counts).
        prior_prob: initial target probability of the logit layer (``None``: zero bias).

    Shape:
        - Input: (B, in_channels, H, W), any H and W. Output: (B, num_classes, H, W) logits.

    Example:
        >>> ACM(in_channels=1).eval()(torch.rand(1, 1, 33, 47)).shape
        torch.Size([1, 1, 33, 47])
    """

    size_multiple = 16
    #: Where ``insert_sfim(model)`` puts SFIM by default: after the three encoder stages past the stem
    #: and both decoder stages.
    sfim_targets: tuple[str, ...] = ("layer1", "layer2", "layer3", "uplayer2", "uplayer1")

    def __init__(
        self,
        *,
        in_channels: int = 1,
        num_classes: int = 1,
        channels: Sequence[int] = (8, 16, 32, 64),
        layers: Sequence[int] = (3, 3, 3),
        prior_prob: float | None = 0.01,
    ) -> None:
        super().__init__()
        if len(channels) != 4 or len(layers) != 3:
            raise ValueError(f"channels needs 4 entries and layers 3; got {len(channels)} and {len(layers)}")
        self.in_channels = in_channels
        c = list(channels)
        stem = c[0]
        self.stem = nn.Sequential(
            nn.BatchNorm2d(in_channels, affine=False),
            nn.Conv2d(in_channels, stem, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem, stem, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem, stem * 2, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem * 2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )

        def stage(cin: int, cout: int, n: int, stride: int) -> nn.Sequential:
            blocks = [BasicBlock(cin, cout, stride=stride)] + [BasicBlock(cout, cout) for _ in range(n - 1)]
            return nn.Sequential(*blocks)

        self.layer1 = stage(stem * 2, c[1], layers[0], 1)
        self.layer2 = stage(c[1], c[2], layers[1], 2)
        self.layer3 = stage(c[2], c[3], layers[2], 2)
        self.deconv2 = nn.ConvTranspose2d(c[3], c[2], 4, stride=2, padding=1)
        self.fuse2 = AsymBiChaFuse(c[2])
        self.uplayer2 = stage(c[2], c[2], layers[1], 1)
        self.deconv1 = nn.ConvTranspose2d(c[2], c[1], 4, stride=2, padding=1)
        self.fuse1 = AsymBiChaFuse(c[1])
        self.uplayer1 = stage(c[1], c[1], layers[0], 1)
        inter = max(c[1] // 4, 1)
        self.head = nn.Sequential(
            nn.Conv2d(c[1], inter, 3, padding=1, bias=False),
            nn.BatchNorm2d(inter),
            nn.ReLU(inplace=True),
            nn.Dropout(0.1),
            nn.Conv2d(inter, num_classes, 1),
        )
        init_weights(self)
        init_logit_bias([self.head[-1]], prior_prob)

    def forward(self, x: Tensor) -> Tensor:
        validate_model_input(x, self.in_channels)
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.size_multiple)
        c1 = self.layer1(self.stem(x))
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        up2 = self.uplayer2(self.fuse2(self.deconv2(c3), c2))
        up1 = self.uplayer1(self.fuse1(self.deconv1(up2), c1))
        logits = F.interpolate(self.head(up1), scale_factor=4, mode="bilinear", align_corners=False)
        return logits[..., :h, :w]


@register_model
def acm(*, in_channels: int = 1, num_classes: int = 1, **kwargs: object) -> ACM:
    """ACM-U-Net (Dai et al., WACV 2021), channels [8, 16, 32, 64], 3 blocks per stage, AsymBi.

    Example:
        >>> acm(in_channels=1).eval()(torch.rand(1, 1, 32, 32)).shape
        torch.Size([1, 1, 32, 32])
    """
    return ACM(in_channels=in_channels, num_classes=num_classes, **kwargs)  # type: ignore[arg-type]
