"""Checkpoints: config hash, resume, refusal of a changed config, --force, and the `checkpoint` CLI."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml
from typer.testing import CliRunner

from cdp_ray.cli.main import app
from cdp_ray.lake import LakeSchema
from cdp_ray.lake.writer import write_lake
from cdp_ray.pipeline.checkpoint import CheckpointMismatchError, config_hash
from cdp_ray.pipeline.config import PipelineConfig
from cdp_ray.pipeline.runner import run_pipeline

from conftest import TESTNET

FIRST, LAST = 1410048, 1410071  # 24 real testnet ledgers


@pytest.fixture(scope="module")
def lake(stellar_data, tmp_path_factory) -> Path:
    base = stellar_data / "stellar-go-lighthorizon" / "ledgers"
    root = tmp_path_factory.mktemp("lake")
    ledgers = [(base / str(s)).read_bytes()[4:] for s in range(FIRST, LAST + 1)]
    write_lake(ledgers, str(root), LakeSchema(), network_passphrase=TESTNET)
    return root


@pytest.fixture()
def target(postgres_dsn, tmp_path):
    schema = f"cdp_ckpt_{uuid.uuid4().hex[:10]}"
    conn = psycopg.connect(postgres_dsn, autocommit=True)
    yield postgres_dsn, schema, tmp_path / "out", conn
    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    conn.close()


def pipeline(lake: Path, dsn: str, schema: str, out: Path, **kw) -> dict:
    doc = {
        "name": "ckpt",
        "source": {"uri": str(lake), "start": FIRST, "end": LAST, "network": "testnet"},
        "processors": ["ledgers", "transactions"],
        "sinks": [{"type": "postgres", "dsn": dsn, "schema": schema}, {"type": "parquet", "uri": str(out)}],
        "options": {"ledgers_per_task": 8},
    }
    for k, v in kw.items():
        section, _, key = k.partition("__")
        if key:
            doc[section][key] = v
        else:
            doc[section] = v
    return doc


def test_config_hash_covers_what_changes_the_output(lake):
    base = pipeline(lake, "postgresql://a@h/db", "s", Path("/o"))
    h = config_hash(PipelineConfig.model_validate(base))
    same = [
        pipeline(lake, "postgresql://other:secret@h2/db", "s", Path("/elsewhere")),
        pipeline(lake, "postgresql://a@h/db", "s", Path("/o"), source__start=FIRST + 8, source__end=LAST + 100),
        pipeline(lake, "postgresql://a@h/db", "s", Path("/o"), options={"ledgers_per_task": 8, "workers": 7, "on_error": "quarantine"}),
    ]
    for doc in same:
        assert config_hash(PipelineConfig.model_validate(doc)) == h
    changed = [
        pipeline(lake, "postgresql://a@h/db", "s", Path("/o"), processors=["ledgers"]),
        pipeline(lake, "postgresql://a@h/db", "s", Path("/o"), options={"ledgers_per_task": 16}),
        pipeline(lake, "postgresql://a@h/db", "s", Path("/o"), source__network="pubnet"),
        {**base, "sinks": [base["sinks"][0], {"type": "parquet", "uri": "/o", "partitioning": "date"}]},
    ]
    hashes = {config_hash(PipelineConfig.model_validate(doc)) for doc in changed}
    assert len(hashes) == len(changed) and h not in hashes


def test_resume_skips_ranges_committed_in_every_sink(lake, target):
    dsn, schema, out, conn = target
    cfg = PipelineConfig.model_validate(pipeline(lake, dsn, schema, out))
    first = run_pipeline(cfg, engine="local")
    assert (first.chunks, first.skipped_chunks) == (3, 0)
    again = run_pipeline(cfg, engine="local", resume=True)
    assert (again.chunks, again.skipped_chunks) == (0, 3)
    # a range one sink lacks is not done: it is rerun in both, replacing its rows
    next((out / "_cdp_ray/ckpt/ranges").glob("0001410056-0001410063.*.json")).unlink()
    third = run_pipeline(cfg, engine="local", resume=True)
    assert (third.chunks, third.skipped_chunks) == (1, 2)
    n, distinct = conn.execute(f'SELECT count(*), count(DISTINCT id) FROM "{schema}".transactions').fetchone()
    assert n == distinct == first.rows_by_table["transactions"]
    # without --resume every range is rewritten, still without duplicates
    run_pipeline(cfg, engine="local")
    assert conn.execute(f'SELECT count(*) FROM "{schema}".transactions').fetchone()[0] == n


def test_changed_config_is_refused_unless_forced(lake, target):
    dsn, schema, out, conn = target
    run_pipeline(PipelineConfig.model_validate(pipeline(lake, dsn, schema, out)), engine="local")
    rechunked = PipelineConfig.model_validate(pipeline(lake, dsn, schema, out, options={"ledgers_per_task": 16}))
    with pytest.raises(CheckpointMismatchError) as err:
        run_pipeline(rechunked, engine="local", resume=True)
    assert "pipeline 'ckpt' has 3 range(s)" in err.value.message and "--force" in err.value.hint
    summary = run_pipeline(rechunked, engine="local", resume=True, force=True)
    assert summary.discarded_stale == 6  # 3 ranges in each of the two sinks
    # the old 8-ledger files are gone, the new 16-ledger ranges replace them without overlap
    assert sorted(p.name for p in (out / "transactions").glob("*.parquet")) == [
        "0001410048-0001410063.parquet", "0001410064-0001410071.parquet",
    ]
    ranges = conn.execute(f'SELECT start_ledger, end_ledger FROM "{schema}".cdp_ray_ranges ORDER BY 1').fetchall()
    assert ranges == [(1410048, 1410063), (1410064, 1410071)]
    n, distinct = conn.execute(f'SELECT count(*), count(DISTINCT id) FROM "{schema}".transactions').fetchone()
    assert n == distinct == summary.rows_by_table["transactions"]
    assert run_pipeline(rechunked, engine="local", resume=True).skipped_chunks == 2


def test_checkpoint_cli_list_show_clean(lake, target, tmp_path):
    dsn, schema, out, conn = target
    doc = pipeline(lake, dsn, schema, out)
    spec = tmp_path / "p.yaml"
    spec.write_text(yaml.safe_dump(doc))
    partial = PipelineConfig.model_validate(pipeline(lake, dsn, schema, out, source__end=FIRST + 15))
    run_pipeline(partial, engine="local")
    cli = CliRunner()

    res = cli.invoke(app, ["checkpoint", "list", str(spec), "--json"])
    assert res.exit_code == 0, res.output
    listed = json.loads(res.stdout)["checkpoints"]
    assert [(d["pipeline"], d["ranges"], d["ledgers"], d["first"], d["last"], d["stale"]) for d in listed] == [
        ("ckpt", 2, 16, FIRST, FIRST + 15, 0), ("ckpt", 2, 16, FIRST, FIRST + 15, 0),
    ]

    res = cli.invoke(app, ["checkpoint", "show", str(spec), "--json"])
    shown = json.loads(res.stdout)
    assert (shown["ledgers"], shown["ledgers_done"], shown["gaps"]) == (24, 16, [[FIRST + 16, LAST]])
    assert [r["rows"]["ledgers"] for v in shown["sinks"] for r in v["records"]] == [8, 8, 8, 8]
    text = cli.invoke(app, ["checkpoint", "show", str(spec)]).stdout
    assert f"16/24 ledgers of {FIRST}-{LAST} committed in every sink" in text and f"not committed: {FIRST + 16}-{LAST}" in text

    res = cli.invoke(app, ["checkpoint", "clean", str(spec), "--yes", "--json"])
    deleted = json.loads(res.stdout)["deleted"]
    assert [(d["records"], d["released"]) for d in deleted] == [(2, ["ledgers", "transactions"])] * 2
    assert json.loads(cli.invoke(app, ["checkpoint", "show", str(spec), "--json"]).stdout)["ledgers_done"] == 0
    # the rows stay; only the checkpoint is gone
    assert conn.execute(f'SELECT count(*) FROM "{schema}".ledgers').fetchone()[0] == 16


def test_run_cli_refuses_changed_config_with_exit_2(lake, target, tmp_path):
    dsn, schema, out, _ = target
    run_pipeline(PipelineConfig.model_validate(pipeline(lake, dsn, schema, out)), engine="local")
    spec = tmp_path / "p.yaml"
    spec.write_text(yaml.safe_dump(pipeline(lake, dsn, schema, out, processors=["ledgers"])))
    res = CliRunner().invoke(app, ["run", str(spec), "--resume", "--json"])
    assert res.exit_code == 2
    err = json.loads(res.stdout.strip().splitlines()[-1])
    assert err["error"] == "CheckpointMismatchError" and "--force" in err["hint"]
