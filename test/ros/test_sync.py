"""The approximate-time synchronizer: pairing rules, queue bound, threads, and rclpy subscriptions feeding it."""

from __future__ import annotations

import os
import threading
import time
from types import SimpleNamespace

import pytest
from builtin_interfaces.msg import Time

from casmtr_ros.ros.sync import ApproximateTimeSync, message_filters_available, stamp_ns, subscribe_synchronized

MS = 1_000_000


def msg(t_ns: int, tag: str = "") -> SimpleNamespace:
    stamp = Time(sec=t_ns // 1_000_000_000, nanosec=t_ns % 1_000_000_000)
    return SimpleNamespace(header=SimpleNamespace(stamp=stamp), tag=tag)


def collect(sync: ApproximateTimeSync) -> list[tuple]:
    out: list[tuple] = []
    sync.register_callback(lambda *m: out.append(tuple(stamp_ns(x) for x in m)))
    return out


def test_exact_stamps_pair_in_any_arrival_order() -> None:
    sync = ApproximateTimeSync(2, 10, 0.005)
    out = collect(sync)
    sync.add(msg(100 * MS), 0)
    sync.add(msg(200 * MS), 1)
    sync.add(msg(100 * MS), 1)
    sync.add(msg(200 * MS), 0)
    assert out == [(100 * MS, 100 * MS), (200 * MS, 200 * MS)]
    assert sync.pending() == [0, 0]


def test_slop_is_a_strict_bound_on_the_span() -> None:
    sync = ApproximateTimeSync(2, 10, 0.010)
    out = collect(sync)
    sync.add(msg(0), 0)
    sync.add(msg(10 * MS), 1)  # span == slop: not paired
    assert out == []
    sync.add(msg(9 * MS), 1)  # span 9 ms < 10 ms
    assert out == [(0, 9 * MS)]
    assert sync.pending() == [0, 1]  # the 10 ms message stays queued


def test_closest_partner_is_chosen_and_consumed() -> None:
    sync = ApproximateTimeSync(2, 10, 0.020)
    out = collect(sync)
    sync.add(msg(95 * MS), 1)
    sync.add(msg(101 * MS), 1)
    sync.add(msg(100 * MS), 0)
    assert out == [(100 * MS, 101 * MS)]
    sync.add(msg(96 * MS), 0)
    assert out[-1] == (96 * MS, 95 * MS)


def test_three_inputs_need_all_within_slop() -> None:
    sync = ApproximateTimeSync(3, 10, 0.010)
    out = collect(sync)
    sync.add(msg(100 * MS), 0)
    sync.add(msg(104 * MS), 1)
    assert out == []
    sync.add(msg(112 * MS), 2)  # within 10 ms of... nothing: 112-100 = 12
    assert out == []
    sync.add(msg(106 * MS), 2)  # span 100..106 < 10 ms
    assert out == [(100 * MS, 104 * MS, 106 * MS)]


def test_queue_is_bounded_oldest_dropped() -> None:
    sync = ApproximateTimeSync(2, 3, 0.001)
    out = collect(sync)
    for k in range(5):
        sync.add(msg(k * 100 * MS), 0)
    assert sync.pending() == [3, 0]
    sync.add(msg(0), 1)  # its partner was dropped from the bounded queue
    assert out == []
    sync.add(msg(400 * MS), 1)
    assert out == [(400 * MS, 400 * MS)]


def test_invalid_configuration() -> None:
    with pytest.raises(ValueError, match="slop"):
        ApproximateTimeSync(2, 10, 0.0)
    with pytest.raises(ValueError, match="queue_size"):
        ApproximateTimeSync(2, 0, 0.01)


def test_concurrent_producers_pair_every_stamp_once() -> None:
    sync = ApproximateTimeSync(2, 2000, 0.001)
    out = collect(sync)
    stamps = [k * 33 * MS for k in range(1000)]

    def produce(index: int) -> None:
        for s in stamps:
            sync.add(msg(s), index)

    threads = [threading.Thread(target=produce, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(out) == [(s, s) for s in stamps]


@pytest.mark.skipif(not message_filters_available(), reason="ROS 2 message_filters not importable (no ROS install)")
def test_same_pairs_as_message_filters() -> None:
    import message_filters

    sequence = [(0, 0), (1, 3), (0, 40), (1, 38), (1, 70), (0, 90), (1, 91), (0, 120), (0, 150), (1, 149)]
    ours = ApproximateTimeSync(2, 5, 0.005)
    mine = collect(ours)
    theirs_out: list[tuple] = []
    theirs = message_filters.ApproximateTimeSynchronizer([message_filters.SimpleFilter() for _ in range(2)], 5, 0.005)
    theirs.registerCallback(lambda *m: theirs_out.append(tuple(stamp_ns(x) for x in m)))
    for index, t in sequence:
        ours.add(msg(t * MS), index)
        theirs.add(msg(t * MS), theirs.queues[index], index)
    assert mine == theirs_out


@pytest.mark.ros
def test_rclpy_subscriptions_feed_the_synchronizer() -> None:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import CameraInfo, Image

    from casmtr_ros.ros.qos import input_qos

    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=71)
    try:
        node = rclpy.create_node("sync_test", context=context)
        pairs: list[tuple[int, int]] = []
        backend, subs, _ = subscribe_synchronized(
            node, [(Image, "image"), (CameraInfo, "camera_info")], input_qos("reliable", 10), 10, 0.005,
            lambda img, info: pairs.append((stamp_ns(img), stamp_ns(info))), prefer_message_filters=False)
        assert backend == "casmtr_ros" and len(subs) == 2
        pub_img = node.create_publisher(Image, "image", input_qos("reliable", 10))
        pub_info = node.create_publisher(CameraInfo, "camera_info", input_qos("reliable", 10))
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + 10
        while pub_img.get_subscription_count() < 1 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        for k in range(5):
            t = (k + 1) * 100 * MS
            img, info = Image(), CameraInfo()
            img.header.stamp.sec, img.header.stamp.nanosec = divmod(t, 1_000_000_000)
            info.header.stamp.sec, info.header.stamp.nanosec = divmod(t + 2 * MS, 1_000_000_000)
            pub_info.publish(info)
            pub_img.publish(img)
        while len(pairs) < 5 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        assert pairs == [((k + 1) * 100 * MS, (k + 1) * 100 * MS + 2 * MS) for k in range(5)]
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
