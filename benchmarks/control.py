"""Latency of the control plane's hot endpoints on a local uvicorn server.

    python -m benchmarks.control [--requests 500] [--json]

Measures ``GET /tools`` and ``POST /plans`` (the bundled sample pipeline with the default
policies, so each plan runs the source check, the policy evaluation and three SQLite writes)
over HTTP keep-alive from one client, after a warm-up. Target: p99 of plan creation < 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from cdp_ray.control import ControlSettings
from cdp_ray.control.server import BackgroundServer
from cdp_ray.pipeline.config import load_pipeline
from cdp_ray.sample import sample_pipeline_path


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def measure(client: httpx.Client, method: str, path: str, n: int, body: dict | None = None) -> dict[str, float]:
    for _ in range(min(20, n)):
        client.request(method, path, json=body).raise_for_status()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.request(method, path, json=body).raise_for_status()
        samples.append((time.perf_counter() - t0) * 1000)
    return {"n": n, "p50_ms": round(percentile(samples, 0.50), 2), "p99_ms": round(percentile(samples, 0.99), 2),
            "mean_ms": round(statistics.fmean(samples), 2), "max_ms": round(max(samples), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=500, help="timed requests per endpoint")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("CDP_RAY_OUT", str(Path(tmp) / "out"))
        desired = load_pipeline(sample_pipeline_path()).model_dump(mode="json")
        settings = ControlSettings(database=str(Path(tmp) / "bench.sqlite3"))
        with BackgroundServer(settings) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
            results = {
                "GET /tools": measure(client, "GET", "/tools", args.requests),
                "POST /plans": measure(client, "POST", "/plans", args.requests, {"desired": desired}),
            }
            tools = len(client.get("/tools").json())
    doc = {"benchmark": "control-plane latency", "server": "uvicorn, 127.0.0.1, one client, keep-alive",
           "tools": tools, "cpus": os.cpu_count(), "python": platform.python_version(), "results": results,
           "plan_p99_target_ms": 100, "plan_p99_ok": results["POST /plans"]["p99_ms"] < 100}
    if args.json:
        print(json.dumps(doc))
        return
    print(f"control plane on {doc['server']}; {tools} tool cards; {doc['cpus']} CPUs")
    for name, r in results.items():
        print(f"  {name:<12} n={r['n']}  p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  max {r['max_ms']:7.2f} ms")
    print(f"  plan p99 < 100 ms: {'yes' if doc['plan_p99_ok'] else 'NO'}")


if __name__ == "__main__":
    main()
