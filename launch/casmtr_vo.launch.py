"""Launch casmtr_vo_node on a live camera: parameter file, topic remappings, the shared-memory Fast DDS profile.

    ros2 launch casmtr_ros casmtr_vo.launch.py image:=/camera/color/image_raw camera_info:=/camera/color/camera_info
"""

from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("casmtr_ros")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "casmtr_vo.yaml"]),
                              description="parameter file (every parameter with its default)"),
        DeclareLaunchArgument("image", default_value="/camera/image_raw", description="sensor_msgs/Image topic"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info", description="CameraInfo topic"),
        DeclareLaunchArgument("depth", default_value="/camera/depth/image_raw",
                              description="aligned depth topic (used when use_depth is true in the parameter file)"),
        DeclareLaunchArgument("odom", default_value="odom", description="odometry output topic"),
        DeclareLaunchArgument("use_shm_profile", default_value="true",
                              description="load config/fastdds_shm.xml (large shared-memory segment, UDP on loopback)"),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE",
                               PathJoinSubstitution([share, "config", "fastdds_shm.xml"]),
                               condition=IfCondition(LaunchConfiguration("use_shm_profile"))),
        Node(
            package="casmtr_ros",
            executable="casmtr_vo_node",
            name="casmtr_vo_node",
            output="screen",
            parameters=[LaunchConfiguration("params_file")],
            remappings=[
                ("image", LaunchConfiguration("image")),
                ("camera_info", LaunchConfiguration("camera_info")),
                ("depth", LaunchConfiguration("depth")),
                ("odom", LaunchConfiguration("odom")),
            ],
        ),
    ])
