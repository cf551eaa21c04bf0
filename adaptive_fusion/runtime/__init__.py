"""The per-frame fusion step without ROS: measure quality, pick an allocation for the budget, run
only the allocated blocks, decode boxes. The ROS node and any other host drive it."""

from adaptive_fusion.runtime.budget import BlockCosts, BudgetDecision, resolve_budget
from adaptive_fusion.runtime.frame import InputError, SensorFrame, check_frame
from adaptive_fusion.runtime.pipeline import FusionPipeline, FusionResult, blank_frame

__all__ = [
    "BlockCosts",
    "BudgetDecision",
    "FusionPipeline",
    "FusionResult",
    "InputError",
    "SensorFrame",
    "blank_frame",
    "check_frame",
    "resolve_budget",
]
