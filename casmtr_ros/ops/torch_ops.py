"""Pure-PyTorch versions of the three gathered-attention ops (the CPU path and the CUDA kernels' reference).

Shapes follow ``shared/reference/cuda_ops.md``. All outputs are fp32 (fp64 for fp64 inputs); inputs of any
floating type are promoted to at least fp32 so that half-precision inputs accumulate in fp32 like the kernels.
Work is chunked over the parent/query axis so memory stays linear in the number of queries.
"""

from __future__ import annotations

import torch

# Number of gathered float32 elements processed at once (~256 MB).
_CHUNK_ELEMS = 64 * 1024 * 1024


def _acc(*tensors: torch.Tensor) -> torch.dtype:
    """Accumulation/output dtype: fp64 if any input is fp64, else fp32."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _chunks(n: int, per_item: int) -> list[tuple[int, int]]:
    step = max(1, _CHUNK_ELEMS // max(1, per_item))
    return [(s, min(n, s + step)) for s in range(0, n, step)]


def score_computation(query: torch.Tensor, key: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """QuadTree gathered block scores.

    Args:
        query: ``[B, N1, 4, H, D]`` the 2x2 children of each parent.
        key: ``[B, N2, H, D]``.
        index: ``[B, N1, K, H]`` int64 rows of ``key`` per parent and head.
    Returns:
        ``[B, N1, 4, K, H]`` fp32 (fp64 for fp64 inputs),
        ``out[b,n,f,k,h] = query[b,n,f,h] . key[b,index[b,n,k,h],h]``.
    """
    B, N1, F, H, D = query.shape
    K = index.shape[2]
    acc = _acc(query, key)
    q = query.to(acc)
    k_bhnd = key.to(acc).permute(0, 2, 1, 3)  # [B, H, N2, D]
    out = query.new_empty((B, N1, F, K, H), dtype=acc)
    for s, e in _chunks(N1, K * H * D * B):
        idx = index[:, s:e].permute(0, 3, 1, 2).reshape(B, H, -1)  # [B, H, n*K]
        g = torch.gather(k_bhnd, 2, idx[..., None].expand(-1, -1, -1, D)).view(B, H, e - s, K, D)
        out[:, s:e] = torch.einsum("bnfhd,bhnkd->bnfkh", q[:, s:e], g)
    return out


def value_aggregation(score: torch.Tensor, value: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Gathered weighted sum of values.

    Args:
        score: ``[B, N, 4, K, H]`` attention weights.
        value: ``[B, M, H, D]``.
        index: ``[B, N, 4, K, H]`` int64 rows of ``value``.
    Returns:
        ``[B, N, 4, H, D]`` fp32 (fp64 for fp64 inputs),
        ``out[b,n,f,h] = sum_k score[b,n,f,k,h] * value[b,index[b,n,f,k,h],h]``.
    """
    B, N, F, K, H = score.shape
    D = value.shape[-1]
    acc = _acc(score, value)
    v_bhmd = value.to(acc).permute(0, 2, 1, 3)  # [B, H, M, D]
    out = score.new_empty((B, N, F, H, D), dtype=acc)
    for s, e in _chunks(N, F * K * H * D * B):
        idx = index[:, s:e].permute(0, 4, 1, 2, 3).reshape(B, H, -1)  # [B, H, n*F*K]
        g = torch.gather(v_bhmd, 2, idx[..., None].expand(-1, -1, -1, D)).view(B, H, e - s, F, K, D)
        out[:, s:e] = torch.einsum("bnfkh,bhnfkd->bnfhd", score[:, s:e].to(acc), g)
    return out


def cascade_score(query: torch.Tensor, key: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """CasMTR 1/4 matching scores over candidate windows.

    Args:
        query: ``[B, N1, C]``.
        key: ``[B, N2, C]``.
        index: ``[B, N1, K]`` int64 rows of ``key``.
    Returns:
        ``[B, N1, K]`` fp32 (fp64 for fp64 inputs) with ``out[b,i,k] = query[b,i] . key[b,index[b,i,k]]``.
    """
    B, N1, C = query.shape
    K = index.shape[2]
    acc = _acc(query, key)
    q = query.to(acc)
    kf = key.to(acc)
    out = query.new_empty((B, N1, K), dtype=acc)
    for s, e in _chunks(N1, K * C * B):
        idx = index[:, s:e].reshape(B, -1)
        g = torch.gather(kf, 1, idx[..., None].expand(-1, -1, C)).view(B, e - s, K, C)
        out[:, s:e] = torch.einsum("bnc,bnkc->bnk", q[:, s:e], g)
    return out
