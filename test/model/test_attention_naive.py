"""The model's attention blocks against naive per-query loop references on tiny sizes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from casmtr_ros.model.cascade_attention import CascadeQTAttB, candidate_windows, window_offsets
from casmtr_ros.model.local_attention import GroupAttention
from casmtr_ros.model.position_encoding import sine_encoding_norm
from casmtr_ros.model.quadtree import QTAttB

torch.manual_seed(0)


def heads(x: torch.Tensor, H: int) -> torch.Tensor:
    """``[C, h, w]`` map -> ``[H, h, w, D]``."""
    C, h, w = x.shape
    return x.reshape(H, C // H, h, w).permute(0, 2, 3, 1)


def naive_qtattb(qs, ks, vs, H, topks, weight):
    """Set-based QuadTree-B for batch 1 (levels finest first), one query at a time."""
    q = [heads(t[0], H) for t in qs]
    k = [heads(t[0], H) for t in ks]
    v = [heads(t[0], H) for t in vs]
    D = q[0].shape[-1]
    w = torch.softmax(weight, 0)
    h0, w0 = q[0].shape[1:3]
    out = torch.zeros(h0, w0, H, D, dtype=torch.float64)
    for hd in range(H):
        sel = {2: {}, 1: {}}
        msg = {2: {}, 1: {}, 0: {}}
        for lev in (2, 1, 0):
            hl, wl = q[lev].shape[1:3]
            for y in range(hl):
                for x in range(wl):
                    if lev == 2:
                        cands = [(a, b) for a in range(hl) for b in range(wl)]
                    else:
                        parent = sel[lev + 1][(y // 2, x // 2)]
                        cands = [(2 * a + i, 2 * b + j) for (a, b) in parent for i in (0, 1) for j in (0, 1)]
                    s = torch.stack([q[lev][hd, y, x].double() @ k[lev][hd, a, b].double() for a, b in cands])
                    p = torch.softmax(s / math.sqrt(D), 0)
                    msg[lev][(y, x)] = sum(p[n] * v[lev][hd, a, b].double() for n, (a, b) in enumerate(cands))
                    if lev > 0:
                        kk = topks[2 - lev]
                        sel[lev][(y, x)] = [cands[n] for n in torch.topk(p, min(kk, len(cands))).indices.tolist()]
        for y in range(h0):
            for x in range(w0):
                m2, m1 = msg[2][(y // 4, x // 4)], msg[1][(y // 2, x // 2)]
                out[y, x, hd] = w[0] * m2 + w[1] * m1 + w[2] * msg[0][(y, x)]
    return out.reshape(h0 * w0, H, D)


def test_qtattb_matches_naive():
    C, H, h, w = 8, 2, 8, 12
    qs, ks, vs = [torch.randn(1, C, h, w)], [torch.randn(1, C, h, w)], [torch.randn(1, C, h, w)]
    for _ in range(2):
        for lst in (qs, ks, vs):
            lst.append(F.avg_pool2d(lst[-1], 2, 2))
    att = QTAttB(H, [4, 3, 2])
    with torch.no_grad():
        att.weight.copy_(torch.tensor([0.3, -0.2, 0.5]))
        got = att(qs, ks, vs)[0]
    ref = naive_qtattb(qs, ks, vs, H, [4, 3, 2], att.weight.detach().double())
    torch.testing.assert_close(got.double(), ref, atol=1e-5, rtol=1e-5)


def naive_windows(centre: int, h8: int, w8: int, ws: int = 5) -> list[int]:
    r0, c0 = divmod(centre, w8)
    rows = [r0 + d for d in range(-(ws // 2), ws // 2 + 1)]
    cols = [c0 + d for d in range(-(ws // 2), ws // 2 + 1)]
    rows = [r - min(0, min(rows)) for r in rows]
    rows = [r - max(0, max(rows) - (h8 - 1)) for r in rows]
    cols = [c - min(0, min(cols)) for c in cols]
    cols = [c - max(0, max(cols) - (w8 - 1)) for c in cols]
    return [(2 * r + a) * 2 * w8 + 2 * c + b for r in rows for c in cols for a in (0, 1) for b in (0, 1)]


def test_candidate_windows_match_naive_including_borders():
    h8, w8 = 6, 7
    centre = torch.arange(h8 * w8)[None]  # every cell as a centre: corners, edges and inside
    got = candidate_windows(centre, window_offsets(5), h8, w8)[0]
    for c in range(h8 * w8):
        ref = naive_windows(c, h8, w8)
        assert got[c].tolist() == ref
        assert len(set(ref)) == 100 and min(ref) >= 0 and max(ref) < 4 * h8 * w8


def test_cascade_attention_matches_naive():
    C, H, h4, w4 = 8, 2, 12, 14
    h8, w8 = h4 // 2, w4 // 2
    att = CascadeQTAttB(C, H).eval()
    x, src = torch.randn(1, h4 * w4, C), torch.randn(1, h4 * w4, C)
    centre = torch.randint(0, h8 * w8, (1, h8 * w8))
    cand = candidate_windows(centre, window_offsets(5), h8, w8)
    bias = torch.randn(1, h8 * w8, 4, cand.shape[-1], H)
    with torch.no_grad():
        got = att(x, src, h4, w4, cand, bias)
        q = att.q_proj(x.transpose(1, 2).reshape(1, C, h4, w4)).flatten(2)[0].T.reshape(-1, H, C // H)
        k = att.k_proj(src.transpose(1, 2).reshape(1, C, h4, w4)).flatten(2)[0].T.reshape(-1, H, C // H)
        v = att.v_proj(src.transpose(1, 2).reshape(1, C, h4, w4)).flatten(2)[0].T.reshape(-1, H, C // H)
        msg = torch.zeros(h4 * w4, H, C // H)
        for y in range(h4):
            for xx in range(w4):
                p8 = (y // 2) * w8 + xx // 2
                child = (y % 2) * 2 + xx % 2
                ids = naive_windows(centre[0, p8].item(), h8, w8)
                for hd in range(H):
                    s = torch.stack([q[y * w4 + xx, hd] @ k[j, hd] for j in ids]) / math.sqrt(C // H)
                    p = torch.softmax(s + bias[0, p8, child, :, hd], 0)
                    msg[y * w4 + xx, hd] = (p[:, None] * v[ids, hd]).sum(0)
        ref = att.proj(msg.reshape(1, -1, C))
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def naive_group_attention(att: GroupAttention, x: torch.Tensor, h: int, w: int, mode: str) -> torch.Tensor:
    C = x.shape[-1]
    ws, H = att.ws, att.num_heads
    D = C // H
    pad_b, pad_r = (-h) % ws, (-w) % ws
    hp, wp = h + pad_b, w + pad_r
    grid = torch.zeros(hp, wp, C)
    grid[:h, :w] = x[0].reshape(h, w, C)
    qkv = att.qkv(grid)  # padded tokens are zero vectors before qkv
    masked = (pad_b > 0 and pad_r > 0) if mode == "official" else (pad_b > 0 or pad_r > 0)
    out = torch.zeros(h, w, C)
    for y in range(h):
        for xx in range(w):
            gy, gx = y // ws, xx // ws
            keys = [(a, b) for a in range(gy * ws, gy * ws + ws) for b in range(gx * ws, gx * ws + ws)]
            for hd in range(H):
                q = qkv[y, xx, hd * D : (hd + 1) * D]
                s = torch.stack([q @ qkv[a, b, C + hd * D : C + (hd + 1) * D] for a, b in keys]) * D**-0.5
                if masked:
                    pad = torch.tensor([a >= h or b >= w for a, b in keys])
                    s = s - 1000.0 * pad.float()  # the query is a real token: real-pad pairs get -1000
                p = torch.softmax(s, 0)
                vals = torch.stack([qkv[a, b, 2 * C + hd * D : 2 * C + (hd + 1) * D] for a, b in keys])
                out[y, xx, hd * D : (hd + 1) * D] = (p[:, None] * vals).sum(0)
    return att.proj(out.reshape(1, h * w, C))


@pytest.mark.parametrize("mode", ["official", "corrected"])
@pytest.mark.parametrize(("h", "w"), [(7, 7), (9, 7), (7, 10), (9, 10)])
def test_group_attention_padding_rule(mode, h, w):
    att = GroupAttention(8, 2, ws=7, qkv_bias=True, mask_mode=mode).eval()
    x = torch.randn(1, h * w, 8)
    with torch.no_grad():
        torch.testing.assert_close(att(x, h, w), naive_group_attention(att, x, h, w, mode), atol=1e-5, rtol=1e-5)


def test_position_encoding_is_normalised_to_training_extent():
    pe = sine_encoding_norm(16, 13, 26, (88, 88))[0]
    for j in (0, 7, 25):
        assert math.isclose(pe[0, 0, j].item(), math.sin(88 * (j + 1) / 26), abs_tol=1e-5)
        assert math.isclose(pe[1, 0, j].item(), math.cos(88 * (j + 1) / 26), abs_tol=1e-5)
    for i in (0, 12):
        f1 = math.exp(-math.log(10000.0) * 2 / 8)
        assert math.isclose(pe[6, i, 3].item(), math.sin(88 * (i + 1) / 13 * f1), abs_tol=1e-5)
        assert math.isclose(pe[7, i, 3].item(), math.cos(88 * (i + 1) / 13 * f1), abs_tol=1e-5)
