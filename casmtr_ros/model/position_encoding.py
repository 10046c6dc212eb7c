"""Sine positional encoding normalised to the training extent (spec §3, ``PositionEncodingSineNorm``)."""

from __future__ import annotations

import math

import torch
from torch import nn


def sine_encoding_norm(d_model: int, h: int, w: int, max_shape: tuple[int, int]) -> torch.Tensor:
    """``[1, d_model, h, w]`` fp32 encoding; row ``i`` (1-based) sits at ``i*Hm/h``, column ``j`` at ``j*Wm/w``."""
    if d_model % 4:
        raise ValueError(f"d_model must be a multiple of 4, got {d_model}")
    y = torch.ones(h, w).cumsum(0) * (max_shape[0] / h)
    x = torch.ones(h, w).cumsum(1) * (max_shape[1] / w)
    div = torch.exp(torch.arange(0, d_model // 2, 2).float() * (-math.log(10000.0) / (d_model // 2)))[:, None, None]
    pe = torch.zeros(d_model, h, w)
    pe[0::4] = torch.sin(x[None] * div)
    pe[1::4] = torch.cos(x[None] * div)
    pe[2::4] = torch.sin(y[None] * div)
    pe[3::4] = torch.cos(y[None] * div)
    return pe[None]


class PositionEncodingSineNorm(nn.Module):
    """Adds the normalised sine encoding to a ``[B, C, H, W]`` map (no parameters, not in the state dict)."""

    def __init__(self, d_model: int, max_shape: tuple[int, int]) -> None:
        super().__init__()
        self.d_model = d_model
        self.max_shape = tuple(max_shape)
        self._cache: dict[tuple[int, int, torch.device], torch.Tensor] = {}

    def encoding(self, h: int, w: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """``[1, d, h, w]`` fp32 on ``device`` (computed on the CPU in fp32, cached for the last size)."""
        key = (h, w, torch.device(device))
        if key not in self._cache:
            self._cache = {key: sine_encoding_norm(self.d_model, h, w, self.max_shape).to(device)}
        return self._cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # fp32 encoding: a half-precision map is promoted to fp32, as in the official code under autocast
        return x + self.encoding(x.shape[2], x.shape[3], x.device)
