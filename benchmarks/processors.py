"""Processors per core: the core tables on the three engines (sdk, fast, native), and a chunk's peak memory.

    python -m benchmarks.processors [--repeat 2] [--engines sdk,fast,native] [--chunk 64] [--json]

The 20 real protocol-26 pubnet ledgers of ``shared/stellar-data`` (see :mod:`benchmarks.decode`), processed
as a pipeline worker processes a chunk: every ledger decoded, then each processor over all of them. Two
sets of tables: the five core tables (ledgers, transactions, operations, contract_events,
token_transfers) and the eight of the ``core`` template plus token_transfers and contract_events
(ledgers, transactions, operations, effects, trades, assets, token_transfers, contract_events).

Engines: ``sdk`` (stellar-sdk's decoder, Python processors), ``fast`` (the compiled decoder builds every
ledger's values, Python processors: the default before the native engine) and ``native`` (ledgers indexed
in C and decoded on first read; the tables of the native builders read from the raw XDR, the others
from the values, so the first such processor pays for decoding). Each engine runs in a fresh process
set up as a pipeline worker. Reported per engine and set: ledgers per CPU second, CPU milliseconds per
ledger for decoding and for each processor (best of ``--repeat`` passes), the process's peak RSS, the
speed-ups of native against fast and sdk measured in the same run, and whether the engines' tables are
identical. ``--chunk N`` also measures the peak RSS of a worker holding a chunk of N ledgers (the 20
ledgers' XDR copied round robin) through each set, for fast and native, each in its own process.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import time

from benchmarks.decode import load
from cdp_ray.pipeline.memory import peak_rss_mb

SETS = {
    "5 tables": ("ledgers", "transactions", "operations", "contract_events", "token_transfers"),
    "8 tables": ("ledgers", "transactions", "operations", "effects", "trades", "assets", "token_transfers",
                 "contract_events"),
}


def _rss_mb() -> float:
    """The process's resident memory now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return peak_rss_mb()


def _digest(table) -> str:
    h = hashlib.sha256()
    for batch in table.to_batches():
        for column in batch.columns:
            for buf in column.buffers():
                if buf is not None:
                    h.update(buf)
    return f"{table.num_rows}:{h.hexdigest()[:16]}"


def _pass(ledgers: list, engine: str, names: tuple[str, ...]) -> tuple[float, float, dict, dict]:
    """One pass: ``(total CPU s, decode CPU s, {processor: CPU s}, {processor: table digest})``."""
    from cdp_ray.processors import get_processor
    from cdp_ray.xdr import decode_ledger

    gc.collect()
    t0 = time.process_time()
    decoded = [decode_ledger(raw, passphrase, engine=engine) for _, passphrase, raw in ledgers]
    decode = time.process_time() - t0
    spent, digests = {}, {}
    for name in names:
        t1 = time.process_time()
        table = get_processor(name).process(decoded)
        spent[name] = time.process_time() - t1
        digests[name] = _digest(table.combine_chunks())
    total = time.process_time() - t0
    del decoded
    return total, decode, spent, digests


def _engine_child(engine: str, repeat: int) -> dict:
    from cdp_ray.collector import freeze_startup_objects
    from cdp_ray.processors import get_processor

    ledgers = load("p26")
    for names in SETS.values():
        for name in names:
            get_processor(name)
    freeze_startup_objects()  # as every pipeline worker does once started
    out = {"engine": engine, "ledgers": len(ledgers), "mb": round(sum(len(r) for *_, r in ledgers) / 1e6, 2), "sets": {}}
    for label, names in SETS.items():
        best = None
        for _ in range(repeat):
            run = _pass(ledgers, engine, names)
            if best is None or run[0] < best[0]:
                best = run
        total, decode, spent, digests = best
        n = len(ledgers)
        out["sets"][label] = {
            "cpu_s": round(total, 4),
            "ledgers_per_cpu_s": round(n / total, 2),
            "ms_per_ledger": {"decode": round(1000 * decode / n, 2), **{k: round(1000 * v / n, 2) for k, v in spent.items()}},
            "digests": digests,
        }
    out["peak_rss_mb"] = round(_peak_mb())
    return out


