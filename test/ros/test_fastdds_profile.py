"""config/fastdds_shm.xml lets best-effort 640x480 bgr8 images (0.9 MB) cross processes.

(With Fast DDS defaults, measured here: 0 of 20 arrive; see ../shared/reference/ros2_python_stack.md.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros
REPO = Path(__file__).resolve().parents[2]
BLAST = Path(__file__).resolve().parent / "procs" / "image_blast.py"


def test_best_effort_vga_images_cross_processes_with_the_profile() -> None:
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID="76",
               FASTDDS_DEFAULT_PROFILES_FILE=str(REPO / "config" / "fastdds_shm.xml"))
    script = f'{sys.executable} {BLAST} sub 20 & {sys.executable} {BLAST} pub; wait'
    netns = not os.environ.get("CASMTR_IN_NETNS") and subprocess.run(
        ["unshare", "-n", "true"], capture_output=True).returncode == 0
    cmd = ["unshare", "-n", "bash", "-c", f"ip link set lo up; {script}"] if netns else ["bash", "-c", script]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=90)
    found = re.search(r"RECEIVED (\d+) \[(\d*)\]", proc.stdout)
    assert found, proc.stdout + proc.stderr[-2000:]
    assert int(found[1]) >= 18 and found[2] == str(640 * 480 * 3)
    assert "Error" not in proc.stderr, proc.stderr[-2000:]  # the XML parses without Fast DDS errors
