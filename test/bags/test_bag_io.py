"""Bag writing and reading: round trips in both rosbag2 storages and ROS 1, the real KITTI 06 bag, dataset
folders, and clear errors for broken bags."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag1 import Writer as Writer1
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from scipy.spatial.transform import Rotation

from casmtr_ros.bags.demo import DemoConfig, demo_frames, make_demo_bag
from casmtr_ros.bags.reader import BagError, BagSource, KittiSource, TumSource, open_source
from casmtr_ros.bags.writer import BagWriter
from casmtr_ros.evaluation.trajectory import Trajectory, write_tum

CFG = DemoConfig(frames=4, width=96, height=64, depth=True)


@pytest.fixture(scope="module")
def frames() -> list:
    return list(demo_frames(CFG))


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
@pytest.mark.parametrize("encoding", [None, "bgr8", "mono8"])
def test_round_trip(tmp_path: Path, frames: list, storage: str, encoding: str | None) -> None:
    depth_encoding = "16UC1" if encoding == "bgr8" else "32FC1"
    with BagWriter(tmp_path / "bag", storage=storage, image_encoding=encoding, depth_encoding=depth_encoding) as bag:
        for frame, pose in frames:
            if encoding == "mono8":
                frame = type(frame)(frame.stamp_ns, cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY), frame.camera,
                                    frame.depth, frame.frame_id)
            bag.write_frame(frame, T_world_cam=pose)
    src = open_source(tmp_path / "bag")
    assert src.info.kind == f"rosbag2-{storage}"
    assert (src.info.image_topic, src.info.info_topic) == ("/camera/image_raw", "/camera/camera_info")
    assert src.info.depth_topic == "/camera/depth/image_raw" and src.info.gt_topic == "/ground_truth/pose"
    got = list(src)
    assert len(got) == len(frames) == len(src)
    for (ref, _), out in zip(frames, got):
        assert out.stamp_ns == ref.stamp_ns and out.frame_id == ref.frame_id
        expected = cv2.cvtColor(ref.image, cv2.COLOR_RGB2GRAY) if encoding == "mono8" else ref.image
        assert np.array_equal(out.image, expected)  # bgr8 is flipped back to RGB by the reader
        np.testing.assert_array_equal(out.camera.K, ref.camera.K)
        assert (out.camera.width, out.camera.height) == (96, 64)
        tol = 5e-4 if depth_encoding == "16UC1" else 0
        np.testing.assert_allclose(out.depth, ref.depth, atol=tol)
    gt = src.ground_truth()
    np.testing.assert_allclose(gt.poses, np.array([p for _, p in frames]), atol=1e-12)
    assert list(gt.stamps_ns) == [f.stamp_ns for f, _ in frames]


def test_no_depth_option_and_max_frames(tmp_path: Path) -> None:
    make_demo_bag(tmp_path / "bag", CFG)
    src = open_source(tmp_path / "bag", use_depth=False, max_frames=2)
    got = list(src)
    assert len(got) == 2 and got[0].depth is None and src.info.depth_topic is None


def _ros1_bag(path: Path, frames: list) -> None:
    ts = get_typestore(Stores.ROS1_NOETIC)
    T = ts.types
    with Writer1(path) as w:
        img_c = w.add_connection("/cam/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        info_c = w.add_connection("/cam/camera_info", "sensor_msgs/msg/CameraInfo", typestore=ts)
        for seq, (frame, _) in enumerate(frames):
            stamp = T["builtin_interfaces/msg/Time"](sec=frame.stamp_ns // 10**9, nanosec=frame.stamp_ns % 10**9)
            header = T["std_msgs/msg/Header"](seq=seq, stamp=stamp, frame_id="cam")
            h, wd = frame.image.shape[:2]
            img = T["sensor_msgs/msg/Image"](header=header, height=h, width=wd, encoding="rgb8", is_bigendian=0,
                                             step=wd * 3, data=frame.image.reshape(-1))
            roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
            info = T["sensor_msgs/msg/CameraInfo"](
                header=header, height=h, width=wd, distortion_model="plumb_bob", D=np.zeros(5),
                K=frame.camera.K.reshape(-1), R=np.eye(3).reshape(-1), P=np.zeros(12), binning_x=0, binning_y=0,
                roi=roi)
            w.write(img_c, frame.stamp_ns, ts.serialize_ros1(img, "sensor_msgs/msg/Image"))
            w.write(info_c, frame.stamp_ns, ts.serialize_ros1(info, "sensor_msgs/msg/CameraInfo"))


def test_ros1_bag(tmp_path: Path, frames: list) -> None:
    _ros1_bag(tmp_path / "cam.bag", frames)
    src = open_source(tmp_path / "cam.bag")
    assert src.info.kind == "rosbag1" and src.info.image_topic == "/cam/image_raw"
    got = list(src)
    assert len(got) == len(frames)
    assert all(np.array_equal(a.image, f.image) for a, (f, _) in zip(got, frames))
    np.testing.assert_array_equal(got[0].camera.K, frames[0][0].camera.K)
    assert src.ground_truth() is None


def test_kitti06_bag(shared_data: Path) -> None:
    bag = shared_data / "rosbag2" / "kitti06_mono_sqlite3"
    if not bag.is_dir():
        pytest.skip(f"{bag} absent")
    src = open_source(bag, max_frames=5)
    assert src.info.kind == "rosbag2-sqlite3" and len(src) == 5
    got = list(src)
    assert [f.image.shape for f in got] == [(370, 1226)] * 5 and got[0].image.dtype == np.uint8
    np.testing.assert_allclose(got[0].camera.K, [[707.0912, 0, 601.8873], [0, 707.0912, 183.1104], [0, 0, 1]])
    # Frames equal the PNG files of the same sequence, and the GT equals poses.txt.
    png = cv2.imread(str(shared_data / "kitti06_seq" / "image_0" / "000003.png"), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(got[3].image, png)
    gt = src.ground_truth()
    assert len(gt) == 51
    ref = np.loadtxt(shared_data / "kitti06_seq" / "poses.txt").reshape(-1, 3, 4)
    np.testing.assert_allclose(gt.poses[:, :3, 3], ref[:, :, 3], atol=1e-9)
    # The bag's quaternions were written with a coarse conversion: orientations agree to ~0.01 degree.
    rel = np.einsum("nji,njk->nik", gt.poses[:, :3, :3], ref[:, :, :3])
    angles = np.degrees(np.linalg.norm(Rotation.from_matrix(rel).as_rotvec(), axis=1))
    assert angles.max() < 0.015


def test_kitti_folder(shared_data: Path) -> None:
    seq = shared_data / "kitti06_seq"
    if not seq.is_dir():
        pytest.skip(f"{seq} absent")
    src = open_source(seq, max_frames=3)
    assert isinstance(src, KittiSource) and len(src) == 3
    got = list(src)
    assert got[1].stamp_ns == 104498900 and got[0].camera.K[0, 0] == pytest.approx(707.0912)
    assert len(src.ground_truth()) == 51


def test_tum_folder(tmp_path: Path, frames: list) -> None:
    root = tmp_path / "rgbd_dataset_custom"
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    rgb, dep = ["# color images"], ["# depth"]
    for frame, _ in frames:
        s = f"{frame.stamp_ns / 1e9:.6f}"
        cv2.imwrite(str(root / "rgb" / f"{s}.png"), frame.image[:, :, ::-1])
        cv2.imwrite(str(root / "depth" / f"{s}.png"), np.nan_to_num(frame.depth * 5000).astype(np.uint16))
        rgb.append(f"{s} rgb/{s}.png")
        dep.append(f"{float(s) + 0.004:.6f} depth/{s}.png")
    (root / "rgb.txt").write_text("\n".join(rgb))
    (root / "depth.txt").write_text("\n".join(dep))
    with pytest.raises(BagError, match=r"camera\.txt"):
        open_source(root)
    K = frames[0][0].camera.K
    (root / "camera.txt").write_text(f"{K[0, 0]} {K[1, 1]} {K[0, 2]} {K[1, 2]}")
    write_tum(root / "groundtruth.txt", Trajectory([f.stamp_ns for f, _ in frames], [p for _, p in frames]))
    src = open_source(root)
    assert isinstance(src, TumSource)
    got = list(src)
    assert len(got) == len(frames) and np.array_equal(got[0].image, frames[0][0].image)
    np.testing.assert_allclose(got[0].depth, frames[0][0].depth, atol=1e-3)
    np.testing.assert_allclose(src.ground_truth().poses, [p for _, p in frames], atol=1e-6)


# --- broken bags ---

def _write_raw(path: Path, storage: str = "sqlite3", with_info: bool = True, encoding: str = "mono8",
               extra_image_topic: bool = False, zero_stamps: bool = False) -> None:
    """A small bag written directly with rosbags (to produce bags our writer would refuse to make)."""
    ts = get_typestore(Stores.ROS2_KILTED)
    T = ts.types
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as w:
        topics = ["/cam/image_raw"] + (["/cam2/image_raw"] if extra_image_topic else [])
        conns = {t: w.add_connection(t, "sensor_msgs/msg/Image", typestore=ts) for t in topics}
        info_c = w.add_connection("/cam/camera_info", "sensor_msgs/msg/CameraInfo", typestore=ts) if with_info else None
        for k in range(3):
            stamp = T["builtin_interfaces/msg/Time"](sec=0 if zero_stamps else 1, nanosec=0 if zero_stamps else k)
            header = T["std_msgs/msg/Header"](stamp=stamp, frame_id="c")
            img = T["sensor_msgs/msg/Image"](header=header, height=16, width=16, encoding=encoding, is_bigendian=0,
                                             step=16, data=np.full(256, 100, np.uint8))
            for c in conns.values():
                w.write(c, 10**9 + k, ts.serialize_cdr(img, "sensor_msgs/msg/Image"))
            if info_c is not None:
                roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                            do_rectify=False)
                info = T["sensor_msgs/msg/CameraInfo"](
                    header=header, height=16, width=16, distortion_model="", d=np.zeros(0),
                    k=np.array([20.0, 0, 8, 0, 20, 8, 0, 0, 1]), r=np.eye(3).reshape(-1), p=np.zeros(12),
                    binning_x=0, binning_y=0, roi=roi)
                w.write(info_c, 10**9 + k, ts.serialize_cdr(info, "sensor_msgs/msg/CameraInfo"))


def test_missing_topics_and_camera_info(tmp_path: Path) -> None:
    _write_raw(tmp_path / "ok")
    assert len(list(open_source(tmp_path / "ok"))) == 3
    with pytest.raises(BagError, match=r"image topic /nope not in bag; topics: /cam/camera_info"):
        BagSource(tmp_path / "ok", image_topic="/nope")
    with pytest.raises(BagError, match="is sensor_msgs/msg/CameraInfo, not an image"):
        BagSource(tmp_path / "ok", image_topic="/cam/camera_info")
    with pytest.raises(BagError, match="ground-truth topic /gt not in bag"):
        BagSource(tmp_path / "ok", gt="/gt")
    _write_raw(tmp_path / "noinfo", with_info=False)
    with pytest.raises(BagError, match=r"no camera_info .* uncalibrated"):
        open_source(tmp_path / "noinfo")
    _write_raw(tmp_path / "two", extra_image_topic=True)
    with pytest.raises(BagError, match="several image topics"):
        open_source(tmp_path / "two")
    assert len(list(open_source(tmp_path / "two", image_topic="/cam2/image_raw"))) == 3


def test_unstamped_headers_use_bag_time(tmp_path: Path) -> None:
    _write_raw(tmp_path / "zero", zero_stamps=True)
    assert [f.stamp_ns for f in open_source(tmp_path / "zero")] == [10**9, 10**9 + 1, 10**9 + 2]


def test_unknown_encoding(tmp_path: Path) -> None:
    _write_raw(tmp_path / "yuv", encoding="yuv422_yuy2")
    src = open_source(tmp_path / "yuv")
    with pytest.raises(BagError, match=r"/cam/image_raw message 0: unsupported image encoding 'yuv422_yuy2'"):
        list(src)


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_truncated_bag(tmp_path: Path, storage: str) -> None:
    make_demo_bag(tmp_path / "bag", DemoConfig(frames=6, width=160, height=120), storage=storage)
    data = next(p for p in (tmp_path / "bag").iterdir() if p.suffix in (".db3", ".mcap"))
    raw = data.read_bytes()
    data.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(BagError, match="damaged or truncated"):
        src = open_source(tmp_path / "bag")
        list(src)


def test_not_a_bag(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="input not found"):
        open_source(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="not a rosbag2 directory"):
        open_source(tmp_path / "empty")
    shutil.copytree(Path(__file__).parent, tmp_path / "copy")
    with pytest.raises(BagError, match="not a rosbag2 directory"):
        open_source(tmp_path / "copy")


def test_writer_refuses_existing_path_and_bad_storage(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    with pytest.raises(FileExistsError, match="exists already"):
        BagWriter(tmp_path / "x")
    with pytest.raises(ValueError, match="unknown bag storage"):
        BagWriter(tmp_path / "y", storage="zip")


def test_compressed_images_odometry_ground_truth_and_size_mismatch(tmp_path: Path, frames: list) -> None:
    ts = get_typestore(Stores.ROS2_KILTED)
    T = ts.types

    def write(path: Path, info_width: int) -> None:
        with Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3) as w:
            img_c = w.add_connection("/cam/image/compressed", "sensor_msgs/msg/CompressedImage", typestore=ts)
            info_c = w.add_connection("/cam/camera_info", "sensor_msgs/msg/CameraInfo", typestore=ts)
            gt_c = w.add_connection("/vicon/odom", "nav_msgs/msg/Odometry", typestore=ts)
            for frame, pose in frames:
                s = frame.stamp_ns
                header = T["std_msgs/msg/Header"](
                    stamp=T["builtin_interfaces/msg/Time"](sec=s // 10**9, nanosec=s % 10**9), frame_id="cam")
                png = cv2.imencode(".png", frame.image[:, :, ::-1])[1].reshape(-1)
                img = T["sensor_msgs/msg/CompressedImage"](header=header, format="rgb8; png compressed bgr8",
                                                           data=png)
                roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                            do_rectify=False)
                info = T["sensor_msgs/msg/CameraInfo"](
                    header=header, height=frame.image.shape[0], width=info_width, distortion_model="",
                    d=np.zeros(0), k=frame.camera.K.reshape(-1), r=np.eye(3).reshape(-1), p=np.zeros(12),
                    binning_x=0, binning_y=0, roi=roi)
                q = Rotation.from_matrix(pose[:3, :3]).as_quat()
                p = T["geometry_msgs/msg/Pose"](
                    position=T["geometry_msgs/msg/Point"](x=pose[0, 3], y=pose[1, 3], z=pose[2, 3]),
                    orientation=T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]))
                odom = T["nav_msgs/msg/Odometry"](
                    header=header, child_frame_id="cam",
                    pose=T["geometry_msgs/msg/PoseWithCovariance"](pose=p, covariance=np.zeros(36)),
                    twist=T["geometry_msgs/msg/TwistWithCovariance"](
                        twist=T["geometry_msgs/msg/Twist"](linear=T["geometry_msgs/msg/Vector3"](x=0, y=0, z=0),
                                                           angular=T["geometry_msgs/msg/Vector3"](x=0, y=0, z=0)),
                        covariance=np.zeros(36)))
                w.write(img_c, s, ts.serialize_cdr(img, "sensor_msgs/msg/CompressedImage"))
                w.write(info_c, s, ts.serialize_cdr(info, "sensor_msgs/msg/CameraInfo"))
                w.write(gt_c, s, ts.serialize_cdr(odom, "nav_msgs/msg/Odometry"))

    write(tmp_path / "ok", frames[0][0].image.shape[1])
    src = open_source(tmp_path / "ok")
    assert src.info.image_topic == "/cam/image/compressed" and src.info.gt_topic == "/vicon/odom"
    got = list(src)
    assert all(np.array_equal(a.image, f.image) for a, (f, _) in zip(got, frames))
    np.testing.assert_allclose(src.ground_truth().poses, [p for _, p in frames], atol=1e-9)
    write(tmp_path / "bad", 50)
    with pytest.raises(BagError, match="image is 96x64 but camera_info says 50x64"):
        list(open_source(tmp_path / "bad"))


def test_depth_stream_that_stops(tmp_path: Path) -> None:
    """Images after the last depth message still come out, in order, without depth."""
    seq = list(demo_frames(DemoConfig(frames=130, width=48, height=32, depth=True, noise_std=0)))
    with BagWriter(tmp_path / "bag") as bag:
        for k, (frame, pose) in enumerate(seq):
            if k >= 10:
                frame.depth = None
            bag.write_frame(frame, pose)
    got = list(open_source(tmp_path / "bag"))
    assert [f.stamp_ns for f in got] == [f.stamp_ns for f, _ in seq]
    assert [f.depth is not None for f in got] == [k < 10 for k in range(130)]


def test_ground_truth_from_tum_file(tmp_path: Path, frames: list) -> None:
    make_demo_bag(tmp_path / "bag", CFG)
    poses = [p.copy() for _, p in frames]
    poses[1][:3, 3] += 1.0
    write_tum(tmp_path / "gt.tum", Trajectory([f.stamp_ns for f, _ in frames], poses))
    src = open_source(tmp_path / "bag", gt=str((tmp_path / "gt.tum").resolve()))  # absolute path, not a topic
    assert src.info.gt_topic is None
    np.testing.assert_allclose(src.ground_truth().poses, poses, atol=1e-8)
