"""Parquet sink: range files, date partitions, commit manifests and their protocol, replay without duplicates,
ranges replaced by wider or narrower ones, table ownership and the run lock."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from cdp_ray.errors import OwnershipError, PipelineBusyError, SinkError
from cdp_ray.processors.base import Processor, col, get_processor
from cdp_ray.sinks import parquet as parquet_sink
from cdp_ray.sinks.base import DeadLetter, RunContext, make_sink

SCHEMA = pa.schema(
    [
        col("ledger_sequence", pa.uint32(), "ledger", nullable=False),
        col("n", pa.int64(), "row", nullable=False),
        col("closed_at", pa.timestamp("us", tz="UTC"), "close time", nullable=False),
        col("tags", pa.list_(pa.string()), "tags"),
    ]
)
PROC = Processor("events", SCHEMA, lambda ledgers, cfg: [], "test rows", ("n",))
MIDNIGHT = datetime(2026, 6, 19, 0, 0, tzinfo=timezone.utc)


def _files(root) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _events(root) -> list[tuple[int, int]]:
    """``(ledger, n)`` of every row under ``events/``, in file order."""
    t = pads.dataset(str(root / "events"), partitioning="hive").to_table()
    return list(zip(t["ledger_sequence"].to_pylist(), t["n"].to_pylist()))


def rows(start: int, end: int) -> pa.Table:
    """Two rows per ledger; ledgers after ``start + 1`` close after midnight."""
    out = []
    for seq in range(start, end + 1):
        at = MIDNIGHT + timedelta(seconds=5 * (seq - start - 2))
        out += [{"ledger_sequence": seq, "n": seq * 10 + i, "closed_at": at, "tags": [str(i)]} for i in range(2)]
    return pa.Table.from_pylist(out, schema=SCHEMA)


def test_range_layout_manifest_and_replay(tmp_path):
    sink = make_sink({"type": "parquet", "uri": str(tmp_path)})
    run = RunContext("p1", "abc")
    sink.write_range(10, 13, {"events": (PROC, rows(10, 13))}, run)
    sink.write_range(14, 15, {"events": (PROC, rows(14, 15))}, run)
    sink.write_range(10, 13, {"events": (PROC, rows(10, 13))}, run)  # replay
    assert _files(tmp_path) == [
        "_cdp_ray/p1/ranges/0000000010-0000000013.abc.json",
        "_cdp_ray/p1/ranges/0000000014-0000000015.abc.json",
        "events/0000000010-0000000013.parquet",
        "events/0000000014-0000000015.parquet",
    ]
    table = pads.dataset(str(tmp_path / "events")).to_table().sort_by("n")
    assert table.num_rows == 12 and table["n"].to_pylist() == sorted({r * 10 + i for r in range(10, 16) for i in range(2)})
    manifest = json.loads((tmp_path / "_cdp_ray/p1/ranges/0000000010-0000000013.abc.json").read_text())
    assert manifest["rows"] == {"events": 8} and manifest["config_hash"] == "abc"
    assert manifest["files"] == {"events": ["events/0000000010-0000000013.parquet"]}
    assert [(r.start, r.end, r.config_hash) for r in sink.committed("p1")] == [(10, 13, "abc"), (14, 15, "abc")]
    assert [(r.start, r.end, r.rows) for r in sink.committed_detail("p1")] == [(10, 13, {"events": 8}), (14, 15, {"events": 4})]
    assert sink.pipelines() == ["p1"]


def test_date_partitioning_splits_a_range_at_midnight(tmp_path):
    sink = make_sink({"type": "parquet", "uri": str(tmp_path), "partitioning": "date"})
    sink.prepare([PROC])
    sink.write_range(10, 13, {"events": (PROC, rows(10, 13))}, RunContext("p", "h"))
    before = pq.read_table(tmp_path / "events/date=2026-06-18/0000000010-0000000013.parquet")
    after = pq.read_table(tmp_path / "events/date=2026-06-19/0000000010-0000000013.parquet")
    assert before["ledger_sequence"].to_pylist() == [10, 10, 11, 11]
    assert after["ledger_sequence"].to_pylist() == [12, 12, 13, 13]
    ds = pads.dataset(str(tmp_path / "events"), partitioning="hive")
    assert ds.to_table().num_rows == 8
    manifest = json.loads((tmp_path / "_cdp_ray/p/ranges/0000000010-0000000013.h.json").read_text())
    assert manifest["files"]["events"] == [
        "events/date=2026-06-18/0000000010-0000000013.parquet",
        "events/date=2026-06-19/0000000010-0000000013.parquet",
    ]


def test_date_partitioning_needs_the_column(tmp_path):
    sink = make_sink({"type": "parquet", "uri": str(tmp_path), "partitioning": "date", "date_column": "nope"})
    with pytest.raises(SinkError, match="table 'events' has no column 'nope'"):
        sink.prepare([PROC])


def test_discard_dead_letters_and_forget(tmp_path):
    sink = make_sink({"type": "parquet", "uri": str(tmp_path)})
    run = RunContext("p", "old")
    sink.write_range(10, 13, {"events": (PROC, rows(10, 13))}, run)
    letter = DeadLetter("p", 14, 15, 15, "FFFF--15.xdr.zst", "CorruptLedgerFileError", "bad zstd")
    sink.record_dead_letter(letter)
    got = sink.dead_letters("p")
    assert [(d.start, d.end, d.ledger, d.key, d.error, d.message) for d in got] == [(14, 15, 15, "FFFF--15.xdr.zst", "CorruptLedgerFileError", "bad zstd")]
    # committing the quarantined range drops its dead letter
    sink.write_range(14, 15, {"events": (PROC, rows(14, 15))}, RunContext("p", "old", frozenset({(14, 15)})))
    assert sink.dead_letters("p") == []
    sink.discard("p", [r for r in sink.committed("p") if r.start == 10])
    assert not (tmp_path / "events/0000000010-0000000013.parquet").exists()
    assert [r.start for r in sink.committed("p")] == [14]
    assert sink.forget("p") == 1 and sink.committed("p") == []
    assert (tmp_path / "events/0000000014-0000000015.parquet").exists()


def test_ledgers_processor_declares_its_ledger_column():
    assert get_processor("ledgers").sequence_column == "sequence"
    assert get_processor("transactions").sequence_column == "ledger_sequence"


def test_tmp_files_of_dead_writers_are_swept(tmp_path):
    import os
    import socket
    import subprocess

    proc = subprocess.Popen(["true"])  # a pid that has exited
    proc.wait()
    host = socket.gethostname()
    (tmp_path / "events").mkdir()
    stale = tmp_path / "events" / f"_tmp-{host}-{proc.pid}-abc"
    live = tmp_path / "events" / f"_tmp-{host}-{os.getpid()}-def"
    other_host = tmp_path / "events" / f"_tmp-otherhost-{proc.pid}-ghi"
    for p in (stale, live, other_host):
        p.write_bytes(b"partial")
    make_sink({"type": "parquet", "uri": str(tmp_path)}).prepare([PROC])
    assert not stale.exists() and live.exists() and other_host.exists()


def test_tmp_files_of_killed_writers_left_as_zombies_are_swept(tmp_path):
    """A killed writer that nobody reaps (PID 1 of many containers does not) is dead, not writing."""
    import socket
    import subprocess
    import time
    from pathlib import Path

    proc = subprocess.Popen(["sleep", "60"])
    proc.kill()  # not waited for: a zombie until reaped below
    stat = Path(f"/proc/{proc.pid}/stat")
    if not stat.exists():
        pytest.skip("no procfs")
    while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.01)
    (tmp_path / "events").mkdir()
    stale = tmp_path / "events" / f"_tmp-{socket.gethostname()}-{proc.pid}-abc"
    stale.write_bytes(b"partial")
    try:
        make_sink({"type": "parquet", "uri": str(tmp_path)}).prepare([PROC])
        assert not stale.exists()
    finally:
        proc.wait()


def test_extending_a_partial_last_range_replaces_it(tmp_path):
    """Issue 15.3: a run ending mid-chunk, then extended: the wider range's commit supersedes the partial one."""
    sink = make_sink({"type": "parquet", "uri": str(tmp_path)})
    run = RunContext("p", "h")
    sink.write_range(8, 10, {"events": (PROC, rows(8, 10))}, run)
    sink.write_range(8, 11, {"events": (PROC, rows(8, 11))}, run)
    assert _files(tmp_path) == ["_cdp_ray/p/ranges/0000000008-0000000011.h.json", "events/0000000008-0000000011.parquet"]
    assert sorted(_events(tmp_path)) == [(q, q * 10 + i) for q in range(8, 12) for i in range(2)]
    assert [(r.start, r.end) for r in sink.committed("p")] == [(8, 11)]


