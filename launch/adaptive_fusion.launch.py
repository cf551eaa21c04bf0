"""Start fusion_node, and with sim:=true the simulated sensors feeding it.

    SHARE=$(ros2 pkg prefix adaptive_fusion)/share/adaptive_fusion
    ros2 launch adaptive_fusion adaptive_fusion.launch.py sim:=true \
        scenario:=$SHARE/config/scenarios/demo.yaml
    ros2 launch adaptive_fusion adaptive_fusion.launch.py camera_topic:=/front/color/image_raw ...

fusion_node has no default for the robot's rig (the lidar->camera extrinsic, unless TF has it,
and the lidar beam model): give them in params_file. With sim:=true the simulated rig
(config/sim_rig.yaml) is passed after params_file.

Every input and output topic can be remapped through an argument; both nodes get the same
remappings, so the simulated sensors publish where the fusion node listens.

Both use the package's Fast DDS profile (config/fastdds_profile.xml: large images and clouds
between processes) unless FASTDDS_DEFAULT_PROFILES_FILE already names one.
"""

from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "adaptive_fusion"
PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"
PROFILE_FILE = "fastdds_profile.xml"
SIM_RIG = "sim_rig.yaml"  # the simulated rig as fusion_node parameters
# launch argument -> the topic name the nodes use (adaptive_fusion/ros/topics.py; a test checks
# that the two agree: a launch file is read without importing the package)
TOPIC_ARGUMENTS = {
    "camera_topic": "camera/image_raw",
    "camera_info_topic": "camera/camera_info",
    "depth_topic": "depth/image_raw",
    "lidar_topic": "lidar/points",
    "budget_topic": "compute_budget",
    "detections_topic": "detections",
    "markers_topic": "detection_markers",
    "ground_truth_topic": "ground_truth",
}


def fusion_node(parameters: list, condition, remappings: list) -> Node:
    return Node(
        package=PACKAGE,
        executable="fusion_node",
        name="fusion_node",
        namespace=LaunchConfiguration("namespace"),
        parameters=parameters,
        remappings=remappings,
        output="screen",
        condition=condition,
    )


def generate_launch_description() -> LaunchDescription:
    config = PathJoinSubstitution([FindPackageShare(PACKAGE), "config"])
    arguments = [
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([config, "fusion_node.yaml"]),
            description="parameters of fusion_node",
        ),
        DeclareLaunchArgument("sim", default_value="false", description="start sim_sensors too"),
        DeclareLaunchArgument(
            "sim_params_file",
            default_value=PathJoinSubstitution([config, "sim_sensors.yaml"]),
            description="parameters of sim_sensors",
        ),
        DeclareLaunchArgument(
            "scenario", default_value="", description="sim_sensors scenario file ('' = none)"
        ),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of both"),
        *(
            DeclareLaunchArgument(name, default_value=topic, description=f"remaps {topic}")
            for name, topic in TOPIC_ARGUMENTS.items()
        ),
    ]
    # a profile the user set wins; otherwise the shipped one (read by each process at start)
    profile = SetEnvironmentVariable(
        PROFILE_VARIABLE,
        EnvironmentVariable(
            PROFILE_VARIABLE, default_value=PathJoinSubstitution([config, PROFILE_FILE])
        ),
    )
    remappings = [(topic, LaunchConfiguration(name)) for name, topic in TOPIC_ARGUMENTS.items()]
    # on a robot the rig comes from params_file; with sim:=true the simulated rig follows it
    sim_on = LaunchConfiguration("sim")
    params = LaunchConfiguration("params_file")
    fusion_on_robot = fusion_node([params], UnlessCondition(sim_on), remappings)
    sim_rig = PathJoinSubstitution([config, SIM_RIG])
    fusion_in_sim = fusion_node([params, sim_rig], IfCondition(sim_on), remappings)
    sim = Node(
        package=PACKAGE,
        executable="sim_sensors",
        name="sim_sensors",
        namespace=LaunchConfiguration("namespace"),
        parameters=[
            LaunchConfiguration("sim_params_file"),
            {"scenario": LaunchConfiguration("scenario")},
        ],
        remappings=remappings,
        output="screen",
        condition=IfCondition(LaunchConfiguration("sim")),
    )
    return LaunchDescription([*arguments, profile, fusion_on_robot, fusion_in_sim, sim])
