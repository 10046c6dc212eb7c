"""Test process: record everything casmtr_vo_node publishes, as JSON, until SIGINT/SIGTERM or ``--duration``.

Prints ``READY`` once the node's publishers are discovered. Subscribes to ~/debug_image too, so the node draws it.

    python recorder.py --out rec.json [--node casmtr_vo_node] [--duration 60]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry, Path
from sensor_msgs.msg import Image, PointCloud2

from casmtr_ros.ros.messages import read_cloud_fields, to_ns
from casmtr_ros.ros.qos import diagnostics_qos, latched_qos, output_qos


def pose_list(pose) -> list[float]:
    p, q = pose.position, pose.orientation
    return [p.x, p.y, p.z, q.x, q.y, q.z, q.w]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--node", default="casmtr_vo_node")
    ap.add_argument("--duration", type=float, default=120.0)
    args = ap.parse_args()
    ns = f"/{args.node}"
    rec: dict[str, list] = {"odom": [], "matches": [], "relative_pose": [], "path": [], "debug_image": [],
                            "diagnostics": []}
    rclpy.init()
    node = rclpy.create_node("test_recorder")
    now = time.monotonic

    def on_odom(m: Odometry) -> None:
        rec["odom"].append({"t": now(), "stamp": to_ns(m.header.stamp), "frame_id": m.header.frame_id,
                            "child": m.child_frame_id, "pose": pose_list(m.pose.pose),
                            "cov": list(m.pose.covariance), "twist_cov": list(m.twist.covariance),
                            "twist": [m.twist.twist.linear.x, m.twist.twist.linear.y, m.twist.twist.linear.z,
                                      m.twist.twist.angular.x, m.twist.twist.angular.y, m.twist.twist.angular.z]})

    def on_matches(m: PointCloud2) -> None:
        fields = read_cloud_fields(m)
        rec["matches"].append({"t": now(), "stamp": to_ns(m.header.stamp), "frame_id": m.header.frame_id,
                               "n": m.width * m.height, "field_names": [f.name for f in m.fields],
                               "datatypes": [f.datatype for f in m.fields], "point_step": m.point_step,
                               "fields": {k: v.tolist() for k, v in fields.items()}})

    def on_rel(m: PoseWithCovarianceStamped) -> None:
        rec["relative_pose"].append({"t": now(), "stamp": to_ns(m.header.stamp), "frame_id": m.header.frame_id,
                                     "pose": pose_list(m.pose.pose), "cov": list(m.pose.covariance)})

    def on_path(m: Path) -> None:
        rec["path"].append({"t": now(), "stamp": to_ns(m.header.stamp), "n": len(m.poses),
                            "last": to_ns(m.poses[-1].header.stamp) if m.poses else None})

    def on_debug(m: Image) -> None:
        rec["debug_image"].append({"t": now(), "stamp": to_ns(m.header.stamp), "width": m.width,
                                   "height": m.height, "encoding": m.encoding, "bytes": len(m.data),
                                   "mean": float(np.frombuffer(memoryview(m.data), np.uint8).mean())})

    def on_diag(m: DiagnosticArray) -> None:
        for s in m.status:
            rec["diagnostics"].append({"t": now(), "name": s.name, "level": int.from_bytes(s.level, "little")
                                       if isinstance(s.level, bytes) else int(s.level), "message": s.message,
                                       "values": {kv.key: kv.value for kv in s.values}})

    out_qos = output_qos()
    node.create_subscription(Odometry, "/odom", on_odom, out_qos)
    node.create_subscription(PointCloud2, f"{ns}/matches", on_matches, out_qos)
    node.create_subscription(PoseWithCovarianceStamped, f"{ns}/relative_pose", on_rel, out_qos)
    node.create_subscription(Path, f"{ns}/path", on_path, latched_qos())
    node.create_subscription(Image, f"{ns}/debug_image", on_debug, output_qos(2))
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, diagnostics_qos())

    stop = {"flag": False}

    def handler(signum, frame) -> None:
        stop["flag"] = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    deadline = now() + 30
    topics = ["/odom", f"{ns}/matches", f"{ns}/relative_pose", f"{ns}/path", "/diagnostics"]
    while any(node.count_publishers(t) < 1 for t in topics):
        if now() > deadline or stop["flag"]:
            sys.exit("recorder: node publishers not discovered")
        rclpy.spin_once(node, timeout_sec=0.05)
    # the subscriptions match once discovery completes both ways; give it a moment
    end = now() + 0.5
    while now() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    print("READY", flush=True)
    end = now() + args.duration
    while not stop["flag"] and now() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    with open(args.out, "w") as f:
        json.dump(rec, f)
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
