"""casmtr_vo_node: image (+ camera_info, + depth) in; matches, relative poses, odometry, path, diagnostics out.

Callbacks only pair and hand messages to a worker thread (:mod:`casmtr_ros.ros.worker`); conversion, the VO
pipeline and publishing run there. Bad input never stops the node: the frame is refused, a diagnostic is published
and a throttled warning logged, and nothing is published for it. See the README's `ros` section for every topic,
parameter and service.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry as OdometryMsg
from nav_msgs.msg import Path
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_srvs.srv import SetBool, Trigger

from casmtr_ros.matching.base import Matcher
from casmtr_ros.ros import messages as M
from casmtr_ros.ros.image_conversion import (
    camera_info_to_model,
    compressed_msg_to_rgb,
    depth_msg_to_metres,
    image_msg_to_rgb,
)
from casmtr_ros.ros.matcher_factory import check_matcher_params, make_matcher
from casmtr_ros.ros.params import declare_all, spec_by_name, vo_config_from
from casmtr_ros.ros.qos import diagnostics_qos, input_qos, latched_qos, output_qos
from casmtr_ros.ros.sync import stamp_ns, subscribe_synchronized
from casmtr_ros.ros.worker import LatestOnlyWorker
from casmtr_ros.types import CameraModel, Frame, InputError
from casmtr_ros.vo import FrameResult, Pipeline, TrackingState

NODE_NAME = "casmtr_vo_node"
DIAG_MIN_INTERVAL_S = 0.25  # immediate diagnostics about bad input: at most 4 per second per kind
#: topic names as the node creates them (relative names remap; ``~/`` is the node's private namespace)
TOPIC_IMAGE, TOPIC_COMPRESSED, TOPIC_INFO, TOPIC_DEPTH = "image", "image/compressed", "camera_info", "depth"
TOPIC_MATCHES, TOPIC_RELATIVE, TOPIC_ODOM = "~/matches", "~/relative_pose", "odom"
TOPIC_PATH, TOPIC_DEBUG, TOPIC_DIAG = "~/path", "~/debug_image", "/diagnostics"
SUBSCRIBED = (TOPIC_IMAGE, TOPIC_COMPRESSED, TOPIC_INFO, TOPIC_DEPTH)
PUBLISHED = (TOPIC_MATCHES, TOPIC_RELATIVE, TOPIC_ODOM, TOPIC_PATH, TOPIC_DEBUG, TOPIC_DIAG)
SERVICES = ("~/reset", "~/pause")


class FrameRefusedError(InputError):
    """A frame the node refuses; ``kind`` groups the counters, logs and diagnostics."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class CasmtrVoNode(Node):
    """The visual-odometry node (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.values = declare_all(self)
        self._specs = spec_by_name()
        matcher, self._not_applicable = make_matcher(self.values)
        self.pipeline = Pipeline(matcher, vo_config_from(self.values))
        self._lock = threading.Lock()
        self._paused = False
        self._last_stamp: int | None = None
        self._last_size: tuple[int, int] | None = None
        self._kf_image: tuple[int, np.ndarray] | None = None
        self._path: deque = deque(maxlen=int(self.values["path.max_length"]))
        self._kf_stamps: deque[int] = deque(maxlen=20)
        self._counts: dict[str, int] = {"received": 0, "paused": 0, "processed": 0, "keyframes": 0,
                                        "published_odometry": 0, "debug_images": 0}
        self._errors: dict[str, int] = {}
        self._notices: dict[str, int] = {}
        self._last_error: tuple[str, str] | None = None
        self._last_error_time = 0.0
        self._last_log: dict[str, float] = {}
        self._last_diag: dict[str, float] = {}
        self._model_error: str | None = None
        self._last_result: FrameResult | None = None
        self._timings: dict[str, float] = {}

        outputs = output_qos()
        self.pub_matches = self.create_publisher(PointCloud2, TOPIC_MATCHES, outputs)
        self.pub_relative = self.create_publisher(PoseWithCovarianceStamped, TOPIC_RELATIVE, outputs)
        self.pub_odom = self.create_publisher(OdometryMsg, TOPIC_ODOM, outputs)
        self.pub_path = self.create_publisher(Path, TOPIC_PATH, latched_qos())
        self.pub_debug = self.create_publisher(Image, TOPIC_DEBUG, output_qos(2))
        self.pub_diag = self.create_publisher(DiagnosticArray, TOPIC_DIAG, diagnostics_qos())

        self.worker: LatestOnlyWorker[tuple] = LatestOnlyWorker(self._process, on_error=self._internal_error)
        services = ReentrantCallbackGroup()
        self.create_service(Trigger, SERVICES[0], self._on_reset, callback_group=services)
        self.create_service(SetBool, SERVICES[1], self._on_pause, callback_group=services)

        compressed = self.values["image_transport"] == "compressed"
        topics: list[tuple[type, str]] = [
            (CompressedImage, TOPIC_COMPRESSED) if compressed else (Image, TOPIC_IMAGE),
            (CameraInfo, TOPIC_INFO),
        ]
        if self.values["use_depth"]:
            topics.append((Image, TOPIC_DEPTH))
        self.sync_backend, self._subs, self._sync = subscribe_synchronized(
            self, topics, input_qos(self.values["qos.reliability"], int(self.values["qos.depth"])),
            int(self.values["sync.queue_size"]), float(self.values["sync.slop"]), self._on_synced,
            callback_group=MutuallyExclusiveCallbackGroup(),
        )
        self.create_timer(float(self.values["diagnostics.period"]), self._publish_periodic_diagnostics,
                          callback_group=MutuallyExclusiveCallbackGroup())
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.get_logger().info(
            f"matcher {self.values['matcher.name']} on {self.pipeline.matcher.compute_path}, inputs "
            f"{[t for _, t in topics]} paired by {self.sync_backend} (slop {self.values['sync.slop']} s)"
        )

    # ------------------------------------------------------------------ input
    def _on_synced(self, image_msg: Any, info_msg: Any, depth_msg: Any = None) -> None:
        """Executor thread: count and hand over; never blocks."""
        self._counts["received"] += 1
        if self._paused:
            self._counts["paused"] += 1
            return
        self.worker.submit((image_msg, info_msg, depth_msg, time.perf_counter()))

    def _to_frame(self, image_msg: Any, info_msg: Any, depth_msg: Any) -> Frame:
        """Convert and check one synchronised set; raise FrameRefusedError with the kind of problem."""
        stamp = stamp_ns(image_msg)
        try:
            image = compressed_msg_to_rgb(image_msg) if isinstance(image_msg, CompressedImage) \
                else image_msg_to_rgb(image_msg)
        except InputError as exc:
            raise FrameRefusedError(getattr(exc, "reason", "image"), f"image refused: {exc}") from exc
        try:
            camera: CameraModel = camera_info_to_model(info_msg)
        except (InputError, ValueError) as exc:
            raise FrameRefusedError("camera_info", f"camera_info refused: {exc}") from exc
        h, w = image.shape[:2]
        if (w, h) != (camera.width, camera.height):
            raise FrameRefusedError("resolution", f"image size {w}x{h} does not match camera_info "
                                             f"{camera.width}x{camera.height}")
        depth = None
        if depth_msg is not None:
            try:
                depth = depth_msg_to_metres(depth_msg)
            except InputError as exc:
                raise FrameRefusedError("depth", f"depth refused: {exc}") from exc
            if depth.shape != (h, w):
                raise FrameRefusedError("depth", f"depth size {depth.shape[1]}x{depth.shape[0]} does not match the "
                                            f"image's {w}x{h}")
            if not np.isfinite(depth).any():
                raise FrameRefusedError("depth", "depth image has no valid pixel (all NaN, inf or zero)")
        if self._last_stamp is not None and stamp <= self._last_stamp:
            raise FrameRefusedError("stamp", f"stamp {_sec(stamp)} s is not after the previous frame's "
                                             f"{_sec(self._last_stamp)} s (stamps going backwards; call ~/reset "
                                             "to restart on a new stream)")
        frame_id = self.values["frames.camera"] or str(image_msg.header.frame_id) or "camera_optical_frame"
        return Frame(stamp_ns=stamp, image=image, camera=camera, depth=depth, frame_id=frame_id)

    def _process(self, item: tuple) -> None:
        """Worker thread: convert, run the pipeline, publish."""
        image_msg, info_msg, depth_msg, received = item
        t0 = time.perf_counter()
        try:
            frame = self._to_frame(image_msg, info_msg, depth_msg)
            size = (frame.camera.width, frame.camera.height)
            if self._last_size is not None and size != self._last_size:  # the pipeline restarts tracking
                self._kf_image = None
                self._refuse(FrameRefusedError("resolution_change", f"resolution changed from {self._last_size[0]}x"
                                               f"{self._last_size[1]} to {size[0]}x{size[1]}: tracking restarts"),
                             stamp_ns(image_msg), count=False)
            t1 = time.perf_counter()
            result = self.pipeline.process(frame)
        except FrameRefusedError as exc:
            self._refuse(exc, stamp_ns(image_msg))
            return
        except InputError as exc:
            self._refuse(FrameRefusedError("frame", f"frame refused by the pipeline: {exc}"), stamp_ns(image_msg))
            return
        self._last_stamp, self._last_size = frame.stamp_ns, size
        self._counts["processed"] += 1
        self._last_result = result
        t2 = time.perf_counter()
        self._publish_result(frame, result)
        t3 = time.perf_counter()
        self._timings = {"queue": t0 - received, "convert": t1 - t0,
                         **{f"vo_{k}": float(v) for k, v in result.timings.items()},
                         "pipeline": t2 - t1, "publish": t3 - t2, "total": t3 - received}

    # ----------------------------------------------------------------- output
    def _publish_result(self, frame: Frame, result: FrameResult) -> None:
        v = self.values
        if result.reset:
            self._kf_image = None
        pair = result.keyframe_pair
        if pair is not None:
            self._counts["keyframes"] += 1
            self._kf_stamps.append(pair.stamp1_ns)
            if v["publish.matches"]:
                self.pub_matches.publish(M.matches_cloud(pair, frame.frame_id))
            if v["publish.relative_pose"]:
                self.pub_relative.publish(M.relative_pose_msg(pair, frame.frame_id))
            if (v["publish.debug_image"] and self._kf_image is not None and self._kf_image[0] == pair.stamp0_ns
                    and self.pub_debug.get_subscription_count() > 0):
                canvas = M.draw_matches(self._kf_image[1], frame.image, pair, int(v["debug_image.max_matches"]))
                self.pub_debug.publish(M.debug_image_msg(canvas, pair.stamp1_ns, frame.frame_id))
                self._counts["debug_images"] += 1
        if result.is_keyframe:
            self._kf_image = (frame.stamp_ns, frame.image)
        if result.odometry is not None:
            odom = M.odometry_msg(result.odometry, v["frames.odom"], v["frames.base"])
            if v["publish.odometry"]:
                self.pub_odom.publish(odom)
                self._counts["published_odometry"] += 1
            if self._path.maxlen != int(v["path.max_length"]):
                self._path = deque(self._path, maxlen=int(v["path.max_length"]))
            self._path.append(M.pose_stamped(odom))
            if v["publish.path"]:
                self.pub_path.publish(M.path_msg(list(self._path), v["frames.odom"]))

    # ------------------------------------------------------------ diagnostics
    def _refuse(self, exc: FrameRefusedError, stamp: int, level: str = "warn", count: bool = True) -> None:
        """Count, log (throttled per kind) and publish a diagnostic (rate-limited per kind).

        ``count=False`` reports a notice about an accepted frame (not counted as refused).
        """
        now = time.monotonic()
        with self._lock:
            if count:
                self._errors[exc.kind] = self._errors.get(exc.kind, 0) + 1
            else:
                self._notices[exc.kind] = self._notices.get(exc.kind, 0) + 1
            self._last_error = (exc.kind, str(exc))
            self._last_error_time = now
            log_due = now - self._last_log.get(exc.kind, -1e9) >= float(self.values["log_throttle"])
            diag_due = now - self._last_diag.get(exc.kind, -1e9) >= DIAG_MIN_INTERVAL_S
            if log_due:
                self._last_log[exc.kind] = now
            if diag_due:
                self._last_diag[exc.kind] = now
        if log_due:
            total = self._errors.get(exc.kind, 0) if count else self._notices.get(exc.kind, 0)
            self.get_logger().warning(f"[{exc.kind}] {exc} ({'refused' if count else 'seen'} so far: {total})")
        if diag_due:
            values = {"kind": exc.kind, "stamp": _sec(stamp), **self._status_values()}
            self.pub_diag.publish(M.diagnostic_array(self.get_clock().now().to_msg(), f"{NODE_NAME}: input",
                                                     self.get_fully_qualified_name(), level, str(exc), values))

    def _internal_error(self, exc: BaseException, item: Any) -> None:
        self._refuse(FrameRefusedError("internal", f"internal error while processing a frame: "
                                              f"{type(exc).__name__}: {exc}"), stamp_ns(item[0]), level="error")

    def _status_values(self) -> dict[str, object]:
        result = self._last_result
        stats = self.worker.stats
        kf = list(self._kf_stamps)
        rate = (len(kf) - 1) / ((kf[-1] - kf[0]) * 1e-9) if len(kf) > 1 and kf[-1] > kf[0] else 0.0
        values: dict[str, object] = {
            "state": "paused" if self._paused else (result.state.value if result else "waiting for input"),
            "status": result.status if result else "",
            "matches": result.num_matches if result else 0,
            "inliers": result.num_inliers if result else 0,
            "keyframes": self._counts["keyframes"],
            "keyframe_rate_hz": rate,
            "frames_received": self._counts["received"],
            "frames_processed": self._counts["processed"],
            "frames_dropped": stats.dropped,
            "frames_ignored_paused": self._counts["paused"],
            "frames_refused": sum(self._errors.values()),
            "compute_path": self.pipeline.matcher.compute_path,
            "matcher": self.values["matcher.name"],
            "sync_backend": self.sync_backend,
            "fastdds_profile": os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE", "") or "Fast DDS defaults",
        }
        values["segment"] = getattr(self.pipeline, "segment", 0)
        if result is not None:
            values.update({f"vo_{k}": v for k, v in sorted(result.counters.items())})
        for kind, count in sorted(self._errors.items()):
            values[f"refused_{kind}"] = count
        for kind, count in sorted(self._notices.items()):
            values[f"seen_{kind}"] = count
        for stage, seconds in self._timings.items():
            values[f"latency_{stage}_ms"] = 1e3 * seconds
        if self._not_applicable:
            values["params_not_applicable"] = ", ".join(self._not_applicable)
        if self._model_error:
            values["model_error"] = self._model_error
        return values

    def _publish_periodic_diagnostics(self) -> None:
        level, message, values = self.periodic_status()
        self.pub_diag.publish(M.diagnostic_array(self.get_clock().now().to_msg(), f"{NODE_NAME}: visual odometry",
                                                 self.get_fully_qualified_name(), level, message, values))

    def periodic_status(self) -> tuple[str, str, dict[str, object]]:
        """Level, message and values of the periodic ``visual odometry`` diagnostic."""
        values = self._status_values()
        result = self._last_result
        level, message = "ok", "tracking"
        if self._model_error:
            level, message = "error", f"matcher reload failed (previous matcher kept): {self._model_error}"
        elif self._paused:
            level, message = "warn", "paused (~/pause)"
        elif result is None:
            level, message = "warn", "waiting for image and camera_info"
        elif result.state != TrackingState.TRACKING:
            status = result.status or ""
            level = "warn"
            message = status if status.startswith(result.state.value) else f"{result.state.value}: {status}"
        if self._last_error and time.monotonic() - self._last_error_time < 2 * float(self.values["diagnostics.period"]):
            if level == "ok":
                level = "warn"
            message = f"{message}; last refused input [{self._last_error[0]}]: {self._last_error[1]}"
        return level, message, values

    # --------------------------------------------------------------- services
    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        def do_reset() -> None:
            self.pipeline.reset()
            self._kf_image = None
            self._last_stamp = None
            self._last_size = None
            if hasattr(self._sync, "clear"):
                self._sync.clear()

        self.worker.discard_pending()
        try:
            self.worker.call(do_reset).result(timeout=30)
        except Exception as exc:
            response.success, response.message = False, f"reset failed: {type(exc).__name__}: {exc}"
            return response
        self.get_logger().info("reset: keyframe dropped, tracking restarts with the next frame")
        response.success, response.message = True, "reset: tracking restarts with the next frame (new segment)"
        return response

    def _on_pause(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        self._paused = bool(request.data)
        if self._paused:
            self.worker.discard_pending()
        response.success = True
        response.message = "paused: incoming frames are ignored" if self._paused else "resumed"
        self.get_logger().info(response.message)
        return response

    # ------------------------------------------------------------- parameters
    def _validate_parameters(self, params: list[Any]) -> SetParametersResult:
        candidate = dict(self.values)
        for p in params:
            spec = self._specs.get(p.name)
            if spec is None:
                continue
            reason = spec.check(p.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            candidate[p.name] = p.value
        if any(p.name.startswith("matcher.") for p in params):
            reason = check_matcher_params(candidate)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        if any(p.name.startswith("vo.") for p in params):
            try:
                vo_config_from(candidate)
            except (ValueError, TypeError) as exc:
                return SetParametersResult(successful=False, reason=f"invalid VO configuration: {exc}")
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params: list[Any]) -> None:
        kinds = set()
        for p in params:
            if p.name in self._specs:
                self.values[p.name] = p.value
                kinds.add(self._specs[p.name].apply)
        snapshot = dict(self.values)
        if "model" in kinds:
            self.worker.call(lambda: self._reload_matcher(snapshot))
        if "pipeline" in kinds:
            self.worker.call(lambda: self._apply_vo_config(snapshot))

    def _reload_matcher(self, values: dict[str, Any]) -> None:
        """Worker thread, between frames: build the new matcher; keep the old one when that fails."""
        try:
            matcher, not_applicable = make_matcher(values)
        except Exception as exc:
            self._model_error = f"{type(exc).__name__}: {exc}"
            self.get_logger().error(f"matcher reload failed, keeping {self.pipeline.matcher.name}: {exc}")
            return
        self._set_matcher(matcher)
        self._not_applicable, self._model_error = not_applicable, None
        self.get_logger().info(f"matcher reloaded: {values['matcher.name']} on {matcher.compute_path}")

    def _set_matcher(self, matcher: Matcher) -> None:
        self.pipeline.matcher = matcher
        self.pipeline.reset()  # keyframe matches of the old matcher are not comparable
        self._kf_image = None

    def _apply_vo_config(self, values: dict[str, Any]) -> None:
        config = vo_config_from(values)
        if hasattr(self.pipeline, "set_config"):
            self.pipeline.set_config(config)
        else:  # the pipeline and its parts read `config` on every frame
            parts = (self.pipeline, getattr(self.pipeline, "policy", None), getattr(self.pipeline, "tracker", None))
            for part in parts:
                if part is not None and hasattr(part, "config"):
                    part.config = config
        self.get_logger().info("VO configuration updated")

    def destroy_node(self) -> None:
        worker = getattr(self, "worker", None)  # absent when __init__ failed before creating it
        if worker is not None:
            worker.stop()
        super().destroy_node()


def _sec(stamp_ns: int) -> str:
    """Exact ``sec.nanosec`` text of a stamp."""
    sec, nsec = divmod(int(stamp_ns), 1_000_000_000)
    return f"{sec}.{nsec:09d}"


def main(args: list[str] | None = None) -> int:
    """Console script ``casmtr_vo_node``: spin the node on a multi-threaded executor until shut down."""
    rclpy.init(args=args)
    try:
        node = CasmtrVoNode()
    except (ValueError, InputError) as exc:
        print(f"{NODE_NAME}: cannot start: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = MultiThreadedExecutor(num_threads=3)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
