"""Test process: best-effort 640x480 bgr8 images between two processes (``pub`` or ``sub`` role).

The subscriber prints how many of the 20 images it received. Used to check config/fastdds_shm.xml.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from casmtr_ros.ros.image_conversion import fill_image_msg

COUNT = 20


def main() -> None:
    role = sys.argv[1]
    rclpy.init()
    node = rclpy.create_node(f"blast_{role}")
    if role == "pub":
        pub = node.create_publisher(Image, "blast", qos_profile_sensor_data)
        image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
        msg = fill_image_msg(Image(), image, "bgr8")
        end = time.monotonic() + 20
        while pub.get_subscription_count() < 1 and time.monotonic() < end:
            time.sleep(0.05)
        time.sleep(0.5)
        for k in range(COUNT):
            msg.header.stamp.sec = k
            pub.publish(msg)
            time.sleep(0.05)
        time.sleep(0.5)
    else:
        got: list[int] = []
        node.create_subscription(Image, "blast", lambda m: got.append(len(m.data)), qos_profile_sensor_data)
        end = time.monotonic() + float(sys.argv[2])
        while time.monotonic() < end and len(got) < COUNT:
            rclpy.spin_once(node, timeout_sec=0.05)
        print(f"RECEIVED {len(got)} {sorted(set(got))}", flush=True)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
