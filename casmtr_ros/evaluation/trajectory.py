"""Trajectories: TUM files, and ATE/RPE against ground truth through ``evo`` (used as a library).

ATE aligns the estimate to the ground truth with Umeyama: SE(3) when the estimate is metric, Sim(3) when it is
monocular (scale unknown). RPE is reported per frame (consecutive estimated poses) and per metre of travelled
ground-truth path. evo's ``align`` and metrics mutate trajectories, so every call works on copies.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation


@dataclass
class Trajectory:
    """Timestamped poses.

    Attributes:
        stamps_ns: ``(N,)`` int64 stamps in nanoseconds, increasing.
        poses: ``(N, 4, 4)`` float64 ``T_world_body`` matrices.
    """

    stamps_ns: np.ndarray
    poses: np.ndarray

    def __post_init__(self) -> None:
        self.stamps_ns = np.asarray(self.stamps_ns, np.int64).reshape(-1)
        self.poses = np.asarray(self.poses, np.float64).reshape(-1, 4, 4)
        if len(self.stamps_ns) != len(self.poses):
            raise ValueError(f"{len(self.stamps_ns)} stamps for {len(self.poses)} poses")
        order = np.argsort(self.stamps_ns, kind="stable")
        self.stamps_ns, self.poses = self.stamps_ns[order], self.poses[order]

    def __len__(self) -> int:
        return len(self.stamps_ns)

    @property
    def positions(self) -> np.ndarray:
        return self.poses[:, :3, 3]

    def path_length(self) -> float:
        return float(np.linalg.norm(np.diff(self.positions, axis=0), axis=1).sum()) if len(self) > 1 else 0.0

    @staticmethod
    def from_lists(stamps_ns: list[int], poses: list[np.ndarray]) -> Trajectory:
        return Trajectory(np.array(stamps_ns, np.int64), np.array(poses).reshape(-1, 4, 4))


def write_tum(path: str | Path, traj: Trajectory) -> None:
    """TUM format: one ``stamp_s tx ty tz qx qy qz qw`` line per pose, sorted by stamp, after a ``#`` header."""
    lines = ["# timestamp tx ty tz qx qy qz qw"]
    quats = Rotation.from_matrix(traj.poses[:, :3, :3]).as_quat() if len(traj) else np.zeros((0, 4))
    for stamp, T, q in zip(traj.stamps_ns, traj.poses, quats):
        sec, nsec = divmod(int(stamp), 10**9)
        vals = " ".join(f"{v:.9f}" for v in (*T[:3, 3], *q))
        lines.append(f"{sec}.{nsec:09d} {vals}")
    Path(path).write_text("\n".join(lines) + "\n")


