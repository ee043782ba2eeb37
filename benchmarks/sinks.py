"""Sink throughput: rows/s per core and MB/s into Parquet and PostgreSQL, with baselines in the same run.

    python -m benchmarks.sinks [--ranges 8] [--dsn postgresql://postgres@127.0.0.1:5432/test] [--json]

Input: the ``ledgers``, ``token_transfers`` and ``transactions`` tables of the bundled sample lake
(10 real pubnet protocol-26 ledgers, ~2,650 transactions with their XDR), written as ``--ranges``
ledger ranges (ids and sequences shifted per range so keys stay unique). Every figure is for one
client process on one core; ``client cpu`` is that process's CPU time, so ``rows/cpu-s`` is rows/s
per core of the writer (the PostgreSQL server works on other cores).

Baselines, same rows, same process:

* Parquet: ``pyarrow.parquet.write_table`` to a local file (no manifest, no rename).
* PostgreSQL, for narrow tables (ledgers and token_transfers) and the wide one (transactions, base64
  XDR columns) separately: the sink (delete + COPY + checkpoint, one transaction per range) with its
  binary COPY written from the Arrow buffers and with its CSV path; ADBC's PostgreSQL driver
  (``adbc_ingest``, binary COPY, one transaction per range on its own connection, no delete or
  checkpoint: it cannot share the sink's transaction); psycopg's ``COPY ... (FORMAT BINARY)`` fed by
  ``write_row`` (rows through Python); and ``executemany`` INSERT. All load with lz4 TOAST
  compression, as the sink does by default.

The transactions rows average ~6 KB (base64 XDR), so a local server's ingest (TOAST compression,
WAL) bounds their wall-clock rows/s; the client's CPU per row is what the load path changes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cdp_ray.pipeline.config import PipelineConfig
from cdp_ray.pipeline.runner import process_local
from cdp_ray.processors.base import get_processor
from cdp_ray.sample import sample_pipeline_path
from cdp_ray.sinks.base import RunContext, make_sink
from cdp_ray.pipeline.memory import peak_rss_mb

SPAN = 1_000  # ledger sequence shift between benchmark ranges


def load_tables() -> dict[str, pa.Table]:
    lake = str(sample_pipeline_path().parent / "lake")
    cfg = PipelineConfig.model_validate(
        {"source": {"uri": lake, "start": 63092982, "end": 63092991},
         "processors": ["ledgers", "token_transfers", "transactions"]}
    )
    return process_local(cfg)


def shifted(tables: dict[str, pa.Table], k: int) -> dict[str, pa.Table]:
    """Range ``k``'s copy: ledger sequences + k*SPAN, ids + k*SPAN << 32 (unique keys per range)."""
    out = {}
    for name, t in tables.items():
        proc = get_processor(name)
        seq = proc.sequence_column
        t = t.set_column(t.schema.get_field_index(seq), seq, pc.add(t[seq], pa.scalar(k * SPAN, t.schema.field(seq).type)))
        if "id" in t.column_names:
            t = t.set_column(t.schema.get_field_index("id"), "id", pc.add(t["id"], pa.scalar((k * SPAN) << 32, pa.int64())))
        out[name] = t
    return out


def bounds(k: int) -> tuple[int, int]:
    return 63092982 + k * SPAN, 63092991 + k * SPAN


class Timer:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def figures(name: str, rows: int, in_bytes: int, t: Timer, out_bytes: int | None = None) -> dict:
    return {
        "case": name,
        "rows": rows,
        "wall_s": round(t.wall, 3),
        "client_cpu_s": round(t.cpu, 3),
        "rows_per_s": round(rows / t.wall),
        "rows_per_cpu_s": round(rows / max(t.cpu, 1e-9)),
        "arrow_MB_per_s": round(in_bytes / t.wall / 1e6, 1),
        "out_MB": None if out_bytes is None else round(out_bytes / 1e6, 1),
    }


