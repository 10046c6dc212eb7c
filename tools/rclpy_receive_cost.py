"""CPU cost of receiving images in rclpy alone: a publisher process streams WxH mono8 images and a subscriber
with an empty callback reports its process CPU time per received frame (DDS take, deserialisation, executor).

This is the part of the node's per-frame cost that happens before its own callback runs (which
``casmtr-vo bench node`` reports separately as conversion + publishing).

    tools/loopback_only.sh .venv/bin/python tools/rclpy_receive_cost.py --rate 30 --duration 20
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


def publish(rate: float, duration: float, width: int, height: int) -> int:
    import numpy as np
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("receive_cost_pub")
    pub = node.create_publisher(Image, "receive_cost/image", qos_profile_sensor_data)
    msg = Image(height=height, width=width, encoding="mono8", step=width)
    msg.data = np.random.default_rng(0).integers(0, 255, width * height, dtype=np.uint8).tobytes()
    time.sleep(2.0)  # discovery
    t0, k = time.time(), 0
    while time.time() - t0 < duration:
        pub.publish(msg)
        k += 1
        time.sleep(max(0.0, t0 + k / rate - time.time()))
    node.destroy_node()
    rclpy.shutdown()
    return k


def subscribe(seconds: float) -> tuple[int, float]:
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("receive_cost_sub")
    count = [0]
    cpu0: list[float] = []

    def callback(_: Image) -> None:
        count[0] += 1
        if count[0] == 1:
            cpu0.append(time.process_time())

    node.create_subscription(Image, "receive_cost/image", callback, qos_profile_sensor_data)
    end = time.time() + seconds
    while time.time() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    cpu = time.process_time() - cpu0[0] if cpu0 else 0.0
    node.destroy_node()
    rclpy.shutdown()
    return count[0], cpu


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=30.0)
    p.add_argument("--duration", type=float, default=20.0, help="seconds of publishing")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--role", choices=["main", "pub"], default="main", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role == "pub":
        print(f"published {publish(args.rate, args.duration, args.width, args.height)}")
        return 0
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")}
    pub = subprocess.Popen([sys.executable, __file__, "--role", "pub", "--rate", str(args.rate), "--duration",
                            str(args.duration), "--width", str(args.width), "--height", str(args.height)], env=env)
    received, cpu = subscribe(args.duration + 4.0)
    pub.wait(timeout=30)
    per_frame = 1000.0 * cpu / max(1, received - 1)
    print(f"{args.width}x{args.height} mono8 at {args.rate:g} Hz: received {received} frames, subscriber CPU "
          f"{cpu:.2f} s = {per_frame:.2f} ms per frame (take + deserialise + executor, empty callback)")
    return 0 if received > 1 else 1


if __name__ == "__main__":
    sys.exit(main())
