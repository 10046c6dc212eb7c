"""Gathered-attention ops used by CasMTR: PyTorch gathers (CPU and reference) and, when built, CUDA kernels.

Import the three ops from here; the model never imports a backend directly. CUDA tensors run the kernels of
``cuda/`` when the extension is available (see :mod:`casmtr_ros.ops.backend` for the setting that forces a path).
"""

from casmtr_ros.ops.backend import backend_info, backend_name, get_backend, set_backend
from casmtr_ros.ops.dispatch import cascade_score, score_computation, value_aggregation

__all__ = [
    "backend_info",
    "backend_name",
    "cascade_score",
    "get_backend",
    "score_computation",
    "set_backend",
    "value_aggregation",
]
