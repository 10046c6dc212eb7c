"""1/8 -> 1/4 feature fusion ``UpBlock`` (spec §6)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class UpBlock(nn.Module):
    """``up(x4 + inner(bilinear_x2(x8)))``: inner = conv1x1 + BN, up = conv3x3 + BN + LeakyReLU(0.01)."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.inner = nn.Sequential(nn.Conv2d(d_in, d_out, 1, bias=False), nn.BatchNorm2d(d_out))
        self.up = nn.Sequential(
            nn.Conv2d(d_out, d_out, 3, padding=1, bias=False), nn.BatchNorm2d(d_out), nn.LeakyReLU(0.01)
        )

    def forward(self, x8: torch.Tensor, x4: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x8, scale_factor=2.0, mode="bilinear", align_corners=True)
        return self.up(x4 + self.inner(up))
