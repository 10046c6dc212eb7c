"""The node object in one process (real rclpy, real pipeline, frames through its worker): paths the
multi-process tests do not reach deterministically."""

from __future__ import annotations

import numpy as np
import pytest
import rclpy
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image

from casmtr_ros.bags.render import render_view
from casmtr_ros.bags.scenes import demo_trajectory, room_scene
from casmtr_ros.matching.base import Matcher
from casmtr_ros.ros.image_conversion import fill_image_msg
from casmtr_ros.ros.messages import to_time
from casmtr_ros.ros.node import CasmtrVoNode

pytestmark = pytest.mark.ros


def intrinsics(width: int, height: int) -> np.ndarray:
    f = 0.5 * width / np.tan(np.radians(35.0))
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]])


@pytest.fixture(scope="module")
def scene():
    return room_scene(seed=5)


@pytest.fixture
def node():
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=79)
    n = CasmtrVoNode(context=context, parameter_overrides=[Parameter("use_depth", value=True),
                                                          Parameter("matcher.name", value="sift")])
    yield n
    n.destroy_node()
    rclpy.shutdown(context=context)


def frame_set(scene, pose: np.ndarray, stamp_ns: int, size: tuple[int, int]) -> tuple:
    K = intrinsics(*size)
    rgb, depth = render_view(scene, K, pose, size)
    image = fill_image_msg(Image(), rgb, "rgb8")
    dmsg = fill_image_msg(Image(), depth, "32FC1")
    info = CameraInfo(width=size[0], height=size[1])
    info.k = K.reshape(9)
    for m in (image, dmsg, info):
        m.header.stamp, m.header.frame_id = to_time(stamp_ns), "cam"
    return image, info, dmsg


def feed(node: CasmtrVoNode, msgs: tuple) -> None:
    node._on_synced(*msgs)
    assert node.worker.wait_idle(30)


def test_consistent_resolution_change_restarts_tracking(node: CasmtrVoNode, scene) -> None:
    poses = demo_trajectory(8, 0.4)
    for k in range(4):
        feed(node, frame_set(scene, poses[k], (k + 1) * 100_000_000, (320, 240)))
    assert node._counts["processed"] == 4 and node._last_result.odometry is not None
    for k in range(4, 6):  # the camera switches to 240x180, camera_info with it
        feed(node, frame_set(scene, poses[k], (k + 1) * 100_000_000, (240, 180)))
    assert node._counts["processed"] == 6 and not node._errors
    assert node._notices == {"resolution_change": 1}
    assert node._last_result.counters["resets_camera_changed"] == 1
    values = node._status_values()
    assert values["seen_resolution_change"] == 1 and values["frames_refused"] == 0


class FailingMatcher(Matcher):
    """Fault injection: a matcher that raises, to exercise the node's internal-error path."""

    name = "failing"

    def match(self, image0: np.ndarray, image1: np.ndarray):
        raise RuntimeError("injected matcher failure")


def test_internal_error_is_reported_and_the_node_goes_on(node: CasmtrVoNode, scene) -> None:
    poses = demo_trajectory(6, 0.3)
    feed(node, frame_set(scene, poses[0], 100_000_000, (320, 240)))
    working = node.pipeline.matcher
    node.pipeline.matcher = FailingMatcher()
    feed(node, frame_set(scene, poses[1], 200_000_000, (320, 240)))
    assert node._errors == {"internal": 1} and "injected matcher failure" in node._last_error[1]
    node.pipeline.matcher = working
    for k in range(2, 5):
        feed(node, frame_set(scene, poses[k], (k + 1) * 100_000_000, (320, 240)))
    assert node._last_result.odometry is not None and node.worker.stats.errors == 1


def test_depth_of_another_size_is_refused(node: CasmtrVoNode, scene) -> None:
    image, info, _ = frame_set(scene, demo_trajectory(2)[0], 100_000_000, (320, 240))
    small = fill_image_msg(Image(), np.ones((120, 160), np.float32), "32FC1")
    feed(node, (image, info, small))
    assert node._errors == {"depth": 1} and "does not match" in node._last_error[1]
    assert node._counts["processed"] == 0


def test_failed_model_reload_keeps_the_running_matcher(node: CasmtrVoNode) -> None:
    # accepted by validation (a known variant, a weights *name* rather than a path), but the build fails on the worker
    result = node.set_parameters([Parameter("matcher.name", value="casmtr-4c-outdoor"),
                                  Parameter("matcher.weights", value="no-such-shipped-weights")])
    assert all(r.successful for r in result)
    assert node.worker.wait_idle(120)
    assert node.pipeline.matcher.name == "sift" and "no-such-shipped-weights" in node._model_error
    level, message, values = node.periodic_status()
    assert level == "error" and message.startswith("matcher reload failed") and "model_error" in values
    assert node.set_parameters([Parameter("matcher.name", value="orb"), Parameter("matcher.weights", value="")])
    assert node.worker.wait_idle(30)
    assert node.pipeline.matcher.name == "orb" and node._model_error is None


@pytest.mark.slow
def test_node_tracks_with_its_default_matcher(scene) -> None:
    """With no matcher parameters the node runs casmtr-4c-lite on its shipped weights, and tracks."""
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=80)
    node = CasmtrVoNode(context=context, parameter_overrides=[
        Parameter("use_depth", value=True), Parameter("matcher.device", value="cpu")])
    try:
        assert node.pipeline.matcher.name == "casmtr-4c-lite"
        poses = demo_trajectory(8, 0.4)
        for k in range(5):
            feed(node, frame_set(scene, poses[k], (k + 1) * 100_000_000, (320, 240)))
        assert not node._errors and node._last_result.odometry is not None
        assert node._status_values()["compute_path"] == node.pipeline.matcher.compute_path
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)


def test_debug_image_is_drawn_only_while_someone_subscribes(node: CasmtrVoNode, scene) -> None:
    poses = demo_trajectory(16, 1.6)
    node.set_parameters([Parameter("vo.kf_max_translation_m", value=0.15)])
    for k in range(6):
        feed(node, frame_set(scene, poses[k], (k + 1) * 100_000_000, (320, 240)))
    assert node._counts["keyframes"] >= 1 and node._counts["debug_images"] == 0
    keyframes = node._counts["keyframes"]
    node.create_subscription(Image, "~/debug_image", lambda msg: None, 1)
    for k in range(6, 16):
        feed(node, frame_set(scene, poses[k], (k + 1) * 100_000_000, (320, 240)))
    assert node._counts["keyframes"] > keyframes and node._counts["debug_images"] >= 1


def test_reset_accepts_a_stream_that_starts_over(node: CasmtrVoNode, scene) -> None:
    poses = demo_trajectory(6, 0.3)
    for k in range(3):
        feed(node, frame_set(scene, poses[k], (k + 10) * 100_000_000, (320, 240)))
    feed(node, frame_set(scene, poses[3], 100_000_000, (320, 240)))  # a bag replayed from its start
    assert node._errors == {"stamp": 1} and "call ~/reset" in node._last_error[1]
    from std_srvs.srv import Trigger

    response = node._on_reset(Trigger.Request(), Trigger.Response())
    assert response.success
    for k in range(3):
        feed(node, frame_set(scene, poses[k], (k + 1) * 100_000_000, (320, 240)))
    assert node._errors == {"stamp": 1} and node._counts["processed"] == 6
    assert node._last_result.odometry is not None
