"""Scenario files: timed events for repeatable simulated runs.

events:
  - {at: 2.0, corrupt: {camera: [fog, 0.8]}}   # kind "none" clears it
  - {at: 4.0, budget: 0.25}                    # published on compute_budget
  - {at: 6.0, kill: lidar}                     # the sensor stops publishing
  - {at: 8.0, revive: lidar}
  - {at: 10.0, latency_budget: 60}             # fusion_node's latency_budget_ms (0 = none)
  - {at: 12.0, busy_cores: 1}                  # other processes spinning on that many cores
  - {at: 16.0, busy_cores: 0}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from adaptive_fusion.core.errors import BudgetError, check_fraction
from adaptive_fusion.core.frames import MODALITIES
from adaptive_fusion.sim.moving_world import corruption_kinds

ACTIONS = ("corrupt", "budget", "kill", "revive", "latency_budget", "busy_cores")
MAX_LATENCY_BUDGET_MS = 10_000.0
MAX_BUSY_CORES = 64


class ScenarioError(ValueError):
    """A scenario file that does not parse or names something unknown."""


@dataclass(frozen=True)
class Event:
    at: float  # seconds after the start
    action: str
    modality: str | None = None
    kind: str | None = None
    value: float | None = None  # severity, budget, milliseconds or cores

    @property
    def label(self) -> str:
        """Short text for a plot: "camera fog 0.8", "camera clear", "budget 0.25", "kill lidar"."""
        if self.action == "budget":
            return f"budget {self.value:g}"
        if self.action == "latency_budget":
            return f"deadline {self.value:g} ms" if self.value else "no deadline"
        if self.action == "busy_cores":
            return f"{self.value:g} core(s) busy" if self.value else "cores free"
        if self.action == "corrupt":
            return (f"{self.modality} clear" if self.kind == "none"
                    else f"{self.modality} {self.kind} {self.value:g}")
        return f"{self.action} {self.modality}"


def parse_event(entry: dict, index: int) -> list[Event]:
    where = f"event {index}"
    if not isinstance(entry, dict) or "at" not in entry:
        raise ScenarioError(f"{where}: needs a mapping with 'at' and one action, got {entry!r}")
    at = entry["at"]
    if not isinstance(at, int | float) or at < 0:
        raise ScenarioError(f"{where}: 'at' must be seconds >= 0, got {at!r}")
    actions = [key for key in entry if key != "at"]
    if len(actions) != 1 or actions[0] not in ACTIONS:
        raise ScenarioError(f"{where}: needs exactly one of {', '.join(ACTIONS)}, got {actions}")
    action, value = actions[0], entry[actions[0]]
    if action == "budget":
        try:
            return [Event(float(at), action, value=check_fraction(value))]
        except (BudgetError, TypeError, ValueError) as error:
            raise ScenarioError(f"{where}: {error}") from error
    if action == "latency_budget":
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                0 <= value <= MAX_LATENCY_BUDGET_MS):
            raise ScenarioError(f"{where}: latency_budget must be milliseconds in "
                                f"[0, {MAX_LATENCY_BUDGET_MS:g}] (0 = none), got {value!r}")
        return [Event(float(at), action, value=float(value))]
    if action == "busy_cores":
        if isinstance(value, bool) or not isinstance(value, int) or not (
                0 <= value <= MAX_BUSY_CORES):
            raise ScenarioError(f"{where}: busy_cores must be a whole number in "
                                f"[0, {MAX_BUSY_CORES}], got {value!r}")
        return [Event(float(at), action, value=float(value))]
    if action in ("kill", "revive"):
        _check_modality(value, where)
        return [Event(float(at), action, modality=value)]
    if not isinstance(value, dict):
        raise ScenarioError(f"{where}: corrupt needs {{modality: [kind, severity]}}")
    events = []
    for modality, spec in value.items():
        _check_modality(modality, where)
        if not isinstance(spec, list | tuple) or len(spec) != 2:
            raise ScenarioError(f"{where}: {modality} needs [kind, severity], got {spec!r}")
        kind, severity = spec
        if kind not in corruption_kinds(modality):
            raise ScenarioError(
                f"{where}: unknown {modality} corruption {kind!r}; known: "
                f"{', '.join(corruption_kinds(modality))}"
            )
        if not isinstance(severity, int | float) or not 0 <= severity <= 1:
            raise ScenarioError(f"{where}: severity must be in [0, 1], got {severity!r}")
        events.append(Event(float(at), action, modality, kind, float(severity)))
    return events


def _check_modality(name, where: str) -> None:
    if name not in MODALITIES:
        raise ScenarioError(f"{where}: unknown modality {name!r}; known: {', '.join(MODALITIES)}")


class Scenario:
    """Events in time order; `due(elapsed)` hands out each one once."""

    def __init__(self, events: list[Event]):
        self.events = sorted(events, key=lambda event: event.at)
        self._next = 0

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        try:
            document = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as error:
            raise ScenarioError(f"cannot read scenario {path}: {error}") from error
        if not isinstance(document, dict) or not isinstance(document.get("events"), list):
            raise ScenarioError(f"{path}: expected a mapping with an 'events' list")
        events = []
        for index, entry in enumerate(document["events"]):
            events.extend(parse_event(entry, index))
        return cls(events)

    def due(self, elapsed: float) -> list[Event]:
        start = self._next
        while self._next < len(self.events) and self.events[self._next].at <= elapsed:
            self._next += 1
        return self.events[start : self._next]

    @property
    def finished(self) -> bool:
        return self._next >= len(self.events)
