"""Node benchmark over DDS on loopback: a publisher streams real frames to ``casmtr_vo_node`` (a separate
process) and measures, per frame, the latency from image publish to odometry receipt; it also samples the node's
RSS and CPU time and reads its diagnostics (per-stage latencies, processed/dropped counters, keyframes).

Run it as ``tools/loopback_only.sh casmtr-vo bench node`` (private network namespace; ROS discovery is limited to
localhost in any case). Frames: the KITTI 06 clip resized to ``--width x --height``, played forward then backward
so the motion stays continuous, stamps always increasing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from casmtr_ros.benchmark.images import KITTI06_K, shared_dir

REPO = Path(__file__).resolve().parents[2]


def _frames(size: tuple[int, int]) -> tuple[list[np.ndarray], np.ndarray]:
    folder = shared_dir() / "data" / "kitti06_seq" / "image_0"
    paths = sorted(folder.glob("*.png"))
    if len(paths) < 2:
        raise FileNotFoundError(f"KITTI 06 frames not found in {folder} (set CASMTR_SHARED)")
    imgs = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths]
    h, w = imgs[0].shape
    W, H = size
    K = np.diag([W / w, H / h, 1.0]) @ KITTI06_K
    imgs = [cv2.resize(im, (W, H), interpolation=cv2.INTER_AREA) for im in imgs]
    return imgs + imgs[-2:0:-1], K


def _proc_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def node_command(matcher: str) -> list[str]:
    exe = shutil.which("casmtr_vo_node", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "casmtr_ros.ros.node"]
    return [*cmd, "--ros-args", "--params-file", str(REPO / "config" / "casmtr_vo.yaml"),
            "-p", f"matcher.name:={matcher}", "-p", "matcher.device:=cpu"]


def run(matcher: str, rate: float, duration: float, size: tuple[int, int], log_path: Path) -> dict[str, Any]:
    """Stream for ``duration`` seconds at ``rate`` Hz and return the measurements."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from nav_msgs.msg import Odometry
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    from casmtr_ros.ros.qos import diagnostics_qos, output_qos

    frames, K = _frames(size)
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    env.setdefault("ROS_DOMAIN_ID", str(60 + os.getpid() % 30))
    os.environ["ROS_DOMAIN_ID"] = env["ROS_DOMAIN_ID"]
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    log = open(log_path, "w")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(node_command(matcher), env=env, stdout=log, stderr=subprocess.STDOUT)
    rclpy.init()
    node = rclpy.create_node("casmtr_bench_publisher")
    pub_img = node.create_publisher(Image, "/image", qos_profile_sensor_data)
    pub_info = node.create_publisher(CameraInfo, "/camera_info", qos_profile_sensor_data)
    sent: dict[int, float] = {}
    received: dict[int, float] = {}
    diag: dict[str, str] = {}

    def on_odom(msg: Odometry) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        received.setdefault(stamp, time.perf_counter())

    def on_diag(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if "visual odometry" in status.name:
                diag.clear()
                diag.update({kv.key: kv.value for kv in status.values})

    node.create_subscription(Odometry, "/odom", on_odom, output_qos())
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, diagnostics_qos())
    H, W = frames[0].shape
    try:
        ready_by = time.monotonic() + 120
        def ready() -> bool:
            return pub_img.get_subscription_count() > 0 and pub_info.get_subscription_count() > 0 and bool(diag)

        while not ready() and time.monotonic() < ready_by:
            rclpy.spin_once(node, timeout_sec=0.1)
            if proc.poll() is not None:
                raise RuntimeError(f"node exited with {proc.returncode}; see {log_path}")
        if not ready():
            raise RuntimeError(f"node did not subscribe within 120 s; see {log_path}")
        settle = time.monotonic() + 1.0
        while time.monotonic() < settle:
            rclpy.spin_once(node, timeout_sec=0.05)
        rss, cpu0 = [], _proc_cpu_s(proc.pid)
        period, t_start = 1.0 / rate, time.perf_counter()
        i, next_rss = 0, t_start
        base_ns = time.time_ns()
        while time.perf_counter() - t_start < duration:
            now = time.perf_counter()
            if now >= t_start + i * period:
                stamp = base_ns + int(i * period * 1e9)
                img = Image(height=H, width=W, encoding="mono8", step=W, data=frames[i % len(frames)].tobytes())
                info = CameraInfo(height=H, width=W, k=K.reshape(-1).tolist(), distortion_model="plumb_bob",
                                  d=[0.0] * 5, p=np.c_[K, np.zeros(3)].reshape(-1).tolist())
                for m in (img, info):
                    m.header.stamp.sec, m.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
                    m.header.frame_id = "camera"
                sent[stamp] = time.perf_counter()
                pub_info.publish(info)
                pub_img.publish(img)
                i += 1
            if now >= next_rss:
                rss.append(_proc_rss_mb(proc.pid))
                next_rss += 1.0
            rclpy.spin_once(node, timeout_sec=max(0.0, min(period / 4, t_start + i * period - time.perf_counter())))
        drain_until = time.perf_counter() + 5.0
        while time.perf_counter() < drain_until:
            rclpy.spin_once(node, timeout_sec=0.05)
        cpu = _proc_cpu_s(proc.pid) - cpu0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
    lat = sorted(1e3 * (received[s] - sent[s]) for s in received if s in sent)
    counters = {k: int(float(diag.get(k, 0) or 0)) for k in (
        "frames_received", "frames_processed", "frames_dropped", "frames_refused", "frames_ignored_paused")}
    quarter = max(1, len(rss) // 4)
    processed = counters["frames_processed"]
    accounted = sum(v for k, v in counters.items() if k != "frames_received")
    return {
        "matcher": matcher, "rate_hz": rate, "duration_s": duration, "size": f"{W}x{H}",
        "published": len(sent), "odometry_received": len(lat),
        "latency_ms": {"median": statistics.median(lat), "p90": lat[int(0.9 * (len(lat) - 1))], "max": lat[-1]}
        if lat else None,
        "counters": counters,
        "all_frames_received": counters["frames_received"] == len(sent),
        "drop_accounting_exact": counters["frames_received"] == accounted,
        "node_outside_matcher_ms": _outside_matcher_ms(diag),
        "diagnostics": diag,
        "node_cpu_s": round(cpu, 2),
        "node_cpu_ms_per_processed_frame": round(1e3 * cpu / processed, 1) if processed else None,
        "node_rss_mb": {"first_quarter_mean": round(float(np.mean(rss[:quarter])), 1),
                        "last_quarter_mean": round(float(np.mean(rss[-quarter:])), 1), "max": round(max(rss), 1)}
        if rss else None,
    }


def _outside_matcher_ms(diag: dict[str, str]) -> float | None:
    """Node work per frame that is neither matching nor geometry: conversion + publishing (last frame)."""
    try:
        return round(float(diag["latency_convert_ms"]) + float(diag["latency_publish_ms"]), 3)
    except (KeyError, ValueError):
        return None


def main(args: Any) -> int:
    from casmtr_ros.benchmark.matcher_bench import machine_info

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = run(args.matcher, args.rate, args.duration, (args.width, args.height), out / "node.log")
    result["machine"] = machine_info()
    result["command"] = "casmtr-vo bench " + " ".join(sys.argv[2:])
    (out / "node_bench.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "diagnostics"}, indent=1))
    keys = sorted(k for k in result["diagnostics"] if k.startswith(("latency_", "frames_", "keyframes")))
    for k in keys:
        print(f"  {k}: {result['diagnostics'][k]}")
    print(f"wrote {out / 'node_bench.json'}")
    return 0