def bench_parquet(batches: list[dict[str, pa.Table]], workdir: Path) -> list[dict]:
    rows = sum(t.num_rows for b in batches for t in b.values())
    nbytes = sum(t.nbytes for b in batches for t in b.values())
    sink = make_sink({"type": "parquet", "uri": str(workdir / "sink")})
    procs = {n: get_processor(n) for n in batches[0]}
    with Timer() as t:
        written = 0
        for k, b in enumerate(batches):
            s, e = bounds(k)
            written += sum(sink.write_range(s, e, {n: (procs[n], tbl) for n, tbl in b.items()}, RunContext("bench", "h")).values())
    sink_fig = figures("parquet sink (zstd, manifest)", rows, nbytes, t, written)
    base = workdir / "base"
    base.mkdir()
    with Timer() as t:
        for k, b in enumerate(batches):
            for n, tbl in b.items():
                pq.write_table(tbl, base / f"{n}-{k}.parquet", compression="zstd")
    out = sum(p.stat().st_size for p in base.iterdir())
    return [sink_fig, figures("baseline pyarrow write_table (zstd)", rows, nbytes, t, out)]


GROUPS = {"narrow": ("ledgers", "token_transfers"), "wide": ("transactions",)}


def _sink_load(batches, procs, dsn: str, schema: str) -> int:
    sink = make_sink({"type": "postgres", "dsn": dsn, "schema": schema})
    sink.prepare(list(procs.values()))
    try:
        sent = 0
        for k, b in enumerate(batches):
            s, e = bounds(k)
            sent += sum(sink.write_range(s, e, {n: (procs[n], b[n]) for n in procs}, RunContext("bench", "h")).values())
        return sent
    finally:
        sink.close()


def bench_postgres(batches: list[dict[str, pa.Table]], dsn: str, insert_ranges: int) -> list[dict]:
    import psycopg

    from cdp_ray.sinks import postgres

    try:
        import adbc_driver_postgresql.dbapi as adbc
    except ImportError:  # not installed: its case is left out
        adbc = None
    schema = f"cdp_bench_{uuid.uuid4().hex[:8]}"
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute("SET default_toast_compression = 'lz4'")  # as the sink does: the baselines differ only in how rows travel
    out = []
    try:
        for group, names in GROUPS.items():
            procs = {n: get_processor(n) for n in names}
            rows = sum(b[n].num_rows for b in batches for n in names)
            nbytes = sum(b[n].nbytes for b in batches for n in names)
            with Timer() as t:
                _sink_load(batches, procs, dsn, f"{schema}_{group}_bin")
            out.append(figures(f"{group}: postgres sink, binary COPY from Arrow buffers", rows, nbytes, t))
            binary = postgres._pgcopy
            postgres._pgcopy = None
            try:
                with Timer() as t:
                    _sink_load(batches, procs, dsn, f"{schema}_{group}_csv")
            finally:
                postgres._pgcopy = binary
            out.append(figures(f"{group}: postgres sink, CSV COPY via Arrow (before)", rows, nbytes, t))
            target = f"{schema}_{group}_base"
            make_sink({"type": "postgres", "dsn": dsn, "schema": target}).prepare(list(procs.values()))
            if adbc is not None:
                with adbc.connect(dsn) as aconn:
                    with aconn.cursor() as cur:
                        cur.execute("SET default_toast_compression = 'lz4'")
                    aconn.commit()
                    with Timer() as t:
                        for b in batches:
                            with aconn.cursor() as cur:
                                for n in names:
                                    cur.adbc_ingest(n, b[n], mode="append", db_schema_name=target)
                            aconn.commit()
                out.append(figures(f"{group}: ADBC adbc_ingest (own txn, no delete/checkpoint)", rows, nbytes, t))
                for n in names:
                    conn.execute(f'TRUNCATE "{target}"."{n}"')
            types = {n: _pg_types(conn, target, n, proc.schema.names) for n, proc in procs.items()}
            with Timer() as t:  # Arrow -> Python rows is part of this path, so it is timed
                for b in batches:
                    with conn.transaction(), conn.cursor() as cur:
                        for n, proc in procs.items():
                            cols = ", ".join(f'"{c}"' for c in proc.schema.names)
                            with cur.copy(f'COPY "{target}"."{n}" ({cols}) FROM STDIN (FORMAT BINARY)') as cp:
                                cp.set_types(types[n])
                                for r in b[n].to_pylist():
                                    cp.write_row([_py(v) for v in r.values()])
            out.append(figures(f"{group}: baseline psycopg COPY binary, write_row", rows, nbytes, t))
            for n in names:
                conn.execute(f'TRUNCATE "{target}"."{n}"')
            sub = batches[:insert_ranges]
            with Timer() as t:
                for b in sub:
                    with conn.transaction(), conn.cursor() as cur:
                        for n, proc in procs.items():
                            cols = ", ".join(f'"{c}"' for c in proc.schema.names)
                            marks = ", ".join(["%s"] * len(proc.schema.names))
                            cur.executemany(f'INSERT INTO "{target}"."{n}" ({cols}) VALUES ({marks})',
                                            [[_py(v) for v in r.values()] for r in b[n].to_pylist()])
            out.append(figures(f"{group}: baseline executemany INSERT ({len(sub)} ranges)",
                               sum(b[n].num_rows for b in sub for n in names),
                               sum(b[n].nbytes for b in sub for n in names), t))
        return out
    finally:
        for (name,) in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (schema + "%",)).fetchall():
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        conn.close()


