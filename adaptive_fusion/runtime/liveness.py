"""Which sensors are live: a modality is, until it has been silent for `timeout_s`. Before its
first message the silence counts from `start()` (the node's activation), so a sensor that never
publishes is dropped after one timeout rather than at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LivenessChange:
    live: tuple[str, ...]
    lost: tuple[str, ...]
    back: tuple[str, ...]


class Liveness:
    def __init__(self, modalities: Sequence[str], timeout_s: float):
        self.modalities = tuple(modalities)
        self.timeout_s = timeout_s
        self.live: tuple[str, ...] = ()
        self._started = 0.0
        self._last: dict[str, float] = {}

    def start(self, now: float) -> None:
        """Every modality silent from now on, none live yet."""
        self._started = now
        self._last = {}
        self.live = ()

    def arrived(self, modality: str, now: float) -> None:
        self._last[modality] = now

    def update(self, now: float) -> LivenessChange | None:
        """The change of the live set since the last update, or None when there is none."""
        live = tuple(m for m in self.modalities
                     if now - self._last.get(m, self._started) < self.timeout_s)  # fmt: skip
        if live == self.live:
            return None
        change = LivenessChange(
            live,
            lost=tuple(m for m in self.live if m not in live),
            back=tuple(m for m in live if m not in self.live),
        )
        self.live = live
        return change
