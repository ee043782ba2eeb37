"""Decode speed: stellar-sdk vs the fast engine, per core and through a Ray pipeline.

    python -m benchmarks.decode [--set p26|all] [--repeat 2] [--workers 1,2] [--no-ray] [--no-freeze] [--json]

Per core (CPU seconds, so other load on the machine counts less; each engine in a fresh process of
its own, so neither inherits the other's heap, set up as a pipeline worker is unless ``--no-freeze``):
for each engine, ``decode_ledger`` alone, then decode plus the core processors (ledgers,
transactions, operations, contract_events, token_transfers) to Arrow tables. Reports MB of
LedgerCloseMeta XDR, ledgers and table rows per CPU second, the process's peak RSS, the speed-up,
and checks that both engines produced equal tables. Two stellar-sdk baselines: ``sdk`` is its decoder
as cdp-ray's sdk engine runs it, with the cyclic collector paused while it decodes (its strongest form);
``sdk-plain`` is ``LedgerCloseMeta.from_xdr_bytes`` with the collector left on, as a plain caller (a
hand-written Ray Data job) runs it. Speed-ups are given against both.

Ray: a temporary SEP-54 lake of the contiguous protocol-26 pubnet ledgers, run end to end (read,
decode, core processors, Parquet) at each worker count and engine; ledgers/s over the wall time
(actor start-up included) and over the workers' busy time, and the peak RSS of the Ray workers.

The ledgers are the real ones of ``shared/stellar-data`` beside the project, or
``$CDP_RAY_STELLAR_DATA``: ``p26`` = the 20 protocol-26 pubnet ledgers (1 MB each), ``all`` = every
inventoried ledger of real network data (``synthetic/`` left out).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

from cdp_ray.pipeline.memory import peak_rss_mb

CORE = ("ledgers", "transactions", "operations", "contract_events", "token_transfers")
NETWORKS = {
    "pubnet": "Public Global Stellar Network ; September 2015",
    "testnet": "Test SDF Network ; September 2015",
    "loadtest": "load test network",
    None: "Public Global Stellar Network ; September 2015",
}


def stellar_data() -> Path:
    here = Path(__file__).resolve().parents[1]
    for cand in (os.environ.get("CDP_RAY_STELLAR_DATA"), here.parent / "shared" / "stellar-data"):
        if cand and Path(cand, "inventory.jsonl").exists():
            return Path(cand)
    raise SystemExit("shared/stellar-data not found beside the project; set CDP_RAY_STELLAR_DATA")


def load(which: str) -> list[tuple[int, str, bytes]]:
    """``(sequence, passphrase, LedgerCloseMeta XDR)`` in sequence order."""
    from cdp_ray.lake.formats import peek_header, split_ledgers

    root = stellar_data()
    entries = [json.loads(line) for line in (root / "inventory.jsonl").open()]
    entries = [e for e in entries if not e["file"].startswith("synthetic/")]  # real network data only
    if which == "p26":
        entries = [e for e in entries if e["protocol"] == 26 and e["network"] == "pubnet"]
    net = {e["seq"]: NETWORKS[e["network"]] for e in entries}
    out = []
    for name in sorted({e["file"] for e in entries}):
        for raw in split_ledgers((root / name).read_bytes(), name):
            seq = peek_header(raw).sequence
            if seq in net:
                out.append((seq, net[seq], raw))
    return sorted(out, key=lambda x: x[0])


def clear_processor_caches() -> None:
    """Empty the processors' memo caches (strkeys, enum names, SCVal JSON) so each pass starts cold."""
    import sys

    for name, module in list(sys.modules.items()):
        if name.startswith("cdp_ray.processors") and module is not None:
            for obj in vars(module).values():
                if callable(getattr(obj, "cache_clear", None)):
                    obj.cache_clear()


