"""POLA self-attention block against a per-pixel naive reference (spec §7.3, §12.2)."""

from __future__ import annotations

import pytest
import torch

from casmtr_ros.model.pola import POLATransBlock, pola_relative_position_index


def naive_pola(block: POLATransBlock, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Loop over every query pixel: keys are the 21x21 pixels around its 7x7 window in the padded map."""
    ws = block.window_size
    att = block.attn
    nh = att.num_heads
    B, L, C = x.shape
    hd = C // nh
    y = block.norm1(x).view(B, H, W, C)
    Hp, Wp = H + (-H) % ws, W + (-W) % ws
    canvas = torch.zeros(B, Hp + 2 * ws, Wp + 2 * ws, C, dtype=x.dtype)  # zero padding on all sides
    canvas[:, ws : ws + H, ws : ws + W] = y
    table = att.relative_position_bias_table
    out = torch.zeros(B, H, W, C, dtype=x.dtype)
    for b in range(B):
        for r in range(H):
            for c in range(W):
                wy, wx = r // ws, c // ws
                qr, qc = r % ws, c % ws
                q = att.Wq(canvas[b, ws + r, ws + c]).view(nh, hd) * att.scale
                keys, bias_rows = [], []
                for kr in range(3 * ws):
                    for kc in range(3 * ws):
                        keys.append(canvas[b, wy * ws + kr, wx * ws + kc])
                        bias_rows.append((qr - kr + 3 * ws - 1) * (4 * ws - 1) + (qc - kc + 3 * ws - 1))
                kv = torch.stack(keys)  # [441, C]
                k = att.Wk(kv).view(-1, nh, hd)
                v = att.Wv(kv).view(-1, nh, hd)
                bias = table[torch.tensor(bias_rows)]  # [441, nh]
                s = torch.einsum("hd,khd->hk", q, k) + bias.T
                msg = torch.einsum("hk,khd->hd", torch.softmax(s, -1), v).reshape(C)
                out[b, r, c] = att.proj(msg)
    x = x + out.view(B, L, C)
    return x + block.mlp(block.norm2(x))


@pytest.mark.parametrize(("H", "W"), [(7, 7), (9, 12), (5, 15), (14, 21), (3, 20)])
def test_pola_matches_naive(H: int, W: int) -> None:
    torch.manual_seed(0)
    block = POLATransBlock(dim=16, num_heads=4, window_size=7).double().eval()
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.3)
        x = torch.randn(2, H * W, 16, dtype=torch.float64)
        got = block(x, H, W)
        want = naive_pola(block, x, H, W)
    assert got.shape == x.shape
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_pola_uses_loaded_index_buffer() -> None:
    """The bias is looked up through the (persistent) index buffer, so a checkpoint's buffer changes outputs."""
    torch.manual_seed(1)
    block = POLATransBlock(dim=16, num_heads=4).eval()
    with torch.no_grad():
        block.attn.relative_position_bias_table.normal_(0, 1.0)
        x = torch.randn(1, 8 * 8, 16)
        a = block(x, 8, 8)
        sd = block.state_dict()
        assert "attn.relative_position_index" in sd
        sd["attn.relative_position_index"] = torch.zeros_like(sd["attn.relative_position_index"])
        block.load_state_dict(sd)
        b = block(x, 8, 8)
    assert not torch.allclose(a, b)


def test_relative_position_index_layout() -> None:
    idx = pola_relative_position_index(7)
    assert idx.shape == (49, 441) and idx.dtype == torch.int64
    assert int(idx.min()) == 0 and int(idx.max()) < 729
    # query (0,0) vs key (0,0): dy = dx = 0 -> (20)*27 + 20; query (6,6) vs key (20,20): dy = dx = -14 -> 6*27+6
    assert idx[0, 0] == 20 * 27 + 20
    assert idx[48, 440] == 6 * 27 + 6
    assert idx[48, 0] == 26 * 27 + 26


def test_pola_rejects_bad_token_count() -> None:
    block = POLATransBlock(dim=16, num_heads=4)
    with pytest.raises(ValueError, match="tokens"):
        block(torch.zeros(1, 10, 16), 3, 4)



def test_pola_banded_unfold_matches_naive(monkeypatch) -> None:
    """One window row per band (the memory-bounded path for large maps) gives the naive result too."""
    import casmtr_ros.model.pola as pola

    monkeypatch.setattr(pola, "_WINDOW_CHUNK", 1)
    torch.manual_seed(3)
    block = POLATransBlock(dim=16, num_heads=4).double().eval()
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.3)
        x = torch.randn(1, 16 * 10, 16, dtype=torch.float64)
        got = block(x, 16, 10)
        want = naive_pola(block, x, 16, 10)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
