"""The per-frame fusion step without ROS: measure quality, pick an allocation for the budget, run
only the allocated blocks, decode boxes. The ROS node and any other host drive it."""

from adaptive_fusion.controller.costs import BudgetError
from adaptive_fusion.runtime.budget import BlockCosts, BudgetDecision, resolve_budget
from adaptive_fusion.runtime.frame import InputError, SensorFrame, check_frame
from adaptive_fusion.runtime.pipeline import FusionPipeline, FusionResult, blank_frame
from adaptive_fusion.runtime.policy import (
    POLICIES,
    EqualSplitPolicy,
    QualityWeightedPolicy,
    make_policy,
)

__all__ = [
    "POLICIES",
    "BlockCosts",
    "BudgetDecision",
    "BudgetError",
    "EqualSplitPolicy",
    "FusionPipeline",
    "FusionResult",
    "InputError",
    "QualityWeightedPolicy",
    "SensorFrame",
    "blank_frame",
    "check_frame",
    "make_policy",
    "resolve_budget",
]
