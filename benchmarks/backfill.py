"""Backfill at scale: a long lake with a valid hash chain, the core template on 1 and 2 Ray workers, and planning.

    python -m benchmarks.backfill [--ledgers 2000] [--mix p26|pubnet] [--workers 1,2] [--target-mb 32] [--json]

The lake is built from the real pubnet ledgers of ``shared/stellar-data`` (``p26``: the 20 protocol-26
ledgers, the heaviest of history; ``pubnet``: every era's), re-sequenced from ledger 50,000,000 with
``previousLedgerHash`` and the header hash recomputed (transaction sets untouched), one ledger per object as
the public lake has it. Each run is a fresh process (so its driver's peak RSS is its own):

* ``local``: the pipeline in one process without Ray, the baseline;
* ``ray N``: a private local Ray of N CPUs, N workers, chunks of ``ledgers_per_task: auto``.

The core template's tables (ledgers, transactions, operations, effects, trades, assets) go to Parquet.
Reported per run: ledgers/s, MB/s of XDR and rows/s per core (over the wall time from the first worker up,
times the workers), chunks, the scheduling overhead (the workers' waits between one chunk and their next,
against their time inside chunks) and per chunk, the idle share (workers' time outside chunks, the tail of
the run included), peak RSS of the driver and of a worker; then scaling efficiency against 1 worker and the Ray runs
against the local baseline. Planning: ``cdp-ray run --dry-run`` over 1M and 60M ledger ranges of this lake
(which holds only its own ledgers: the dry run says so), and a ``--resume`` dry run over an output holding
100,000 committed ranges, each in a fresh process, with its wall time and peak RSS.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.decode import load, stellar_data
from cdp_ray.pipeline.memory import peak_rss_mb

CORE_TEMPLATE = ("ledgers", "transactions", "operations", "effects", "trades", "assets")
FIRST = 50_000_000
PUBNET = "Public Global Stellar Network ; September 2015"


def real_ledgers(mix: str) -> list[bytes]:
    """Real pubnet ``LedgerCloseMeta`` values: the protocol-26 ones, or one of every inventoried era."""
    if mix == "p26":
        root = stellar_data() / "wallet-backend"
        return [gzip.decompress((root / f"ledger-{s}.xdr.gz").read_bytes()) for s in range(63092982, 63093002)]
    return [raw for _, passphrase, raw in load("all") if passphrase == PUBNET]


def build_lake(root: Path, count: int, mix: str) -> dict:
    from cdp_ray.lake import LakeSchema
    from cdp_ray.lake.writer import resequence, write_lake

    t0 = time.perf_counter()
    ledgers = real_ledgers(mix)
    write_lake(resequence(ledgers, FIRST, count, close_time=1_750_000_000), str(root), LakeSchema(), network_passphrase=PUBNET)
    size = sum(p.stat().st_size for p in root.rglob("*.xdr.zst"))
    return {"ledgers": count, "distinct_real_ledgers": len(ledgers), "mix": mix, "objects_mb": round(size / 2**20, 1),
            "build_s": round(time.perf_counter() - t0, 1)}


def child(spec: dict) -> dict:
    """One run, in this (fresh) process."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from cdp_ray.pipeline.config import PipelineConfig
    from cdp_ray.pipeline.runner import run_pipeline

    workers = spec["workers"]
    cfg = PipelineConfig(
        name="bench",
        source={"uri": spec["lake"], "start": FIRST, "end": FIRST + spec["ledgers"] - 1, "network": "pubnet"},
        processors=list(CORE_TEMPLATE),
        sinks=[{"type": "parquet", "uri": spec["out"]}],
        options={"ledgers_per_task": "auto", "chunk_target_mb": spec["target_mb"], "workers": workers or 1},
    )
    engine = "local" if not workers else "ray"
    if engine == "ray":
        import ray

        ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False,
                 object_store_memory=256 * 2**20, _temp_dir=spec["ray_tmp"])
    cpu0 = time.process_time()
    s = run_pipeline(cfg, engine=engine)
    if engine == "ray":
        import ray

        ray.shutdown()
    up = s.wall_seconds - s.startup_seconds
    cores = max(1, workers)
    rows = sum(s.rows_by_table.values())
    return {
        "run": f"ray {workers}" if workers else "local", "workers": cores, "ledgers": s.ledgers, "chunks": s.chunks,
        "wall_s": round(s.wall_seconds, 2), "startup_s": round(s.startup_seconds, 2), "busy_s": round(s.busy_seconds, 2),
        "ledgers_per_s_per_core": round(s.ledgers / up / cores, 3),
        "mb_per_s_per_core": round(s.xdr_bytes / 2**20 / up / cores, 3),
        "rows_per_s_per_core": round(rows / up / cores),
        "rows": rows, "bytes_written_mb": round(s.bytes_written / 2**20, 1),
        "scheduling_overhead": round(s.scheduling_overhead(), 5) if workers else None,
        "overhead_per_chunk_s": round(s.gap_seconds / max(1, s.chunks), 4) if workers else None,
        "idle_share": round(s.idle_share(), 4) if workers else None,
        "mean_chunk_s": round(s.busy_seconds / max(1, s.chunks), 3),
        "driver_cpu_s": round(time.process_time() - cpu0, 2),
        "driver_peak_rss_mb": round(peak_rss_mb()),
        "worker_peak_rss_mb": round(s.worker_peak_rss_mb) if workers else None,
    }


