"""Gathered-attention ops used by CasMTR: PyTorch gathers (CPU and reference) and, when built, CUDA kernels.

Import the three ops from here; the model never imports a backend directly.
"""

from casmtr_ros.ops.torch_ops import cascade_score, score_computation, value_aggregation

__all__ = ["cascade_score", "score_computation", "value_aggregation"]
