"""Twins locally-grouped self-attention (LSA) blocks: the ViT backbone's and the outdoor 1/4 ``LocalBlock`` (§7.3).

Padding rule (§12.1): the map is zero-padded bottom/right to a multiple of the window size. In ``official``
mask mode padded tokens are masked (-1000 between real and padded tokens) only when *both* pads are non-zero
(the official slice ``[-0:]`` selects the whole map otherwise, which disables masking); ``corrected`` mode
masks whenever any padding exists.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MASK_MODES = ("official", "corrected")


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        return self.fc2(F.gelu(h) if torch.is_grad_enabled() else torch.ops.aten.gelu_(h))  # in place: see DWConvMlp


def window_pad_mask(h: int, w: int, ws: int, mode: str, device: torch.device) -> torch.Tensor | None:
    """Additive ``[1, G, 1, ws*ws, ws*ws]`` mask for the padded map, or ``None`` when nothing is masked."""
    pad_b, pad_r = (-h) % ws, (-w) % ws
    if mode == "official":
        if pad_b == 0 or pad_r == 0:
            return None
    elif mode != "corrected":
        raise ValueError(f"mask mode must be one of {MASK_MODES}, got {mode!r}")
    elif pad_b == 0 and pad_r == 0:
        return None
    hp, wp = h + pad_b, w + pad_r
    m = torch.zeros(hp, wp, device=device)
    m[h:, :] = 1
    m[:, w:] = 1
    m = m.reshape(hp // ws, ws, wp // ws, ws).transpose(1, 2).reshape(1, -1, ws * ws)
    diff = m[:, :, None, :] - m[:, :, :, None]
    return torch.where(diff != 0, -1000.0, 0.0)[:, :, None]


class GroupAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping ``ws x ws`` windows of a token map."""

    def __init__(self, dim: int, num_heads: int, ws: int, qkv_bias: bool, mask_mode: str = "official") -> None:
        super().__init__()
        self.num_heads = num_heads
        self.ws = ws
        self.scale = (dim // num_heads) ** -0.5
        self.mask_mode = mask_mode
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        B, N, C = x.shape
        ws, nh = self.ws, self.num_heads
        x = x.view(B, h, w, C)
        pad_b, pad_r = (-h) % ws, (-w) % ws
        if pad_b or pad_r:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = h + pad_b, w + pad_r
        hg, wg = hp // ws, wp // ws
        x = x.reshape(B, hg, ws, wg, ws, C).transpose(2, 3)
        qkv = self.qkv(x).reshape(B, hg * wg, ws * ws, 3, nh, C // nh).permute(3, 0, 1, 4, 2, 5)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [B, G, nh, ws*ws, D]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        mask = window_pad_mask(h, w, ws, self.mask_mode, x.device)
        if mask is not None:
            attn = attn + mask.to(attn.dtype)
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(2, 3).reshape(B, hg, wg, ws, ws, C).transpose(2, 3).reshape(B, hp, wp, C)
        if pad_b or pad_r:
            x = x[:, :h, :w]
        return self.proj(x.reshape(B, N, C))


class GroupBlock(nn.Module):
    """Pre-norm Twins block with windowed attention: ``x + attn(LN1 x)``, ``x + mlp(LN2 x)``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ws: int,
        qkv_bias: bool,
        eps: float,
        mlp_ratio: int = 4,
        mask_mode: str = "official",
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = GroupAttention(dim, num_heads, ws, qkv_bias, mask_mode)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), h, w)
        return x + self.mlp(self.norm2(x))


class LocalBlock(nn.Module):
    """Outdoor 1/4 self block: ``block_local`` = GroupBlock(ws 7, no qkv bias, LayerNorm eps 1e-5)."""

    def __init__(self, dim: int, nhead: int, attn_window: int = 7, mask_mode: str = "official") -> None:
        super().__init__()
        self.block_local = GroupBlock(dim, nhead, attn_window, qkv_bias=False, eps=1e-5, mask_mode=mask_mode)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return self.block_local(x, h, w)
