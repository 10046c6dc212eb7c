"""The ROS 2 node and its parts: message conversion, synchronisation, QoS, parameters, worker, publishers.

The only package of the project that imports rclpy (``image_conversion`` and ``sync`` do not, so bag replay can
reuse them without a ROS install).
"""

import os

# The node always shares the CPU with DDS threads and other processes: OpenMP workers that spin while waiting
# starve them (measured on 2 cores: 30 Hz images dropped before reaching the node). Sleep instead, unless the
# user chose otherwise. Must be set before torch (and its OpenMP runtime) is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
