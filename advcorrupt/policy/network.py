"""The policy network of BALISTD's hierarchical reinforced learning (AAAI 2024, Sec. 3.2).

The paper's "general classifier" looks at an image and gives the distribution ``p(s | x)`` over
corruption actions (Eq. 2): five convolution blocks and one fully connected layer. Here the image is
first resized to ``input_size`` x ``input_size`` (64 by default) so the policy's cost stays small
next to the detector's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PolicyNetwork"]


class PolicyNetwork(nn.Module):
    """Five conv blocks (3x3 conv, ReLU, 2x2 max-pool) + global average pool + one linear layer.

    The network has no normalisation layer on purpose: batch norm would make one sample's action
    depend on the rest of its batch (and differ between distributed ranks), and per-sample norms
    would erase global cues such as brightness that decide which corruption hurts a given image.
    The linear layer starts at zero, so an untrained policy is exactly uniform over the actions.
    The forward pass runs in float32 even under ``torch.autocast``: it is cheap at 64x64 and
    keeps the log-probabilities of REINFORCE accurate.

    Args:
        in_channels: image channels (1 for infrared).
        num_actions: number of actions, ``ActionSpace.size``.
        input_size: side of the square the image is resized to before the conv blocks.
        widths: output channels of the five conv blocks.

    Shape:
        x: (B, in_channels, H, W), any H, W. Output: logits (B, num_actions).

    Returns:
        Unnormalised action logits.

    Example:
        >>> import torch
        >>> from advcorrupt.policy import PolicyNetwork
        >>> net = PolicyNetwork(1, 30)
        >>> net(torch.rand(4, 1, 256, 256)).shape
        torch.Size([4, 30])
        >>> sum(p.numel() for p in net.parameters()) < 1_000_000
        True
    """

    def __init__(
        self,
        in_channels: int,
        num_actions: int,
        *,
        input_size: int = 64,
        widths: Sequence[int] = (16, 32, 64, 128, 128),
    ) -> None:
        super().__init__()
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive int; got {in_channels!r}")
        if not isinstance(num_actions, int) or num_actions < 1:
            raise ValueError(f"num_actions must be a positive int; got {num_actions!r}")
        widths = tuple(int(w) for w in widths)
        if len(widths) != 5 or min(widths) < 1:
            raise ValueError(f"widths must be 5 positive channel counts; got {widths}")
        if not isinstance(input_size, int) or input_size < 32:
            raise ValueError(f"input_size must be an int >= 32 (five 2x2 poolings); got {input_size!r}")
        self.in_channels = in_channels
        self.num_actions = num_actions
        self.input_size = input_size
        blocks: list[nn.Module] = []
        c = in_channels
        for w in widths:
            conv = nn.Conv2d(c, w, 3, padding=1)
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            blocks += [conv, nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c = w
        self.features = nn.Sequential(*blocks)
        self.fc = nn.Linear(c, num_actions)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: Tensor) -> Tensor:
        from ..models._common import validate_model_input  # finite float (B, C, H >= 1, W >= 1)

        validate_model_input(x, self.in_channels)
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            if x.shape[-2:] != (self.input_size, self.input_size):
                x = F.interpolate(
                    x, size=(self.input_size, self.input_size), mode="bilinear",
                    align_corners=False, antialias=True,
                )
            h = self.features(x).mean(dim=(2, 3))
            return self.fc(h)