def test_rerun_of_a_sub_range_keeps_the_rest_of_its_range(tmp_path):
    """A narrower commit carries the rows of the committed range it overlaps outside its own ledgers."""
    sink = make_sink({"type": "parquet", "uri": str(tmp_path), "partitioning": "date"})
    run = RunContext("p", "h")
    sink.write_range(10, 15, {"events": (PROC, rows(10, 15))}, run)
    redone = rows(10, 15).slice(4, 4).set_column(1, "n", pa.array([-1, -2, -3, -4], pa.int64()))  # ledgers 12, 13
    sink.write_range(12, 13, {"events": (PROC, redone)}, run)
    assert [(r.start, r.end) for r in sink.committed("p")] == [(10, 15)]
    old = [(q, q * 10 + i) for q in (10, 11, 14, 15) for i in range(2)]
    assert sorted(_events(tmp_path)) == sorted(old + [(12, -1), (12, -2), (13, -3), (13, -4)])
    day2 = pq.read_table(tmp_path / "events/date=2026-06-19/0000000010-0000000015.parquet")
    assert day2["ledger_sequence"].to_pylist() == [12, 12, 13, 13, 14, 14, 15, 15], "rows stay in ledger order"
    doc = json.loads((tmp_path / "_cdp_ray/p/ranges/0000000010-0000000015.h.json").read_text())
    assert doc["rows"] == {"events": 12} and doc["chunk"] == [12, 13]


