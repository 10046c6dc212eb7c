"""The ROS 2 node and its parts: message conversion, synchronisation, QoS, parameters, worker, publishers.

The only package of the project that imports rclpy (``image_conversion`` and ``sync`` do not, so bag replay can
reuse them without a ROS install).
"""
