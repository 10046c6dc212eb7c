"""Frame sources for offline replay: rosbag2 (sqlite3, mcap), ROS 1 bags, TUM RGB-D and KITTI odometry folders.

:func:`open_source` picks the reader from the path and returns a :class:`FrameSource`: iterate it for
:class:`~casmtr_ros.types.Frame` objects in stamp order (deterministic: no DDS, no threads), and call
``ground_truth()`` for the reference trajectory when the source has one.

Bags are read with ``rosbags``. Topics are auto-detected when not given: the ``sensor_msgs/Image`` (or
``CompressedImage``) topic whose name does not mention depth, the ``CameraInfo`` topic next to it, a depth image
topic when present, and a ``PoseStamped``/``Odometry``/``TransformStamped`` ground-truth topic. Every problem
(missing topic, no camera_info, unknown encoding, truncated or damaged file) raises :class:`BagError` saying what
is wrong and what the bag contains.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from casmtr_ros.evaluation.trajectory import Trajectory, read_tum
from casmtr_ros.types import CameraModel, Frame, InputError

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
INFO_TYPE = "sensor_msgs/msg/CameraInfo"
POSE_TYPES = ("geometry_msgs/msg/PoseStamped", "nav_msgs/msg/Odometry", "geometry_msgs/msg/TransformStamped",
              "geometry_msgs/msg/PoseWithCovarianceStamped")
MAX_PENDING = 100  # images held back waiting for camera_info or depth before giving up on them
GT_NAME = re.compile(r"ground_?truth|groundtruth|(^|/)gt(/|_|$)|vicon|mocap|leica", re.IGNORECASE)


class BagError(InputError):
    """A bag or dataset folder that cannot be replayed; the message says why."""


@dataclass
class SourceInfo:
    """What a source is and which topics it reads (for logs and the metrics JSON)."""

    kind: str
    path: str
    image_topic: str | None = None
    info_topic: str | None = None
    depth_topic: str | None = None
    gt_topic: str | None = None
    frame_count: int | None = None
    notes: list[str] = field(default_factory=list)


class FrameSource:
    """Frames in stamp order plus optional ground truth. Subclasses implement ``__iter__``."""

    info: SourceInfo

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def __len__(self) -> int:
        return self.info.frame_count or 0

    def ground_truth(self) -> Trajectory | None:
        return None


def _stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 10**9 + int(header.stamp.nanosec)


def pose_msg_to_matrix(msg: Any, msgtype: str) -> tuple[int, np.ndarray]:
    """``(stamp_ns, T)`` of a PoseStamped, Odometry, TransformStamped or PoseWithCovarianceStamped message."""
    if msgtype == "geometry_msgs/msg/TransformStamped":
        tr = msg.transform
        p, q = tr.translation, tr.rotation
    else:
        pose = msg.pose.pose if msgtype in ("nav_msgs/msg/Odometry",
                                            "geometry_msgs/msg/PoseWithCovarianceStamped") else msg.pose
        p, q = pose.position, pose.orientation
    quat = np.array([q.x, q.y, q.z, q.w], np.float64)
    if not np.isfinite(quat).all() or np.linalg.norm(quat) < 1e-9:
        raise BagError(f"ground-truth message with an invalid quaternion {quat.tolist()}")
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat(quat / np.linalg.norm(quat)).as_matrix()
    T[:3, 3] = [p.x, p.y, p.z]
    return _stamp_ns(msg.header), T


def _bag_kind(path: Path) -> str:
    if path.is_file() and path.suffix == ".bag":
        return "rosbag1"
    if path.is_dir() and (path / "metadata.yaml").is_file():
        text = (path / "metadata.yaml").read_text(errors="replace")
        return "rosbag2-mcap" if "storage_identifier: mcap" in text else "rosbag2-sqlite3"
    if path.is_file() and path.suffix in (".db3", ".mcap") and (path.parent / "metadata.yaml").is_file():
        return _bag_kind(path.parent)
    raise BagError(f"{path} is not a rosbag2 directory (no metadata.yaml) nor a ROS 1 .bag file")


class BagSource(FrameSource):
    """Frames from a rosbag2 directory or a ROS 1 ``.bag`` file (see the module docstring).

    Args:
        path: the bag.
        image_topic, info_topic, depth_topic: topics; ``None`` = auto-detect.
        gt: ground-truth topic, or a TUM file path, or ``None`` = auto-detect a ground-truth topic.
        use_depth: read the depth topic (when one is given or detected).
        depth_tolerance_s: a depth image pairs with the image whose stamp is within this tolerance.
        max_frames: stop after this many frames.
    """

    def __init__(self, path: str | Path, image_topic: str | None = None, info_topic: str | None = None,
                 depth_topic: str | None = None, gt: str | None = None, use_depth: bool = True,
                 depth_tolerance_s: float = 0.02, max_frames: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"bag not found: {self.path}")
        kind = _bag_kind(self.path)
        if self.path.is_file() and kind.startswith("rosbag2"):
            self.path = self.path.parent
        self.tolerance_ns = int(depth_tolerance_s * 1e9)
        self.max_frames = max_frames
        self._gt_file = None
        with self._open() as reader:
            topics = {c.topic: c.msgtype for c in reader.connections}
            counts: dict[str, int] = {}
            for c in reader.connections:
                counts[c.topic] = counts.get(c.topic, 0) + c.msgcount
        self.info = SourceInfo(kind=kind, path=str(self.path))
        listing = ", ".join(f"{t} [{m}]" for t, m in sorted(topics.items())) or "no topics"
        self.info.image_topic = self._pick_image(topics, image_topic, listing)
        self.info.info_topic = self._pick_info(topics, info_topic, listing)
        if use_depth:
            self.info.depth_topic = self._pick_depth(topics, depth_topic, listing)
        if gt is not None and Path(gt).is_file():  # a TUM file (checked first: topics are not files)
            self._gt_file = Path(gt)
        else:
            self.info.gt_topic = self._pick_gt(topics, gt, listing)
        self.info.frame_count = counts.get(self.info.image_topic, 0)
        if max_frames is not None:
            self.info.frame_count = min(self.info.frame_count, max_frames)
        if self.info.frame_count == 0:
            raise BagError(f"image topic {self.info.image_topic} has no messages in {self.path}")

    # --- opening and topic selection ---
    @contextmanager
    def _open(self) -> Iterator[Any]:
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore

        try:
            reader = AnyReader([self.path], default_typestore=get_typestore(Stores.ROS2_KILTED))
            reader.open()
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise BagError(f"cannot open bag {self.path} (damaged or truncated?): {exc}") from None
        try:
            yield reader
        finally:
            reader.close()

    @staticmethod
    def _pick_image(topics: dict[str, str], wanted: str | None, listing: str) -> str:
        if wanted:
            if wanted not in topics:
                raise BagError(f"image topic {wanted} not in bag; topics: {listing}")
            if topics[wanted] not in IMAGE_TYPES:
                raise BagError(f"topic {wanted} is {topics[wanted]}, not an image; topics: {listing}")
            return wanted
        cands = [t for t, m in topics.items() if m in IMAGE_TYPES and "depth" not in t.lower()]
        if not cands:
            raise BagError(f"no image topic (sensor_msgs/Image or CompressedImage) in bag; topics: {listing}")
        if len(cands) > 1:
            raw = [t for t in cands if t.endswith(("image_raw", "image_rect", "image_rect_color", "image_color"))]
            if len(raw) == 1:
                return raw[0]
            raise BagError(f"several image topics {sorted(cands)}: choose one with --image-topic")
        return cands[0]

    def _pick_info(self, topics: dict[str, str], wanted: str | None, listing: str) -> str:
        if wanted:
            if topics.get(wanted) != INFO_TYPE:
                raise BagError(f"camera_info topic {wanted} not in bag (or not {INFO_TYPE}); topics: {listing}")
            return wanted
        cands = sorted(t for t, m in topics.items() if m == INFO_TYPE)
        if not cands:
            raise BagError(f"no camera_info ({INFO_TYPE}) topic in bag, so the camera is uncalibrated and cannot be "
                           f"used; topics: {listing}")
        ns = self.info.image_topic.rsplit("/", 1)[0]
        near = [t for t in cands if t.rsplit("/", 1)[0] == ns]
        if len(near) == 1:
            return near[0]
        if len(cands) == 1:
            return cands[0]
        raise BagError(f"several camera_info topics {cands}: choose one with --info-topic")

    @staticmethod
    def _pick_depth(topics: dict[str, str], wanted: str | None, listing: str) -> str | None:
        if wanted:
            if topics.get(wanted) != "sensor_msgs/msg/Image":
                raise BagError(f"depth topic {wanted} not in bag (or not sensor_msgs/Image); topics: {listing}")
            return wanted
        cands = sorted(t for t, m in topics.items() if m == "sensor_msgs/msg/Image" and "depth" in t.lower())
        return cands[0] if len(cands) == 1 else None

    @staticmethod
    def _pick_gt(topics: dict[str, str], wanted: str | None, listing: str) -> str | None:
        if wanted:
            if wanted not in topics:
                raise BagError(f"ground-truth topic {wanted} not in bag (and no such file); topics: {listing}")
            if topics[wanted] not in POSE_TYPES:
                raise BagError(f"ground-truth topic {wanted} is {topics[wanted]}; supported: {POSE_TYPES}")
            return wanted
        cands = sorted(t for t, m in topics.items() if m in POSE_TYPES and GT_NAME.search(t))
        return cands[0] if len(cands) == 1 else None

    # --- reading ---
    def _messages(self, reader: Any, topic_list: list[str]) -> Iterator[tuple[str, str, Any, int]]:
        """``(topic, type, message, stamp_ns)`` in bag order; the stamp is the header's, or the bag's receive time
        when the header stamp is zero (drivers that do not stamp)."""
        conns = [c for c in reader.connections if c.topic in topic_list]
        count = 0
        try:
            for conn, bag_time, raw in reader.messages(connections=conns):
                count += 1
                msg = reader.deserialize(raw, conn.msgtype)
                stamp = _stamp_ns(msg.header) if hasattr(msg, "header") else 0
                yield conn.topic, conn.msgtype, msg, stamp or int(bag_time)
        except InputError:
            raise
        except Exception as exc:
            raise BagError(f"bag {self.path} is damaged or truncated: reading failed after {count} messages "
                           f"({type(exc).__name__}: {exc})") from None

    def _decode_image(self, msg: Any, msgtype: str, index: int) -> np.ndarray:
        from casmtr_ros.ros.image_conversion import compressed_msg_to_rgb, image_msg_to_rgb

        try:
            return compressed_msg_to_rgb(msg) if msgtype.endswith("CompressedImage") else image_msg_to_rgb(msg)
        except InputError as exc:
            raise BagError(f"{self.info.image_topic} message {index}: {exc}") from None

    def __iter__(self) -> Iterator[Frame]:
        from casmtr_ros.ros.image_conversion import camera_info_to_model, depth_msg_to_metres

        topics = [t for t in (self.info.image_topic, self.info.info_topic, self.info.depth_topic) if t]
        pending: deque[tuple[int, str, Any, str, int]] = deque()  # stamp, msgtype, msg, frame_id, index
        cameras: dict[int, CameraModel] = {}
        latest_camera: CameraModel | None = None
        depths: dict[int, np.ndarray] = {}
        last_depth_stamp = -1
        emitted = 0
        images = 0

        def ready(head_stamp: int, final: bool) -> bool:
            if latest_camera is None and head_stamp not in cameras:
                return False if not final else _no_info()
            if self.info.depth_topic is None or final or len(pending) > MAX_PENDING:
                return True  # (a depth stream that stops must not hold the images back forever)
            return self._find_depth(depths, head_stamp) is not None or last_depth_stamp > head_stamp + self.tolerance_ns

        def _no_info() -> bool:
            raise BagError(f"no camera_info message on {self.info.info_topic} before the end of the bag")

        def emit() -> Frame:
            stamp, msgtype, msg, frame_id, index = pending.popleft()
            camera = cameras.get(stamp, latest_camera)
            image = self._decode_image(msg, msgtype, index)
            if image.shape[:2] != (camera.height, camera.width):
                raise BagError(f"{self.info.image_topic} message {index}: image is {image.shape[1]}x{image.shape[0]}"
                               f" but camera_info says {camera.width}x{camera.height}")
            depth = None
            if self.info.depth_topic is not None:
                key = self._find_depth(depths, stamp)
                depth = depths.pop(key) if key is not None else None
                for old in [k for k in depths if k < stamp - self.tolerance_ns]:
                    del depths[old]
            return Frame(stamp_ns=stamp, image=image, camera=camera, depth=depth, frame_id=frame_id or "camera")

        with self._open() as reader:
            for topic, msgtype, msg, stamp in self._messages(reader, topics):
                if topic == self.info.image_topic:
                    pending.append((stamp, msgtype, msg, str(msg.header.frame_id), images))
                    images += 1
                elif topic == self.info.info_topic:
                    try:
                        latest_camera = cameras[stamp] = camera_info_to_model(msg)
                    except InputError as exc:
                        raise BagError(f"{self.info.info_topic} at stamp {stamp}: {exc}") from None
                    if len(cameras) > 64:
                        cameras.pop(next(iter(cameras)))
                else:
                    try:
                        depths[stamp] = depth_msg_to_metres(msg)
                    except InputError as exc:
                        raise BagError(f"{self.info.depth_topic} at stamp {stamp}: {exc}") from None
                    last_depth_stamp = max(last_depth_stamp, stamp)
                while pending and ready(pending[0][0], False):
                    yield emit()
                    emitted += 1
                    if self.max_frames is not None and emitted >= self.max_frames:
                        return
                if len(pending) > MAX_PENDING:
                    raise BagError(f"{MAX_PENDING} images on {self.info.image_topic} arrived before any camera_info "
                                   f"on {self.info.info_topic} (check --info-topic)")
            while pending and ready(pending[0][0], True):
                yield emit()
                emitted += 1
                if self.max_frames is not None and emitted >= self.max_frames:
                    return

    def _find_depth(self, depths: dict[int, np.ndarray], stamp: int) -> int | None:
        best = min(depths, key=lambda k: abs(k - stamp), default=None)
        return best if best is not None and abs(best - stamp) <= self.tolerance_ns else None

    def ground_truth(self) -> Trajectory | None:
        if self._gt_file is not None:
            return read_tum(self._gt_file)
        if self.info.gt_topic is None:
            return None
        stamps, poses = [], []
        with self._open() as reader:
            for _, msgtype, msg, stamp in self._messages(reader, [self.info.gt_topic]):
                T = pose_msg_to_matrix(msg, msgtype)[1]
                stamps.append(stamp)
                poses.append(T)
        return Trajectory.from_lists(stamps, poses) if stamps else None


# --- dataset folders ---

TUM_INTRINSICS = {  # fx, fy, cx, cy, d (plumb_bob), from the TUM RGB-D benchmark's calibration page
    "freiburg1": ((517.3, 516.5, 318.6, 255.3), (0.2624, -0.9531, -0.0054, 0.0026, 1.1633)),
    "freiburg2": ((520.9, 521.0, 325.1, 249.7), (0.2312, -0.7849, -0.0033, -0.0001, 0.9172)),
    "freiburg3": ((535.4, 539.2, 320.1, 247.6), (0.0, 0.0, 0.0, 0.0, 0.0)),
}


def _read_list(path: Path) -> list[tuple[int, str]]:
    rows = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            parts = line.split()
            from casmtr_ros.evaluation.trajectory import _seconds_to_ns

            rows.append((_seconds_to_ns(parts[0]), parts[1]))
    return rows


def _imread(path: Path, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    img = cv2.imread(str(path), flags)
    if img is None:
        raise BagError(f"cannot read image {path}")
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


class TumSource(FrameSource):
    """A TUM RGB-D sequence folder (``rgb.txt``, optional ``depth.txt`` and ``groundtruth.txt``).

    Intrinsics: the benchmark's calibration for ``freiburg1/2/3`` found in the folder name, or a ``camera.txt``
    with ``fx fy cx cy [d0 .. d4]``. Depth (PNG, 5000 units per metre) pairs with the nearest RGB stamp.
    """

    def __init__(self, path: str | Path, use_depth: bool = True, gt: str | None = None,
                 max_frames: int | None = None, depth_tolerance_s: float = 0.02) -> None:
        self.path = Path(path)
        self.rgb = _read_list(self.path / "rgb.txt")
        if max_frames is not None:
            self.rgb = self.rgb[:max_frames]
        self.depth: dict[int, str] = {}
        if use_depth and (self.path / "depth.txt").is_file():
            dl = _read_list(self.path / "depth.txt")
            stamps = np.array([s for s, _ in dl])
            for s, _ in self.rgb:
                i = int(np.argmin(np.abs(stamps - s)))
                if abs(stamps[i] - s) <= depth_tolerance_s * 1e9:
                    self.depth[s] = dl[i][1]
        self.camera_params = self._intrinsics()
        self._gt = Path(gt) if gt else self.path / "groundtruth.txt"
        self.info = SourceInfo("tum", str(self.path), frame_count=len(self.rgb))

    def _intrinsics(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        custom = self.path / "camera.txt"
        if custom.is_file():
            vals = [float(v) for v in custom.read_text().split()]
            return tuple(vals[:4]), tuple(vals[4:9])
        for key, value in TUM_INTRINSICS.items():
            if key in self.path.name or key in str(self.path):
                return value
        raise BagError(f"{self.path}: unknown TUM camera (no freiburg1/2/3 in the name); add a camera.txt with "
                       f"'fx fy cx cy [d0 d1 d2 d3 d4]'")

    def __iter__(self) -> Iterator[Frame]:
        (fx, fy, cx, cy), d = self.camera_params
        camera = None
        for stamp, name in self.rgb:
            image = _imread(self.path / name)
            if camera is None:
                camera = CameraModel(K=[[fx, 0, cx], [0, fy, cy], [0, 0, 1]], width=image.shape[1],
                                     height=image.shape[0], distortion_model="plumb_bob" if any(d) else "none", D=d)
            depth = None
            if stamp in self.depth:
                raw = _imread(self.path / self.depth[stamp]).astype(np.float32) / 5000.0
                depth = np.where(raw > 0, raw, np.nan).astype(np.float32)
            yield Frame(stamp, image, camera, depth, "openni_rgb_optical_frame")

    def ground_truth(self) -> Trajectory | None:
        return read_tum(self._gt) if self._gt.is_file() else None


class KittiSource(FrameSource):
    """A KITTI odometry sequence folder: ``image_0/`` (or ``image_2/``), ``times.txt``, a calibration file
    (``calib.txt`` with ``P0:`` / ``P2:`` lines, or a file whose first line holds the 12 values of P) and poses
    (``poses.txt`` in the folder or ``../../poses/<seq>.txt``; KITTI 3x4 ``T_world_cam`` rows)."""

    def __init__(self, path: str | Path, camera: str = "image_0", gt: str | None = None,
                 max_frames: int | None = None) -> None:
        self.path = Path(path)
        self.camera_dir = self.path / camera
        if not self.camera_dir.is_dir():
            alt = self.path / "image_2"
            if not alt.is_dir():
                raise BagError(f"{self.path}: no image_0/ or image_2/ folder (not a KITTI odometry sequence)")
            self.camera_dir = alt
        self.images = sorted(self.camera_dir.glob("*.png"))
        times = self.path / "times.txt"
        if not times.is_file():
            raise BagError(f"{self.path}: no times.txt")
        self.stamps = [round(float(v) * 1e9) for v in times.read_text().split()]
        if len(self.stamps) < len(self.images):
            raise BagError(f"{self.path}: {len(self.images)} images but {len(self.stamps)} stamps in times.txt")
        if max_frames is not None:
            self.images = self.images[:max_frames]
        self.K = self._calibration()
        self._gt = Path(gt) if gt else next((p for p in (self.path / "poses.txt",
                                                          self.path.parent.parent / "poses" / f"{self.path.name}.txt")
                                             if p.is_file()), None)
        self.info = SourceInfo("kitti", str(self.path), frame_count=len(self.images))

    def _calibration(self) -> np.ndarray:
        key = "P0:" if self.camera_dir.name == "image_0" else "P2:"
        for calib in [self.path / "calib.txt", *sorted(self.path.glob("calib*.txt"))]:
            if not calib.is_file():
                continue
            lines = calib.read_text().splitlines()
            for line in lines:
                if line.startswith(key):
                    return np.array(line.split()[1:13], float).reshape(3, 4)[:, :3]
            first = lines[0].split() if lines else []
            if len(first) == 12:
                return np.array(first, float).reshape(3, 4)[:, :3]
        raise BagError(f"{self.path}: no KITTI calibration (calib.txt with a {key} line)")

    def __iter__(self) -> Iterator[Frame]:
        camera = None
        for idx, path in enumerate(self.images):
            image = _imread(path)
            if camera is None:
                camera = CameraModel(K=self.K, width=image.shape[1], height=image.shape[0])
            yield Frame(self.stamps[idx], image, camera, None, "camera_optical_frame")

    def ground_truth(self) -> Trajectory | None:
        if self._gt is None:
            return None
        rows = np.loadtxt(self._gt, ndmin=2)
        if rows.shape[1] != 12:
            raise BagError(f"{self._gt}: KITTI poses need 12 values per line, got {rows.shape[1]}")
        n = min(len(rows), len(self.stamps))
        poses = np.tile(np.eye(4), (n, 1, 1))
        poses[:, :3, :] = rows[:n].reshape(n, 3, 4)
        return Trajectory(np.array(self.stamps[:n]), poses)


def open_source(path: str | Path, image_topic: str | None = None, info_topic: str | None = None,
                depth_topic: str | None = None, gt: str | None = None, use_depth: bool = True,
                max_frames: int | None = None) -> FrameSource:
    """Open a bag, a TUM RGB-D folder or a KITTI odometry folder as a :class:`FrameSource`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    if path.is_dir() and (path / "rgb.txt").is_file():
        return TumSource(path, use_depth=use_depth, gt=gt, max_frames=max_frames)
    if path.is_dir() and (path / "times.txt").is_file() and ((path / "image_0").is_dir()
                                                             or (path / "image_2").is_dir()):
        return KittiSource(path, gt=gt, max_frames=max_frames)
    return BagSource(path, image_topic, info_topic, depth_topic, gt, use_depth, max_frames=max_frames)
