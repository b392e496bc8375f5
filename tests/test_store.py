from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

from fastprof.backends.base import TreeSource
from fastprof.model import CallTree
from fastprof.record import ProfileRecord, RequestRecord
from fastprof.store import DirectorySink, ProfileStore


def record(i: int, frames: int = 1, pid: int | None = None) -> ProfileRecord:
    tree = CallTree(backend="test", duration=0.01 * i)
    for j in range(frames):
        tree.add_stack([("f", "/app/x.py", j)], 0.001)
    return ProfileRecord(
        id=f"id{i:04d}",
        trigger="sample",
        backend="test",
        source=TreeSource.of(tree),
        method="GET",
        route="/r/{n}",
        path=f"/r/{i}",
        started_at=1_700_000_000 + i,
        pid=pid if pid is not None else os.getpid(),
    )


def test_memory_ring_keeps_the_newest() -> None:
    store = ProfileStore(max_profiles=3, max_requests=2)
    for i in range(5):
        store.add_profile(record(i))
        store.add_request(RequestRecord("GET", "/r", "/r", 200, 0.1, 2, float(i)))
    assert [r.id for r in store.profiles] == ["id0002", "id0003", "id0004"]
    assert [r.started_at for r in store.requests] == [3.0, 4.0]
    assert store.get("id0003") is not None and store.get("id0000") is None


def test_the_request_log_reads_like_a_sequence_of_records() -> None:
    store = ProfileStore(max_requests=3)
    assert not store.requests and len(store.requests) == 0
    for i in range(5):
        store.add_request(("GET", f"/r/{i}", f"/r/{i}", 200, 0.1, 2, float(i), 0, 0.0, 0))
    log = store.requests
    assert len(log) == 3 and log
    assert [r.path for r in log] == ["/r/2", "/r/3", "/r/4"]
    assert log[0].path == "/r/2" and log[-1].path == "/r/4" and log[-3].path == "/r/2"
    assert [r.path for r in log[1:]] == ["/r/3", "/r/4"]
    assert isinstance(log[0], RequestRecord) and log[0].key == "GET /r/2"
    with pytest.raises(IndexError, match="request index 3 out of range"):
        log[3]
    with pytest.raises(IndexError):
        log[-4]


def test_kept_request_timings_leave_the_gcs_care_after_one_collection() -> None:
    """A kept NamedTuple stays tracked for good: 10,000 of them weighed on every collection
    (docs/performance.md). A plain tuple of strings and numbers is dropped by the first."""
    import gc

    store = ProfileStore(max_requests=10)
    store.add_request(RequestRecord("GET", "/r", "/r", 200, 0.1, 2, 1.0))
    store.add_request(("GET", "/r", "/r", 200, 0.1, 2, 2.0, 0, 0.0, 0))
    gc.collect()
    assert len(store.raw_requests) == 2
    assert not any(gc.is_tracked(raw) for raw in store.raw_requests)


def test_by_route_merges_kept_profiles() -> None:
    store = ProfileStore()
    for i in range(4):
        store.add_profile(record(i))
    (tree,) = store.by_route().values()
    assert tree.meta["merged"] == 4 and tree.root.samples == 4


def test_subscribers_see_every_kept_profile() -> None:
    store = ProfileStore()
    seen: list[str] = []
    store.subscribe(lambda r: seen.append(r.id))
    store.add_profile(record(1))
    assert seen == ["id0001"]


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_bad_bounds(bad: object) -> None:
    with pytest.raises(ValueError, match="max_profiles"):
        ProfileStore(max_profiles=bad)  # type: ignore[arg-type]


def test_directory_sink_writes_round_trippable_files(tmp_path: Path) -> None:
    store = ProfileStore(directory=tmp_path)
    original = record(7, frames=3)
    store.add_profile(original)
    store.close()
    (path,) = tmp_path.iterdir()
    assert path.name.endswith("-id0007.fastprof.json")
    loaded = ProfileRecord.from_json(path.read_bytes())
    assert loaded.to_dict() == original.to_dict()
    assert store.sink is not None and store.sink.written == 1


def test_directory_sink_enforces_its_size_cap_oldest_first(tmp_path: Path) -> None:
    one = len(record(0, frames=20).to_json())
    sink = DirectorySink(tmp_path, max_bytes=one * 3 + one // 2)
    for i in range(10):
        sink.write(record(i, frames=20))
    names = [p.name for p in sink.files()]
    assert len(names) == 3
    assert [n.split("-")[-1] for n in names] == [f"id{i:04d}.fastprof.json" for i in (7, 8, 9)]
    assert sum(p.stat().st_size for p in sink.files()) <= sink.max_bytes


def test_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    sink = DirectorySink(tmp_path, max_queue=1, idle_exit=0.05)
    sink._writer._queue.put_nowait(record(0))  # the writer is not running yet: queue full
    sink.submit(record(1))
    assert sink.dropped == 1
    sink._writer._queue.get_nowait()
    sink._writer._queue.task_done()


def _write_many(directory: str, worker: int, count: int, cap: int) -> None:
    sink = DirectorySink(directory, max_bytes=cap)
    for i in range(count):
        sink.write(record(worker * 1000 + i, frames=5, pid=os.getpid()))


def test_two_processes_share_one_directory(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(str(tmp_path), w, 40, 10**9)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    files = list(tmp_path.iterdir())
    assert len(files) == 80
    assert not [f for f in files if f.name.endswith(".tmp")]
    records = list(DirectorySink(tmp_path))
    assert len({r.id for r in records}) == 80
    assert len({r.pid for r in records}) == 2


def test_two_processes_respect_a_shared_cap(tmp_path: Path) -> None:
    one = len(record(1001, frames=5).to_json())
    cap = one * 10
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(str(tmp_path), w, 40, cap)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    sizes = [p.stat().st_size for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert sum(sizes) <= cap + one  # each writer checks after its own write
    for r in DirectorySink(tmp_path):  # every survivor is a whole, readable file
        assert r.route == "/r/{n}"


def test_writer_thread_exits_when_idle(tmp_path: Path) -> None:
    sink = DirectorySink(tmp_path, idle_exit=0.05)
    sink.submit(record(1))
    deadline = time.time() + 5
    while sink._writer.running and time.time() < deadline:
        time.sleep(0.01)
    assert not sink._writer.running and sink.written == 1
