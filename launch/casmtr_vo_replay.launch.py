"""Replay a rosbag2 into casmtr_vo_node on simulated time (``ros2 bag play --clock``).

    ros2 launch casmtr_ros casmtr_vo_replay.launch.py bag:=/path/to/bag

For a deterministic evaluation without DDS use ``casmtr-vo replay BAG`` instead (same pipeline, no dropped frames).
"""

from launch.actions import DeclareLaunchArgument, ExecuteProcess, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("casmtr_ros")
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="rosbag2 folder (sqlite3 or mcap)"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback rate"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "casmtr_vo.yaml"]),
                              description="parameter file"),
        DeclareLaunchArgument("image", default_value="/camera/image_raw", description="image topic in the bag"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info", description="CameraInfo topic"),
        DeclareLaunchArgument("depth", default_value="/camera/depth/image_raw", description="depth topic"),
        # both processes load the shared-memory profile: best-effort images of any size cross in one piece
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE",
                               PathJoinSubstitution([share, "config", "fastdds_shm.xml"])),
        ExecuteProcess(
            cmd=["ros2", "bag", "play", LaunchConfiguration("bag"), "--clock", "--rate", LaunchConfiguration("rate")],
            output="screen",
        ),
        Node(
            package="casmtr_ros",
            executable="casmtr_vo_node",
            name="casmtr_vo_node",
            output="screen",
            parameters=[
                LaunchConfiguration("params_file"),
                # best effort matches any recorded publisher QoS; keep-all history loses no queued frame
                {"use_sim_time": True, "qos.reliability": "best_effort", "qos.depth": 0},
            ],
            remappings=[
                ("image", LaunchConfiguration("image")),
                ("camera_info", LaunchConfiguration("camera_info")),
                ("depth", LaunchConfiguration("depth")),
            ],
        ),
    ])
