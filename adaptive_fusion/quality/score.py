"""The common shape of a quality result and the two response curves every measure goes through.

A measure m becomes a factor in [0, 1] in two parts:
- a healthy band: up to the worst value a healthy sensor shows in ordinary use (its read noise,
  its optics, JPEG, vignetting, shadows), the factor is exactly 1. A sensor is not penalised
  for being an ordinary real sensor, and an unrelated property that improves (fog brightens an
  image) cannot lift the score above that of the healthy sensor.
- beyond it, a log-logistic curve around a physically chosen half-point: `falling` for "more is
  worse" (noise, blur, holes), `rising` for "less is worse" (light, contrast), divided by its
  value at the healthy limit so the factor is continuous there. No hard clip: a worse sensor
  always scores lower.
A modality's score is its lowest factor: a sensor is as useful as its worst property (darkness,
fog or noise alone makes it useless), and mild imperfections do not compound.
"""

from dataclasses import dataclass, field


@dataclass
class ModalityQuality:
    """One modality's quality: a score in [0, 1] (1 = as good as a healthy sensor, 0 = no usable
    data) and the physical measures it came from (plus the factor each one contributed,
    prefixed with `q_`)."""

    score: float
    measures: dict[str, float] = field(default_factory=dict)


def _log_logistic(value: float, half: float, power: float) -> float:
    return 1.0 / (1.0 + (max(value, 0.0) / half) ** power)


def falling(value: float, healthy: float, half: float, power: float) -> float:
    """1 up to `healthy`; beyond it falls towards 0, half at `half` (relative to the curve's
    value at `healthy`)."""
    if value <= healthy:
        return 1.0
    return _log_logistic(value, half, power) / _log_logistic(healthy, half, power)


def rising(value: float, healthy: float, half: float, power: float) -> float:
    """1 from `healthy` up; below it falls to 0 at value 0, half at `half` (relative to the
    curve's value at `healthy`)."""
    if value >= healthy:
        return 1.0
    if value <= 0:
        return 0.0
    return (1.0 - _log_logistic(value, half, power)) / (1.0 - _log_logistic(healthy, half, power))


def combine(factors: dict[str, float], measures: dict[str, float]) -> ModalityQuality:
    """Score = the lowest factor; the factors are reported next to the measures."""
    score = min(factors.values())
    reported = dict(measures)
    reported.update({f"q_{name}": float(value) for name, value in factors.items()})
    return ModalityQuality(score=float(score), measures=reported)
