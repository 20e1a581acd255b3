"""The fixed-slot record windows (in memory and shared through files) and the percentiles."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import orjson
import pytest

from octoroute.observe.decisions import SlotRing, nearest_rank, percentiles, read_ring_files, read_slots


def rec(n: int) -> bytes:
    return orjson.dumps({"request_id": f"req-{n}", "n": n})


def ns(records: list[bytes]) -> list[int]:
    return [orjson.loads(r)["n"] for r in records]


def test_an_empty_ring_has_no_records() -> None:
    assert SlotRing.in_memory(4, 128).records() == []


def test_records_come_back_oldest_first_until_full() -> None:
    ring = SlotRing.in_memory(4, 128)
    for n in range(3):
        assert ring.add(rec(n))
    assert ns(ring.records()) == [0, 1, 2]


def test_a_full_ring_drops_the_oldest() -> None:
    ring = SlotRing.in_memory(4, 128)
    for n in range(11):
        ring.add(rec(n))
    assert ns(ring.records()) == [7, 8, 9, 10]


def test_a_record_larger_than_a_slot_is_refused_and_nothing_is_overwritten() -> None:
    ring = SlotRing.in_memory(2, 64)
    ring.add(rec(1))
    assert not ring.add(b"x" * (64 - 12 + 1))
    assert ring.add(b"y" * (64 - 12))  # exactly the room a slot has
    assert ring.records() == [rec(1), b"y" * 52]


def test_a_shorter_record_over_a_longer_one_leaves_no_trailing_bytes() -> None:
    ring = SlotRing.in_memory(1, 128)
    ring.add(b'{"long": "' + b"a" * 80 + b'"}')
    ring.add(b'{"s": 1}')
    assert ring.records() == [b'{"s": 1}']


def test_a_slot_being_written_is_skipped_by_readers() -> None:
    ring = SlotRing.in_memory(2, 64)
    ring.add(rec(1))
    ring.add(rec(2))
    data = bytearray(ring._buffer)  # the writer zeroes the sequence first: a half-written slot
    data[0:8] = b"\0" * 8
    assert [orjson.loads(r)["n"] for _, r in read_slots(bytes(data), 64)] == [2]


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="capacity"):
        SlotRing.in_memory(0, 64)
    with pytest.raises(ValueError, match="cannot hold"):
        SlotRing(bytearray(10), 64)


def _write_in_child(path: str, first: int, count: int) -> None:
    ring = SlotRing.in_file(Path(path), 8, 128)
    for n in range(first, first + count):
        ring.add(rec(n))
    ring.close()


def test_rings_in_files_written_by_other_processes_are_read_together(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_write_in_child, args=(str(tmp_path / f"decisions_{i}.ring"), i * 100, 10)) for i in range(2)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    records = read_ring_files(sorted(tmp_path.glob("decisions_*.ring")), 128)
    assert sorted(ns(records)) == [*range(2, 10), *range(102, 110)]  # each keeps its last 8


def test_a_missing_file_is_skipped(tmp_path: Path) -> None:
    ring = SlotRing.in_file(tmp_path / "a.ring", 2, 64)
    ring.add(rec(1))
    assert ns(read_ring_files([tmp_path / "gone.ring", tmp_path / "a.ring"], 64)) == [1]
    ring.close()


def test_percentiles_use_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentiles(values) == {"p50": 50.0, "p90": 90.0, "p99": 99.0, "count": 100}
    assert percentiles([7.0]) == {"p50": 7.0, "p90": 7.0, "p99": 7.0, "count": 1}
    assert percentiles([]) == {"p50": None, "p90": None, "p99": None, "count": 0}
    assert percentiles([3.0, 1.0, 2.0])["p50"] == 2.0  # sorted first


def test_an_exact_rank_is_not_pushed_up_by_rounding() -> None:
    assert nearest_rank([float(v) for v in range(1, 101)], 7) == 7.0


def test_a_percentile_outside_0_100_is_refused() -> None:
    with pytest.raises(ValueError, match="percentile"):
        nearest_rank([1.0], 0)
    with pytest.raises(ValueError, match="percentile"):
        nearest_rank([1.0], 101)
