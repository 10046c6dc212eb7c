"""Pure-PyTorch versions of the three gathered-attention ops (the CPU path and the CUDA kernels' reference).

Shapes follow ``shared/reference/cuda_ops.md``. All outputs are fp32 (fp64 for fp64 inputs); inputs of any
floating type are promoted to at least fp32 so that half-precision inputs accumulate in fp32 like the kernels.

Gathers are row gathers (``index_select`` of whole D-vectors from a flattened ``[rows, D]`` view, ordered so that
the result feeds a batched matmul without another copy), several times faster on CPU than an element-wise
``torch.gather`` with an expanded index; the weighted sum of values is a weighted ``embedding_bag``. Work is
chunked over the parent/query axis so memory stays linear in the number of queries.
"""

from __future__ import annotations

import torch

# Number of gathered elements processed at once: on a GPU ~256 MB in fp32 (few, large launches); on a CPU 4 MB,
# so that a chunk's gathered rows are still in cache when the batched matmul reads them and the gathered windows
# of all parents are never held at once (same results; lower peak memory, speed within noise in fresh processes).
_CHUNK_ELEMS = 64 * 1024 * 1024
_CHUNK_ELEMS_CPU = 1024 * 1024


def _acc(*tensors: torch.Tensor) -> torch.dtype:
    """Accumulation/output dtype: fp64 if any input is fp64, else fp32."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _chunks(n: int, per_item: int, device: torch.device) -> list[tuple[int, int]]:
    budget = _CHUNK_ELEMS_CPU if device.type == "cpu" else _CHUNK_ELEMS
    step = max(1, min(budget, _CHUNK_ELEMS) // max(1, per_item))
    return [(s, min(n, s + step)) for s in range(0, n, step)]


def _batch_offsets(B: int, rows_per_batch: int, ndim: int, device: torch.device) -> torch.Tensor:
    """``b * rows_per_batch`` shaped ``[B, 1, ..., 1]`` (``ndim`` dims) for flattening a batched row index."""
    return (torch.arange(B, device=device) * rows_per_batch).view(B, *([1] * (ndim - 1)))


def _check_index(index: torch.Tensor, rows: int, op: str) -> None:
    """Row gathers over a flattened batch would wrap into a neighbouring batch/head: refuse bad indices."""
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= rows):
        raise IndexError(
            f"{op}: index out of range: values in [{int(index.min())}, {int(index.max())}] but only {rows} rows"
        )


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
    N2, K = key.shape[1], index.shape[2]
    _check_index(index, N2, "score_computation")
    acc = _acc(query, key)
    q = query.to(acc).permute(0, 1, 3, 2, 4)  # [B, N1, H, F, D]
    k_rows = key.to(acc).reshape(B * N2 * H, D)
    heads = torch.arange(H, device=index.device)
    out = query.new_empty((B, N1, F, K, H), dtype=acc)
    for s, e in _chunks(N1, B * K * H * D, index.device):
        # row of key[b, j, h] in the flattened view: (b * N2 + j) * H + h, ordered [B, n, H, K]
        rows = (index[:, s:e] + _batch_offsets(B, N2, 4, index.device)) * H + heads
        g = k_rows.index_select(0, rows.transpose(2, 3).reshape(-1)).view(-1, K, D)  # [B*n*H, K, D]
        sc = torch.bmm(q[:, s:e].reshape(-1, F, D), g.transpose(1, 2))  # [B*n*H, F, K]
        out[:, s:e] = sc.view(B, e - s, H, F, K).permute(0, 1, 3, 4, 2)
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

    Computed as a weighted ``embedding_bag`` (sum mode) over the flattened ``[B*M*H, D]`` value rows, which never
    materialises the gathered rows: on CPU 1.4-1.8x faster forward than gather + bmm. When gradients are needed and
    the four children share their index (every CasMTR caller), the rows are gathered once per parent and summed with
    one bmm instead: its backward (``index_add`` + bmm) is several times faster than ``embedding_bag``'s.
    """
    B, N, F, K, H = score.shape
    M, D = value.shape[1], value.shape[-1]
    _check_index(index, M, "value_aggregation")
    acc = _acc(score, value)
    v_rows = value.to(acc).reshape(B * M * H, D)
    heads = torch.arange(H, device=index.device)
    out = score.new_empty((B, N, F, H, D), dtype=acc)
    grad = torch.is_grad_enabled() and (score.requires_grad or value.requires_grad)
    if grad and F > 1 and torch.equal(index[:, :, 1:], index[:, :, :1].expand(-1, -1, F - 1, -1, -1)):
        for s, e in _chunks(N, B * K * H * max(D, 8), index.device):
            rows = (index[:, s:e, 0] + _batch_offsets(B, M, 4, index.device)) * H + heads  # [B, n, K, H]
            g = v_rows.index_select(0, rows.transpose(2, 3).reshape(-1)).view(-1, K, D)  # [B*n*H, K, D]
            w = score[:, s:e].to(acc).permute(0, 1, 4, 2, 3).reshape(-1, F, K)  # [B*n*H, F, K]
            out[:, s:e] = torch.bmm(w, g).view(B, e - s, H, F, D).transpose(2, 3)
        return out
    for s, e in _chunks(N, B * F * K * H * max(D, 8), index.device):
        rows = (index[:, s:e] + _batch_offsets(B, M, 5, index.device)) * H + heads  # [B, n, F, K, H]
        bags = rows.transpose(3, 4).reshape(-1, K)  # one bag of K rows per (b, n, f, h)
        weights = score[:, s:e].to(acc).transpose(3, 4).reshape(-1, K)
        summed = torch.nn.functional.embedding_bag(bags, v_rows, mode="sum", per_sample_weights=weights)
        out[:, s:e] = summed.view(B, e - s, F, H, D)
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
    N2, K = key.shape[1], index.shape[2]
    _check_index(index, N2, "cascade_score")
    acc = _acc(query, key)
    q = query.to(acc)
    k_rows = key.to(acc).reshape(B * N2, C)
    out = query.new_empty((B, N1, K), dtype=acc)
    for s, e in _chunks(N1, B * K * C, index.device):
        rows = index[:, s:e] + _batch_offsets(B, N2, 3, index.device)
        g = k_rows.index_select(0, rows.reshape(-1)).view(-1, K, C)  # [B*n, K, C]
        out[:, s:e] = torch.bmm(g, q[:, s:e].reshape(-1, C, 1)).view(B, e - s, K)
    return out


