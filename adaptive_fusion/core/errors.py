"""Errors and checks shared by every layer."""

import math


class BudgetError(ValueError):
    """A budget that is not a number in its range."""


def check_fraction(value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or not 0.0 < value <= 1.0:
        raise BudgetError(f"compute budget must be a fraction in (0, 1], got {value}")
    return value