def _in_child(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.backfill", "--child", json.dumps(spec)],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if proc.returncode:
        raise SystemExit(f"run {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def dry_run(spec: str, *extra: str) -> dict:
    """``cdp-ray run SPEC --dry-run --json`` in a fresh process: its plan, wall time and peak RSS."""
    cmd = [sys.executable, "-m", "cdp_ray.cli.main", "run", spec, "--dry-run", "--json", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"dry run failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"ledgers": doc["ledgers"], "chunks": doc["chunks"], "chunks_committed": doc["chunks_committed"],
            "chunks_to_run": doc["chunks_to_run"],
            "lake": doc["lake"].get("message") or doc["lake"]["holds"], "planning_s": doc["planning_seconds"],
            "process_wall_s": round(wall, 2), "peak_rss_mb": doc["peak_rss_mb"]}


def committed_output(root: Path, lake: Path, ranges: int, per: int = 64) -> Path:
    """A pipeline ``bench`` (its YAML file, returned) whose Parquet output holds ``ranges`` committed ranges of
    ``per`` ledgers (manifests only), every thousandth missing: a resume has those left to run."""
    import yaml

    from cdp_ray.pipeline.checkpoint import config_hash
    from cdp_ray.pipeline.config import PipelineConfig

    doc = {"name": "bench", "source": {"uri": str(lake), "start": FIRST, "end": FIRST + per * ranges - 1, "network": "pubnet"},
           "processors": ["ledgers"], "sinks": [{"type": "parquet", "uri": str(root)}], "options": {"ledgers_per_task": per}}
    h = config_hash(PipelineConfig.model_validate(doc))
    d = root / "_cdp_ray" / "bench" / "ranges"
    d.mkdir(parents=True)
    for i in range(ranges):
        if i % 1000 != 999:
            s = FIRST + i * per
            (d / f"{s:010d}-{s + per - 1:010d}.{h}.json").write_text("{}")
    spec = root.parent / "bench-resume.yaml"
    spec.write_text(yaml.safe_dump(doc))
    return spec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ledgers", type=int, default=2000, help="ledgers in the lake and in each run (default 2000)")
    ap.add_argument("--mix", choices=["p26", "pubnet"], default="p26", help="which real ledgers to cycle through")
    ap.add_argument("--workers", default="1,2", help="Ray worker counts, comma-separated")
    ap.add_argument("--target-mb", type=float, default=32, help="chunk_target_mb of the runs")
    ap.add_argument("--no-local", action="store_true", help="skip the in-process baseline")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))), flush=True)
        return
    doc: dict = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}}
    with tempfile.TemporaryDirectory(prefix="cdp-bench-") as tmp:
        lake = Path(tmp, "lake")
        doc["lake"] = build_lake(lake, args.ledgers, args.mix)
        counts = ([0] if not args.no_local else []) + [int(w) for w in args.workers.split(",")]
        runs = []
        for n in counts:
            spec = {"lake": str(lake), "out": str(Path(tmp, f"out-{n}")), "ledgers": args.ledgers, "workers": n,
                    "target_mb": args.target_mb, "ray_tmp": tempfile.mkdtemp(prefix="r", dir="/tmp")}
            runs.append(_in_child(spec))
            print(f"  {runs[-1]['run']}: {runs[-1]['ledgers_per_s_per_core']} ledgers/s per core", file=sys.stderr, flush=True)
        doc["runs"] = runs
        ray_runs = {r["workers"]: r for r in runs if r["run"] != "local"}
        if 1 in ray_runs:
            one = ray_runs[1]["ledgers_per_s_per_core"]
            doc["scaling_efficiency"] = {n: round(r["ledgers_per_s_per_core"] / one, 3) for n, r in ray_runs.items()}
        local = next((r for r in runs if r["run"] == "local"), None)
        if local:
            doc["vs_local"] = {r["run"]: round(r["ledgers_per_s_per_core"] / local["ledgers_per_s_per_core"], 3)
                               for r in runs if r is not local}
        out = Path(tmp, "planning")
        resume_spec = committed_output(out, lake, 100_000)
        spec = f"lake://{lake}?start={{a}}&end={{b}} | ledgers | parquet://{Path(tmp, 'planning-new')}"
        doc["planning"] = {
            "1M": dry_run(spec.format(a=FIRST, b=FIRST + 999_999)),
            "60M": dry_run(spec.format(a=2, b=60_000_001)),
            "resume_100k_ranges": dry_run(str(resume_spec), "--resume"),
        }
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    lk = doc["lake"]
    print(f"lake: {lk['ledgers']:,} ledgers re-sequenced from {lk['distinct_real_ledgers']} real {lk['mix']} ledgers, "
          f"{lk['objects_mb']} MB of objects, built in {lk['build_s']} s; core template -> Parquet")
    print(f"{'run':8} {'chunks':>6} {'wall s':>7} {'ledgers/s/core':>15} {'MB/s/core':>10} {'rows/s/core':>12} "
          f"{'overhead':>9} {'per chunk':>10} {'idle':>6} {'driver RSS':>11} {'worker RSS':>11}")
    for r in doc["runs"]:
        ov = f"{100 * r['scheduling_overhead']:.3f}%" if r["scheduling_overhead"] is not None else "-"
        pc = f"{1000 * r['overhead_per_chunk_s']:.1f} ms" if r["overhead_per_chunk_s"] is not None else "-"
        idle = f"{100 * r['idle_share']:.0f}%" if r["idle_share"] is not None else "-"
        wr = f"{r['worker_peak_rss_mb']} MB" if r["worker_peak_rss_mb"] else "-"
        print(f"{r['run']:8} {r['chunks']:>6} {r['wall_s']:>7} {r['ledgers_per_s_per_core']:>15} {r['mb_per_s_per_core']:>10} "
              f"{r['rows_per_s_per_core']:>12,} {ov:>9} {pc:>10} {idle:>6} {r['driver_peak_rss_mb']:>8} MB {wr:>11}")
    if "scaling_efficiency" in doc:
        print("scaling efficiency (per-core rate against 1 worker): "
              + ", ".join(f"{n} workers {v}" for n, v in doc["scaling_efficiency"].items()))
    if "vs_local" in doc:
        print("per-core rate against the in-process baseline: " + ", ".join(f"{k} {v}x" for k, v in doc["vs_local"].items()))
    for name, p in doc["planning"].items():
        print(f"dry run {name}: {p['ledgers']:,} ledgers, {p['chunks']:,} chunks ({p['chunks_to_run']:,} to run), "
              f"planned in {p['planning_s']} s ({p['process_wall_s']} s with start-up), peak RSS {p['peak_rss_mb']} MB; "
              f"lake: {p['lake']}")


if __name__ == "__main__":
    main()
