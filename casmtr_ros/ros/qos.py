"""QoS profiles of the node's subscriptions and publishers, built from parameters.

Inputs default to the sensor-data profile (best effort, keep last): a best-effort subscription matches both
best-effort and reliable camera drivers. Best-effort images of ~0.9 MB and more need the shared-memory Fast DDS
profile (``config/fastdds_shm.xml``) to cross processes; see the README's QoS notes.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}


def input_qos(reliability: str = "best_effort", depth: int = 5) -> QoSProfile:
    """Image / camera_info / depth subscriptions: sensor data by default; ``depth`` 0 means keep all."""
    if reliability not in RELIABILITY:
        raise ValueError(f"qos reliability must be one of {sorted(RELIABILITY)}, got {reliability!r}")
    if depth < 0:
        raise ValueError(f"qos depth must be >= 0 (0 = keep all), got {depth}")
    return QoSProfile(
        history=HistoryPolicy.KEEP_ALL if depth == 0 else HistoryPolicy.KEEP_LAST,
        depth=max(depth, 1),
        reliability=RELIABILITY[reliability],
        durability=DurabilityPolicy.VOLATILE,
    )


def output_qos(depth: int = 10) -> QoSProfile:
    """Matches, relative poses, odometry, debug image: reliable, volatile, keep last ``depth``."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def latched_qos(depth: int = 1) -> QoSProfile:
    """The path: reliable and transient-local, so a late subscriber (RViz) gets the whole path at once."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )


def diagnostics_qos() -> QoSProfile:
    """``/diagnostics`` as diagnostic_updater publishes it: reliable, keep last 10."""
    return output_qos(10)
