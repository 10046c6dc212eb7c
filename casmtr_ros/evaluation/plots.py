"""PNG plots of a replay: trajectory against ground truth, and the ATE over time (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from casmtr_ros.evaluation.trajectory import Trajectory, TrajectoryMetrics


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plane_axes(points: np.ndarray) -> tuple[int, int]:
    """The two coordinate axes with the largest extent (a top view for ground vehicles and rooms alike)."""
    if len(points) < 2:
        return 0, 1
    ext = np.ptp(points, axis=0)
    a, b = sorted(np.argsort(-ext)[:2])
    return int(a), int(b)


def plot_trajectory(path: str | Path, est: Trajectory, evaluation: TrajectoryMetrics | None) -> Path:
    """Top view of the estimate (aligned to the ground truth when ``evaluation`` is given) and the ground truth."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=100)
    names = "xyz"
    if evaluation is not None:
        ref, aligned = evaluation.reference.positions, evaluation.aligned.positions
        a, b = _plane_axes(ref)
        ax.plot(ref[:, a], ref[:, b], "k-", lw=2, label="ground truth")
        ax.plot(aligned[:, a], aligned[:, b], "-", color="tab:red", lw=1.5,
                label=f"estimate ({evaluation.summary['alignment']} aligned)")
        ate = evaluation.summary["ate_m"]["rmse"]
        ax.set_title(f"ATE RMSE {ate * 1000:.1f} mm over {evaluation.summary['gt_path_length_m']:.1f} m")
    else:
        pos = est.positions
        a, b = _plane_axes(pos)
        ax.plot(pos[:, a], pos[:, b], "-", color="tab:red", label="estimate (no ground truth)")
        ax.set_title("estimated trajectory")
    ax.set_xlabel(f"{names[a]} [m]")
    ax.set_ylabel(f"{names[b]} [m]")
    ax.axis("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_ate_over_time(path: str | Path, evaluation: TrajectoryMetrics) -> Path:
    """Absolute translation error of every associated pose against time since the first one."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=100)
    t = (evaluation.reference.stamps_ns - evaluation.reference.stamps_ns[0]) * 1e-9
    ax.plot(t, evaluation.ate_errors, "-", color="tab:blue")
    ax.set_xlabel("time [s]")
    ax.set_ylabel("translation error [m]")
    ax.set_title(f"ATE over time ({evaluation.summary['alignment']} alignment)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
