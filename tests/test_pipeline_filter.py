"""The pipeline-wide ``where`` filter: tables equal the unfiltered tables of the matching transactions,
ledgers that cannot match are never decoded, the filter is part of the checkpoint hash; and decoding
errors name the file and the ledger sequence on the local and Ray paths."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from stellar_sdk import Keypair, StrKey

from cdp_ray.errors import CorruptLedgerFileError
from cdp_ray.lake import LakeSchema
from cdp_ray.lake.writer import batch_bytes
from cdp_ray.pipeline import runner
from cdp_ray.pipeline.checkpoint import CheckpointMismatchError, config_hash
from cdp_ray.pipeline.config import PipelineConfig, parse_pipeline
from cdp_ray.pipeline.runner import decode_range, process_local, run_pipeline
from cdp_ray.processors.common import toid
from cdp_ray.processors.filters import TransactionFilter, filtered, select
from cdp_ray.sample import SAMPLE_LAKE, SAMPLE_RANGE

FIRST, LAST = SAMPLE_RANGE
TABLES = ("ledgers", "transactions", "operations", "effects")
# Involved in transactions of 63092982-63092984 only (source of some in 63092983 and 63092984).
SOME = "GBRPFZV43NZBTOZOQUHVYMONKYOVUC4GYPC7AGU6Y5YIOLAFSAD2D6BH"
NONE = Keypair.from_raw_ed25519_seed(bytes(32)).public_key  # in no sample ledger
SAMPLE_SCHEMA = LakeSchema(ledgers_per_file=1, files_per_partition=64000)


def _doc(lake: Path = SAMPLE_LAKE, where: dict | None = None, **extra) -> dict:
    doc = {
        "name": "filtered",
        "source": {"uri": str(lake), "start": FIRST, "end": LAST, "network": "pubnet"},
        "processors": list(TABLES),
        "options": {"ledgers_per_task": 4},
        **extra,
    }
    if where is not None:
        doc["where"] = where
    return doc


def _cfg(**kw) -> PipelineConfig:
    return PipelineConfig.model_validate(_doc(**kw))


@pytest.fixture(scope="module")
def sample():
    """The sample's raw ledgers, decoded ledgers and unfiltered tables."""
    cfg = _cfg()
    lake = cfg.source.open()
    raws = list(lake.read_range(FIRST, LAST))
    ledgers, _ = decode_range(lake, FIRST, LAST, cfg.source.network_passphrase)
    return raws, ledgers, process_local(cfg)


def _by_id(t: pa.Table, key: str = "id") -> list[dict]:
    return t.sort_by(key).to_pylist()


def _tx_id(col: str):
    """The transaction id of a row: from its own id, its transaction_id, or its operation_id."""
    return {"id": lambda v: v, "transaction_id": lambda v: v, "operation_id": lambda v: v & ~0xFFF}[col]


TX_KEY = {"transactions": "id", "operations": "transaction_id", "effects": "operation_id"}


@pytest.fixture()
def decodes(monkeypatch) -> list[int]:
    """The sequences the runner decodes, in order."""
    seen: list[int] = []
    real = runner.decode_raw

    def counting(xdr_bytes, passphrase, *, key, sequence, verify=True):
        seen.append(sequence)
        return real(xdr_bytes, passphrase, key=key, sequence=sequence, verify=verify)

    monkeypatch.setattr(runner, "decode_raw", counting)
    return seen


