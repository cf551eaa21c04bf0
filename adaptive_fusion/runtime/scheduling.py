"""Whether a frame's modality streams run one after another or side by side (model/streams.py),
chosen by measurement.

Which is faster depends on the host's load at the moment, not on the model: on a shared host,
where another process holds part of the cores, side by side took 0.62-0.70 of the time; on the
same host in a quiet phase it took 1.04-1.29 (bench/experiments/bench_parallel_streams.py). So
"auto" keeps,
for each kind of frame (how many streams run blocks, how many blocks in all), the model's recent
times in each mode and runs the mode whose median is lower. Every EXPLORE_EVERY frames of a kind
it measures the other mode again, MEASURE_FRAMES frames in a row with its old times dropped (the
load they were measured under has passed), so a change of load is followed within a few seconds
at camera rates. Medians, not means: single frames stray by tens of percent on a shared host,
and the modes can differ by less. A mode not yet measured for a kind of frame runs first.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

STREAM_SCHEDULING = ("auto", "one_after_another", "side_by_side")
MODES = ("one_after_another", "side_by_side")
EXPLORE_EVERY = 30  # frames of a kind between re-measurements of the slower mode
MEASURE_FRAMES = 3  # frames per (re-)measurement: the slower mode runs 3 in 33 frames at most
WINDOW = 8  # recent times kept per mode


@dataclass
class ModeTimes:
    seconds: deque = field(default_factory=lambda: deque(maxlen=WINDOW))
    age: int = 0  # frames of its kind since this mode last ran


def frame_kind(allocation: Mapping[str, Sequence[int]]) -> tuple[int, int]:
    """(streams with blocks, blocks in all): the kind of frame the scheduler keeps times for."""
    counts = [len(blocks) for blocks in allocation.values() if len(blocks)]
    return len(counts), sum(counts)


class StreamScheduler:
    """Chooses a mode per frame from measured model times (see the module docstring)."""

    def __init__(self, explore_every: int = EXPLORE_EVERY, measure_frames: int = MEASURE_FRAMES):
        if explore_every < 1 or not 1 <= measure_frames <= WINDOW:
            raise ValueError(f"explore_every must be >= 1 and measure_frames in [1, {WINDOW}], "
                             f"got {explore_every} and {measure_frames}")
        self.explore_every = explore_every
        self.measure_frames = measure_frames
        self._times: dict[tuple[int, int], dict[str, ModeTimes]] = {}

    def choose(self, streams: int, blocks: int) -> str:
        """The mode to run a frame whose `streams` streams run `blocks` blocks in all."""
        known = self._known(streams, blocks)
        for mode in MODES:
            if len(known[mode].seconds) < self.measure_frames:
                return mode  # first measured, or being measured again
        faster, slower = sorted(MODES, key=lambda mode: np.median(known[mode].seconds))
        if known[slower].age >= self.explore_every:
            known[slower].seconds.clear()
            return slower
        return faster

    def record(self, streams: int, blocks: int, mode: str, seconds: float) -> None:
        """The model's time for a frame of that kind run in `mode`."""
        if mode not in MODES:
            raise ValueError(f"unknown stream mode {mode!r}; expected one of {MODES}")
        for other, times in self._known(streams, blocks).items():
            times.age = 0 if other == mode else times.age + 1
            if other == mode:
                times.seconds.append(seconds)

    def estimates(self, streams: int, blocks: int) -> dict[str, float]:
        """Median seconds per mode measured for that kind of frame (modes without times left
        out)."""
        known = self._times.get((streams, blocks), {})
        return {mode: float(np.median(times.seconds))
                for mode, times in known.items() if times.seconds}

    def _known(self, streams: int, blocks: int) -> dict[str, ModeTimes]:
        return self._times.setdefault((streams, blocks), {mode: ModeTimes() for mode in MODES})
