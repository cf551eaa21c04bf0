"""Approximate- and exact-time synchronizers with message_filters' Python API and semantics,
minus its known faults.

Matching follows upstream: when a message stamped t arrives on input i, each other input's
queued stamps within `slop` of t are ranked by |stamp - t| (ties in queue insertion order), and
the first combination in itertools.product order over those rankings whose spread is within
slop is emitted and dequeued; a queue over `queue_size` loses its oldest stamp. Messages may
arrive in any stamp order, and every set upstream forms is formed here. Differences, none of
which changes what code written for upstream receives:
- spreads of exactly `slop` match (upstream uses a strict `<`, so two inputs exactly `slop`
  apart never pair there);
- the product walk is replaced by a greedy search with an exact feasibility test (it returns
  the same first combination without enumerating the product) over sorted stamp lists, so the
  cost per message does not grow with the queue size;
- user and drop callbacks run after the lock is released (a callback may add to the filter);
- every message that leaves without being emitted is counted per reason and input and handed
  to the drop callbacks (`registerDropCallback`; upstream drops silently).
One difference is an option, off by default because it breaks upstream's behaviour when an
input's messages arrive out of stamp order: `purge_stale=True` drops a queued message as soon
as every other input's newest stamp is more than `slop` past it (upstream keeps it until the
queue overflows). With each input arriving in stamp order no later message could match it, so
on such streams the emitted sets are still upstream's, and the queues stay short.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Callable, Sequence

from adaptive_fusion.sync.base import NANOSECONDS, SimpleFilter, arrival_clock, stamp_ns

OVERFLOW = "overflow"  # pushed out of a full queue by a newer message
STALE = "stale"  # no future message can match it any more
DUPLICATE = "duplicate"  # replaced by a later message with the same stamp on the same input
HEADERLESS = "headerless"  # no header.stamp and allow_headerless is False
DROP_REASONS = (OVERFLOW, STALE, DUPLICATE, HEADERLESS)


class ApproximateTimeSynchronizer(SimpleFilter):
    """Emits one message per input whose stamps lie within `slop` seconds of each other."""

    def __init__(
        self,
        fs: Sequence[SimpleFilter],
        queue_size: int,
        slop: float,
        allow_headerless: bool = False,
        clock: Callable[[], int] | None = None,
        purge_stale: bool = False,
    ) -> None:
        super().__init__()
        if queue_size < 1 or slop < 0:
            raise ValueError(f"need queue_size >= 1 and slop >= 0, got {queue_size}, {slop}")
        self.queue_size = queue_size
        self.slop = slop
        self.allow_headerless = allow_headerless
        self.purge_stale = purge_stale
        self.drop_counts: Counter[str] = Counter()
        self.dropped_per_input = [0] * len(fs)
        self.emitted_sets = 0
        self._slop_ns = round(slop * NANOSECONDS)
        self._clock = clock or arrival_clock(fs)
        self._lock = threading.Lock()
        self._drop_callbacks: dict[int, tuple[Callable, tuple]] = {}
        count = len(fs)
        self._others = [tuple(j for j in range(count) if j != i) for i in range(count)]
        self._queues: list[dict[int, tuple[int, object]]] = [{} for _ in range(count)]
        self._stamps: list[list[int]] = [[] for _ in range(count)]  # sorted keys of _queues
        self._newest: list[int | None] = [None] * count
        self._arrivals = 0  # insertion counter, breaks |delta| ties like upstream's dict order
        self.connectInput(fs)

    def connectInput(self, fs: Sequence[SimpleFilter]) -> None:
        self.input_connections = [f.registerCallback(self.add, i) for i, f in enumerate(fs)]

    def registerDropCallback(self, cb: Callable, *args) -> int:
        """Call `cb(msg, input_index, reason, *args)` for every message dropped unmatched."""
        connection = len(self._drop_callbacks)
        self._drop_callbacks[connection] = (cb, args)
        return connection

    def queued(self) -> list[int]:
        """Messages currently waiting, per input."""
        with self._lock:
            return [len(stamps) for stamps in self._stamps]

    def add(self, msg, index: int) -> None:
        stamp = stamp_ns(msg)
        if stamp is None:
            if not self.allow_headerless:
                with self._lock:
                    self._count_drops([(msg, index, HEADERLESS)])
                self._signal_drops([(msg, index, HEADERLESS)])
                return
            stamp = self._clock()
        with self._lock:
            emitted, dropped = self._add_locked(msg, index, stamp)
            self._count_drops(dropped)
        if dropped:
            self._signal_drops(dropped)
        if emitted:
            self.signalMessage(*emitted)

    def _count_drops(self, dropped: list[tuple[object, int, str]]) -> None:
        for _, index, reason in dropped:
            self.drop_counts[reason] += 1
            self.dropped_per_input[index] += 1

    def _signal_drops(self, dropped: list[tuple[object, int, str]]) -> None:
        for cb, args in list(self._drop_callbacks.values()):
            for msg, index, reason in dropped:
                cb(msg, index, reason, *args)

    def _add_locked(self, msg, index: int, stamp: int):
        queue, stamps = self._queues[index], self._stamps[index]
        dropped = []
        previous = queue.get(stamp)
        if previous is not None:
            queue[stamp] = (previous[0], msg)
            dropped.append((previous[1], index, DUPLICATE))
        else:
            queue[stamp] = (self._arrivals, msg)
            self._arrivals += 1
            if not stamps or stamp > stamps[-1]:
                stamps.append(stamp)
            else:
                bisect.insort(stamps, stamp)
            if len(stamps) > self.queue_size:
                dropped.append((queue.pop(stamps.pop(0))[1], index, OVERFLOW))
        newest = self._newest[index]
        if newest is None or stamp > newest:
            self._newest[index] = stamp
        emitted = self._match(index, stamp) if stamp in queue else None
        if self.purge_stale:
            self._purge_stale(dropped)
        return emitted, dropped

    def _match(self, index: int, stamp: int) -> list | None:
        """Dequeue and return the first matching set (in input order) for a new message."""
        slop = self._slop_ns
        low, high = stamp - slop, stamp + slop
        others = self._others[index]
        rankings = []
        for j in others:
            stamps = self._stamps[j]
            start = bisect.bisect_left(stamps, low)
            end = bisect.bisect_right(stamps, high, start)
            if start == end:
                return None
            if end - start == 1:
                rankings.append((stamps[start],))
            else:
                queue = self._queues[j]
                rankings.append(
                    sorted(stamps[start:end], key=lambda s: (abs(s - stamp), queue[s][0]))
                )
        chosen = _first_within_slop(stamp, rankings, slop)
        if chosen is None:
            return None
        chosen.insert(index, stamp)
        msgs = []
        for j, s in enumerate(chosen):
            stamps = self._stamps[j]
            del stamps[bisect.bisect_left(stamps, s)]
            msgs.append(self._queues[j].pop(s)[1])
        self.emitted_sets += 1
        return msgs

    def _purge_stale(self, dropped: list) -> None:
        """Drop every message older than slop behind the newest stamp of all other inputs."""
        newest = self._newest
        if None in newest:
            return
        slop = self._slop_ns
        order = sorted(range(len(newest)), key=newest.__getitem__)
        lowest, second = order[0], order[1] if len(order) > 1 else order[0]
        for j, stamps in enumerate(self._stamps):
            if not stamps:
                continue
            horizon = newest[second if j == lowest else lowest] - slop
            if stamps[0] >= horizon:
                continue
            cut = bisect.bisect_left(stamps, horizon)
            queue = self._queues[j]
            dropped.extend((queue.pop(s)[1], j, STALE) for s in stamps[:cut])
            del stamps[:cut]


def _first_within_slop(stamp: int, rankings: list, slop: int) -> list[int] | None:
    """The first tuple of itertools.product(*rankings) that fits with `stamp` in a window of
    width `slop`, found greedily: at each position take the first candidate after which the
    remaining positions can still be completed. Hand-written because no library offers it."""
    chosen: list[int] = []
    low = high = stamp
    if not _completable(rankings, 0, low, high, slop):
        return None
    for position, candidates in enumerate(rankings):
        for s in candidates:
            new_low, new_high = min(low, s), max(high, s)
            if new_high - new_low <= slop and _completable(
                rankings, position + 1, new_low, new_high, slop
            ):
                chosen.append(s)
                low, high = new_low, new_high
                break
    return chosen


def _completable(rankings: list, start: int, low: int, high: int, slop: int) -> bool:
    """Whether some window [w, w + slop] containing [low, high] holds a candidate of every
    ranking from `start` on. Checking w = high - slop and each candidate's own s - slop inside
    the admissible range suffices: a non-empty intersection of closed intervals contains the
    largest left end among its defining intervals, which is one of those points."""
    rest = rankings[start:]
    if not rest:
        return True
    first_w = high - slop
    starts = [first_w] + [s - slop for c in rest for s in c if first_w < s - slop <= low]
    for w in starts:
        end = w + slop
        if all(any(w <= s <= end for s in c) for c in rest):
            return True
    return False


class TimeSynchronizer(ApproximateTimeSynchronizer):
    """Exact-stamp synchronizer: an approximate one with zero slop."""

    def __init__(
        self, fs: Sequence[SimpleFilter], queue_size: int, purge_stale: bool = False
    ) -> None:
        super().__init__(fs, queue_size, slop=0.0, purge_stale=purge_stale)