def _pg_types(conn, schema: str, table: str, names: list[str]) -> list[str]:
    rows = dict(conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0",
        (f'"{schema}"."{table}"',),
    ).fetchall())
    return [rows[n].split("(")[0] if rows[n].startswith("numeric") else rows[n] for n in names]


def _py(v):
    """Python value psycopg adapts to the column's type (uint64 -> int is fine for numeric)."""
    if isinstance(v, str) and "\x00" in v:
        return v.replace("\x00", "\ufffd")
    if isinstance(v, list):
        return [x.replace("\x00", "\ufffd") if isinstance(x, str) else x for x in v]
    return v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranges", type=int, default=8, help="ledger ranges written (10 ledgers each)")
    ap.add_argument("--insert-ranges", type=int, default=2, help="ranges for the slow INSERT baseline")
    ap.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()

    t0 = time.perf_counter()
    tables = load_tables()
    decode_s = time.perf_counter() - t0
    batches = [shifted(tables, k) for k in range(args.ranges)]
    workdir = Path(tempfile.mkdtemp(prefix="cdp-bench-sinks-"))
    pool = pa.default_memory_pool()
    try:
        results = bench_parquet(batches, workdir)
        if not args.no_postgres:
            results += bench_postgres(batches, args.dsn, args.insert_ranges)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ratios = {}
    by = {r["case"]: r for r in results}
    pairs = [("parquet sink / pyarrow write_table", results[0], results[1])]
    if not args.no_postgres:
        for group in GROUPS:
            mine = by[f"{group}: postgres sink, binary COPY from Arrow buffers"]
            for case in by:
                if case.startswith(f"{group}:") and case != mine["case"]:
                    pairs.append((f"{group} sink binary / {case.split(': ', 1)[1]}", mine, by[case]))
    for label, a, b in pairs:
        ratios[f"{label}, rows/s"] = round(a["rows_per_s"] / b["rows_per_s"], 2)
        ratios[f"{label}, rows/client-cpu-s"] = round(a["rows_per_cpu_s"] / b["rows_per_cpu_s"], 2)
    doc = {
        "input": {name: t.num_rows for name, t in tables.items()},
        "ranges": args.ranges,
        "decode_and_process_s": round(decode_s, 2),
        "results": list(by.values()),
        "ratios": ratios,
        "peak_rss_MB": peak_rss_mb(),
        "peak_arrow_pool_MB": round(pool.max_memory() / 1e6, 1),
    }
    if args.json:
        print(json.dumps(doc, indent=1))
        return
    print(f"input per range: {doc['input']} rows; {args.ranges} ranges; decode+process {doc['decode_and_process_s']} s (not timed below)")
    print(f"{'case':70} {'rows':>8} {'rows/s':>9} {'rows/cpu-s':>11} {'arrow MB/s':>10} {'out MB':>7}")
    for r in doc["results"]:
        out = "" if r["out_MB"] is None else r["out_MB"]
        print(f"{r['case']:70} {r['rows']:>8} {r['rows_per_s']:>9} {r['rows_per_cpu_s']:>11} {r['arrow_MB_per_s']:>10} {out:>7}")
    for k, v in ratios.items():
        print(f"ratio {k}: {v}x")
    print(f"peak RSS {doc['peak_rss_MB']} MB; peak Arrow pool {doc['peak_arrow_pool_MB']} MB")


if __name__ == "__main__":
    main()
