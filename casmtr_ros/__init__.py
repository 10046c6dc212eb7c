"""casmtr_ros: a ROS 2 visual-odometry front end built on the CasMTR-4c cascade transformer matcher."""

__version__ = "0.1.0"
