"""Parquet sink: range files, date partitions, commit manifests, replay without duplicates."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from cdp_ray.errors import SinkError
from cdp_ray.processors.base import Processor, col, get_processor
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
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == [
        "_cdp_ray/p1/ranges/0000000010-0000000013.json",
        "_cdp_ray/p1/ranges/0000000014-0000000015.json",
        "events/0000000010-0000000013.parquet",
        "events/0000000014-0000000015.parquet",
    ]
    table = pads.dataset(str(tmp_path / "events")).to_table().sort_by("n")
    assert table.num_rows == 12 and table["n"].to_pylist() == sorted({r * 10 + i for r in range(10, 16) for i in range(2)})
    manifest = json.loads((tmp_path / "_cdp_ray/p1/ranges/0000000010-0000000013.json").read_text())
    assert manifest["rows"] == {"events": 8} and manifest["config_hash"] == "abc"
    assert manifest["files"] == {"events": ["events/0000000010-0000000013.parquet"]}
    assert [(r.start, r.end, r.rows) for r in sink.committed("p1")] == [(10, 13, {"events": 8}), (14, 15, {"events": 4})]
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
    manifest = json.loads((tmp_path / "_cdp_ray/p/ranges/0000000010-0000000013.json").read_text())
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