def read_tum(path: str | Path) -> Trajectory:
    """Read a TUM trajectory file (``#`` comments, whitespace or comma separated); clear errors on bad lines."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"trajectory file not found: {path}")
    stamps, poses = [], []
    for no, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.replace(",", " ").split()
        if len(parts) != 8:
            raise ValueError(f"{path}:{no}: expected 8 values (stamp tx ty tz qx qy qz qw), got {len(parts)}")
        try:
            vals = [float(p) for p in parts[1:]]
            stamp_ns = _seconds_to_ns(parts[0])
        except ValueError:
            raise ValueError(f"{path}:{no}: not a number in {line!r}") from None
        q = np.array(vals[3:])
        if not np.isfinite(q).all() or np.linalg.norm(q) < 1e-6:
            raise ValueError(f"{path}:{no}: invalid quaternion {q.tolist()}")
        T = np.eye(4)
        T[:3, :3] = Rotation.from_quat(q / np.linalg.norm(q)).as_matrix()
        T[:3, 3] = vals[:3]
        stamps.append(stamp_ns)
        poses.append(T)
    if not stamps:
        raise ValueError(f"{path}: no poses in trajectory file")
    return Trajectory.from_lists(stamps, poses)


def _seconds_to_ns(text: str) -> int:
    """Exact decimal seconds to integer nanoseconds (no float rounding for long stamps)."""
    if "e" in text.lower():
        return round(float(text) * 1e9)
    whole, _, frac = text.partition(".")
    sign = -1 if whole.startswith("-") else 1
    return int(whole or "0") * 10**9 + sign * int((frac + "000000000")[:9])


def _evo(traj: Trajectory) -> Any:
    from evo.core.trajectory import PoseTrajectory3D

    return PoseTrajectory3D(poses_se3=list(traj.poses.copy()), timestamps=traj.stamps_ns.astype(np.float64) * 1e-9)


def _stats(metric: Any) -> dict[str, float]:
    from evo.core.metrics import StatisticsType

    return {k: float(metric.get_statistic(getattr(StatisticsType, k))) for k in ("rmse", "mean", "median", "max")}


@dataclass
class TrajectoryMetrics:
    """Result of :func:`evaluate_trajectory` (translations in metres, rotations in degrees)."""

    summary: dict[str, Any]
    aligned: Trajectory  # the estimate after alignment, at the associated stamps
    reference: Trajectory  # the ground truth at the same stamps
    ate_errors: np.ndarray  # per associated pose, metres


def evaluate_trajectory(est: Trajectory, gt: Trajectory, metric: bool, max_diff_s: float = 0.02
                        ) -> TrajectoryMetrics:
    """ATE (SE(3) alignment when ``metric``, Sim(3) otherwise) and RPE of ``est`` against ``gt``.

    Raises ``ValueError`` when fewer than 3 poses can be associated by stamp (within ``max_diff_s``).
    """
    from evo.core import metrics, sync
    from evo.core.metrics import PoseRelation, Unit

    if len(est) < 3:
        raise ValueError(f"the estimated trajectory has {len(est)} poses; ATE needs at least 3")
    ref_e, est_e = sync.associate_trajectories(_evo(gt), _evo(est), max_diff=max_diff_s)
    if ref_e.num_poses < 3:
        raise ValueError(f"only {ref_e.num_poses} estimated poses have ground truth within {max_diff_s} s")
    aligned = copy.deepcopy(est_e)
    _, _, scale = aligned.align(copy.deepcopy(ref_e), correct_scale=not metric)
    ape = metrics.APE(PoseRelation.translation_part)
    ape.process_data((copy.deepcopy(ref_e), copy.deepcopy(aligned)))
    ape_rot = metrics.APE(PoseRelation.rotation_angle_deg)
    ape_rot.process_data((copy.deepcopy(ref_e), copy.deepcopy(aligned)))
    summary: dict[str, Any] = {
        "alignment": "SE(3)" if metric else "Sim(3)",
        "alignment_scale": float(scale),
        "associated_poses": int(ref_e.num_poses),
        "gt_path_length_m": float(ref_e.path_length),
        "ate_m": _stats(ape),
        "ate_rot_deg": _stats(ape_rot),
    }
    for name, delta, unit in (("rpe_per_frame", 1, Unit.frames), ("rpe_per_metre", 1.0, Unit.meters)):
        entry: dict[str, Any] = {}
        parts = (("trans_m", PoseRelation.translation_part), ("rot_deg", PoseRelation.rotation_angle_deg))
        for part, relation in parts:
            rpe = metrics.RPE(relation, delta=delta, delta_unit=unit, all_pairs=unit == Unit.meters)
            try:
                rpe.process_data((copy.deepcopy(ref_e), copy.deepcopy(aligned)))
                entry[part] = _stats(rpe)
            except Exception as exc:  # evo raises its own types, e.g. a path shorter than one metre
                entry[part] = None
                entry["note"] = str(exc).splitlines()[0]
        summary[name] = entry
    aligned_traj = Trajectory(np.rint(aligned.timestamps * 1e9).astype(np.int64), np.array(aligned.poses_se3))
    ref_traj = Trajectory(np.rint(ref_e.timestamps * 1e9).astype(np.int64), np.array(ref_e.poses_se3))
    return TrajectoryMetrics(summary, aligned_traj, ref_traj, np.asarray(ape.error, np.float64))