def _chunk_child(engine: str, chunk: int, names: tuple[str, ...]) -> dict:
    from cdp_ray.collector import freeze_startup_objects
    from cdp_ray.processors import get_processor
    from cdp_ray.xdr import decode_ledger

    ledgers = load("p26")
    raws = [(p, bytes(bytearray(ledgers[i % len(ledgers)][2]))) for i, (p) in
            ((i, ledgers[i % len(ledgers)][1]) for i in range(chunk))]
    del ledgers
    procs = [get_processor(n) for n in names]
    freeze_startup_objects()
    gc.collect()
    before = _rss_mb()
    decoded = [decode_ledger(raw, p, engine=engine) for p, raw in raws]
    tables = [proc.process(decoded) for proc in procs]
    rows = sum(t.num_rows for t in tables)
    return {"engine": engine, "ledgers": chunk, "rows": rows, "rss_before_mb": round(before),
            "peak_rss_mb": round(_peak_mb())}


def _isolated(fn, *args) -> dict:
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2, help="passes per engine and set; the best is reported")
    ap.add_argument("--engines", default="sdk,fast,native", help="engines to measure, comma-separated")
    ap.add_argument("--chunk", type=int, default=64, help="ledgers of the chunk whose peak RSS is measured (0: none)")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args()

    from cdp_ray.processors import native
    from cdp_ray.xdr import fast

    engines = [e for e in args.engines.split(",") if e == "sdk" or fast.available()]
    load_before = os.getloadavg()
    results = {e: _isolated(_engine_child, e, args.repeat) for e in engines}
    chunks = []
    if args.chunk:
        for label, names in SETS.items():
            for e in [e for e in ("fast", "native") if e in engines]:
                chunks.append({"set": label, **_isolated(_chunk_child, e, args.chunk, names)})
    doc = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]},
        "native_builders": native.available(),
        "engines": results,
        "chunks": chunks,
    }
    doc["identical_tables"] = {
        label: all(r["sets"][label]["digests"] == results[engines[0]]["sets"][label]["digests"] for r in results.values())
        for label in SETS
    }
    speedups = {}
    if "native" in results:
        for base in [e for e in engines if e != "native"]:
            speedups[base] = {label: round(results[base]["sets"][label]["cpu_s"] / results["native"]["sets"][label]["cpu_s"], 2)
                              for label in SETS}
    doc["native_speedup"] = speedups
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    first = results[engines[0]]
    print(f"{first['ledgers']} protocol-26 pubnet ledgers ({first['mb']} MB of XDR), processed as a chunk; CPU time, "
          f"best of {args.repeat}; each engine in a fresh process set up as a pipeline worker; load average "
          f"{doc['machine']['load_average_before_after'][0]} before, {doc['machine']['load_average_before_after'][1]} after")
    for label, names in SETS.items():
        print(f"\n{label}: " + ", ".join(names))
        cols = ["decode", *names]
        print(f"  {'engine':7} {'ledgers/CPU s':>13}  ms/ledger: " + " ".join(f"{c[:11]:>11}" for c in cols))
        for e, r in results.items():
            s = r["sets"][label]
            print(f"  {e:7} {s['ledgers_per_cpu_s']:13.2f}             " +
                  " ".join(f"{s['ms_per_ledger'][c]:11.2f}" for c in cols))
        for base, up in speedups.items():
            print(f"  native vs {base}: {up[label]}x")
        print(f"  identical tables across engines: {doc['identical_tables'][label]}")
    print("\npeak RSS per engine process (both sets): " + ", ".join(f"{e} {r['peak_rss_mb']} MB" for e, r in results.items()))
    for c in chunks:
        print(f"chunk of {c['ledgers']} ledgers, {c['set']}, {c['engine']}: peak RSS {c['peak_rss_mb']} MB "
              f"({c['rss_before_mb']} MB before decoding), {c['rows']:,} rows")


if __name__ == "__main__":
    main()
