"""QuadTree-B attention and the 1/8 coarse transformer (spec §4).

Shapes: token sequences are ``[B, L, C]`` flattened row-major from an ``h x w`` map; heads split the channels as
``c = head * D + d``. ``h`` and ``w`` must be multiples of 4 (three-level pyramid with 2x2 average pooling).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from casmtr_ros import ops
from casmtr_ros.ops import torch_ops


def token_map(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``[B, h*w, C]`` tokens as a ``[B, C, h, w]`` map in channels-last memory format (a view, no copy).

    Convolutions run on it without the NCHW transposition copies (on CPU a depth-wise 3x3 over a channels-last
    map is an order of magnitude faster), and ``map.flatten(2).transpose(1, 2)`` turns the channels-last result
    back into contiguous tokens for free.
    """
    B, _L, C = x.shape
    return x.reshape(B, h, w, C).permute(0, 3, 1, 2)


def pointwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A bias-free 1x1 ``conv`` applied to ``[B, L, C]`` tokens as a Linear (same values, no im2col)."""
    return F.linear(x, conv.weight.view(conv.out_channels, conv.in_channels))


def map_tokens(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, h, w]`` map -> ``[B, h*w, C]`` tokens (a view for channels-last maps)."""
    return x.flatten(2).transpose(1, 2)


class DWConv(nn.Module):
    """Depth-wise 3x3 convolution applied to a token sequence laid out on an ``h x w`` map."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, bias=True, groups=dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return map_tokens(self.dwconv(token_map(x, h, w)))


class DWConvMlp(nn.Module):
    """fc1 -> ReLU -> depth-wise 3x3 conv -> GELU -> fc2 (both activations, as in the official blocks)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        # In place on the fresh hidden maps (same values, fewer large allocations: this MLP alone at 1/4 of 640x480,
        # one thread, 64 -> 47 ms; not measurable in a whole match on this VM). ReLU's backward needs only its
        # output, GELU's needs its input, so GELU is in place only without autograd.
        x = F.relu_(self.fc1(x))
        x = self.dwconv(x, h, w)
        x = F.gelu(x) if torch.is_grad_enabled() else torch.ops.aten.gelu_(x)
        return self.fc2(x)


def children_index(parent_idx: torch.Tensor, parent_w: int) -> torch.Tensor:
    """Flat indices of the 2x2 children (row-major) of flat parent indices on a grid of width ``parent_w``.

    ``parent_idx [..., K, H]`` -> ``[..., 4K, H]`` ordered parent-major, child-minor.
    """
    r = torch.div(parent_idx, parent_w, rounding_mode="floor") * 2
    c = (parent_idx % parent_w) * 2
    w = parent_w * 2
    kids = [(r + a) * w + (c + b) for a in (0, 1) for b in (0, 1)]
    out = torch.stack(kids, dim=-2)  # [..., K, 4, H]
    return out.flatten(-3, -2)


