"""No simulator default on a robot: fusion_node refuses to configure without a lidar->camera
extrinsic (from TF or camera_from_lidar) and without the lidar's beam model, naming what to set;
the simulated rig is passed explicitly (config/sim_rig.yaml, sim.rig.fusion_node_parameters);
and clean clouds of lidars other than the simulated 32-beam one score healthy with their own
beam model, the parameters a user sets for them."""

from pathlib import Path

import numpy as np
import pytest
import rclpy
import yaml
from rclpy.context import Context
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from adaptive_fusion.quality import lidar_quality
from adaptive_fusion.ros import extrinsics
from adaptive_fusion.ros.fusion_node import FusionNode
from adaptive_fusion.sim import World, WorldConfig
from adaptive_fusion.sim.rig import fusion_node_parameters

ROOT = Path(__file__).resolve().parent.parent
SIM_RIG = fusion_node_parameters(WorldConfig())
LIDAR_MODEL = ("lidar_beams", "lidar_elevation_min_deg", "lidar_elevation_max_deg",
               "lidar_azimuth_steps")  # fmt: skip
# beams, lowest and highest elevation of two common lidars (Velodyne HDL-64E, VLP-16)
LIDARS = {"64-beam": (64, -24.9, 2.0), "16-beam": (16, -15.0, 15.0)}


def test_sim_rig_file_is_the_simulated_rig():
    document = yaml.safe_load((ROOT / "config" / "sim_rig.yaml").read_text())
    assert document["/**"]["ros__parameters"] == SIM_RIG


@pytest.fixture
def node_with():
    made = []

    def make(**params) -> FusionNode:
        context = Context()
        rclpy.init(context=context)
        node = FusionNode(context=context, parameter_overrides=[
            Parameter(k, value=v) for k, v in {"threads": 1, **params}.items()])  # fmt: skip
        made.append((node, context))
        return node

    yield make
    for node, context in made:
        node.destroy_node()
        rclpy.shutdown(context=context)


def without(*names) -> dict:
    return {k: v for k, v in SIM_RIG.items() if k not in names}


@pytest.mark.skipif(extrinsics.tf2_ros is not None, reason="TF can give the extrinsic here")
def test_without_tf_and_camera_from_lidar_the_node_refuses_to_configure(node_with):
    node = node_with(**without("camera_from_lidar"))
    problem = node.rig_problem()
    assert "camera_from_lidar" in problem and "'lidar'" in problem  # the lidar frame looked for
    assert "camera_info's frame_id" in problem
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert node.pipeline is None


def test_with_tf_off_the_parameter_is_required_whatever_is_installed(node_with):
    node = node_with(**without("camera_from_lidar"), use_tf=False)
    assert "use_tf is false" in node.rig_problem()
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE


@pytest.mark.parametrize("unset", [("lidar_beams",), ("lidar_azimuth_steps",),
                                   ("lidar_elevation_min_deg", "lidar_elevation_max_deg")])
def test_without_a_lidar_beam_model_the_node_refuses_to_configure(node_with, unset):
    node = node_with(**without(*unset))
    problem = node.rig_problem()
    for name in LIDAR_MODEL:
        assert name in problem
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE


def test_with_the_rig_given_the_node_configures(node_with):
    node = node_with(**SIM_RIG)
    assert node.rig_problem() is None
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    node.trigger_cleanup()


@pytest.mark.parametrize("lidar", LIDARS)
def test_other_lidars_score_healthy_with_their_own_beam_model(node_with, lidar):
    beams, low, high = LIDARS[lidar]
    config = WorldConfig(lidar_beams=beams, lidar_elevation_min_deg=low,
                         lidar_elevation_max_deg=high)  # fmt: skip
    world = World(config)
    # the beam model fusion_node builds from the parameters a user sets for this lidar
    given = node_with(**fusion_node_parameters(config))._lidar_model()
    np.testing.assert_allclose(given.elevations_deg, world.lidar.elevations_deg)
    for seed in (3, 4, 5):
        quality = lidar_quality(world.render(seed).points, given)
        assert quality.score >= 0.8, (lidar, seed, quality.measures)
