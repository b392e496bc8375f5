from __future__ import annotations

import gc
import time

from fastprof import _pauses


def test_a_full_collection_is_recorded_and_overlaps_what_spans_it() -> None:
    _pauses.acquire()
    try:
        junk = [[i] for i in range(300_000)]  # enough objects for a collection to take > 1 ms
        before = time.perf_counter()
        gc.collect()
        after = time.perf_counter()
        del junk
        spanned = _pauses.overlap(before, after)
        assert 0.001 <= spanned <= after - before
        assert _pauses.overlap(after + 0.5, after + 1) == 0.0  # nothing after it
        half = _pauses.overlap(before, before + (after - before) / 2)
        assert 0 < half < spanned
    finally:
        _pauses.release()
    assert not _pauses.installed()
    assert _pauses.overlap(0, time.perf_counter()) == 0.0  # forgotten with the last user


def test_counted_install() -> None:
    _pauses.acquire()
    _pauses.acquire()
    _pauses.release()
    assert _pauses.installed()
    _pauses.release()
    _pauses.release()  # one too many: harmless
    assert not _pauses.installed()
