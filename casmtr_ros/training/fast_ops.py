"""Deprecated alias: the row-gather ops formerly here live in :mod:`casmtr_ros.ops.torch_ops` (one implementation,
used by inference and training alike). Kept only so that older scripts importing it keep running; new code
imports ``casmtr_ros.ops``."""

from __future__ import annotations

import warnings

from casmtr_ros.ops.torch_ops import cascade_score, score_computation, value_aggregation

__all__ = ["REFERENCE", "cascade_score", "install", "score_computation", "value_aggregation"]

REFERENCE = {"score_computation": score_computation, "value_aggregation": value_aggregation,
             "cascade_score": cascade_score}


def install() -> None:
    """No-op (the dispatcher's PyTorch path already is the fast implementation)."""
    warnings.warn("casmtr_ros.training.fast_ops.install() is a no-op; use casmtr_ros.ops", DeprecationWarning,
                  stacklevel=2)
