"""The `cdp-ray` commands as a new user types them: init, validate, schema, processors, docs, run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from cdp_ray.cli.main import EXIT_BAD_INPUT, EXIT_FAILED, app
from cdp_ray.sample import SAMPLE_LAKE, SAMPLE_RANGE

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_init_writes_a_pipeline_that_validates(tmp_path: Path) -> None:
    out = tmp_path / "payments.yaml"
    r = cli("init", "payments", "-o", str(out))
    assert r.exit_code == 0, r.output
    assert f"cdp-ray run {out}" in r.output
    doc = yaml.safe_load(out.read_text())
    assert doc["source"]["uri"] == str(SAMPLE_LAKE)
    assert (doc["source"]["start"], doc["source"]["end"]) == SAMPLE_RANGE
    assert doc["processors"][0]["name"] == "payments"
    r = cli("validate", str(out), "--json")
    assert r.exit_code == 0, r.output
    v = json.loads(r.output)
    assert v["ok"] is True and v["problems"] == []
    assert v["pipeline"]["sinks"][0]["uri"] == "out/payments"
    again = cli("init", "payments", "-o", str(out))
    assert again.exit_code == EXIT_BAD_INPUT and "already exists" in again.output and "--force" in again.output


@pytest.mark.parametrize("template", ["core", "contract-events", "token-transfers", "iceberg"])
def test_every_template_validates(tmp_path: Path, template: str) -> None:
    out = tmp_path / f"{template}.yaml"
    assert cli("init", template, "-o", str(out)).exit_code == 0
    assert cli("validate", str(out)).exit_code == 0


def test_init_parameters(tmp_path: Path) -> None:
    out = tmp_path / "ce.yaml"
    contract = "CCW67TSZV3SSS2HXMBQ5JFGCKJNXKZM7UQUWUZPUTHXSTZLEO7SJMI75"
    r = cli("init", "contract-events", "-o", str(out), "--contract", contract, "--lake",
            "s3://aws-public-blockchain/v1.1/stellar/ledgers/pubnet", "--start-time", "2025-06-01T00:00:00Z",
            "--end", "57000000", "--out", "s3://my-bucket/events", "--name", "usdc")
    assert r.exit_code == 0, r.output
    doc = yaml.safe_load(out.read_text())
    assert doc["name"] == "usdc"
    assert doc["source"] == {"uri": "s3://aws-public-blockchain/v1.1/stellar/ledgers/pubnet",
                             "start_time": datetime(2025, 6, 1, tzinfo=timezone.utc), "end": 57000000, "network": "pubnet", "anonymous": True}
    assert doc["processors"][0]["config"]["contract_ids"] == [contract]
    assert doc["sinks"] == [{"parquet": "${CDP_RAY_OUT:-s3://my-bucket/events}"}]
    bad = cli("init", "contract-events", "-o", str(tmp_path / "x.yaml"), "--contract", "GABC")
    assert bad.exit_code == EXIT_BAD_INPUT and "--contract" in bad.output and "not a contract id" in bad.output
    unknown = cli("init", "paymnts", "-o", str(tmp_path / "y.yaml"))
    assert unknown.exit_code == EXIT_BAD_INPUT and "did you mean 'payments'" in unknown.output
    listing = cli("init", "--list")
    assert listing.exit_code == 0 and all(t in listing.output for t in ("core", "payments", "contract-events", "token-transfers"))
    assert [t["name"] for t in json.loads(cli("init", "--list", "--json").output)] == [
        "core", "payments", "contract-events", "token-transfers", "iceberg"]
    made = json.loads(cli("init", "core", "-o", str(tmp_path / "core.yaml"), "--json").output)
    assert made == {"ok": True, "template": "core", "path": str(tmp_path / "core.yaml")}
    exists = json.loads(cli("init", "core", "-o", str(tmp_path / "core.yaml"), "--json").output)
    assert exists["ok"] is False and exists["error"] == "ConfigError"


def test_validate_reports_lines_and_exits_2(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(f"name: p\nsource:\n  uri: {SAMPLE_LAKE}\n  start: 63092982\n  end: 63092991\n"
                 "processors:\n  - ledgers\n  - transactons\nsinks:\n  - parquet: out/p\n")
    r = cli("validate", str(f))
    assert r.exit_code == EXIT_BAD_INPUT
    assert f"{f}:8:5: error: processors[1]: unknown processor 'transactons'" in r.output
    assert "did you mean 'transactions'" in r.output
    j = cli("validate", str(f), "--json")
    doc = json.loads(j.output)
    assert doc["ok"] is False
    assert doc["problems"][0] | {"hint": None} == {"severity": "error", "path": "processors[1]", "line": 8, "column": 5,
                                                  "message": "unknown processor 'transactons'", "hint": None}
    missing = cli("validate", str(tmp_path / "nope.yaml"))
    assert missing.exit_code == EXIT_BAD_INPUT and "cannot read pipeline file" in missing.output


def test_validate_check_source_reads_the_range_ends(tmp_path: Path) -> None:
    ok = cli("validate", "--check-source")
    assert ok.exit_code == 0 and "ok: sample-core-tables: ledgers 63092982-63092991 (10)" in ok.output
    r = cli("validate", "--check-source", f"lake://{SAMPLE_LAKE}?start=63092982&end=63092995 | ledgers | parquet://out")
    assert r.exit_code == EXIT_BAD_INPUT and "ledger 63092995 is missing" in r.output


def test_schema_and_processors() -> None:
    r = cli("schema")
    schema = json.loads(r.output)
    assert schema["$defs"]["LakeSource"]["properties"]["start_time"]["format"] == "date-time"
    registered, user = schema["$defs"]["ProcessorStep"]["properties"]["name"]["anyOf"]
    assert "payments" in registered["enum"] and re.search(user["pattern"], "myprocs.sub:fees")
    listing = cli("processors")
    assert listing.exit_code == 0
    names = [line.split()[0] for line in listing.stdout.splitlines() if line.strip()]
    assert names == sorted(names) and {"ledgers", "transactions", "payments", "contract_events"} <= set(names)
    one = json.loads(cli("processors", "payments", "--json").output)
    assert one["primary_key"] == ["operation_id"]
    assert one["config_schema"]["properties"]["include_failed"]["default"] is False
    assert {"name": "amount", "type": "int64", "nullable": True, "description": one["columns"][18]["description"]} == one["columns"][18]
    typo = cli("processors", "paymens")
    assert typo.exit_code == EXIT_BAD_INPUT and "did you mean 'payments'" in typo.output


def test_committed_docs_are_up_to_date() -> None:
    """docs/processors/*.md and docs/pipeline.schema.json are generated; regenerate with `cdp-ray docs generate`."""
    r = cli("docs", "generate", "--check", "-o", str(ROOT / "docs"))
    assert r.exit_code == 0, r.output


def test_docs_generate_writes_a_page_per_processor(tmp_path: Path) -> None:
    from cdp_ray.processors import REGISTRY

    assert cli("docs", "generate", "-o", str(tmp_path)).exit_code == 0
    pages = sorted(p.stem for p in (tmp_path / "processors").glob("*.md"))
    assert pages == sorted([*REGISTRY, "README"])
    page = (tmp_path / "processors" / "payments.md").read_text()
    assert "| `amount` | `int64` | yes |" in page and "include_create_account" in page
    (tmp_path / "processors" / "retired.md").write_text("old")
    r = cli("docs", "generate", "--check", "-o", str(tmp_path))
    assert r.exit_code == EXIT_FAILED and "retired.md" in r.output


def test_run_failure_names_the_missing_ledger(tmp_path: Path) -> None:
    spec = f"lake://{SAMPLE_LAKE}?start=63092990&end=63092993 | ledgers | parquet://{tmp_path}/out"
    r = cli("run", spec, "--engine", "local", "--json")
    assert r.exit_code == EXIT_FAILED
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert doc["ok"] is False and doc["error"] == "LedgerNotFoundError"
    assert "ledger 63092992 is missing" in doc["message"]
    assert cli("run", "lake:///x?start=5 | ledgers").exit_code == EXIT_BAD_INPUT


def test_run_on_the_sample_prints_only_its_own_lines(tmp_path: Path) -> None:
    """`cdp-ray run` keeps Ray's INFO logs and native warnings off the terminal, in a log file."""
    env = {**os.environ, "CDP_RAY_OUT": str(tmp_path / "out"), "CDP_RAY_LOG_DIR": str(tmp_path / "logs"),
           "RAY_AUTH_MODE": "disabled"}
    for k in ("CDP_RAY_SAMPLE_LAKE", "RAY_ADDRESS", "RAY_DATA_DISABLE_PROGRESS_BARS"):
        env.pop(k, None)
    proc = subprocess.run([sys.executable, "-m", "cdp_ray.cli.main", "run", "--workers", "2", "--address", "local"],
                          env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    err = proc.stderr.splitlines()
    assert err[0] == f"running sample-core-tables: ledgers 63092982-63092991 (10) from {SAMPLE_LAKE}"
    assert err[1].startswith("on local Ray (") and "Ray logs: " in err[1]
    assert all(line.startswith("  ") and "ledgers (" in line for line in err[2:]), err
    assert err[-1].startswith("  10/10 ledgers (100%), 9,692 rows")
    out = proc.stdout.splitlines()
    assert out[0].startswith("done: 10 ledgers in ")
    assert out[1:4] == ["  ledgers               10 rows", "  transactions       2,650 rows", "  operations         7,032 rows"]
    assert re.fullmatch(r"decoder: native \(\d+ chunks\)", out[4]), out[4]  # the compiled decoder ran
    assert out[5] == f"output: {tmp_path / 'out'}"
    (log,) = (tmp_path / "logs").glob("run-*.log")  # Ray's warnings (native ones too) land here
    assert not any(line and line in proc.stderr for line in log.read_text().splitlines())
    assert "INFO" not in proc.stderr and "core_worker" not in proc.stderr
    assert pq.read_table(tmp_path / "out" / "operations").num_rows == 7032


def test_errors_ray_shipped_as_text_are_rebuilt() -> None:
    from cdp_ray.cli.ray_env import remote_user_error
    from cdp_ray.errors import CdpRayError, LedgerNotFoundError

    text = ("Traceback (most recent call last):\n  File \"runner.py\", line 71, in process\n"
            "cdp_ray.errors.LedgerNotFoundError: ledger 63092992 is missing: expected object 'x.xdr.zst' does not exist\n"
            "  hint: shorten the range\n\nThe above exception was the direct cause of the following exception:\n"
            "ray.exceptions.UserCodeException: UDF failed to process a data block.")
    err = remote_user_error(RuntimeError(text))
    assert isinstance(err, LedgerNotFoundError)
    assert (err.message, err.hint) == ("ledger 63092992 is missing: expected object 'x.xdr.zst' does not exist", "shorten the range")
    other = remote_user_error(RuntimeError("cdp_ray.processors.token_transfers.LegacyMetaError: meta v3"))
    assert type(other) is CdpRayError and other.message == "meta v3"
    assert remote_user_error(RuntimeError("ValueError: boom")) is None


@pytest.mark.parametrize("template", ["core", "payments", "contract-events", "token-transfers"])
def test_every_template_runs_on_the_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, template: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CDP_RAY_OUT", raising=False)
    assert cli("init", template).exit_code == 0
    r = cli("run", "pipeline.yaml", "--engine", "local", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert doc["ok"] is True and doc["ledgers"] == 10
    assert all(n > 0 for n in doc["rows"].values()), doc["rows"]
    for table in doc["rows"]:
        assert pq.read_table(tmp_path / "out" / template / table).num_rows == doc["rows"][table]
    if template == "core":
        assert (doc["rows"]["ledgers"], doc["rows"]["transactions"], doc["rows"]["operations"]) == (10, 2650, 7032)
    if template == "contract-events":
        events = pq.read_table(tmp_path / "out" / template / "contract_events")
        assert set(events.column("contract_id").to_pylist()) == {"CAS3J7GYLGXMF6TDJBBYYSE3HQ6BBSMLNUQ34T6TZMYMW2EVH34XOWMA"}


def test_run_leaves_the_callers_ray_connected(tmp_path: Path, ray_cluster) -> None:
    """A caller connected to Ray first (a notebook; here the test session): `cdp-ray run` runs on that Ray and
    leaves it connected, where it used to shut it down under the caller."""
    cpus = ray_cluster.cluster_resources()["CPU"]
    spec = f"lake://{SAMPLE_LAKE}?start=63092982&end=63092983 | ledgers | parquet://{tmp_path / 'out'}"
    r = cli("run", spec, "--engine", "ray", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["ledgers"] == 2
    assert ray_cluster.is_initialized() and ray_cluster.cluster_resources()["CPU"] == cpus
