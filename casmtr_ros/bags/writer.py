"""Write camera frames (image, camera_info, optional depth, ground-truth pose) to a rosbag2 (sqlite3 or mcap).

Written with the ``rosbags`` package: no ROS installation, no DDS. Messages are stamped with the frame's stamp
(header stamp = bag receive time), no tf. Example::

    with BagWriter("out/bag", storage="mcap") as bag:
        bag.write_frame(frame, T_world_cam=pose)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_typestore
from scipy.spatial.transform import Rotation

from casmtr_ros.ros.image_conversion import array_to_image_fields
from casmtr_ros.types import CameraModel, Frame

STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}


@dataclass(frozen=True)
class BagTopics:
    """Topic names and frame ids the writer uses (the reader's auto-detection finds these)."""

    image: str = "/camera/image_raw"
    camera_info: str = "/camera/camera_info"
    depth: str = "/camera/depth/image_raw"
    ground_truth: str = "/ground_truth/pose"
    world_frame: str = "world"


def rotation_to_quaternion(R: np.ndarray) -> np.ndarray:
    """``(x, y, z, w)`` unit quaternion of a 3x3 rotation matrix (w >= 0)."""
    q = Rotation.from_matrix(np.asarray(R, np.float64)).as_quat()
    return q if q[3] >= 0 else -q


class BagWriter:
    """A rosbag2 of camera frames. Use as a context manager; ``path`` must not exist yet.

    Args:
        path: bag directory to create.
        storage: ``"sqlite3"`` or ``"mcap"``.
        topics: topic names and frame ids.
        image_encoding: ``None`` = ``rgb8`` for colour images and ``mono8`` for grey; or any encoding the image's
            channel count allows (``bgr8`` flips the channels).
        depth_encoding: ``"32FC1"`` (metres, NaN invalid) or ``"16UC1"`` (millimetres, 0 invalid).
    """

    def __init__(self, path: str | Path, storage: str = "sqlite3", topics: BagTopics | None = None,
                 image_encoding: str | None = None, depth_encoding: str = "32FC1") -> None:
        if storage not in STORAGES:
            raise ValueError(f"unknown bag storage {storage!r}; choose one of {sorted(STORAGES)}")
        if depth_encoding not in ("32FC1", "16UC1"):
            raise ValueError(f"depth encoding must be 32FC1 or 16UC1, got {depth_encoding!r}")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists already; the bag writer does not overwrite")
        self.storage = storage
        self.topics = topics or BagTopics()
        self.image_encoding = image_encoding
        self.depth_encoding = depth_encoding
        self.ts = get_typestore(Stores.ROS2_KILTED)
        self._writer = Writer(self.path, version=8 if storage == "sqlite3" else 9, storage_plugin=STORAGES[storage])
        self._conns: dict[str, object] = {}
        self.count = 0

    def __enter__(self) -> BagWriter:
        try:
            self._writer.open()
        except WriterError as exc:
            raise OSError(f"cannot create bag {self.path}: {exc}") from None
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._writer.close()

    def _write(self, topic: str, msgtype: str, msg: object, stamp_ns: int) -> None:
        conn = self._conns.get(topic)
        if conn is None:
            conn = self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=self.ts)
        self._writer.write(conn, int(stamp_ns), self.ts.serialize_cdr(msg, msgtype))

    def _header(self, stamp_ns: int, frame_id: str) -> object:
        T = self.ts.types
        stamp = T["builtin_interfaces/msg/Time"](sec=int(stamp_ns // 10**9), nanosec=int(stamp_ns % 10**9))
        return T["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)

    def _image_msg(self, array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> object:
        fields = array_to_image_fields(array, encoding)
        fields["data"] = np.frombuffer(fields["data"], np.uint8)
        fields["is_bigendian"] = int(fields["is_bigendian"])
        return self.ts.types["sensor_msgs/msg/Image"](header=self._header(stamp_ns, frame_id), **fields)

    def write_camera_info(self, camera: CameraModel, stamp_ns: int, frame_id: str) -> None:
        T = self.ts.types
        K = camera.K
        P = np.zeros((3, 4))
        P[:, :3] = K
        msg = T["sensor_msgs/msg/CameraInfo"](
            header=self._header(stamp_ns, frame_id), height=camera.height, width=camera.width,
            distortion_model="plumb_bob" if camera.distortion_model == "none" else camera.distortion_model,
            d=np.asarray(camera.D if camera.distortion_model != "none" else np.zeros(5), np.float64),
            k=K.reshape(-1).astype(np.float64), r=np.eye(3).reshape(-1), p=P.reshape(-1),
            binning_x=0, binning_y=0,
            roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
        self._write(self.topics.camera_info, "sensor_msgs/msg/CameraInfo", msg, stamp_ns)

    def write_pose(self, T_world_cam: np.ndarray, stamp_ns: int) -> None:
        """Ground truth: ``geometry_msgs/PoseStamped`` of the camera optical frame in the world frame."""
        T = self.ts.types
        M = np.asarray(T_world_cam, np.float64)
        q = rotation_to_quaternion(M[:3, :3])
        pose = T["geometry_msgs/msg/Pose"](
            position=T["geometry_msgs/msg/Point"](x=M[0, 3], y=M[1, 3], z=M[2, 3]),
            orientation=T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]))
        msg = T["geometry_msgs/msg/PoseStamped"](header=self._header(stamp_ns, self.topics.world_frame), pose=pose)
        self._write(self.topics.ground_truth, "geometry_msgs/msg/PoseStamped", msg, stamp_ns)

    def write_frame(self, frame: Frame, T_world_cam: np.ndarray | None = None) -> None:
        """Write the frame's image, camera_info, depth (when present) and ground-truth pose (when given)."""
        image = np.asarray(frame.image)
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError(f"frame image must be HxW or HxWx3 uint8, got {image.dtype} {image.shape}")
        encoding = self.image_encoding or ("mono8" if image.ndim == 2 else "rgb8")
        if encoding == "bgr8" and image.ndim == 3:
            image = image[:, :, ::-1]
        stamp = int(frame.stamp_ns)
        self._write(self.topics.image, "sensor_msgs/msg/Image",
                    self._image_msg(image, encoding, stamp, frame.frame_id), stamp)
        self.write_camera_info(frame.camera, stamp, frame.frame_id)
        if frame.depth is not None:
            depth = np.asarray(frame.depth, np.float32)
            if self.depth_encoding == "16UC1":
                mm = np.where(np.isfinite(depth) & (depth > 0), np.rint(depth * 1000), 0)
                depth = np.clip(mm, 0, 65535).astype(np.uint16)
            else:
                depth = np.where(np.isfinite(depth) & (depth > 0), depth, np.float32(np.nan)).astype(np.float32)
            self._write(self.topics.depth, "sensor_msgs/msg/Image",
                        self._image_msg(depth, self.depth_encoding, stamp, frame.frame_id), stamp)
        if T_world_cam is not None:
            self.write_pose(T_world_cam, stamp)
        self.count += 1