def per_core(ledgers: list[tuple[int, str, bytes]], engine: str, repeat: int) -> dict:
    """Best of ``repeat`` CPU-time passes: decode only, and decode + core processors."""
    from cdp_ray.processors import get_processor
    from cdp_ray.xdr import decode_ledger

    procs = [get_processor(n) for n in CORE]
    nbytes = sum(len(raw) for _, _, raw in ledgers)
    best_decode = best_total = float("inf")
    per_table = {n: 0.0 for n in CORE}
    tables: dict[str, list] = {}
    for _ in range(repeat):
        gc.collect()
        t0 = time.process_time()
        for _, pp, raw in ledgers:
            decode_ledger(raw, pp, engine=engine)
        best_decode = min(best_decode, time.process_time() - t0)
        clear_processor_caches()
        gc.collect()
        t0 = time.process_time()
        spent = {n: 0.0 for n in CORE}
        tables = {n: [] for n in CORE}
        for _, pp, raw in ledgers:
            ledger = decode_ledger(raw, pp, engine=engine)
            for p in procs:
                t1 = time.process_time()
                tables[p.name].append(p.process([ledger]))
                spent[p.name] += time.process_time() - t1
            del ledger
        total = time.process_time() - t0
        if total < best_total:
            best_total, per_table = total, spent
    mb = nbytes / 1e6
    rows = sum(t.num_rows for parts in tables.values() for t in parts)
    return {
        "engine": engine,
        "ledgers": len(ledgers),
        "mb": round(mb, 2),
        "decode_cpu_s": round(best_decode, 3),
        "decode_mb_per_s": round(mb / best_decode, 2),
        "decode_ledgers_per_s": round(len(ledgers) / best_decode, 2),
        "core_cpu_s": round(best_total, 3),
        "core_mb_per_s": round(mb / best_total, 2),
        "core_ledgers_per_s": round(len(ledgers) / best_total, 2),
        "core_rows": rows,
        "core_rows_per_s": round(rows / best_total),
        "processor_cpu_s": {n: round(v, 3) for n, v in per_table.items()},
        "_tables": tables,
    }


def _per_core_child(which: str, engine: str, repeat: int, freeze: bool) -> dict:
    import contextlib

    from cdp_ray.collector import freeze_startup_objects

    ledgers = load(which)
    if freeze:
        freeze_startup_objects()  # as every pipeline worker does once started (ChunkWorker)
    if engine == "sdk-plain":  # stellar-sdk's decoder with the collector left on while it decodes
        import cdp_ray.xdr.ledger

        cdp_ray.xdr.ledger.gc_paused = contextlib.nullcontext
    result = per_core(ledgers, "sdk" if engine == "sdk-plain" else engine, repeat)
    result["engine"] = engine
    result["peak_rss_mb"] = round(peak_rss_mb())
    return result


def per_core_isolated(which: str, engine: str, repeat: int, freeze: bool = True) -> dict:
    """:func:`per_core` in a fresh process (its tables come back pickled), with that process's peak RSS.

    ``freeze``: start as a pipeline worker does, with the start-up objects frozen out of the cyclic
    collector's reach; without it, stellar-sdk's decoding pays for collector passes over every module.
    """
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(_per_core_child, which, engine, repeat, freeze).result()


