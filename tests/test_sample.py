"""The README's promise: `cdp-ray run` with no argument runs the bundled sample into Parquet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from cdp_ray.sample import SAMPLE_RANGE

# Counts of the ten bundled pubnet ledgers (shared/stellar-data/inventory.jsonl).
SAMPLE_TXS = 2650


def test_sample_run_writes_parquet(tmp_path: Path) -> None:
    env = {**os.environ, "CDP_RAY_OUT": str(tmp_path / "out"), "RAY_AUTH_MODE": "disabled"}
    env.pop("CDP_RAY_SAMPLE_LAKE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "cdp_ray.cli.main", "run", "--json", "--workers", "2"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True
    assert summary["ledgers"] == 10
    assert summary["rows"]["ledgers"] == 10

    ledgers = pq.read_table(tmp_path / "out" / "ledgers")
    assert sorted(ledgers.column("sequence").to_pylist()) == list(range(SAMPLE_RANGE[0], SAMPLE_RANGE[1] + 1))
    files = sorted(p.name for p in (tmp_path / "out" / "ledgers").iterdir())
    assert files == ["0063092982-0063092983.parquet", "0063092984-0063092987.parquet", "0063092988-0063092991.parquet"]
    counts = ledgers.column("successful_transaction_count").to_pylist()
    failed = ledgers.column("failed_transaction_count").to_pylist()
    assert sum(counts) + sum(failed) == SAMPLE_TXS
    if "transactions" in summary["rows"]:
        assert summary["rows"]["transactions"] == SAMPLE_TXS
        assert pq.read_table(tmp_path / "out" / "transactions").num_rows == SAMPLE_TXS
