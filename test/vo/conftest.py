"""Shared by the VO tests: rendered textured scenes with exact poses and depth (casmtr_ros.bags.render), and the
real KITTI 06 and EuRoC sequences from ../shared/data with a KITTI tracking check."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from casmtr_ros.bags.render import render_view
from casmtr_ros.bags.scenes import default_intrinsics, demo_trajectory, room_scene
from casmtr_ros.geometry.se3 import invert, log_so3
from casmtr_ros.matching import build_matcher
from casmtr_ros.types import CameraModel, Frame
from casmtr_ros.vo import Pipeline, TrackingState, VOConfig

WIDTH, HEIGHT = 480, 360
STEP_NS = 100_000_000  # 10 Hz


@dataclass
class RenderedSequence:
    camera: CameraModel
    images: list[np.ndarray]
    depths: list[np.ndarray]
    T_world_cam: list[np.ndarray]

    def frame(self, i: int, depth: bool, stamp_offset: int = 0) -> Frame:
        return Frame(stamp_offset + i * STEP_NS, self.images[i], self.camera, self.depths[i] if depth else None)


@pytest.fixture(scope="session")
def room_sequence() -> RenderedSequence:
    """18 views along a 1.8 m walk through the textured room (10 cm steps, turning gaze)."""
    scene = room_scene(seed=0)
    K = default_intrinsics(WIDTH, HEIGHT)
    poses = demo_trajectory(18, 1.8)
    views = [render_view(scene, K, T, (WIDTH, HEIGHT)) for T in poses]
    return RenderedSequence(CameraModel(K, WIDTH, HEIGHT), [v[0] for v in views], [v[1] for v in views], poses)


@pytest.fixture()
def sift():
    return build_matcher("sift", conf={"max_keypoints": 1000})


# ---------------------------------------------------------------- real sequences from ../shared/data
KITTI_K = np.array([[707.0912, 0, 601.8873], [0, 707.0912, 183.1104], [0, 0, 1.0]])  # README of kitti06_seq


def kitti_frames(root: Path, n: int) -> tuple[list[Frame], np.ndarray]:
    cam = CameraModel(KITTI_K, 1226, 370)
    times = np.loadtxt(root / "times.txt")
    gt = np.loadtxt(root / "poses.txt").reshape(-1, 3, 4)
    frames = []
    for i in range(n):
        img = cv2.imread(str(root / "image_0" / f"{i:06d}.png"), cv2.IMREAD_GRAYSCALE)
        frames.append(Frame(round(times[i] * 1e9), img, cam))
    T = np.tile(np.eye(4), (n, 1, 1))
    T[:, :3, :] = gt[:n]
    return frames, T


def euroc_frames(root: Path) -> list[Frame]:
    d = root / "mav0" / "cam0"
    calib = yaml.safe_load((d / "sensor.yaml").read_text().replace("%YAML:1.0", ""))
    fu, fv, cu, cv = calib["intrinsics"]
    assert calib["distortion_model"] == "radial-tangential"  # = ROS plumb_bob
    cam = CameraModel(np.array([[fu, 0, cu], [0, fv, cv], [0, 0, 1.0]]), *calib["resolution"], "plumb_bob",
                      calib["distortion_coefficients"] + [0.0])
    rows = [ln.split(",") for ln in (d / "data.csv").read_text().splitlines() if ln and not ln.startswith("#")]
    return [Frame(int(s), cv2.imread(str(d / "data" / name.strip()), cv2.IMREAD_GRAYSCALE), cam) for s, name in rows]


def run_kitti(frames, gt, matcher, scale_rel_std: float = 0.03) -> tuple[list, Pipeline]:
    """Run the pipeline and check it against the KITTI ground truth.

    The clip's ground truth itself agrees with the images only to ~0.1 deg of yaw per frame (its Sampson errors
    are 0.3-1 px, see the data README), so rotation is checked per step and loosely over the run.
    """
    pipe = Pipeline(matcher, VOConfig())
    results = [pipe.process(f) for f in frames]
    assert results[-1].state == TrackingState.TRACKING
    assert pipe.counters["failures"] == 0 and pipe.counters["keyframes"] >= 3
    idx = [i for i, r in enumerate(results) if r.odometry is not None and i > 0]
    assert len(idx) >= len(frames) - 3  # only the initialisation may lack a pose
    E = {i: results[i].odometry.T_odom_cam for i in idx}
    ratios = []
    for a, b in itertools.pairwise(idx):
        g = invert(gt[a]) @ gt[b]
        e = invert(E[a]) @ E[b]
        assert _angle_deg(e[:3, :3] @ g[:3, :3].T) < 0.3, b
        assert _vec_angle_deg(e[:3, 3], g[:3, 3]) < 2.0, b
        ratios.append(np.linalg.norm(e[:3, 3]) / np.linalg.norm(g[:3, 3]))
    assert np.std(ratios) < scale_rel_std * np.mean(ratios)  # the monocular scale holds along the run
    for i in idx:
        g = invert(gt[0]) @ gt[i]
        assert _vec_angle_deg(E[i][:3, 3], g[:3, 3]) < 2.0, i
        assert _angle_deg(E[i][:3, :3] @ g[:3, :3].T) < 0.1 * i + 0.3, i
    return results, pipe


def _angle_deg(R: np.ndarray) -> float:
    return float(np.degrees(np.linalg.norm(log_so3(R))))


def _vec_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))))


@pytest.fixture(scope="session")
def kitti(shared_data: Path) -> tuple[list[Frame], np.ndarray]:
    """The first 21 frames of the KITTI 06 clip and their ground-truth T_world_cam."""
    root = shared_data / "kitti06_seq"
    if not (root / "poses.txt").is_file():
        pytest.skip(f"{root} absent")
    return kitti_frames(root, 21)


@pytest.fixture(scope="session")
def kitti_check():
    """``check(frames, gt, matcher)``: run the pipeline on KITTI frames and assert it tracks (see run_kitti)."""
    return run_kitti


@pytest.fixture(scope="session")
def euroc_static(shared_data: Path) -> list[Frame]:
    """The 40 frames of the stationary EuRoC V1_01 snippet with the cam0 calibration (plumb_bob)."""
    root = shared_data / "euroc_v101_static_snippet_kimera"
    if not (root / "mav0" / "cam0" / "data.csv").is_file():
        pytest.skip(f"{root} absent")
    return euroc_frames(root)