class PeakRss:
    """Samples the RSS of Ray worker processes (``ray::`` command lines) in a thread."""

    def __init__(self, every: float = 0.1):
        self.every, self.peak_total, self.peak_one = every, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = one = 0
            for p in psutil.process_iter(["cmdline", "memory_info"]):
                cmd = p.info.get("cmdline") or []
                if cmd and cmd[0].startswith("ray::") and p.info.get("memory_info"):
                    rss = p.info["memory_info"].rss
                    total, one = total + rss, max(one, rss)
            self.peak_total, self.peak_one = max(self.peak_total, total), max(self.peak_one, one)
            self._stop.wait(self.every)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def ray_pipeline(ledgers: list[tuple[int, str, bytes]], workers: list[int], engines: list[str]) -> list[dict]:
    """Run the core processors end to end on a temporary lake at each worker count and engine."""
    import ray

    from cdp_ray.lake.schema import LakeSchema
    from cdp_ray.lake.writer import write_lake
    from cdp_ray.pipeline.config import PipelineConfig
    from cdp_ray.pipeline.runner import run_pipeline

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    logging.getLogger("ray").setLevel(logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = False
    seqs = [s for s, _, _ in ledgers]
    run = [x for x in ledgers if x[0] - seqs[0] == seqs.index(x[0])]  # the contiguous run from the first
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        lake = Path(tmp, "lake")
        write_lake([raw for _, _, raw in run], str(lake), LakeSchema(), network_passphrase=run[0][1])
        for engine in engines:
            os.environ["CDP_RAY_XDR_ENGINE"] = engine
            ray.init(
                num_cpus=max(workers),
                include_dashboard=False,
                log_to_driver=False,
                runtime_env={"env_vars": {"CDP_RAY_XDR_ENGINE": engine}},
            )
            try:
                for n in workers:
                    out = Path(tmp, f"out-{engine}-{n}")
                    cfg = PipelineConfig(
                        name=f"bench-{engine}-{n}",
                        source={"uri": str(lake), "start": run[0][0], "end": run[-1][0], "network": "pubnet"},
                        processors=list(CORE),
                        sinks=[{"type": "parquet", "uri": str(out)}],
                        options={"ledgers_per_task": 2, "workers": n},
                    )
                    busy: dict[int, float] = {}
                    with PeakRss() as mem:
                        summary = run_pipeline(
                            cfg,
                            on_chunk=lambda r: busy.__setitem__(
                                r["worker_pid"], busy.get(r["worker_pid"], 0.0) + r["seconds"]
                            ),
                        )
                    results.append(
                        {
                            "engine": engine,
                            "workers": n,
                            "ledgers": summary.ledgers,
                            "wall_s": round(summary.wall_seconds, 2),
                            "ledgers_per_s_wall": round(summary.ledgers / summary.wall_seconds, 2),
                            "ledgers_per_s_busy": round(summary.ledgers / max(busy.values()), 2),
                            "worker_peak_rss_mb": round(mem.peak_one / 2**20),
                            "ray_workers_peak_rss_total_mb": round(mem.peak_total / 2**20),
                        }
                    )
            finally:
                ray.shutdown()
                os.environ.pop("CDP_RAY_XDR_ENGINE", None)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=["p26", "all"], default="p26", help="which real ledgers (default: p26)")
    ap.add_argument("--repeat", type=int, default=2, help="per-core passes; the best is reported")
    ap.add_argument("--workers", default="1,2", help="Ray worker counts, comma-separated")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray pipeline runs")
    ap.add_argument("--no-freeze", action="store_true",
                    help="per-core processes as plain interpreters, not set up as pipeline workers (gc.freeze)")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args()

    from cdp_ray.xdr import fast

    engines = ["sdk", "fast"] if fast.available() else ["sdk"]
    cores = {e: per_core_isolated(args.set, e, args.repeat, not args.no_freeze) for e in ["sdk-plain", *engines]}
    identical = None
    if "fast" in cores:
        import pyarrow as pa

        identical = all(
            pa.concat_tables(cores["sdk"]["_tables"][n]).equals(pa.concat_tables(cores["fast"]["_tables"][n]))
            for n in CORE
        )
    for c in cores.values():
        del c["_tables"]
    doc = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "set": args.set,
        "worker_setup": not args.no_freeze,
        "per_core": cores,
        "identical_tables": identical,
    }
    if "fast" in cores:
        doc["speedup"] = {
            base: {
                "decode": round(cores[base]["decode_cpu_s"] / cores["fast"]["decode_cpu_s"], 1),
                "decode_plus_core_tables": round(cores[base]["core_cpu_s"] / cores["fast"]["core_cpu_s"], 1),
            }
            for base in ("sdk", "sdk-plain")
        }
    if not args.no_ray:
        doc["ray"] = ray_pipeline(load("p26"),
                                  [int(w) for w in args.workers.split(",")], engines)
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    sdk = cores["sdk"]
    print(f"{sdk['ledgers']} ledgers ({args.set}), {sdk['mb']} MB of XDR, {sdk['core_rows']:,} core-table rows; "
          f"per CPU second, best of {args.repeat}; "
          + ("as pipeline workers (start-up objects frozen)" if not args.no_freeze else "plain processes"))
    print(f"{'engine':9} {'decode MB/s':>12} {'ledgers/s':>10} {'+core MB/s':>11} {'ledgers/s':>10} {'rows/s':>9} "
          f"{'peak RSS':>9}")
    for c in cores.values():
        print(f"{c['engine']:9} {c['decode_mb_per_s']:12.2f} {c['decode_ledgers_per_s']:10.2f} "
              f"{c['core_mb_per_s']:11.2f} {c['core_ledgers_per_s']:10.2f} {c['core_rows_per_s']:9,} "
              f"{c['peak_rss_mb']:6} MB")
        print("          processors (CPU s): " + ", ".join(f"{n} {v}" for n, v in c["processor_cpu_s"].items()))
    for base, up in doc.get("speedup", {}).items():
        print(f"fast vs {base}: decode {up['decode']}x, decode + core tables {up['decode_plus_core_tables']}x")
    if identical is not None:
        print(f"identical tables (sdk, fast): {identical}")
    for r in doc.get("ray", []):
        print(f"ray {r['engine']:4} workers={r['workers']}: {r['ledgers']} ledgers in {r['wall_s']} s = "
              f"{r['ledgers_per_s_wall']} ledgers/s wall, {r['ledgers_per_s_busy']} busy; peak RSS per worker "
              f"{r['worker_peak_rss_mb']} MB, all Ray worker processes {r['ray_workers_peak_rss_total_mb']} MB")


if __name__ == "__main__":
    main()
