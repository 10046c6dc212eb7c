"""tools/rclpy_receive_cost.py: two real rclpy processes over DDS on loopback; the figure is printed, not judged."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.ros
def test_receive_cost_reports_frames_and_cpu_per_frame() -> None:
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "rclpy_receive_cost.py"), "--rate", "20",
                           "--duration", "2", "--width", "160", "--height", "120"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    m = re.search(r"received (\d+) frames, subscriber CPU ([\d.]+) s = ([\d.]+) ms per frame", proc.stdout)
    assert m, proc.stdout
    assert int(m.group(1)) > 10 and float(m.group(3)) > 0
