"""LoFTR-style ResNet-FPN backbone with outputs at 1/8, 1/4 and 1/2 (the frozen indoor QuadTree CNN).

Module and parameter names follow the official ``ResNetFPN_8_4_2`` so a checkpoint loads strictly
(spec §2.2). With ``in_channels=1`` an RGB ``[B, 3, H, W]`` input is converted to grey inside ``forward``
as ``0.299 R + 0.587 G + 0.114 B``; no mean/std normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, padding=0, bias=False)


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, without bias."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 upsampling with ``align_corners=True`` (the FPN top-down path)."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)


def rgb_to_grey(x: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` RGB in [0, 1] -> ``[B, 1, H, W]`` grey with the ITU-R 601 weights."""
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


class BasicBlock(nn.Module):
    """LoFTR residual block: conv3x3-BN-ReLU-conv3x3-BN, identity (or conv1x1+BN when strided), ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch, stride)
        self.conv2 = conv3x3(out_ch, out_ch)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None if stride == 1 else nn.Sequential(conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.downsample is not None:
            x = self.downsample(x)
        return self.relu(x + y)


def make_layer(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    """Two basic blocks; the first one changes channels / stride."""
    return nn.Sequential(BasicBlock(in_ch, out_ch, stride), BasicBlock(out_ch, out_ch, 1))


class ResNetFPN842(nn.Module):
    """ResNet-18-like encoder (3 stages) + FPN decoder.

    Args:
        initial_dim: channels of the stem (indoor: 128).
        block_dims: channels at 1/2, 1/4, 1/8 (indoor: ``(128, 196, 256)``).
        in_channels: 1 (grey; RGB inputs are converted) or 3.
    Returns (forward): ``[feat_8 [B, d2, H/8, W/8], feat_4 [B, d1, H/4, W/4], feat_2 [B, d0, H/2, W/2]]``.
    """

    def __init__(self, initial_dim: int = 128, block_dims: Sequence[int] = (128, 196, 256), in_channels: int = 1):
        super().__init__()
        d0, d1, d2 = block_dims
        self.in_channels = in_channels
        self.conv1 = nn.Conv2d(in_channels, initial_dim, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(initial_dim)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_layer(initial_dim, d0, 1)  # 1/2
        self.layer2 = make_layer(d0, d1, 2)  # 1/4
        self.layer3 = make_layer(d1, d2, 2)  # 1/8
        self.layer3_outconv = conv1x1(d2, d2)
        self.layer2_outconv = conv1x1(d1, d2)
        self.layer2_outconv2 = nn.Sequential(conv3x3(d2, d2), nn.BatchNorm2d(d2), nn.LeakyReLU(), conv3x3(d2, d1))
        self.layer1_outconv = conv1x1(d0, d1)
        self.layer1_outconv2 = nn.Sequential(conv3x3(d1, d1), nn.BatchNorm2d(d1), nn.LeakyReLU(), conv3x3(d1, d0))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.dim() != 4:
            raise ValueError(f"ResNetFPN842 expects [B, C, H, W], got {tuple(x.shape)}")
        if self.in_channels == 1 and x.shape[1] == 3:
            x = rgb_to_grey(x)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"ResNetFPN842 expects {self.in_channels} (or 3) channels, got {x.shape[1]}")
        if x.shape[2] % 8 or x.shape[3] % 8:
            raise ValueError(f"ResNetFPN842 needs H and W divisible by 8, got {tuple(x.shape[2:])}")
        x1 = self.layer1(self.relu(self.bn1(self.conv1(x))))  # 1/2
        x2 = self.layer2(x1)  # 1/4
        x3 = self.layer3(x2)  # 1/8
        out8 = self.layer3_outconv(x3)
        out4 = self.layer2_outconv2(self.layer2_outconv(x2) + upsample2x(out8))
        out2 = self.layer1_outconv2(self.layer1_outconv(x1) + upsample2x(out4))
        return [out8, out4, out2]
