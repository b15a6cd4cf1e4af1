"""bench.floor at a tiny size: it writes one frame per subscriber per pass and times it."""

from __future__ import annotations

import os

from bench.floor import measure_floor


def test_a_pass_is_one_frame_to_each_subscriber_timed() -> None:
    affinity = os.sched_getaffinity(0)
    cpu = str(min(affinity))
    floor = measure_floor(subs=5, size=130, rate=200, passes=4, cpus=(cpu, cpu))
    assert floor["subs"] == 5
    assert floor["frame_bytes"] == 130
    assert floor["passes"] == 4
    assert 0 < floor["pass_ms_median"] <= floor["pass_ms_p99"]
    assert floor["send_us"] > 0
    # The process's own affinity is given back.
    assert os.sched_getaffinity(0) == affinity
