"""Test process: stream a rendered camera sequence (image, camera_info, depth) and, optionally, bad inputs.

Frames come from the project's textured-room renderer (casmtr_ros.bags) along its demo path, so the ground truth
is exact. In lockstep mode the publisher waits after each message set until the node's /diagnostics report it
handled (processed + refused), so no set is replaced in the node's latest-only slot; ``--burst`` frames at the end
are sent without waiting. Writes the ground truth (stamps and T_world_cam) as JSON to ``--gt-out``.

    python publisher.py --frames 30 --size 320x240 --depth --gt-out gt.json [--bad-inputs] [--lockstep]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from casmtr_ros.bags.render import render_view
from casmtr_ros.bags.scenes import demo_trajectory, room_scene
from casmtr_ros.ros.image_conversion import fill_image_msg
from casmtr_ros.ros.messages import to_time
from casmtr_ros.ros.qos import diagnostics_qos

T0_NS = 1_700_000_000_000_000_000
DT_NS = 100_000_000
BAD_KINDS = ("encoding", "truncated", "step", "zero_size", "k_zero", "nan_depth", "backwards", "resolution")


def intrinsics(width: int, height: int, hfov_deg: float = 70.0) -> np.ndarray:
    f = 0.5 * width / np.tan(np.radians(hfov_deg) / 2)
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]])


class Streamer:
    def __init__(self, node, size: tuple[int, int], depth: bool, lockstep: bool, compressed: bool = False) -> None:
        self.node, self.size, self.with_depth, self.lockstep, self.compressed = node, size, depth, lockstep, compressed
        self.K = intrinsics(*size)
        self.pub_image = node.create_publisher(CompressedImage, "image/compressed", qos_profile_sensor_data) \
            if compressed else node.create_publisher(Image, "image", qos_profile_sensor_data)
        self.pub_info = node.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
        self.pub_depth = node.create_publisher(Image, "depth", qos_profile_sensor_data) if depth else None
        self.handled = 0
        self.sent = 0
        self.kinds_seen: set[str] = set()
        self.got_diag = False
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, diagnostics_qos())

    def _on_diag(self, msg: DiagnosticArray) -> None:
        self.got_diag = True
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if "frames_processed" in values:
                self.handled = max(self.handled, int(values["frames_processed"]) + int(values["frames_refused"]))
            if "kind" in values:
                self.kinds_seen.add(values["kind"])

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=max(0.0, min(0.02, end - time.monotonic())))

    def wait_for_node(self, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        pubs = [self.pub_image, self.pub_info] + ([self.pub_depth] if self.pub_depth else [])
        while any(p.get_subscription_count() < 1 for p in pubs):
            if time.monotonic() > end:
                sys.exit("publisher: the node's subscriptions never appeared")
            self.spin(0.05)
        while not self.got_diag:
            if time.monotonic() > end:
                sys.exit("publisher: no /diagnostics from the node")
            self.spin(0.05)
        self.spin(0.3)

    def info_msg(self, stamp_ns: int, K: np.ndarray | None = None, size: tuple[int, int] | None = None) -> CameraInfo:
        w, h = size or self.size
        msg = CameraInfo(width=w, height=h, distortion_model="plumb_bob")
        msg.header.stamp, msg.header.frame_id = to_time(stamp_ns), "camera_optical_frame"
        msg.k = np.asarray(self.K if K is None else K, np.float64).reshape(9)
        msg.d = [0.0] * 5
        return msg

    def image_msg(self, stamp_ns: int, rgb: np.ndarray, encoding: str = "rgb8") -> Image | CompressedImage:
        if self.compressed:
            _, png = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
            msg = CompressedImage(format="rgb8; png compressed bgr8")
            msg.data = png.tobytes()
            msg.header.stamp, msg.header.frame_id = to_time(stamp_ns), "camera_optical_frame"
            return msg
        msg = Image()
        fill_image_msg(msg, rgb, encoding)
        msg.header.stamp, msg.header.frame_id = to_time(stamp_ns), "camera_optical_frame"
        return msg

    def depth_msg(self, stamp_ns: int, depth_m: np.ndarray) -> Image:
        msg = Image()
        fill_image_msg(msg, depth_m.astype(np.float32), "32FC1")
        msg.header.stamp, msg.header.frame_id = to_time(stamp_ns), "camera_optical_frame"
        return msg

    def send(self, image: Image, info: CameraInfo, depth: Image | None, wait: bool) -> None:
        self.pub_info.publish(info)
        if self.pub_depth is not None and depth is not None:
            self.pub_depth.publish(depth)
        self.pub_image.publish(image)
        self.sent += 1
        if wait:
            end = time.monotonic() + 20.0
            while self.handled < self.sent and time.monotonic() < end:
                self.spin(0.01)
            if self.handled < self.sent:
                print(f"publisher: node did not report set {self.sent} handled", file=sys.stderr)
        else:
            self.spin(0.005)


def bad_input(streamer: Streamer, kind: str, stamp_ns: int, last_good_ns: int, rgb: np.ndarray, depth: np.ndarray
              ) -> tuple[Image, CameraInfo, Image | None]:
    """One malformed message set of ``kind`` (see BAD_KINDS)."""
    s = streamer
    image, info = s.image_msg(stamp_ns, rgb), s.info_msg(stamp_ns)
    dmsg = s.depth_msg(stamp_ns, depth)
    if kind == "encoding":
        image.encoding = "yuv422"
    elif kind == "truncated":
        image.data = image.data[: len(image.data) // 2]
    elif kind == "step":
        image.step = image.width * 3 - 7
    elif kind == "zero_size":
        image.width = image.height = image.step = 0
        image.data = []
    elif kind == "k_zero":
        info.k = np.zeros(9)
    elif kind == "nan_depth":
        dmsg = s.depth_msg(stamp_ns, np.full(depth.shape, np.nan, np.float32))
    elif kind == "backwards":
        back = last_good_ns - 5 * DT_NS
        image, info, dmsg = s.image_msg(back, rgb), s.info_msg(back), s.depth_msg(back, depth)
    elif kind == "resolution":
        h, w = rgb.shape[0] // 2, rgb.shape[1] // 2
        image = s.image_msg(stamp_ns, np.ascontiguousarray(rgb[:h, :w]))
        dmsg = s.depth_msg(stamp_ns, np.ascontiguousarray(depth[:h, :w]))
    else:
        raise ValueError(kind)
    return image, info, dmsg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--length", type=float, default=1.6, help="metres of path")
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--depth", action="store_true")
    ap.add_argument("--lockstep", action="store_true")
    ap.add_argument("--burst", type=int, default=0, help="extra frames at the end, sent without waiting")
    ap.add_argument("--bad-inputs", action="store_true", help="interleave one of each BAD_KINDS after frame 6")
    ap.add_argument("--rate", type=float, default=0.0, help="without lockstep: message sets per second")
    ap.add_argument("--compressed", action="store_true", help="PNG CompressedImage on image/compressed")
    ap.add_argument("--gt-out", required=True)
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))

    scene = room_scene(seed=3)
    n_total = args.frames + args.burst
    poses = demo_trajectory(n_total, args.length * n_total / args.frames)
    rclpy.init()
    node = rclpy.create_node("test_publisher")
    s = Streamer(node, size, args.depth, args.lockstep, args.compressed)
    frames = [render_view(scene, s.K, T, size) for T in poses]
    s.wait_for_node()
    gt: dict = {"stamps_ns": [], "T_world_cam": [], "bad": [], "size": list(size), "K": s.K.tolist()}
    # every kind once, then the first again (its log line is throttled, its diagnostic is not)
    bad_queue = [*BAD_KINDS, BAD_KINDS[0]] if args.bad_inputs else []
    stamp = T0_NS
    last_good = stamp
    try:
        for k, (rgb, depth) in enumerate(frames):
            wait = args.lockstep and k < args.frames
            if k >= 6 and bad_queue:
                kind = bad_queue.pop(0)
                stamp += DT_NS // 2
                image, info, dmsg = bad_input(s, kind, stamp, last_good, rgb, depth)
                s.send(image, info, dmsg, wait=True)
                gt["bad"].append([kind, stamp if kind != "backwards" else last_good - 5 * DT_NS])
                stamp += DT_NS // 2
            stamp += DT_NS
            gt["stamps_ns"].append(stamp)
            gt["T_world_cam"].append(poses[k].tolist())
            t_send = time.monotonic()
            s.send(s.image_msg(stamp, rgb), s.info_msg(stamp), s.depth_msg(stamp, depth) if args.depth else None, wait)
            if args.rate > 0 and not wait:
                s.spin(max(0.0, 1.0 / args.rate - (time.monotonic() - t_send)))
            last_good = stamp
        s.spin(1.0)
    finally:  # also when stopped early (SIGINT): the ground truth of what was sent
        gt["kinds_seen"] = sorted(s.kinds_seen)
        gt["sent"] = s.sent
        with open(args.gt_out, "w") as f:
            json.dump(gt, f)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # stopped by the orchestrator
        rclpy.try_shutdown()
