"""The approximate-time policy written the obvious way, and the workload it is checked on.

`ReferencePolicy` is upstream message_filters' algorithm step by step (dict queues, sorted
candidate lists, full itertools.product walk) with `<= slop` (`strict=True`: upstream's `<`
exactly); `purge_stale=True` adds the stale rule of approximate.py. Tests and bench/bench_sync.py
compare the fast synchronizer's emitted sets against it; it is deliberately slow and not meant
for use on a robot.
"""

from __future__ import annotations

import itertools

import numpy as np


class ReferencePolicy:
    """Upstream ApproximateTimeSynchronizer.add on integer-nanosecond stamps."""

    def __init__(self, inputs: int, queue_size: int, slop_ns: int, purge_stale: bool = False,
                 strict: bool = False):
        self.queues: list[dict[int, object]] = [{} for _ in range(inputs)]
        self.queue_size = queue_size
        self.slop = slop_ns
        self.purge_stale = purge_stale
        self.strict = strict
        self.newest: list[int | None] = [None] * inputs

    def add(self, index: int, stamp: int, msg) -> list | None:
        """Queue `msg` and return the emitted set (one message per input) or None."""
        my_queue = self.queues[index]
        my_queue[stamp] = msg
        while len(my_queue) > self.queue_size:
            del my_queue[min(my_queue)]
        if self.newest[index] is None or stamp > self.newest[index]:
            self.newest[index] = stamp
        emitted = self._match(index, stamp)
        if self.purge_stale:
            self._purge()
        return emitted

    def _match(self, index: int, stamp: int) -> list | None:
        rankings = []
        for j, queue in enumerate(self.queues):
            if j == index:
                continue
            near = [(s, abs(s - stamp)) for s in queue if abs(s - stamp) <= self.slop]
            if not near:
                return None
            rankings.append([s for s, _ in sorted(near, key=lambda pair: pair[1])])
        for combination in itertools.product(*rankings):
            stamps = list(combination)
            stamps.insert(index, stamp)
            pairs = list(zip(self.queues, stamps, strict=True))
            spread = max(stamps) - min(stamps)
            within = spread < self.slop if self.strict else spread <= self.slop
            if within and all(s in q for q, s in pairs):
                msgs = [q[s] for q, s in pairs]
                for q, s in pairs:
                    del q[s]
                return msgs
        return None

    def _purge(self) -> None:
        if None in self.newest:
            return
        for k, queue in enumerate(self.queues):
            horizon = min(n for j, n in enumerate(self.newest) if j != k) - self.slop
            for s in [s for s in queue if s < horizon]:
                del queue[s]


def jittered_workload(
    rates_hz: tuple[float, ...],
    duration_s: float,
    jitter_s: float,
    latency_s: float,
    seed: int,
) -> list[tuple[int, int]]:
    """(input index, stamp ns) in arrival order for inputs at the given rates: stamps jittered
    uniformly by +-jitter_s, arrival = stamp + uniform [0, latency_s], each input arriving in
    its own stamp order (a driver publishes in order) while inputs interleave."""
    rng = np.random.default_rng(seed)
    events = []
    for index, rate in enumerate(rates_hz):
        nominal = np.arange(0.0, duration_s, 1.0 / rate)
        stamps = nominal + rng.uniform(-jitter_s, jitter_s, nominal.size) + 1.0
        arrivals = np.maximum.accumulate(stamps + rng.uniform(0.0, latency_s, nominal.size))
        stamps_ns = np.round(stamps * 1e9).astype(np.int64)
        indexes = [index] * nominal.size
        events.extend(zip(arrivals.tolist(), indexes, stamps_ns.tolist(), strict=True))
    events.sort()
    return [(index, stamp) for _, index, stamp in events]