def test_uncommitted_rows_never_reach_reader_paths(tmp_path):
    """Issue 15.9: a writer killed before its manifest leaves nothing where readers look; the next run drops it."""
    sink = make_sink({"type": "parquet", "uri": str(tmp_path)})
    writer = sink.open_range(10, 13, [PROC], RunContext("p", "h"))
    writer.write({"events": (PROC, rows(10, 13))})
    writer._flush("events/0000000010-0000000013.parquet", SCHEMA)  # the worker dies here
    assert not list((tmp_path).glob("events/*.parquet")) and not list(tmp_path.rglob("_tmp-*"))
    assert list((tmp_path / "_cdp_ray/p/staging").iterdir()), "the half-done commit sits in staging"
    fresh = make_sink({"type": "parquet", "uri": str(tmp_path)})
    fresh.prepare([PROC], "p")
    assert not list((tmp_path / "_cdp_ray/p/staging").iterdir()) and fresh.committed("p") == []
    assert fresh.committed_files("p", "events") == []


def test_commit_killed_after_its_manifest_is_finished_by_the_next_run(tmp_path, monkeypatch):
    sink = make_sink({"type": "parquet", "uri": str(tmp_path)})
    run = RunContext("p", "h")
    sink.write_range(10, 11, {"events": (PROC, rows(10, 11))}, run)

    def die(plan):
        raise KeyboardInterrupt  # killed between the manifest and moving the files

    monkeypatch.setattr(sink, "_publish", die)
    with pytest.raises(KeyboardInterrupt):
        sink.write_range(10, 13, {"events": (PROC, rows(10, 13))}, run)
    assert (tmp_path / "_cdp_ray/p/ranges/0000000010-0000000013.h.json").exists()
    assert not (tmp_path / "events/0000000010-0000000013.parquet").exists()
    fresh = make_sink({"type": "parquet", "uri": str(tmp_path)})
    fresh.prepare([PROC], "p")
    assert _files(tmp_path / "events") == ["0000000010-0000000013.parquet"]
    assert sorted(_events(tmp_path)) == [(q, q * 10 + i) for q in range(10, 14) for i in range(2)]
    assert [(r.start, r.end) for r in fresh.committed("p")] == [(10, 13)]
    assert fresh.committed_files("p", "events") == [str(tmp_path / "events/0000000010-0000000013.parquet")]


def test_committed_files_are_those_of_committed_ranges(tmp_path):
    sink = make_sink({"type": "parquet", "uri": str(tmp_path)})
    sink.write_range(10, 13, {"events": (PROC, rows(10, 13))}, RunContext("p", "h"))
    pq.write_table(rows(14, 15), tmp_path / "events/0000000014-0000000015.parquet")  # not committed by p
    assert sink.committed_files("p", "events") == [str(tmp_path / "events/0000000010-0000000013.parquet")]


def test_a_table_belongs_to_one_pipeline(tmp_path):
    """Issue 15.2: two pipelines writing one table would replace each other's rows by ledger range."""
    uri = {"type": "parquet", "uri": str(tmp_path)}
    make_sink(uri).prepare([PROC], "first")
    with pytest.raises(OwnershipError) as err:
        make_sink(uri).prepare([PROC], "second")
    assert "table 'events'" in err.value.message and "belongs to pipeline 'first'" in err.value.message
    assert "another location" in err.value.hint
    make_sink(uri).prepare([PROC], "first")  # its owner runs again
    assert make_sink(uri).release("first") == ["events"]
    make_sink(uri).prepare([PROC], "second")


def test_run_lock_is_exclusive_and_a_dead_holders_lease_is_taken_over(tmp_path):
    import socket
    import subprocess

    sink = make_sink({"type": "parquet", "uri": str(tmp_path)})
    lock = sink.lock("p")
    with pytest.raises(PipelineBusyError, match="pipeline 'p' is already running"):
        sink.lock("p")
    lock.renew()
    lock.release()
    sink.lock("p").release()
    gone = subprocess.Popen(["true"])
    gone.wait()
    lease = tmp_path / "_cdp_ray/p/lock.json"
    lease.write_text(json.dumps({"run": "killed", "host": socket.gethostname(), "pid": gone.pid,
                                 "expires_at": "2999-01-01T00:00:00+00:00"}))
    taken = sink.lock("p")
    assert json.loads(lease.read_text())["run"] == taken.id
    lease.write_text(json.dumps({"run": "elsewhere", "host": "other-host", "pid": 1,
                                 "expires_at": "2000-01-01T00:00:00+00:00"}))
    sink.lock("p").release()  # an expired lease
    assert parquet_sink.LOCK_TTL_S >= 30
