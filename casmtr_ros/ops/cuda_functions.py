"""``torch.autograd.Function`` wrappers around the CUDA kernels (forward and first-order backward).

Outputs are fp32 (fp64 for fp64 inputs) like the PyTorch path; gradients come back in each input's dtype.
"""

from __future__ import annotations

from types import ModuleType

import torch
from torch.autograd.function import once_differentiable


def _cast(grad: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    return None if grad is None else grad.to(like.dtype)


class ScoreComputation(torch.autograd.Function):
    """QuadTree gathered block scores ``[B, N1, 4, K, H]``."""

    @staticmethod
    def forward(ctx, ext: ModuleType, query, key, index, check_index: bool):  # type: ignore[override]
        ctx.ext = ext
        ctx.save_for_backward(query, key, index)
        return ext.score_forward(query, key, index, check_index)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        query, key, index = ctx.saved_tensors
        need_q, need_k = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        gq, gk = ctx.ext.score_backward(grad_out, query, key, index, need_q, need_k)
        return None, _cast(gq, query), _cast(gk, key), None, None


class ValueAggregation(torch.autograd.Function):
    """Gathered weighted sum of values ``[B, N, 4, H, D]``."""

    @staticmethod
    def forward(ctx, ext: ModuleType, score, value, index, check_index: bool):  # type: ignore[override]
        ctx.ext = ext
        ctx.save_for_backward(score, value, index)
        return ext.value_forward(score, value, index, check_index)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        score, value, index = ctx.saved_tensors
        need_s, need_v = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        gs, gv = ctx.ext.value_backward(grad_out, score, value, index, need_s, need_v)
        return None, _cast(gs, score), _cast(gv, value), None, None


class CascadeScore(torch.autograd.Function):
    """CasMTR 1/4 cascade window scores ``[B, N1, K]``."""

    @staticmethod
    def forward(ctx, ext: ModuleType, query, key, index, check_index: bool):  # type: ignore[override]
        ctx.ext = ext
        ctx.save_for_backward(query, key, index)
        return ext.cascade_forward(query, key, index, check_index)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        query, key, index = ctx.saved_tensors
        need_q, need_k = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        gq, gk = ctx.ext.cascade_backward(grad_out, query, key, index, need_q, need_k)
        return None, _cast(gq, query), _cast(gk, key), None, None
