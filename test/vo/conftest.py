"""Rendered textured scenes with exact poses and depth (casmtr_ros.bags.render), shared by the VO tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from casmtr_ros.bags.render import render_view
from casmtr_ros.bags.scenes import default_intrinsics, demo_trajectory, room_scene
from casmtr_ros.matching import build_matcher
from casmtr_ros.types import CameraModel, Frame

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
