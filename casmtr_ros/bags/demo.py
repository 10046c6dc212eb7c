"""The demo bag: a camera walking through the rendered room, with exact ground truth, camera_info and depth."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from casmtr_ros.bags.render import Scene, render_view
from casmtr_ros.bags.scenes import default_intrinsics, demo_trajectory, room_scene
from casmtr_ros.bags.writer import BagWriter
from casmtr_ros.types import CameraModel, Frame

START_NS = 1_700_000_000 * 10**9  # a fixed start stamp keeps bags byte-for-byte reproducible


@dataclass(frozen=True)
class DemoConfig:
    """What :func:`make_demo_bag` renders.

    Attributes:
        frames: number of frames; rate_hz: frame rate of the stamps.
        width, height, hfov_deg: the pinhole camera.
        path_length_m: length of the camera path through the room.
        seed: texture seed; noise_std: Gaussian pixel noise (grey levels), seeded per frame.
        depth: also write a 32FC1 depth topic.
    """

    frames: int = 60
    rate_hz: float = 10.0
    width: int = 640
    height: int = 480
    hfov_deg: float = 70.0
    path_length_m: float = 3.5
    seed: int = 0
    noise_std: float = 1.0
    depth: bool = False


def demo_frames(config: DemoConfig, scene: Scene | None = None) -> Iterator[tuple[Frame, np.ndarray]]:
    """``(frame, T_world_cam)`` for every demo frame (deterministic for a given config)."""
    scene = scene or room_scene(seed=config.seed)
    K = default_intrinsics(config.width, config.height, config.hfov_deg)
    camera = CameraModel(K=K, width=config.width, height=config.height)
    for k, pose in enumerate(demo_trajectory(config.frames, config.path_length_m)):
        image, depth = render_view(scene, K, pose, (config.width, config.height))
        if config.noise_std > 0:
            noise = np.random.default_rng([config.seed, k]).normal(0, config.noise_std, image.shape)
            image = np.clip(image + noise, 0, 255).round().astype(np.uint8)
        stamp = START_NS + round(k * 1e9 / config.rate_hz)
        yield Frame(stamp, image, camera, depth if config.depth else None, "camera_optical_frame"), pose


def make_demo_bag(out: str | Path, config: DemoConfig | None = None, storage: str = "sqlite3",
                  progress: bool = False) -> Path:
    """Render the demo sequence into a new rosbag2 at ``out`` (topics: see :class:`~casmtr_ros.bags.writer.BagTopics`);
    returns the bag path."""
    config = config or DemoConfig()
    if config.frames < 2:
        raise ValueError(f"the demo needs at least 2 frames, got {config.frames}")
    frames = demo_frames(config)
    if progress:
        from tqdm import tqdm

        frames = tqdm(frames, total=config.frames, desc="rendering", unit="frame")
    with BagWriter(out, storage=storage) as bag:
        for frame, pose in frames:
            bag.write_frame(frame, T_world_cam=pose)
    return Path(out)
