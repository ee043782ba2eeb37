"""jobs/backfill.py, the `ray job submit` entrypoint, run as a driver of a running local Ray cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from cdp_ray.sample import SAMPLE_LAKE

ROOT = Path(__file__).resolve().parents[1]


def _backfill(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "jobs" / "backfill.py"), *args],
                          env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_backfill_joins_the_cluster_and_prints_the_summary(ray_cluster, tmp_path: Path) -> None:
    address = ray_cluster.get_runtime_context().gcs_address
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    out = tmp_path / "out"
    spec = f"lake://{SAMPLE_LAKE}?start=63092982&end=63092991 | ledgers | payments | parquet://{out}"
    proc = _backfill([spec, "--address", address, "--start-time", "2026-06-19T00:21:00Z", "--end", "63092987"], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"on Ray cluster at {address}" in proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True
    assert (summary["start"], summary["end"], summary["ledgers"]) == (63092984, 63092987, 4)
    assert summary["rows"]["ledgers"] == 4
    assert summary["rows"]["payments"] == pq.read_table(out / "payments").num_rows > 0
    assert sorted(pq.read_table(out / "ledgers").column("sequence").to_pylist()) == [63092984, 63092985, 63092986, 63092987]

    again = _backfill([spec, "--address", address, "--start", "63092984", "--end", "63092987", "--resume"], env)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = json.loads(again.stdout.strip().splitlines()[-1])
    assert resumed["ledgers"] == 0 and resumed["skipped_chunks"] == 1


def test_backfill_bad_input_exits_2_with_json(tmp_path: Path) -> None:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = _backfill([f"lake://{SAMPLE_LAKE}?start=63092982&end=63092983 | ledgerz | parquet://{tmp_path}"], env)
    assert proc.returncode == 2
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert doc["ok"] is False and "unknown processor 'ledgerz'" in doc["message"] and "did you mean 'ledgers'" in doc["message"]