def cascade_score_parents(
    query: torch.Tensor, key: torch.Tensor, parents: torch.Tensor, h: int, w: int, cells: torch.Tensor | None = None
) -> torch.Tensor:
    """:func:`cascade_score` when the 2x2 children of every parent share the parent's candidates.

    Args:
        query: ``[B, h*w, C]`` row-major on an ``h x w`` grid (``h``, ``w`` even).
        key: ``[B, N2, C]``.
        parents: ``[B, (h/2)*(w/2), K]`` int64 rows of ``key`` per 2x2 parent cell.
        cells: optional ``[B, (h/2)*(w/2), K/4]`` cells of ``key`` (on the same ``h x w`` grid) whose 2x2 children,
            cell-major and row-major within a cell, are ``parents``; then whole cells are gathered (4x fewer rows).
    Returns:
        ``[B, h*w, K]``, equal to ``cascade_score(query, key, per_pixel(parents))``: the keys are gathered once per
        parent (4x less gathering than per pixel) and scored with one ``[4, C] x [C, K]`` product per parent.
    """
    B, N1, C = query.shape
    N2, L, K = key.shape[1], parents.shape[1], parents.shape[2]
    if h * w != N1 or h % 2 or w % 2 or (h // 2) * (w // 2) != L or parents.shape[0] != B:
        raise ValueError(f"cascade_score_parents: query {tuple(query.shape)} / parents {tuple(parents.shape)} do not "
                         f"fit an {h}x{w} grid")
    _check_index(parents, N2, "cascade_score_parents")
    acc = _acc(query, key)
    q = query.to(acc).reshape(B, h // 2, 2, w // 2, 2, C).transpose(2, 3).reshape(B * L, 4, C)
    if cells is not None:
        _check_index(cells, L, "cascade_score_parents")
        k_rows = key.to(acc).reshape(B, h // 2, 2, w // 2, 2, C).transpose(2, 3).reshape(B * L, 4 * C)
        index, n_rows = cells, L
    else:
        k_rows = key.to(acc).reshape(B * N2, C)
        index, n_rows = parents, N2
    out = query.new_empty((B, L, 4, K), dtype=acc)
    for s, e in _chunks(L, B * K * C, index.device):
        rows = index[:, s:e] + _batch_offsets(B, n_rows, 3, index.device)
        g = k_rows.index_select(0, rows.reshape(-1)).view(B * (e - s), K, C)
        qs = q.view(B, L, 4, C)[:, s:e].reshape(-1, 4, C)
        out[:, s:e] = torch.bmm(qs, g.transpose(1, 2)).view(B, e - s, 4, K)
    return out.view(B, h // 2, w // 2, 2, 2, K).transpose(2, 3).reshape(B, N1, K)


def _cell_table(x: torch.Tensor, acc: torch.dtype) -> torch.Tensor:
    """``[B, Nc, 4, H, D]`` grouped by 2x2 cell -> ``[B*H*Nc, 4*D]``: one row per (batch, head, cell)."""
    B, Nc, _, H, D = x.shape
    return x.to(acc).permute(0, 3, 1, 2, 4).reshape(B * H * Nc, 4 * D)


def _cell_rows(cells: torch.Tensor, H: int, Nc: int) -> torch.Tensor:
    """Rows of :func:`_cell_table` ``[B, N1, H, Kc]`` for ``cells`` ``[B, N1, Kc]`` (shared by the heads) or
    ``[B, N1, Kc, H]`` (per head)."""
    B = cells.shape[0]
    by_head = cells[:, :, None, :] if cells.dim() == 3 else cells.permute(0, 1, 3, 2)
    heads = torch.arange(H, device=cells.device).view(1, 1, H, 1)
    return (torch.arange(B, device=cells.device).view(B, 1, 1, 1) * H + heads) * Nc + by_head


def window_score_heads(query: torch.Tensor, key: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """:func:`score_computation` for candidates that are whole 2x2 cells (the CasMTR cascade windows and QuadTree
    levels), in the layout of its batched products.

    Args:
        query: ``[B, N1, 4, H, D]`` the 2x2 children of each parent.
        key: ``[B, Nc, 4, H, D]`` keys grouped by 2x2 cell (children row-major, as ``query``).
        cells: ``[B, N1, Kc]`` int64 cells of ``key`` per parent, or ``[B, N1, Kc, H]`` one set per head (the
            QuadTree levels, whose candidates are the children of each head's top-k parents).
    Returns:
        ``[B, N1, H, 4, 4*Kc]`` (contiguous, candidates last), equal to ``score_computation(query, key_pixels,
        index).permute(0, 1, 4, 2, 3)`` with ``index[b, n, 4c + f, h]`` = pixel of child ``f`` of cell
        ``cells[b, n, c]``. A whole cell (4 children x D) is one gathered row: 4x fewer, 4x longer rows than a
        per-pixel gather; a softmax over the candidates runs over contiguous rows, and :func:`window_value` takes
        the result without a transposition.
    """
    B, N1, F, H, D = query.shape
    Nc, Kc = key.shape[1], cells.shape[2]
    _check_index(cells, Nc, "window_score_heads")
    acc = _acc(query, key)
    q = query.to(acc).permute(0, 1, 3, 2, 4)  # [B, N1, H, 4, D]
    table, rows = _cell_table(key, acc), _cell_rows(cells, H, Nc)
    out = query.new_empty((B, N1, H, F, 4 * Kc), dtype=acc)
    for s, e in _chunks(N1, B * 4 * Kc * H * D, cells.device):
        g = table.index_select(0, rows[:, s:e].reshape(-1)).view(-1, 4 * Kc, D)  # [B*n*H, 4Kc, D]
        sc = torch.bmm(q[:, s:e].reshape(-1, F, D), g.transpose(1, 2))  # [B*n*H, F, 4Kc]
        out[:, s:e] = sc.view(B, e - s, H, F, 4 * Kc)
    return out


def window_value(score: torch.Tensor, value: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """:func:`value_aggregation` for candidates that are whole 2x2 cells, with the scores of
    :func:`window_score_heads`.

    Args:
        score: ``[B, N1, H, 4, 4*Kc]`` attention weights of the 2x2 children of each parent over the children of
            its cells (cell-major, child minor).
        value: ``[B, Nc, 4, H, D]`` values grouped by 2x2 cell (children row-major).
        cells: ``[B, N1, Kc]`` int64 cells of ``value`` per parent, or ``[B, N1, Kc, H]`` per head.
    Returns:
        ``[B, N1, 4, H, D]`` fp32 (fp64 for fp64 inputs), equal to ``value_aggregation`` over the per-pixel index:
        each cell is gathered once per parent and head as one row (4 children x D), the four children's sums are
        one ``[4, 4Kc] x [4Kc, D]`` product, and no per-child index is ever built.
    """
    B, N1, H, F, _ = score.shape
    Nc, Kc, D = value.shape[1], cells.shape[2], value.shape[-1]
    if value.shape[2] != 4 or value.shape[3] != H or score.shape[-1] != 4 * Kc:
        raise ValueError(f"window_value: score {tuple(score.shape)}, value {tuple(value.shape)} and cells "
                         f"{tuple(cells.shape)} do not fit")
    _check_index(cells, Nc, "window_value")
    acc = _acc(score, value)
    table, rows = _cell_table(value, acc), _cell_rows(cells, H, Nc)
    out = score.new_empty((B, N1, F, H, D), dtype=acc)
    for s, e in _chunks(N1, B * 4 * Kc * H * D, cells.device):
        g = table.index_select(0, rows[:, s:e].reshape(-1)).view(-1, 4 * Kc, D)  # [B*n*H, 4Kc, D]
        o = torch.bmm(score[:, s:e].to(acc).reshape(-1, F, 4 * Kc), g)  # [B*n*H, F, D]
        out[:, s:e] = o.view(B, e - s, H, F, D).transpose(2, 3)
    return out
