"""Spatial-frequency interaction module (SFIM) of BALISTD.

Implements the SFIM of Fig. 2c of "Enhancing Infrared Small Target Detection Robustness with
Bi-Level Adversarial Framework" (AAAI 2024): the feature map is taken to the
frequency domain with a 2-D FFT, its real and imaginary parts are refined by two parallel
branches (a per-channel spatial convolution followed by a 1x1 convolution across channels), the
result goes back to the spatial domain with the inverse FFT, and one residual block of spatial
convolutions follows. Because every frequency coefficient depends on the whole feature map, the
frequency branch gives each position an image-wide receptive field at the cost of one FFT pair.

The paper leaves several choices open; the ones made here (see also ``docs/sfim.md``):

* **rfft2 / irfft2 with ``norm="ortho"``**. Features are real, so the spectrum is Hermitian and
  ``rfft2`` keeps the non-redundant half (half the work and memory of ``fft2``); ``irfft2`` with
  ``s=(H, W)`` then returns an exactly real map of the input size, odd sizes included. The
  orthonormal scaling keeps coefficient magnitudes independent of H x W, so the same weights
  behave alike at every resolution.
* **Branch = depthwise kxk conv -> GELU -> 1x1 conv**, separate weights for the real and the
  imaginary part. GELU rather than ReLU because spectral coefficients are signed and roughly
  zero-mean: ReLU would discard half of them at initialisation.
* **No normalisation in the frequency branch**. Batch statistics over a spectrum mix the DC
  coefficient (which grows with the image size) with near-zero high frequencies, so they would
  depend on the input size; the residual block (spatial domain) carries BatchNorm instead.
* **The frequency branch joins its input residually**: ``f = x + irfft2(...)``, so the module
  only has to learn a correction of the spectrum.
* **Residual block** ``f + BN(conv3x3(ReLU(BN(conv3x3(f)))))`` with **no trailing activation**,
  so the module can be exactly the identity and does not clip signed features of its host.
* **Zero-initialised last layers** (``zero_init_last=True``, as timm's ResNets do): the last 1x1
  convolution of both frequency branches and the last BatchNorm scale start at zero, so a fresh
  SFIM is the identity and can be inserted into a (pre-)trained network without changing it.
* **Mixed precision**: the frequency branch (FFT, its convolutions, inverse FFT) runs in float32
  with autocast disabled (half-precision FFTs lose accuracy and, on CUDA, only accept powers of
  two); the residual block runs under autocast, and the output has the autocast dtype when
  autocast is on, else the input dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SFIM"]


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Floating dtype in which the FFT runs: float32 for half types, else the dtype itself."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class _SpectralBranch(nn.Module):
    """Depthwise kxk conv -> GELU -> 1x1 conv on one part (real or imaginary) of a spectrum.

    Written with ``F.conv2d`` so that the weights follow the compute dtype of the spectrum
    (float32 under autocast or for a half-precision module).
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.kernel_size = kernel_size
        self.dw_weight = nn.Parameter(torch.empty(channels, 1, kernel_size, kernel_size, **kw))
        self.dw_bias = nn.Parameter(torch.empty(channels, **kw))
        self.pw_weight = nn.Parameter(torch.empty(channels, channels, 1, 1, **kw))
        self.pw_bias = nn.Parameter(torch.empty(channels, **kw))

    def reset_parameters(self, *, zero_last: bool) -> None:
        nn.init.kaiming_normal_(self.dw_weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.dw_bias)
        if zero_last:
            nn.init.zeros_(self.pw_weight)
        else:
            nn.init.kaiming_normal_(self.pw_weight, mode="fan_in", nonlinearity="linear")
        nn.init.zeros_(self.pw_bias)

    def forward(self, z: Tensor) -> Tensor:
        dt = z.dtype
        z = F.conv2d(
            z,
            self.dw_weight.to(dt),
            self.dw_bias.to(dt),
            padding=self.kernel_size // 2,
            groups=z.shape[1],
        )
        z = F.gelu(z)
        return F.conv2d(z, self.pw_weight.to(dt), self.pw_bias.to(dt))


