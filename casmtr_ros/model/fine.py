"""1/2 fine refinement (spec §9): window gathering, LoFTR vanilla transformer, soft-argmax matching."""

from __future__ import annotations

import torch
from torch import nn


def gather_windows(
    feat: torch.Tensor, b_ids: torch.Tensor, idx4: torch.Tensor, w4: int, stride: int, W: int
) -> torch.Tensor:
    """``W x W`` windows of ``feat [B, C, hf, wf]`` centred at fine pixel ``stride * (y4, x4)``, zero-padded.

    Same as ``F.unfold(feat, W, padding=W//2, stride=stride)`` picked at ``idx4``, but only for the ``M``
    requested windows (memory linear in M). Returns ``[M, W*W, C]``.
    """
    B, C, _hf, wf = feat.shape
    r = W // 2
    padded = torch.nn.functional.pad(feat, (r, r, r, r)).permute(0, 2, 3, 1)  # [B, hf+2r, wf+2r, C]
    wp = wf + 2 * r
    y0 = torch.div(idx4, w4, rounding_mode="floor") * stride
    x0 = (idx4 % w4) * stride
    off = torch.arange(W, device=feat.device)
    rows = y0[:, None, None] + off[None, :, None]
    cols = x0[:, None, None] + off[None, None, :]
    flat = (rows * wp + cols).reshape(-1, W * W)
    return padded.reshape(B, -1, C)[b_ids[:, None], flat]


class FinePreprocess(nn.Module):
    """Fine windows of both images merged with the projected 1/4 feature of their match (``down_proj``,
    ``merge_feat``)."""

    def __init__(self, d_coarse: int = 128, d_fine: int = 64, window: int = 5) -> None:
        super().__init__()
        self.W = window
        self.down_proj = nn.Linear(d_coarse, d_fine, bias=True)
        self.merge_feat = nn.Linear(2 * d_fine, d_fine, bias=True)

    def forward(
        self,
        feat_f0: torch.Tensor,
        feat_f1: torch.Tensor,
        feat_c0: torch.Tensor,
        feat_c1: torch.Tensor,
        b_ids: torch.Tensor,
        i_ids: torch.Tensor,
        j_ids: torch.Tensor,
        w4: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``feat_f* [B, Cf, hf, wf]`` (hf = 2 h4), ``feat_c* [B, L4, Cc]``. Returns ``[M, W*W, Cf]`` twice."""
        W = self.W
        M = b_ids.numel()
        Cf = feat_f0.shape[1]
        if M == 0:
            empty = feat_f0.new_zeros(0, W * W, Cf)
            return empty, empty.clone()
        stride = feat_f0.shape[3] // w4
        win0 = gather_windows(feat_f0, b_ids, i_ids, w4, stride, W)
        win1 = gather_windows(feat_f1, b_ids, j_ids, w4, stride, W)
        ctx = self.down_proj(torch.cat([feat_c0[b_ids, i_ids], feat_c1[b_ids, j_ids]], 0))  # [2M, Cf]
        ctx = ctx[:, None].expand(-1, W * W, -1)
        merged = self.merge_feat(torch.cat([torch.cat([win0, win1], 0), ctx], -1))
        return merged[:M], merged[M:]


class LoFTREncoderLayer(nn.Module):
    """Post-norm LoFTR layer with full softmax attention (computed in fp32)."""

    def __init__(self, d_model: int, nhead: int) -> None:
        super().__init__()
        self.nhead = nhead
        self.dim = d_model // nhead
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.merge = nn.Linear(d_model, d_model, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(2 * d_model, 2 * d_model, bias=False), nn.ReLU(True), nn.Linear(2 * d_model, d_model, bias=False)
        )
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        q = self.q_proj(x).view(n, -1, self.nhead, self.dim)
        k = self.k_proj(source).view(n, -1, self.nhead, self.dim)
        v = self.v_proj(source).view(n, -1, self.nhead, self.dim)
        with torch.autocast(x.device.type, enabled=False):
            q, k, v = q.float(), k.float(), v.float()
            A = torch.softmax(torch.einsum("nlhd,nshd->nlsh", q, k) * self.dim**-0.5, dim=2)
            msg = torch.einsum("nlsh,nshd->nlhd", A, v)
        msg = self.norm1(self.merge(msg.reshape(n, -1, self.nhead * self.dim)))
        msg = self.norm2(self.mlp(torch.cat([x, msg.to(x.dtype)], dim=2)))
        return x + msg


class FineTransformer(nn.Module):
    """LoFTR ``LocalFeatureTransformer`` for the fine windows; 'cross' layers are sequential (0 then 1)."""

    def __init__(self, d_model: int = 64, nhead: int = 2, layer_names: list[str] | None = None) -> None:
        super().__init__()
        self.layer_names = list(layer_names or ["self", "cross"])
        self.layers = nn.ModuleList(LoFTREncoderLayer(d_model, nhead) for _ in self.layer_names)

    def forward(self, feat0: torch.Tensor, feat1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if feat0.shape[0] == 0:
            return feat0, feat1
        for layer, name in zip(self.layers, self.layer_names, strict=True):
            if name == "self":
                feat0 = layer(feat0, feat0)
                feat1 = layer(feat1, feat1)
            elif name == "cross":
                feat0 = layer(feat0, feat1)
                feat1 = layer(feat1, feat0)
            else:
                raise ValueError(f"unknown layer name {name!r}")
        return feat0, feat1


class FineMatching(nn.Module):
    """Soft-argmax of the centre token of window 0 over window 1 (fp32)."""

    def forward(
        self,
        feat0: torch.Tensor,
        feat1: torch.Tensor,
        mkpts0_c: torch.Tensor,
        mkpts1_c: torch.Tensor,
        fine_scale: float,
        scale1: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``feat* [M, W*W, C]``; ``fine_scale`` = image pixels per fine pixel; ``scale1 [M, 2]`` optional.

        Returns ``expec_f [M, 3]`` (ex, ey in [-1, 1], std) and ``mkpts0_f, mkpts1_f [M, 2]``.
        """
        M, WW, C = feat0.shape
        W = round(WW**0.5)
        if M == 0:
            return {"expec_f": feat0.new_zeros(0, 3, dtype=torch.float32), "mkpts0_f": mkpts0_c, "mkpts1_f": mkpts1_c}
        with torch.autocast(feat0.device.type, enabled=False):
            f0c = feat0[:, WW // 2].float()
            sim = torch.einsum("mc,mrc->mr", f0c, feat1.float())
            heat = torch.softmax(sim * C**-0.5, dim=1)
            g = torch.linspace(-1, 1, W, device=feat0.device)
            gx = g[None, :].expand(W, W).reshape(1, WW)
            gy = g[:, None].expand(W, W).reshape(1, WW)
            ex = (heat * gx).sum(1)
            ey = (heat * gy).sum(1)
            coords = torch.stack([ex, ey], 1)
            var = torch.stack([(heat * gx**2).sum(1), (heat * gy**2).sum(1)], 1) - coords**2
            std = torch.sqrt(torch.clamp(var, min=1e-10)).sum(-1)
            s = (W // 2) * fine_scale
            delta = coords * s if scale1 is None else coords * s * scale1
            return {
                "expec_f": torch.cat([coords, std[:, None]], -1),
                "mkpts0_f": mkpts0_c,
                "mkpts1_f": mkpts1_c + delta,
            }