def test_filtered_tables_are_the_unfiltered_tables_of_matching_transactions(sample, decodes):
    raws, ledgers, full = sample
    where = TransactionFilter(accounts=[SOME])
    matching = {
        toid(ledger.sequence, t.index, 0): ledger.sequence
        for ledger in ledgers
        for t in ledger.transactions
        if where.matches(t, ledger.network_passphrase)
    }
    assert sorted(set(matching.values())) == [63092982, 63092983, 63092984] and len(matching) >= 3

    out = process_local(_cfg(where={"accounts": [SOME]}))

    key = StrKey.decode_ed25519_public_key(SOME)
    assert decodes == [r.sequence for r in raws if key in r.xdr] == [63092982, 63092983, 63092984]
    for name, col in TX_KEY.items():
        expected = full[name].filter(pa.array([_tx_id(col)(v) in matching for v in full[name].column(col).to_pylist()]))
        assert out[name].num_rows == expected.num_rows > 0, name
        assert _by_id(out[name]) == _by_id(expected), name
        assert _by_id(out[name]) == _by_id(filtered(name, ledgers, where)), name
    assert out["operations"].num_rows >= len(matching)

    # ledgers: one row per ledger holding a matching transaction, counting only those
    rows = out["ledgers"].to_pylist()
    assert [r["sequence"] for r in rows] == [63092982, 63092983, 63092984]
    for r in rows:
        n = sum(1 for seq in matching.values() if seq == r["sequence"])
        assert r["successful_transaction_count"] + r["failed_transaction_count"] == n
    full_rows = {r["sequence"]: r for r in full["ledgers"].to_pylist()}
    for r in rows:
        whole = full_rows[r["sequence"]]
        assert (r["ledger_hash"], r["closed_at"], r["total_coins"]) == (whole["ledger_hash"], whole["closed_at"], whole["total_coins"])
        assert r["successful_transaction_count"] + r["failed_transaction_count"] < whole["successful_transaction_count"] + whole["failed_transaction_count"]


def test_filter_matching_nothing_decodes_nothing(sample, decodes, tmp_path):
    raws = sample[0]
    assert not any(StrKey.decode_ed25519_public_key(NONE) in r.xdr for r in raws)
    cfg = _cfg(where={"accounts": [NONE]}, sinks=[{"type": "parquet", "uri": str(tmp_path / "out")}])
    summary = run_pipeline(cfg, engine="local")
    assert decodes == []
    assert (summary.ledgers, summary.ledgers_decoded, summary.chunks) == (LAST - FIRST + 1, 0, 3)
    assert summary.rows_by_table == {name: 0 for name in TABLES}
    out = process_local(cfg)
    for name in TABLES:
        assert out[name].num_rows == 0 and out[name].schema.names == sample[2][name].schema.names


def test_run_pipeline_counts_read_and_decoded_ledgers_and_writes_the_filtered_rows(sample, decodes, tmp_path):
    out = tmp_path / "out"
    cfg = _cfg(where={"accounts": [SOME]}, sinks=[{"type": "parquet", "uri": str(out)}])
    rows: list[dict] = []
    summary = run_pipeline(cfg, engine="local", on_chunk=rows.append)
    assert summary.ledgers == LAST - FIRST + 1 and summary.ledgers_decoded == 3 == len(decodes)
    # chunks are aligned to 4 ledgers: 63092982-83, 63092984-87, 63092988-91
    assert [(r["start"], r["ledgers"], r["ledgers_decoded"]) for r in rows] == [
        (63092982, 2, 2), (63092984, 4, 1), (63092988, 4, 0)
    ]
    expected = process_local(cfg)
    assert summary.rows_by_table == {n: expected[n].num_rows for n in TABLES}
    written = pq.read_table(out / "transactions").select(expected["transactions"].schema.names)
    assert _by_id(written) == _by_id(expected["transactions"])


def test_operation_type_filter_equals_select_then_process(sample):
    _, ledgers, _ = sample
    where = TransactionFilter(operation_types=["manage_sell_offer"])
    out = process_local(_cfg(where={"operation_types": ["manage_sell_offer"]}))
    selected = select(ledgers, where)
    assert 0 < len(selected) <= len(ledgers)
    for name in TABLES:
        key = "sequence" if name == "ledgers" else "id"
        assert _by_id(out[name], key) == _by_id(filtered(name, ledgers, where), key), name
    types = set(out["operations"].column("type_string").to_pylist())
    assert "manage_sell_offer" in types


def test_checkpoint_hash_covers_the_filter(tmp_path):
    base = _cfg()
    some = _cfg(where={"accounts": [SOME]})
    none = _cfg(where={"accounts": [NONE]})
    hashes = {config_hash(base), config_hash(some), config_hash(none)}
    assert len(hashes) == 3
    assert config_hash(_cfg(where={})) == config_hash(base)  # an empty filter keeps everything
    assert config_hash(_cfg(where={"accounts": [SOME]})) == config_hash(some)

    sinks = [{"type": "parquet", "uri": str(tmp_path / "out")}]
    run_pipeline(_cfg(where={"accounts": [SOME]}, sinks=sinks), engine="local")
    with pytest.raises(CheckpointMismatchError):
        run_pipeline(_cfg(where={"accounts": [NONE]}, sinks=sinks), engine="local", resume=True)
    again = run_pipeline(_cfg(where={"accounts": [SOME]}, sinks=sinks), engine="local", resume=True)
    assert again.chunks == 0 and again.skipped_chunks == 3


