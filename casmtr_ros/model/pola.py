"""POLA self-attention block (patch-based overlapping attention, GMFlowNet) of the indoor 1/4 transformer.

Spec §7.3 / §12.2: pre-norm; the normalised map is zero-padded bottom/right to a multiple of the window size
``ws`` (7); queries are the non-overlapping ``ws x ws`` windows; keys/values are the ``3ws x 3ws`` neighbourhood
(the window and its 8 neighbours) of the map zero-padded by ``ws`` on every side. Padded tokens are zeros, so
their keys/values equal the Linear biases; nothing is masked. A learned relative-position bias
``relative_position_bias_table[relative_position_index]`` is added to the scaled scores. Then a GELU MLP, both
with residuals. Parameter names follow the official ``POLATransBlock``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from casmtr_ros.model.cascade_attention import SELF_BLOCKS

# Windows per attention chunk: bounds the score tensor to ~chunk * heads * ws^2 * 9 ws^2 floats.
_WINDOW_CHUNK = 256


def pola_relative_position_index(ws: int, n_win: int = 3) -> torch.Tensor:
    """``[ws², (n_win·ws)²]`` int64 index into the bias table for query (r, c) in the window and key (r', c') in the
    neighbourhood (both row-major, each in its own local frame): ``(r - r' + n_win·ws - 1)·((n_win+1)·ws - 1) +
    (c - c' + n_win·ws - 1)``."""
    q = torch.arange(ws)
    k = torch.arange(n_win * ws)
    qr, qc = torch.meshgrid(q, q, indexing="ij")
    kr, kc = torch.meshgrid(k, k, indexing="ij")
    dy = qr.reshape(-1, 1) - kr.reshape(1, -1) + n_win * ws - 1
    dx = qc.reshape(-1, 1) - kc.reshape(1, -1) + n_win * ws - 1
    return dy * ((n_win + 1) * ws - 1) + dx


class NeighborWindowAttention(nn.Module):
    """Window queries attending to their 3x3-window neighbourhood, with a relative-position bias."""

    def __init__(self, dim: int, num_heads: int, window_size: int = 7, neig_win_num: int = 1) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} not divisible by num_heads {num_heads}")
        self.dim, self.num_heads, self.window_size = dim, num_heads, window_size
        self.n_win = 2 * neig_win_num + 1
        self.scale = (dim // num_heads) ** -0.5
        table_side = (self.n_win + 1) * window_size - 1
        self.relative_position_bias_table = nn.Parameter(torch.zeros(table_side * table_side, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", pola_relative_position_index(window_size, self.n_win))
        self.Wq = nn.Linear(dim, dim)
        self.Wk = nn.Linear(dim, dim)
        self.Wv = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def position_bias(self) -> torch.Tensor:
        """``[heads, ws², (n_win·ws)²]`` bias looked up with the (loaded) index buffer."""
        n_q = self.window_size**2
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        return bias.view(n_q, -1, self.num_heads).permute(2, 0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, Hp, Wp, C]`` (already normalised and padded to multiples of ``ws``) -> ``[B, Hp, Wp, C]``.

        Keys/values are projected once on the zero-padded map; the ``3ws x 3ws`` neighbourhoods are unfolded one
        band of window rows at a time, so the extra memory is bounded by the chunk size, not 9x the map.
        """
        B, Hp, Wp, C = x.shape
        ws, nh, hd = self.window_size, self.num_heads, C // self.num_heads
        pad = (self.n_win // 2) * ws
        side = self.n_win * ws
        nwy, nwx = Hp // ws, Wp // ws
        # Queries: window partition, [B, nwy, nwx, ws*ws, C].
        q = self.Wq(x).view(B, nwy, ws, nwx, ws, C).permute(0, 1, 3, 2, 4, 5).reshape(B, nwy, nwx, ws * ws, C)
        xp = F.pad(x, (0, 0, pad, pad, pad, pad))
        kp, vp = self.Wk(xp), self.Wv(xp)  # padded tokens -> the Linear biases (no masking)

        def neighbourhoods(t: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
            """Row-major ``side x side`` neighbourhoods of window rows ``r0..r1-1``: ``[B*(r1-r0)*nwx, side², C]``."""
            band = t[:, r0 * ws : r1 * ws + 2 * pad].permute(0, 3, 1, 2)
            u = F.unfold(band, kernel_size=side, stride=ws)  # [B, C*side², (r1-r0)*nwx]
            return u.view(B, C, side * side, -1).permute(0, 3, 2, 1).reshape(-1, side * side, C)

        bias = self.position_bias().unsqueeze(0)
        out = torch.empty_like(q)
        rows = max(1, _WINDOW_CHUNK // max(1, B * nwx))
        for r0 in range(0, nwy, rows):
            r1 = min(nwy, r0 + rows)
            n = B * (r1 - r0) * nwx
            qh = q[:, r0:r1].reshape(n, -1, nh, hd).transpose(1, 2) * self.scale
            kh = neighbourhoods(kp, r0, r1).view(n, -1, nh, hd).transpose(1, 2)
            vh = neighbourhoods(vp, r0, r1).view(n, -1, nh, hd).transpose(1, 2)
            attn = torch.softmax(qh @ kh.transpose(-2, -1) + bias, dim=-1)
            out[:, r0:r1] = (attn @ vh).transpose(1, 2).reshape(B, r1 - r0, nwx, -1, C)
        out = self.proj(out)
        return out.view(B, nwy, nwx, ws, ws, C).permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, C)


class PolaMlp(nn.Module):
    """``fc1`` -> GELU -> ``fc2``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class POLATransBlock(nn.Module):
    """Pre-norm POLA attention + MLP block (official name ``POLATransBlock``); ``forward(x [B, H*W, C], H, W)``."""

    def __init__(self, dim: int, num_heads: int, window_size: int = 7, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.window_size = window_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = NeighborWindowAttention(dim, num_heads, window_size)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = PolaMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, L, C = x.shape
        if L != H * W:
            raise ValueError(f"POLATransBlock: {L} tokens do not form a {H}x{W} map")
        ws = self.window_size
        pad_b, pad_r = (-H) % ws, (-W) % ws
        y = F.pad(self.norm1(x).view(B, H, W, C), (0, 0, 0, pad_r, 0, pad_b))
        y = self.attn(y)[:, :H, :W].reshape(B, L, C)
        x = x + y
        return x + self.mlp(self.norm2(x))


def pola_self_block(d_model: int, nhead: int, attn_window: int = 7, mask_mode: str = "official") -> POLATransBlock:
    """Factory for the cascade transformer's ``SELF_BLOCKS`` registry (self type ``'POLA'``).

    POLA zero-pads and never masks (§12.2) in the official code, so ``mask_mode`` has nothing to change here.
    """
    del mask_mode
    return POLATransBlock(d_model, nhead, attn_window)


SELF_BLOCKS.setdefault("POLA", pola_self_block)
