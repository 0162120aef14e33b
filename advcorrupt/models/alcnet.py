"""ALCNet: attentional local contrast network, as the BasicIRSTD benchmark implements it.

Y. Dai, Y. Wu, F. Zhou, K. Barnard, "Attentional Local Contrast Networks for Infrared Small
Target Detection", IEEE TGRS 59(11), 2021. The model that the field's comparison tables list as
"ALCNet" (0.427M parameters, 0.378 GFLOPs at 256x256 in the BasicIRSTD benchmark that BALISTD's
Table 2 follows) is BasicIRSTD's ``ASKCResNetFPN``: ACM's stem and ResNet-20-style stages with 4
basic blocks each (channels [8, 16, 32, 64]), and a top-down path of transposed convolutions whose
every step fuses the encoder skip with ACM's asymmetric bi-directional modulation (AsymBi, the
"bottom-up attentional modulation" of the ALCNet paper, Sec. III-C), one more transposed
convolution to stride 2, an FCN head and bilinear up-sampling. It has no decoder residual stages
(the reference defines two but never calls them; they are not built here, which is what the
published 0.427M counts) and no parameter-free multiscale local contrast (MPCM) layer of the
original MXNet ALCNet. See ``docs/models.md``.

Weights: Kaiming-normal (fan_out, ReLU) convolutions, zero biases except the logit layer's, which
starts at the target prior ``log(p / (1 - p))`` with ``prior_prob`` p = 0.01 (``None``: zero),
BatchNorm (1, 0). Inputs of any size are replicate-padded to a multiple of 16 and the logits
cropped back. Training needs a batch of at least 2 (BatchNorm after global pooling).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch  # noqa: F401  (used by the docstring examples)
import torch.nn.functional as F
from torch import Tensor, nn

from ._args import check_positive_int, check_widths
from ._blocks import fcn_head, resnet_stage, resnet_stem
from ._common import init_logit_bias, init_weights, pad_to_multiple, validate_model_input
from ._registry import register_model
from .acm import AsymBiChaFuse

__all__ = ["ALCNet", "alcnet"]


class ALCNet(nn.Module):
    """ALCNet as in BasicIRSTD (``ASKCResNetFPN``, AsymBi fusion); returns logits.

    Stem (input BN, stride-2 conv, two convs, max-pool; stride 4) -> three stages of basic blocks
    (strides 1, 2, 2; stride 16 at the end) -> two top-down steps (4x4 stride-2 transposed conv,
    AsymBi fusion with the encoder skip) -> a third transposed conv to stride 2 and
    ``channels[0]`` channels -> FCN head -> bilinear 2x up-sampling.

    Args:
        in_channels: image channels.
        num_classes: output logit channels.
        channels: stem width then the widths of the three stages, e.g. [8, 16, 32, 64].
        layers: basic blocks per stage.
        prior_prob: initial target probability of the logit layer (``None``: zero bias).

    Shape:
        - Input: (B, in_channels, H, W), any H and W. Output: (B, num_classes, H, W) logits.

    Example:
        >>> ALCNet(in_channels=1).eval()(torch.rand(1, 1, 33, 47)).shape
        torch.Size([1, 1, 33, 47])
    """

    size_multiple = 16
    #: Where ``insert_sfim(model)`` puts SFIM by default: after the three stages and both top-down
    #: fusions.
    sfim_targets: tuple[str, ...] = ("layer1", "layer2", "layer3", "fuse23", "fuse12")

    def __init__(
        self,
        *,
        in_channels: int = 1,
        num_classes: int = 1,
        channels: Sequence[int] = (8, 16, 32, 64),
        layers: Sequence[int] = (4, 4, 4),
        prior_prob: float | None = 0.01,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        check_positive_int("num_classes", num_classes)
        c, n = check_widths("channels", channels, 4), check_widths("layers", layers, 3)
        self.stem = resnet_stem(in_channels, c[0])
        self.layer1 = resnet_stage(c[0] * 2, c[1], n[0])
        self.layer2 = resnet_stage(c[1], c[2], n[1], stride=2)
        self.layer3 = resnet_stage(c[2], c[3], n[2], stride=2)
        self.deconv2 = nn.ConvTranspose2d(c[3], c[2], 4, stride=2, padding=1)
        self.fuse23 = AsymBiChaFuse(c[2])
        self.deconv1 = nn.ConvTranspose2d(c[2], c[1], 4, stride=2, padding=1)
        self.fuse12 = AsymBiChaFuse(c[1])
        self.deconv0 = nn.ConvTranspose2d(c[1], c[0], 4, stride=2, padding=1)
        self.head = fcn_head(c[0], num_classes)
        init_weights(self)
        init_logit_bias([self.head[-1]], prior_prob)

    def forward(self, x: Tensor) -> Tensor:
        validate_model_input(x, self.in_channels)
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.size_multiple)
        c1 = self.layer1(self.stem(x))
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        out = self.fuse23(self.deconv2(c3), c2)
        out = self.fuse12(self.deconv1(out), c1)
        logits = self.head(self.deconv0(out))
        logits = F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=False)
        return logits[..., :h, :w]


@register_model
def alcnet(*, in_channels: int = 1, num_classes: int = 1, **kwargs: object) -> ALCNet:
    """ALCNet (Dai et al., TGRS 2021) as in BasicIRSTD: channels [8, 16, 32, 64], 4 blocks per stage.

    Example:
        >>> alcnet(in_channels=1).eval()(torch.rand(1, 1, 32, 32)).shape
        torch.Size([1, 1, 32, 32])
    """
    return ALCNet(in_channels=in_channels, num_classes=num_classes, **kwargs)  # type: ignore[arg-type]
