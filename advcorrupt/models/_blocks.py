"""Building blocks shared by the ACM-family models (ALCNet, ISNet): stem, stages and FCN head."""

from __future__ import annotations

from torch import nn

from .acm import BasicBlock

__all__ = ["fcn_head", "resnet_stage", "resnet_stem"]


def resnet_stem(in_channels: int, width: int, *, input_norm_affine: bool = True) -> nn.Sequential:
    """ACM's stem: input BN, 3x3 s2 conv to ``width``, 3x3 conv, 3x3 conv to ``2 * width``, max-pool.

    Every convolution is followed by BatchNorm and ReLU; the output has stride 4.

    Shape:
        - Input: (B, in_channels, H, W). Output: (B, 2 * width, H / 4, W / 4).
    """
    return nn.Sequential(
        nn.BatchNorm2d(in_channels, affine=input_norm_affine),
        nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width * 2, 3, padding=1, bias=False),
        nn.BatchNorm2d(width * 2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2, padding=1),
    )


def resnet_stage(in_channels: int, out_channels: int, blocks: int, *, stride: int = 1) -> nn.Sequential:
    """``blocks`` ResNet basic blocks; the first one changes width and stride (1x1 projection)."""
    first = BasicBlock(in_channels, out_channels, stride=stride)
    return nn.Sequential(first, *(BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)))


def fcn_head(in_channels: int, out_channels: int) -> nn.Sequential:
    """FCN head: 3x3 conv to ``in_channels // 4`` (at least 1), BN, ReLU, dropout 0.1, 1x1 conv.

    The last layer is the logit convolution (it carries a bias).
    """
    inter = max(in_channels // 4, 1)
    return nn.Sequential(
        nn.Conv2d(in_channels, inter, 3, padding=1, bias=False),
        nn.BatchNorm2d(inter),
        nn.ReLU(inplace=True),
        nn.Dropout(0.1),
        nn.Conv2d(inter, out_channels, 1),
    )
