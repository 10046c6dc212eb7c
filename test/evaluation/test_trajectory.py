"""TUM files and evo-based ATE/RPE: alignment semantics (SE(3) vs Sim(3)) and error values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from casmtr_ros.evaluation.trajectory import Trajectory, evaluate_trajectory, read_tum, write_tum


def _helix(n: int = 40) -> Trajectory:
    t = np.linspace(0, 2 * np.pi, n)
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, :3, :3] = Rotation.from_euler("z", t[:, None]).as_matrix()
    poses[:, :3, 3] = np.c_[2 * np.cos(t), 2 * np.sin(t), 0.3 * t]
    return Trajectory(1_600_000_000 * 10**9 + np.arange(n) * 100_000_000, poses)


def _transform(traj: Trajectory, scale: float) -> Trajectory:
    G = np.eye(4)
    G[:3, :3] = Rotation.from_euler("xyz", [0.3, -0.2, 1.0]).as_matrix()
    G[:3, 3] = [5, -1, 2]
    poses = traj.poses.copy()
    poses[:, :3, 3] *= scale
    return Trajectory(traj.stamps_ns, np.einsum("ij,njk->nik", G, poses))


def test_tum_round_trip_keeps_nanoseconds(tmp_path: Path) -> None:
    traj = _helix()
    traj.stamps_ns[3] += 7  # nanosecond precision on a 1.6e9 s stamp
    write_tum(tmp_path / "t.tum", traj)
    back = read_tum(tmp_path / "t.tum")
    assert np.array_equal(back.stamps_ns, np.sort(traj.stamps_ns))
    np.testing.assert_allclose(back.poses, traj.poses, atol=1e-8)
    lines = (tmp_path / "t.tum").read_text().splitlines()
    assert lines[0].startswith("#") and len(lines[1].split()) == 8


def test_unsorted_input_is_sorted_on_write(tmp_path: Path) -> None:
    traj = _helix(5)
    shuffled = Trajectory(traj.stamps_ns[::-1], traj.poses[::-1])
    write_tum(tmp_path / "s.tum", shuffled)
    stamps = [float(line.split()[0]) for line in (tmp_path / "s.tum").read_text().splitlines()[1:]]
    assert stamps == sorted(stamps)


def test_sim3_absorbs_scale_se3_does_not() -> None:
    gt = _helix()
    est = _transform(gt, scale=0.37)  # a monocular estimate: other frame, other scale
    mono = evaluate_trajectory(est, gt, metric=False)
    assert mono.summary["alignment"] == "Sim(3)"
    assert mono.summary["ate_m"]["rmse"] < 1e-6
    assert mono.summary["alignment_scale"] == pytest.approx(1 / 0.37, rel=1e-6)
    metric = evaluate_trajectory(est, gt, metric=True)
    assert metric.summary["alignment"] == "SE(3)" and metric.summary["ate_m"]["rmse"] > 0.5
    same = evaluate_trajectory(_transform(gt, 1.0), gt, metric=True)
    assert same.summary["ate_m"]["rmse"] < 1e-6
    assert same.summary["rpe_per_frame"]["trans_m"]["rmse"] < 1e-6


def test_known_error_values() -> None:
    gt = _helix()
    est_poses = gt.poses.copy()
    est_poses[::2, 2, 3] += 0.01  # every second pose 1 cm up
    res = evaluate_trajectory(Trajectory(gt.stamps_ns, est_poses), gt, metric=True)
    # Alignment removes the mean offset (0.5 cm): the residual is +-0.5 cm on every pose.
    assert res.summary["ate_m"]["rmse"] == pytest.approx(0.005, rel=0.05)
    assert res.summary["rpe_per_frame"]["trans_m"]["rmse"] == pytest.approx(0.01, rel=0.05)
    assert res.summary["rpe_per_metre"]["trans_m"] is not None
    assert len(res.ate_errors) == len(gt)


def test_association_and_errors(tmp_path: Path) -> None:
    gt = _helix()
    with pytest.raises(ValueError, match="at least 3"):
        evaluate_trajectory(Trajectory(gt.stamps_ns[:2], gt.poses[:2]), gt, metric=True)
    late = Trajectory(gt.stamps_ns + 10**12, gt.poses)
    with pytest.raises(Exception, match="matching timestamps"):
        evaluate_trajectory(late, gt, metric=True)
    (tmp_path / "bad.tum").write_text("1.0 0 0 0 0 0 0\n")
    with pytest.raises(ValueError, match="expected 8 values"):
        read_tum(tmp_path / "bad.tum")
    (tmp_path / "zero.tum").write_text("1.0 0 0 0 0 0 0 0\n")
    with pytest.raises(ValueError, match="invalid quaternion"):
        read_tum(tmp_path / "zero.tum")
    with pytest.raises(FileNotFoundError):
        read_tum(tmp_path / "none.tum")
