"""The three gathered-attention ops as the model calls them: validate, then run the CUDA kernels or PyTorch.

Shapes and formulas: ``casmtr_ros/ops/torch_ops.py`` and ``shared/reference/cuda_ops.md``. The path is chosen per
call by :func:`casmtr_ros.ops.backend.use_kernels` (CUDA tensors + extension available, unless forced).
"""

from __future__ import annotations

import torch

from casmtr_ros.ops import backend, torch_ops
from casmtr_ros.ops.cuda_functions import CascadeScore, ScoreComputation, ValueAggregation


def _check(cond: bool, op: str, msg: str) -> None:
    if not cond:
        raise ValueError(f"{op}: {msg}")


def _check_common(op: str, tensors: dict[str, torch.Tensor], floats: tuple[str, ...], index: str) -> None:
    for name, t in tensors.items():
        _check(isinstance(t, torch.Tensor), op, f"{name} must be a torch.Tensor, got {type(t).__name__}")
    for name in floats:
        _check(tensors[name].is_floating_point(), op, f"{name} must be floating point, got {tensors[name].dtype}")
    _check(tensors[index].dtype in (torch.int64, torch.int32), op, f"{index} must be int64, got {tensors[index].dtype}")
    devices = {t.device for t in tensors.values()}
    _check(len(devices) == 1, op, f"inputs are on different devices: {sorted(map(str, devices))}")


def score_computation(query: torch.Tensor, key: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """QuadTree gathered block scores: query ``[B,N1,4,H,D]``, key ``[B,N2,H,D]``, index ``[B,N1,K,H]``
    -> ``[B,N1,4,K,H]`` (fp32; fp64 for fp64 inputs)."""
    op = "score_computation"
    _check_common(op, {"query": query, "key": key, "index": index}, ("query", "key"), "index")
    _check(query.dim() == 5 and query.shape[2] == 4, op, f"query must be [B, N1, 4, H, D], got {tuple(query.shape)}")
    B, N1, _, H, D = query.shape
    _check(key.dim() == 4 and key.shape[0] == B and key.shape[2:] == (H, D), op,
           f"key must be [B={B}, N2, H={H}, D={D}], got {tuple(key.shape)}")
    _check(index.dim() == 4 and index.shape[:2] == (B, N1) and index.shape[3] == H, op,
           f"index must be [B={B}, N1={N1}, K, H={H}], got {tuple(index.shape)}")
    if backend.use_kernels(query, key, index):
        ext = backend.extension()
        return ScoreComputation.apply(ext, query, key, index, backend.SETTINGS.check_index)
    return torch_ops.score_computation(query, key, index.long())


def value_aggregation(score: torch.Tensor, value: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Gathered weighted sum: score ``[B,N,4,K,H]``, value ``[B,M,H,D]``, index ``[B,N,4,K,H]``
    -> ``[B,N,4,H,D]`` (fp32; fp64 for fp64 inputs)."""
    op = "value_aggregation"
    _check_common(op, {"score": score, "value": value, "index": index}, ("score", "value"), "index")
    _check(score.dim() == 5, op, f"score must be [B, N, 4, K, H], got {tuple(score.shape)}")
    B, _, _, _, H = score.shape
    _check(value.dim() == 4 and value.shape[0] == B and value.shape[2] == H, op,
           f"value must be [B={B}, M, H={H}, D], got {tuple(value.shape)}")
    _check(index.shape == score.shape, op, f"index shape {tuple(index.shape)} must equal score shape "
           f"{tuple(score.shape)}")
    if backend.use_kernels(score, value, index):
        ext = backend.extension()
        return ValueAggregation.apply(ext, score, value, index, backend.SETTINGS.check_index)
    return torch_ops.value_aggregation(score, value, index.long())


def cascade_score(query: torch.Tensor, key: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """CasMTR 1/4 window scores: query ``[B,N1,C]``, key ``[B,N2,C]``, index ``[B,N1,K]`` -> ``[B,N1,K]``."""
    op = "cascade_score"
    _check_common(op, {"query": query, "key": key, "index": index}, ("query", "key"), "index")
    _check(query.dim() == 3, op, f"query must be [B, N1, C], got {tuple(query.shape)}")
    B, N1, C = query.shape
    _check(key.dim() == 3 and key.shape[0] == B and key.shape[2] == C, op,
           f"key must be [B={B}, N2, C={C}], got {tuple(key.shape)}")
    _check(index.dim() == 3 and index.shape[:2] == (B, N1), op,
           f"index must be [B={B}, N1={N1}, K], got {tuple(index.shape)}")
    if backend.use_kernels(query, key, index):
        ext = backend.extension()
        return CascadeScore.apply(ext, query, key, index, backend.SETTINGS.check_index)
    return torch_ops.cascade_score(query, key, index.long())
