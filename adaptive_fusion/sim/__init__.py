"""The synthetic world (camera, depth, lidar with ground truth), its corruptions, scenarios and
dataset files, and the sim_sensors node. Nothing a robot runs imports this package."""

from adaptive_fusion.sim.config import WorldConfig
from adaptive_fusion.sim.world import RENDERER_VERSION, World

__all__ = ["RENDERER_VERSION", "World", "WorldConfig"]
