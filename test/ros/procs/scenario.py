"""Test orchestrator: runs casmtr_vo_node, the recorder and the publisher as separate processes and writes what
happened to ``--out`` (node.log, rec.json, gt.json, result.json).

Run it inside a private network namespace (``unshare -n``, with ``CASMTR_FRESH_NETNS=1`` it brings ``lo`` up) so
that DDS cannot leave the machine; ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST is set for every process in any case.

Scenarios:
- ``stream``: depth, lockstep, every kind of bad input interleaved, a burst at the end.
- ``services``: compressed monocular stream at a fixed rate; ~/pause, ~/reset and parameter changes meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def node_command(params: dict[str, object]) -> list[str]:
    exe = shutil.which("casmtr_vo_node", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "casmtr_ros.ros.node"]
    cmd += ["--ros-args", "--params-file", str(REPO / "config" / "casmtr_vo.yaml")]
    params = {"matcher.name": "sift", **params}  # these tests check the node's plumbing: the fastest matcher
    for key, value in params.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        cmd += ["-p", f"{key}:={text}"]
    return cmd


class Processes:
    def __init__(self, out: Path, env: dict[str, str]) -> None:
        self.out, self.env, self.procs, self.files = out, env, {}, []

    def start(self, name: str, cmd: list[str], capture_stdout: bool = False) -> subprocess.Popen:
        log = open(self.out / f"{name}.log", "w")  # noqa: SIM115 (closed in stop_all)
        self.files.append(log)
        proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE if capture_stdout else log,
                                stderr=log if capture_stdout else subprocess.STDOUT, text=True)
        self.procs[name] = proc
        return proc

    def stop(self, name: str, timeout: float = 15.0) -> int | None:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                return None
        return proc.returncode

    def stop_all(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is None:
                self.stop(name, 5.0)
        for f in self.files:
            f.close()


def wait_line(proc: subprocess.Popen, text: str, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready and text in proc.stdout.readline():
            return True
    return False


class Client:
    """Service and parameter client of the orchestrator (its own rclpy node); counts /odom messages."""

    def __init__(self) -> None:
        import rclpy
        from nav_msgs.msg import Odometry

        from casmtr_ros.ros.qos import output_qos

        rclpy.init()
        self.rclpy = rclpy
        self.node = rclpy.create_node("test_orchestrator")
        self.odom_count = 0
        self.node.create_subscription(Odometry, "/odom", self._on_odom, output_qos())

    def _on_odom(self, _msg: object) -> None:
        self.odom_count += 1

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.rclpy.spin_once(self.node, timeout_sec=0.02)

    def wait_odom(self, more: int, timeout: float) -> bool:
        target = self.odom_count + more
        end = time.monotonic() + timeout
        while self.odom_count < target and time.monotonic() < end:
            self.spin(0.05)
        return self.odom_count >= target

    def call(self, srv_type: type, name: str, request: object, timeout: float = 30.0) -> object:
        client = self.node.create_client(srv_type, name)
        if not client.wait_for_service(timeout_sec=timeout):
            raise RuntimeError(f"service {name} not available")
        future = client.call_async(request)
        self.rclpy.spin_until_future_complete(self.node, future, timeout_sec=timeout)
        if not future.done():
            raise RuntimeError(f"service {name} did not answer")
        return future.result()

    def pause(self, flag: bool) -> dict:
        from std_srvs.srv import SetBool

        r = self.call(SetBool, "/casmtr_vo_node/pause", SetBool.Request(data=flag))
        return {"success": r.success, "message": r.message}

    def reset(self) -> dict:
        from std_srvs.srv import Trigger

        r = self.call(Trigger, "/casmtr_vo_node/reset", Trigger.Request())
        return {"success": r.success, "message": r.message}

    def set_param(self, name: str, value: object) -> dict:
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        req = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        r = self.call(SetParameters, "/casmtr_vo_node/set_parameters", req)
        return {"success": r.results[0].successful, "reason": r.results[0].reason}

    def close(self) -> None:
        self.node.destroy_node()
        self.rclpy.try_shutdown()


def run(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if os.environ.get("CASMTR_FRESH_NETNS") == "1":
        subprocess.run(["ip", "link", "set", "lo", "up"], check=False)
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=str(args.domain),
               FASTDDS_DEFAULT_PROFILES_FILE=str(REPO / "config" / "fastdds_shm.xml"), PYTHONUNBUFFERED="1")
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID",
                                           "FASTDDS_DEFAULT_PROFILES_FILE")})
    procs = Processes(out, env)
    result: dict = {"events": []}
    py = sys.executable

    def event(name: str, **data: object) -> None:
        result["events"].append({"name": name, "t": time.monotonic(), **data})

    try:
        if args.scenario == "stream":
            node = procs.start("node", node_command({
                "use_depth": True, "diagnostics.period": 0.1, "vo.kf_max_translation_m": 0.3, "log_throttle": 60.0}))
        else:
            node = procs.start("node", node_command({
                "image_transport": "compressed", "diagnostics.period": 0.2, "qos.depth": 2,
                "vo.init_min_parallax_px": 8.0}))
        recorder = procs.start("recorder", [py, str(HERE / "recorder.py"), "--out", str(out / "rec.json")],
                               capture_stdout=True)
        result["recorder_ready"] = wait_line(recorder, "READY", 60)
        if not result["recorder_ready"]:
            return result
        gt = str(out / "gt.json")
        if args.scenario == "stream":
            pub = procs.start("publisher", [py, str(HERE / "publisher.py"), "--frames", "30", "--depth", "--lockstep",
                                            "--bad-inputs", "--burst", "8", "--gt-out", gt])
            result["publisher_rc"] = pub.wait(120)
            time.sleep(1.0)
            result["node_alive_after_stream"] = node.poll() is None
            client = Client()
            event("reset", response=client.reset())
            client.close()
        else:
            client = Client()
            pub = procs.start("publisher", [py, str(HERE / "publisher.py"), "--frames", "90", "--length", "5.0",
                                            "--rate", "4", "--compressed", "--gt-out", gt])
            event("odom_before_pause", ok=client.wait_odom(6, 60))
            event("pause_true", response=client.pause(True))
            client.spin(2.5)
            event("pause_false", response=client.pause(False))
            event("odom_after_resume", ok=client.wait_odom(3, 20))
            event("reset", response=client.reset())
            event("odom_after_reset", ok=client.wait_odom(3, 20))
            for name, value in (("matcher.name", "nope"), ("vo.estimator", "foo"), ("vo.ransac_threshold_px", 500.0),
                                ("image_transport", "raw"), ("vo.min_inliers", 3), ("matcher.name", "orb"),
                                ("vo.ransac_threshold_px", 1.5)):
                event("set", param=name, value=value, response=client.set_param(name, value))
            event("odom_after_reload", ok=client.wait_odom(3, 20))
            event("set", param="publish.odometry", value=False, response=client.set_param("publish.odometry", False))
            client.spin(2.5)
            event("end")
            result["node_alive_after_stream"] = node.poll() is None
            client.close()
            procs.stop("publisher", 5.0)
        time.sleep(0.5)
        result["recorder_rc"] = procs.stop("recorder")
        result["node_rc"] = procs.stop("node")
    finally:
        procs.stop_all()
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=("stream", "services"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--domain", type=int, required=True)
    args = ap.parse_args()
    result = run(args)
    with open(Path(args.out) / "result.json", "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