def group_children(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``[B, h*w, ...]`` row-major -> ``[B, (h/2)*(w/2), 4, ...]`` grouped by 2x2 parent, children row-major."""
    B = x.shape[0]
    rest = x.shape[2:]
    x = x.reshape(B, h // 2, 2, w // 2, 2, *rest).transpose(2, 3)
    return x.reshape(B, (h // 2) * (w // 2), 4, *rest)


def ungroup_children(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`group_children` (``h, w`` = the child grid size)."""
    B = x.shape[0]
    rest = x.shape[3:]
    x = x.reshape(B, h // 2, w // 2, 2, 2, *rest).transpose(2, 3)
    return x.reshape(B, h * w, *rest)


class QTAttB(nn.Module):
    """QuadTree attention variant B over a pyramid of ``len(topks)`` levels (finest first in the inputs)."""

    def __init__(self, nhead: int, topks: list[int], scale: int = 3) -> None:
        super().__init__()
        self.nhead = nhead
        self.topks = list(topks)
        self.weight = nn.Parameter(torch.ones(scale))

    def forward(
        self, queries: list[torch.Tensor], keys: list[torch.Tensor], values: list[torch.Tensor]
    ) -> torch.Tensor:
        """Inputs: per level ``[B, C, h_l, w_l]`` fp32 maps (level 0 finest). Returns ``[B, L0, H, D]``."""
        nlev = len(queries)
        B, C = queries[0].shape[:2]
        H = self.nhead
        D = C // H
        scale = D**-0.5
        messages: list[torch.Tensor] = []
        topk_idx = None
        topk = self.topks[0]
        for i in range(nlev):
            lev = nlev - 1 - i
            q, k, v = queries[lev], keys[lev], values[lev]
            h, w = q.shape[2:]
            kf = k.flatten(2).transpose(1, 2).reshape(B, -1, H, D)
            vf = v.flatten(2).transpose(1, 2).reshape(B, -1, H, D)
            qf = q.flatten(2).transpose(1, 2).reshape(B, -1, H, D)
            if i == 0:  # full attention at the coarsest level, heads-major: [B, H, L, S]
                qh, kh, vh = (t.transpose(1, 2) for t in (qf, kf, vf))
                A = torch.softmax(torch.matmul(qh, kh.transpose(2, 3)) * scale, dim=-1)
                messages.append(torch.matmul(A, vh).transpose(1, 2))  # [B, L, H, D]
                topk = min(topk, A.shape[-1])  # official code needs >= topk coarse keys; clamp instead of failing
                topk_idx = torch.topk(A, k=topk, dim=-1).indices.permute(0, 2, 3, 1)  # [B, L, K, H]
                continue
            prev_topk = topk
            topk = min(self.topks[i] if i < len(self.topks) else prev_topk, 4 * prev_topk)
            qg = group_children(qf, h, w)  # [B, Lp, 4, H, D]
            if ops.backend_name(q.device.type) == "torch":
                # PyTorch path: each head's candidates are the 2x2 children of its top-k parents, whole cells:
                # gather the cells, keep the scores heads-major (softmax and top-k over contiguous rows)
                A = torch.softmax(torch_ops.window_score_heads(qg, group_children(kf, h, w), topk_idx) * scale, -1)
                messages.append(torch_ops.window_value(A, group_children(vf, h, w), topk_idx))  # [B, Lp, 4, H, D]
                if i < nlev - 1:
                    cand = children_index(topk_idx, w // 2).transpose(2, 3)  # [B, Lp, H, 4K]
                    sel = torch.topk(A, k=topk, dim=-1).indices  # [B, Lp, H, 4, k]
                    picked = torch.gather(cand[:, :, :, None].expand(-1, -1, -1, 4, -1), 4, sel)
                    topk_idx = ungroup_children(picked.permute(0, 1, 3, 4, 2), h, w)  # [B, L, k, H]
                continue
            cand = children_index(topk_idx, w // 2)  # [B, Lp, 4K, H]
            A = torch.softmax(
                ops.score_computation(qg.contiguous(), kf.contiguous(), cand.contiguous()) * scale, dim=3
            )  # [B, Lp, 4, 4K, H]
            cand4 = cand[:, :, None].expand(-1, -1, 4, -1, -1)
            messages.append(
                ops.value_aggregation(A.contiguous(), vf.contiguous(), cand4.contiguous())
            )  # [B, Lp, 4, H, D]
            if i < nlev - 1:  # the finest level's selection is never used
                sel = torch.topk(A, k=topk, dim=3).indices
                topk_idx = ungroup_children(torch.gather(cand4, 3, sel), h, w)  # [B, L, K, H]
        weight = torch.softmax(self.weight, dim=0)
        out = messages[0] * weight[0]
        for i in range(1, nlev):
            h, w = queries[nlev - 1 - i].shape[2:]
            out = ungroup_children(out[:, :, None] + messages[i] * weight[i], h, w)
        return out


class QuadtreeAttention(nn.Module):
    """Projections (1x1 convs), 3-level average-pool pyramid, QTAttB, output Linear."""

    def __init__(self, dim: int, nhead: int, topks: list[int], scale: int = 3) -> None:
        super().__init__()
        self.scale = scale
        self.q_proj = nn.Conv2d(dim, dim, 1, bias=False)
        self.k_proj = nn.Conv2d(dim, dim, 1, bias=False)
        self.v_proj = nn.Conv2d(dim, dim, 1, bias=False)
        self.py_att = QTAttB(nhead, topks, scale)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, source: torch.Tensor, h: int, w: int) -> torch.Tensor:
        B, L, C = x.shape
        q = token_map(pointwise(self.q_proj, x), h, w)
        k = token_map(pointwise(self.k_proj, source), h, w)
        v = token_map(pointwise(self.v_proj, source), h, w)
        qs, ks, vs = [], [], []
        for i in range(self.scale):
            qs.append(q.float())
            ks.append(k.float())
            vs.append(v.float())
            if i != self.scale - 1:
                q, k, v = (F.avg_pool2d(t, 2, 2) for t in (q, k, v))
        msg = self.py_att(qs, ks, vs).reshape(B, L, C)
        return self.proj(msg)


class QuadtreeBlock(nn.Module):
    """Pre-norm block: ``x + Attn(LN1(x), LN1(src))`` then ``x + MLP(LN2(x))``."""

    def __init__(self, dim: int, nhead: int, topks: list[int], mlp_ratio: int = 4, scale: int = 3) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = QuadtreeAttention(dim, nhead, topks, scale)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = DWConvMlp(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor, source: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), self.norm1(source), h, w)
        return x + self.mlp(self.norm2(x), h, w)


class LocalFeatureTransformer(nn.Module):
    """The 1/8 transformer: QuadtreeBlocks named by ``layer_names`` ('self' or 'cross')."""

    def __init__(self, d_model: int, nhead: int, layer_names: list[str], topks: list[int]) -> None:
        super().__init__()
        bad = set(layer_names) - {"self", "cross"}
        if bad:
            raise ValueError(f"unknown layer names {sorted(bad)}")
        self.layer_names = list(layer_names)
        self.layers = nn.ModuleList(QuadtreeBlock(d_model, nhead, topks) for _ in layer_names)

    def forward(self, feat0: torch.Tensor, feat1: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``feat0, feat1 [B, h*w, C]`` (equal sizes; padding masks are ignored, as officially)."""
        if h % 4 or w % 4:
            raise ValueError(f"QuadTree attention needs a 1/8 map with sides divisible by 4, got {h}x{w}")
        for layer, name in zip(self.layers, self.layer_names, strict=True):
            if name == "self":
                feat0 = layer(feat0, feat0, h, w)
                feat1 = layer(feat1, feat1, h, w)
            else:
                feat0, feat1 = layer(feat0, feat1, h, w), layer(feat1, feat0, h, w)
        return feat0, feat1
