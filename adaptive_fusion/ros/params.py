"""Parameters declared from a table: every one with a description and, where numeric, a range."""

from __future__ import annotations

from dataclasses import dataclass

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterUninitializedException


class ParameterValueError(ValueError):
    """A parameter given at start-up (command line, params file) that the node rejects."""


@dataclass(frozen=True)
class Spec:
    name: str
    default: object  # a value, or a rclpy Parameter.Type for a parameter with no default
    description: str
    bounds: tuple[float, float] | None = None
    read_only: bool = False  # True: set at start-up only (takes effect on configure)
    choices: tuple[str, ...] | None = None  # enforced by the node's validator

    def descriptor(self) -> ParameterDescriptor:
        """Numeric bounds become a FloatingPointRange or IntegerRange, which rclpy enforces on
        every set; choices are listed in the constraints text."""
        descriptor = ParameterDescriptor(description=self.description, read_only=self.read_only)
        if self.bounds is not None:
            low, high = self.bounds
            if isinstance(self.default, bool) or not isinstance(self.default, int | float):
                raise TypeError(f"{self.name}: bounds need a numeric default")
            if isinstance(self.default, int):
                descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high))]
            else:
                descriptor.floating_point_range = [
                    FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)
                ]
        if self.choices is not None:
            descriptor.additional_constraints = "one of: " + ", ".join(self.choices)
        return descriptor


def declare_all(node, specs: tuple[Spec, ...]) -> None:
    for spec in specs:
        node.declare_parameter(spec.name, spec.default, spec.descriptor())


def choices_problem(specs: tuple[Spec, ...], params) -> str | None:
    """The reason to refuse `params` when one names a value outside its spec's choices."""
    by_name = {spec.name: spec for spec in specs}
    for param in params:
        spec = by_name.get(param.name)
        if spec is not None and spec.choices is not None and param.value not in spec.choices:
            return f"{param.name}: {param.value!r} is not one of {', '.join(spec.choices)}"
    return None


def check_initial(node, validator) -> None:
    """Run the node's set-parameters validator on the values it started with: overrides from
    the command line or a params file bypass that callback otherwise."""
    names = node.list_parameters([], 0).names  # depth 0: every declared name
    given = [node.get_parameter(name) for name in names if _is_set(node, name)]
    result = validator(given)
    if not result.successful:
        raise ParameterValueError(result.reason)


def _is_set(node, name: str) -> bool:
    """False for a parameter declared with a type and no default, and given no value."""
    try:
        node.get_parameter(name)
    except ParameterUninitializedException:
        return False
    return True
