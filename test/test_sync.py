"""adaptive_fusion.sync without ROS: upstream's matching semantics (checked against the
reference policy), the slop boundary, stale purging, drop reporting, headerless input and
concurrent producers."""

import random
import threading
from types import SimpleNamespace

import pytest
from builtin_interfaces.msg import Time as TimeMsg
from hypothesis import given, settings
from hypothesis import strategies as st
from rclpy.clock_type import ClockType
from rclpy.time import Time
from sync_reference import ReferencePolicy, jittered_workload

from adaptive_fusion.sync import (
    DUPLICATE,
    HEADERLESS,
    OVERFLOW,
    STALE,
    ApproximateTimeSynchronizer,
    Cache,
    SimpleFilter,
    TimeSynchronizer,
)

MS = 1_000_000


def stamped(stamp_ns: int, tag=None):
    stamp = TimeMsg(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    return SimpleNamespace(header=SimpleNamespace(stamp=stamp), stamp=stamp_ns, tag=tag)


class Harness:
    """A synchronizer over plain SimpleFilters, recording emitted sets and drops."""

    def __init__(self, inputs: int, queue_size: int, slop_s: float, **kwargs):
        self.inputs = [SimpleFilter() for _ in range(inputs)]
        self.sync = ApproximateTimeSynchronizer(self.inputs, queue_size, slop_s, **kwargs)
        self.sets: list[tuple] = []
        self.drops: list[tuple] = []
        self.sync.registerCallback(lambda *msgs: self.sets.append(msgs))
        self.sync.registerDropCallback(lambda m, i, reason: self.drops.append((m, i, reason)))

    def feed(self, index: int, stamp_ns: int, tag=None):
        msg = stamped(stamp_ns, tag)
        self.inputs[index].signalMessage(msg)
        return msg

    def stamps(self) -> list[tuple[int, ...]]:
        return [tuple(m.stamp for m in s) for s in self.sets]


def reference_sets(events, inputs, queue_size, slop_ns, purge_stale):
    policy = ReferencePolicy(inputs, queue_size, slop_ns, purge_stale=purge_stale)
    out = []
    for index, stamp in events:
        emitted = policy.add(index, stamp, stamp)
        if emitted is not None:
            out.append(tuple(emitted))
    return out


def test_simple_filter_passes_messages_and_extra_args():
    source, got = SimpleFilter(), []
    source.registerCallback(lambda a, b, extra: got.append((a, b, extra)), "x")
    source.signalMessage(1, 2)
    assert got == [(1, 2, "x")]


def test_inputs_exactly_slop_apart_match_and_one_nanosecond_more_do_not():
    h = Harness(3, 10, 0.05)
    h.feed(0, 1000 * MS)
    h.feed(1, 1025 * MS)
    h.feed(2, 1050 * MS)  # spread exactly 50 ms
    assert h.stamps() == [(1000 * MS, 1025 * MS, 1050 * MS)]
    h.feed(0, 2000 * MS)
    h.feed(1, 2050 * MS + 1)
    assert len(h.sets) == 1


def test_nearest_candidate_wins_and_order_is_input_order():
    h = Harness(2, 10, 0.05)
    h.feed(1, 990 * MS)
    h.feed(1, 1010 * MS)
    h.feed(1, 1003 * MS)
    h.feed(0, 1000 * MS)
    assert h.stamps() == [(1000 * MS, 1003 * MS)]


def test_stale_messages_are_purged_counted_and_reported():
    h = Harness(2, 100, 0.05, purge_stale=True)
    for k in range(5):
        h.feed(0, (1000 + 10 * k) * MS)  # never matched: input 1 starts far later
    h.feed(1, 2000 * MS)
    assert h.sync.queued() == [0, 1]
    assert [(m.stamp, i, r) for m, i, r in h.drops] == [
        ((1000 + 10 * k) * MS, 0, STALE) for k in range(5)
    ]
    assert h.sync.drop_counts[STALE] == 5 and h.sync.dropped_per_input == [5, 0]
    h.feed(0, 2040 * MS)
    assert h.stamps() == [(2040 * MS, 2000 * MS)]


def test_queue_overflow_drops_the_oldest_while_an_input_is_silent():
    h = Harness(2, 3, 0.05)
    for k in range(5):
        h.feed(0, (1000 + 100 * k) * MS, tag=k)
    assert [(m.tag, r) for m, _, r in h.drops] == [(0, OVERFLOW), (1, OVERFLOW)]
    assert h.sync.queued() == [3, 0]


def test_duplicate_stamp_replaces_the_queued_message_and_reports_it():
    h = Harness(2, 10, 0.05)
    h.feed(0, 1000 * MS, tag="first")
    h.feed(0, 1000 * MS, tag="second")
    h.feed(1, 1001 * MS)
    assert [s[0].tag for s in h.sets] == ["second"]
    assert [(m.tag, r) for m, _, r in h.drops] == [("first", DUPLICATE)]


@pytest.mark.parametrize("queue_size", [10, 100])
@pytest.mark.parametrize("purge_stale", [False, True])
def test_three_inputs_at_30_15_10_hz_emit_upstreams_sets(queue_size, purge_stale):
    events = jittered_workload((30, 15, 10), 20.0, 0.002, 0.005, seed=7)
    h = Harness(3, queue_size, 0.05, purge_stale=purge_stale)
    for index, stamp in events:
        h.feed(index, stamp)
    expected = reference_sets(events, 3, queue_size, 50 * MS, purge_stale=False)
    assert h.stamps() == expected
    assert len(expected) >= 195  # nearly every 10 Hz frame over 20 s finds partners
    assert all(max(s) - min(s) <= 50 * MS for s in expected)
    total_left = sum(h.sync.queued())
    assert 3 * len(h.sets) + len(h.drops) + total_left == len(events)
    if purge_stale:
        assert total_left <= 6  # stale messages do not pile up to queue_size


@pytest.mark.parametrize("purge_stale", [False, True])
@pytest.mark.parametrize("seed", range(40))
def test_out_of_order_duplicates_and_ties_match_reference(seed, purge_stale):
    """Shuffled arrival, repeated stamps, equal |delta| ties and a wide slop (many candidates
    per input, so the product order matters) on 2-4 inputs."""
    rng = random.Random(seed)
    inputs = rng.choice([2, 3, 4])
    queue_size = rng.choice([3, 8, 50])
    slop = rng.choice([5, 20, 60]) * MS
    events = [(rng.randrange(inputs), rng.randrange(0, 200) * MS) for _ in range(300)]
    events.sort(key=lambda e: e[1] + rng.randrange(0, 80) * MS)  # bounded disorder
    h = Harness(inputs, queue_size, slop / 1e9, purge_stale=purge_stale)
    for index, stamp in events:
        h.feed(index, stamp)
    assert h.stamps() == reference_sets(events, inputs, queue_size, slop, purge_stale)
    assert len(h.sets) > 0
    assert inputs * len(h.sets) + len(h.drops) + sum(h.sync.queued()) == len(events)


# Streams as upstream users meet them: 2-4 inputs, stamps on a 1 ms grid arriving in any order,
# repeats, queues from 1 to 12. The slop is a whole number of ms plus 0.5 ms, so no spread equals
# it and upstream's strict `<` and our `<=` agree: the sets must be exactly upstream's.
streams = st.integers(min_value=2, max_value=4).flatmap(lambda inputs: st.tuples(
    st.just(inputs),
    st.integers(min_value=1, max_value=12),
    st.integers(min_value=0, max_value=40),
    st.lists(st.tuples(st.integers(0, inputs - 1), st.integers(0, 150)), max_size=120),
))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(streams)
def test_any_arrival_order_gives_upstreams_sets(stream):
    inputs, queue_size, slop_ms, events = stream
    slop_ns = slop_ms * MS + MS // 2
    events = [(index, stamp * MS) for index, stamp in events]
    h = Harness(inputs, queue_size, slop_ns / 1e9)
    for index, stamp in events:
        h.feed(index, stamp)
    upstream = ReferencePolicy(inputs, queue_size, slop_ns, strict=True)
    expected = [tuple(s) for index, stamp in events
                if (s := upstream.add(index, stamp, stamp)) is not None]  # fmt: skip
    assert h.stamps() == expected
    assert inputs * len(h.sets) + len(h.drops) + sum(h.sync.queued()) == len(events)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(streams)
def test_upstream_message_filters_forms_the_same_sets_where_installed(stream):
    """On a robot with a ROS 2 distribution fusion_node uses upstream message_filters: the same
    streams must give the same sets there (this runs under colcon test; PyPI has no
    message_filters, so here the reference policy above stands in for it)."""
    upstream = pytest.importorskip("message_filters")
    inputs, queue_size, slop_ms, events = stream
    slop_ns = slop_ms * MS + MS // 2
    theirs, ours = [upstream.SimpleFilter() for _ in range(inputs)], Harness(inputs, queue_size,
                                                                            slop_ns / 1e9)
    sync = upstream.ApproximateTimeSynchronizer(theirs, queue_size, slop_ns / 1e9)
    sets = []
    sync.registerCallback(lambda *msgs: sets.append(tuple(m.stamp for m in msgs)))
    for index, stamp in events:
        theirs[index].signalMessage(stamped(stamp * MS))
        ours.feed(index, stamp * MS)
    assert ours.stamps() == sets


def test_headerless_messages_use_the_arrival_clock_or_are_dropped():
    clock = iter([1000 * MS, 1030 * MS, 1200 * MS]).__next__
    inputs = [SimpleFilter(), SimpleFilter()]
    sync = ApproximateTimeSynchronizer(inputs, 10, 0.05, allow_headerless=True, clock=clock)
    sets = []
    sync.registerCallback(lambda *m: sets.append(m))
    inputs[0].signalMessage("a")
    inputs[1].signalMessage("b")  # arrives 30 ms later: within slop
    inputs[0].signalMessage("c")
    assert sets == [("a", "b")]

    h = Harness(2, 10, 0.05)
    inputs = h.inputs
    inputs[0].signalMessage("no header")
    assert h.drops == [("no header", 0, HEADERLESS)] and h.sync.drop_counts[HEADERLESS] == 1


def test_callbacks_run_outside_the_lock():
    """A callback that feeds the synchronizer again would deadlock under a non-reentrant lock."""
    h = Harness(2, 10, 0.05)
    fed_back = []

    def chain(*msgs):
        if not fed_back:
            fed_back.append(h.feed(0, 5000 * MS))

    h.sync.registerCallback(chain)
    worker = threading.Thread(target=lambda: (h.feed(0, 1000 * MS), h.feed(1, 1000 * MS)))
    worker.start()
    worker.join(timeout=5)
    assert not worker.is_alive() and len(fed_back) == 1 and h.sync.queued() == [1, 0]


def test_concurrent_producers_lose_nothing_and_emit_valid_sets():
    """Three threads publish 20 s of 30/15/10 Hz stamps, meeting every 200 ms of stamp time so
    that they stay roughly aligned (as real drivers are) while racing within each slice."""
    h = Harness(3, 20, 0.05)
    periods_ms = (33, 66, 100)
    barrier = threading.Barrier(3)

    def produce(index):
        rng = random.Random(index)
        for slice_start in range(0, 20_000, 200):
            barrier.wait()
            for t in range(slice_start, slice_start + 200):
                if t % periods_ms[index] == 0:
                    stamp = (1000 + t + rng.randint(-2, 2)) * MS
                    h.feed(index, stamp, tag=(index, t))

    threads = [threading.Thread(target=produce, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent = sum(len(range(0, 20_000, p)) for p in periods_ms)
    tags = [m.tag for s in h.sets for m in s] + [m.tag for m, _, _ in h.drops]
    assert len(tags) == len(set(tags))
    assert len(tags) + sum(h.sync.queued()) == sent
    assert all(max(m.stamp for m in s) - min(m.stamp for m in s) <= 50 * MS for s in h.sets)
    assert all([m.tag[0] for m in s] == [0, 1, 2] for s in h.sets)
    assert len(h.sets) > 150


def test_time_synchronizer_matches_equal_stamps_only():
    inputs = [SimpleFilter(), SimpleFilter()]
    sync = TimeSynchronizer(inputs, 10)
    sets = []
    sync.registerCallback(lambda *m: sets.append(tuple(x.stamp for x in m)))
    inputs[0].signalMessage(stamped(1000 * MS))
    inputs[1].signalMessage(stamped(1000 * MS - 1))
    assert sets == [] and sync.queued() == [1, 1]
    inputs[1].signalMessage(stamped(1000 * MS))
    inputs[1].signalMessage(stamped(2000 * MS))
    inputs[0].signalMessage(stamped(2000 * MS))
    assert sets == [(1000 * MS, 1000 * MS), (2000 * MS, 2000 * MS)]
    assert sync.queued() == [0, 1]  # as upstream: kept until the queue overflows
    purging = TimeSynchronizer([SimpleFilter(), SimpleFilter()], 10, purge_stale=True)
    for index, stamp in ((0, 1000 * MS), (1, 1000 * MS - 1)):
        purging.add(stamped(stamp), index)
    assert purging.drop_counts[STALE] == 1  # input 0 is past it: it can never match


def test_cache_keeps_the_last_n_and_answers_time_queries():
    source = SimpleFilter()
    cache = Cache(source, cache_size=3)
    passed = []
    cache.registerCallback(passed.append)
    msgs = [stamped(k * 100 * MS, tag=k) for k in range(1, 6)]
    for m in msgs:
        source.signalMessage(m)
    assert passed == msgs
    assert [m.tag for m in cache.cache_msgs] == [3, 4, 5]
    assert cache.getOldestTime() == Time(nanoseconds=300 * MS, clock_type=ClockType.ROS_TIME)
    assert cache.getLatestTime() == cache.getLastestTime() == Time(nanoseconds=500 * MS,
                                                                    clock_type=ClockType.ROS_TIME)
    assert [m.tag for m in cache.getInterval(0.35, 0.5)] == [4, 5]
    assert cache.getElemAfterTime(350 * MS).tag == 4
    assert cache.getElemBeforeTime(stamped(450 * MS).header.stamp).tag == 4
    assert cache.getElemBeforeTime(0.1) is None and cache.getLast().tag == 5
    with pytest.raises(ValueError, match="after to_stamp"):
        cache.getInterval(0.5, 0.35)


def test_cache_accessors_follow_upstream_when_stamps_arrive_out_of_order():
    """Upstream's getLatestTime is the last cached message's stamp (not the largest), and its
    getLast the first cached message stamped at or after that."""
    source = SimpleFilter()
    cache = Cache(source, cache_size=5)
    for stamp, tag in ((300, "a"), (500, "b"), (400, "c")):
        source.signalMessage(stamped(stamp * MS, tag=tag))
    assert cache.getLatestTime().nanoseconds == 400 * MS
    assert cache.getOldestTime().nanoseconds == 300 * MS
    assert cache.getLast().tag == "b"
    assert Cache(SimpleFilter()).getLatestTime() is None and Cache(SimpleFilter()).getLast() is None