class SFIM(nn.Module):
    """Spatial-frequency interaction module (BALISTD, AAAI 2024, Fig. 2c).

    ``rfft2`` of the feature -> real and imaginary parts refined by two parallel branches
    (depthwise conv, GELU, 1x1 conv) -> ``irfft2`` back to the input size, added to the input ->
    one residual block of 3x3 convolutions. See the module docstring for the design choices.

    Args:
        channels: number of feature channels C (input and output).
        kernel_size: odd kernel size of the per-channel convolution on the spectrum.
        zero_init_last: zero the last layer of each path so a new module is the identity.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - Input: (B, C, H, W), any H and W, contiguous or ``channels_last``.
        - Output: (B, C, H, W); the autocast dtype under ``torch.autocast``, else the input dtype.

    Example:
        >>> sfim = SFIM(16)
        >>> sfim(torch.randn(2, 16, 33, 47)).shape
        torch.Size([2, 16, 33, 47])
    """

    def __init__(
        self,
        channels: int,
        *,
        kernel_size: int = 3,
        zero_init_last: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
            raise ValueError(f"channels must be a positive int; got {channels!r}")
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int; got {kernel_size!r}")
        kw = {"device": device, "dtype": dtype}
        self.channels = channels
        self.zero_init_last = zero_init_last
        self.real_branch = _SpectralBranch(channels, kernel_size, **kw)
        self.imag_branch = _SpectralBranch(channels, kernel_size, **kw)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False, **kw)
        self.bn1 = nn.BatchNorm2d(channels, **kw)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False, **kw)
        self.bn2 = nn.BatchNorm2d(channels, **kw)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal convolutions; zero last layers when ``zero_init_last``."""
        self.real_branch.reset_parameters(zero_last=self.zero_init_last)
        self.imag_branch.reset_parameters(zero_last=self.zero_init_last)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        nn.init.kaiming_normal_(self.conv2.weight, mode="fan_out", nonlinearity="relu")
        for bn in (self.bn1, self.bn2):
            bn.reset_running_stats()
            nn.init.ones_(bn.weight)
            nn.init.zeros_(bn.bias)
        if self.zero_init_last:
            nn.init.zeros_(self.bn2.weight)

    def frequency_branch(self, x: Tensor) -> Tensor:
        """The spectral refinement ``irfft2(branch_re(Re F) + i branch_im(Im F))``, float32+.

        Args:
            x: features of shape (B, C, H, W).

        Returns:
            The refined map, shape (B, C, H, W), in float32 for half inputs else in x's dtype.
        """
        h, w = x.shape[-2:]
        z = x.to(_compute_dtype(x.dtype))
        with torch.autocast(device_type=x.device.type, enabled=False):
            spec = torch.fft.rfft2(z, norm="ortho")
            real = self.real_branch(spec.real)
            imag = self.imag_branch(spec.imag)
            return torch.fft.irfft2(torch.complex(real, imag), s=(h, w), norm="ortho")

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a float tensor of shape (B, {self.channels}, H, W); got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != self.channels or not x.is_floating_point() or min(x.shape[2:]) < 1:
            raise ValueError(
                f"x must be a float tensor of shape (B, {self.channels}, H, W) with H, W >= 1; "
                f"got {x.dtype} of shape {tuple(x.shape)}"
            )
        if x.shape[0] == 0:  # an empty batch: nothing to transform (the FFT refuses empty inputs)
            return x.clone()
        device_type = x.device.type
        autocast_on = torch.is_autocast_enabled(device_type)
        out_dtype = torch.get_autocast_dtype(device_type) if autocast_on else x.dtype
        f = x + self.frequency_branch(x).to(x.dtype)
        r = self.bn2(self.conv2(self.act(self.bn1(self.conv1(f)))))
        return (f + r).to(out_dtype)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, zero_init_last={self.zero_init_last}"
