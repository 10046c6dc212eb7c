"""Approximate-time pairing of image, camera_info (and depth) by header stamp.

:class:`ApproximateTimeSync` behaves like ROS 2 ``message_filters.ApproximateTimeSynchronizer`` (Python): one
queue per input keyed by stamp and bounded to ``queue_size`` (the oldest stamp is dropped first); when a message
arrives, the other queues' stamps within ``slop`` of it are tried, closest first, and the first combination whose
stamps span less than ``slop`` is emitted and removed from the queues. It needs no rclpy, so it is tested on its
own; :func:`subscribe_synchronized` uses ``message_filters`` where it can be imported (a ROS install) and this
class with plain subscriptions otherwise.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from typing import Any

SyncCallback = Callable[..., None]


def stamp_ns(msg: Any) -> int:
    """``msg.header.stamp`` in nanoseconds (builtin_interfaces/Time duck-typed)."""
    stamp = msg.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class ApproximateTimeSync:
    """Pair messages of ``n_inputs`` streams whose stamps lie within ``slop_s`` of each other.

    Call :meth:`add` with each message and its input index; ``callback(*msgs)`` receives one message per input,
    in input order. Thread-safe; the callback runs in the caller's thread, outside the lock.
    """

    def __init__(self, n_inputs: int, queue_size: int, slop_s: float, callback: SyncCallback | None = None) -> None:
        if n_inputs < 1:
            raise ValueError("need at least one input")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if not slop_s > 0:
            raise ValueError(f"slop must be > 0 s (stamps pair when they span less than the slop), got {slop_s}")
        self.queue_size = int(queue_size)
        self.slop_ns = round(slop_s * 1e9)
        self._queues: list[dict[int, Any]] = [{} for _ in range(n_inputs)]
        self._callbacks: list[SyncCallback] = [callback] if callback else []
        self._lock = threading.Lock()
        self.emitted = 0

    def register_callback(self, callback: SyncCallback) -> None:
        self._callbacks.append(callback)

    def add(self, msg: Any, index: int) -> None:
        """Queue ``msg`` of input ``index`` and emit the first matching combination, if any."""
        matched = self._add_locked(msg, index, stamp_ns(msg))
        if matched is not None:
            self.emitted += 1
            for callback in self._callbacks:
                callback(*matched)

    def _add_locked(self, msg: Any, index: int, stamp: int) -> list[Any] | None:
        with self._lock:
            queue = self._queues[index]
            queue[stamp] = msg
            while len(queue) > self.queue_size:
                del queue[min(queue)]
            # Candidate stamps of every other input within the slop of the new message, closest first.
            candidates: list[list[int]] = []
            for i, other in enumerate(self._queues):
                if i == index:
                    continue
                near = sorted((s for s in other if abs(s - stamp) <= self.slop_ns), key=lambda s: abs(s - stamp))
                if not near:
                    return None
                candidates.append(near)
            for combo in itertools.product(*candidates):
                stamps = list(combo)
                stamps.insert(index, stamp)
                if max(stamps) - min(stamps) < self.slop_ns:
                    return [q.pop(s) for q, s in zip(self._queues, stamps)]
            return None

    def pending(self) -> list[int]:
        """Number of queued messages per input."""
        with self._lock:
            return [len(q) for q in self._queues]

    def clear(self) -> None:
        with self._lock:
            for q in self._queues:
                q.clear()


def message_filters_available() -> bool:
    """Whether ROS 2 ``message_filters`` (not the ROS 1 package of the same name) can be used."""
    try:
        import message_filters  # noqa: F401
        from message_filters import ApproximateTimeSynchronizer, Subscriber  # noqa: F401
    except Exception:  # ImportError, or ROS 1's message_filters failing on `import rospy`
        return False
    return True


def subscribe_synchronized(
    node: Any,
    topics: Sequence[tuple[type, str]],
    qos: Any,
    queue_size: int,
    slop_s: float,
    callback: SyncCallback,
    callback_group: Any = None,
    prefer_message_filters: bool = True,
) -> tuple[str, list[Any], Any]:
    """Subscribe to ``topics`` (``(msg_type, name)`` pairs) and call ``callback`` with stamp-paired messages.

    Returns ``(backend, subscriptions, synchronizer)``: backend ``"message_filters"`` or ``"casmtr_ros"``.
    """
    if prefer_message_filters and message_filters_available():
        import message_filters

        subs = [
            message_filters.Subscriber(node, msg_type, name, qos_profile=qos, callback_group=callback_group)
            for msg_type, name in topics
        ]
        sync = message_filters.ApproximateTimeSynchronizer(subs, queue_size, slop_s)
        sync.registerCallback(callback)
        return "message_filters", subs, sync
    sync = ApproximateTimeSync(len(topics), queue_size, slop_s, callback)
    subs = [
        node.create_subscription(
            msg_type, name, lambda msg, i=i: sync.add(msg, i), qos, callback_group=callback_group
        )
        for i, (msg_type, name) in enumerate(topics)
    ]
    return "casmtr_ros", subs, sync
