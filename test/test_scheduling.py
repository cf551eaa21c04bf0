"""The stream scheduler (runtime/scheduling.py): measures each mode, runs the faster, measures
the slower again every so often, follows a change of load, holds its choice through noisy
frames, keeps kinds of frames apart."""

import numpy as np
import pytest

from adaptive_fusion.runtime.scheduling import StreamScheduler

FASTER_SIDE_BY_SIDE = {"one_after_another": 0.050, "side_by_side": 0.035}


def run_frames(scheduler, seconds, frames, streams=3, blocks=24, noise=None):
    """Runs `frames` frames of one kind whose model time per mode is `seconds[mode]` (times
    `noise()` when given); returns the modes chosen."""
    chosen = []
    for _ in range(frames):
        mode = scheduler.choose(streams, blocks)
        scheduler.record(streams, blocks, mode, seconds[mode] * (noise() if noise else 1.0))
        chosen.append(mode)
    return chosen


def test_measures_each_mode_then_runs_the_faster_and_measures_the_slower_again_now_and_then():
    scheduler = StreamScheduler(explore_every=10, measure_frames=3)
    chosen = run_frames(scheduler, FASTER_SIDE_BY_SIDE, 100)
    assert chosen[:6] == ["one_after_another"] * 3 + ["side_by_side"] * 3
    slower = [i for i, mode in enumerate(chosen) if mode == "one_after_another"]
    # three frames in a row after every ten of the faster mode
    assert slower == [i for i in range(100) if i < 3 or (i - 3) % 13 >= 10]
    assert scheduler.estimates(3, 24) == pytest.approx(FASTER_SIDE_BY_SIDE)


def test_follows_each_change_of_load_within_one_re_measurement():
    scheduler = StreamScheduler(explore_every=10, measure_frames=3)
    quiet = {"one_after_another": 0.045, "side_by_side": 0.050}
    busy = {"one_after_another": 0.090, "side_by_side": 0.057}
    for load in (quiet, busy, quiet, busy):
        faster = min(load, key=load.get)
        chosen = run_frames(scheduler, load, 65)
        first = chosen.index(faster)
        assert first <= 13  # at the latest when the next re-measurement finds it faster
        after = chosen[first:]
        # from then on the slower mode runs only to be measured again: 3 frames in 13
        assert len(after) - after.count(faster) <= 3 * (len(after) // 13 + 1)
        assert scheduler.estimates(3, 24)[faster] == pytest.approx(load[faster])


@pytest.mark.parametrize("apart, right, cost", [(1.1, 0.7, 1.04), (1.4, 0.85, 1.05)])
def test_holds_the_faster_mode_through_noisy_frames(apart, right, cost):
    """Frames that stray by 20% (and one in 20 by twice its time) around modes 10% or 40%
    apart: the medians pick the faster on most frames (at most 30 in 33 can be), and the
    frames take at most 4-5% longer on average than the faster mode's."""
    rng = np.random.default_rng(0)

    def noise():
        return rng.normal(1.0, 0.2) * (2.0 if rng.random() < 0.05 else 1.0)

    seconds = {"one_after_another": 0.030, "side_by_side": 0.030 * apart}
    chosen = run_frames(StreamScheduler(), seconds, 2000, noise=noise)[6:]
    assert chosen.count("one_after_another") / len(chosen) >= right
    assert np.mean([seconds[mode] for mode in chosen]) <= cost * 0.030


def test_kinds_of_frames_are_measured_apart():
    scheduler = StreamScheduler(measure_frames=1)
    run_frames(scheduler, FASTER_SIDE_BY_SIDE, 5, blocks=24)
    assert scheduler.choose(3, 24) == "side_by_side"
    assert scheduler.estimates(3, 6) == {}
    assert scheduler.choose(3, 6) == "one_after_another"  # not measured yet: runs first
    assert scheduler.choose(2, 24) == "one_after_another"


@pytest.mark.parametrize("explore_every, measure_frames", [(0, 3), (30, 0), (30, 9)])
def test_rejects_settings_that_never_re_measure_or_measure_nothing(explore_every,
                                                                    measure_frames):
    with pytest.raises(ValueError):
        StreamScheduler(explore_every, measure_frames)


def test_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="unknown stream mode"):
        StreamScheduler().record(3, 24, "parallel", 0.01)