def test_where_is_validated_and_the_one_liner_has_none():
    from cdp_ray.pipeline.config import validate_document

    v = validate_document(_doc(where={"accounts": ["GNOTANACCOUNT"], "colour": "red"}))
    problems = {p.path: p.message for p in v.errors}
    assert set(problems) == {"where.accounts", "where.colour"}
    assert "'GNOTANACCOUNT' is not a G... or M... account" in problems["where.accounts"]
    cfg = parse_pipeline(f"lake://{SAMPLE_LAKE}?start={FIRST}&end={LAST}&network=pubnet | transactions")
    assert cfg.where is None


# ---- decoding errors name the file and the ledger ------------------------------------------------

BAD = 63092986


@pytest.fixture()
def truncated_lake(tmp_path) -> tuple[Path, Path]:
    """The sample lake with ledger ``BAD``'s body cut in half inside a valid zstd frame."""
    root = tmp_path / "lake"
    shutil.copytree(SAMPLE_LAKE, root)
    path = root / SAMPLE_SCHEMA.key_for(BAD)
    whole = next(iter(_cfg().source.open().read_range(BAD, BAD))).xdr
    path.write_bytes(zstandard.ZstdCompressor().compress(batch_bytes(BAD, BAD, [whole[: len(whole) // 2]])))
    return root, path


def test_truncated_ledger_error_names_key_and_sequence_locally(truncated_lake):
    root, path = truncated_lake
    with pytest.raises(CorruptLedgerFileError) as err:
        process_local(_cfg(lake=root))
    assert (err.value.key, err.value.sequence) == (str(path), BAD)
    assert f"ledger {BAD}" in str(err.value)
    with pytest.raises(CorruptLedgerFileError) as err:
        run_pipeline(_cfg(lake=root), engine="local")
    assert (err.value.key, err.value.sequence) == (str(path), BAD)


def test_quarantine_records_the_decoded_sequence(truncated_lake, tmp_path):
    from cdp_ray.sinks.parquet import ParquetSink, ParquetSinkConfig

    root, path = truncated_lake
    out = tmp_path / "out"
    cfg = _cfg(lake=root, sinks=[{"type": "parquet", "uri": str(out)}])
    cfg = cfg.model_copy(update={"options": cfg.options.model_copy(update={"on_error": "quarantine"})})
    summary = run_pipeline(cfg, engine="local")
    assert [(d.start, d.end, d.ledger, d.key) for d in summary.quarantined] == [(63092984, 63092987, BAD, str(path))]
    letters = ParquetSink(ParquetSinkConfig(uri=str(out))).dead_letters("filtered")
    assert [(d.ledger, d.key) for d in letters] == [(BAD, str(path))]


def test_truncated_ledger_error_names_key_and_sequence_on_ray(truncated_lake, ray_cluster):
    root, path = truncated_lake
    with pytest.raises(CorruptLedgerFileError) as err:
        run_pipeline(_cfg(lake=root, options={"ledgers_per_task": 4, "workers": 1}), engine="ray")
    assert err.value.key == str(path) and err.value.sequence == BAD
    assert f"ledger {BAD}" in str(err.value)


def test_cli_runs_a_yaml_pipeline_with_where(tmp_path):
    import json

    import yaml
    from typer.testing import CliRunner

    from cdp_ray.cli.main import app

    doc = _doc(where={"accounts": [SOME]}, sinks=[{"parquet": str(tmp_path / "out")}])
    doc["processors"] = ["transactions"]
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(yaml.safe_dump(doc))
    r = CliRunner().invoke(app, ["run", str(spec), "--engine", "local", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output[r.output.index("{"):])
    assert (summary["ledgers"], summary["ledgers_decoded"]) == (LAST - FIRST + 1, 3)
    expected = process_local(_cfg(where={"accounts": [SOME]}))["transactions"]
    assert summary["rows"] == {"transactions": expected.num_rows}
    r = CliRunner().invoke(app, ["run", str(spec), "--engine", "local"])
    assert r.exit_code == 0, r.output
    assert f"filter: 3 of {LAST - FIRST + 1} ledgers could match and were decoded" in r.output
