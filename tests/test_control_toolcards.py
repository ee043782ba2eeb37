"""Tool cards: generated from the registries, committed, and checked for staleness."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pyarrow as pa
from typer.testing import CliRunner

from cdp_ray.cli.main import app
from cdp_ray.control.app import _jsonable
from cdp_ray.control.settings import DEFAULT_TOOLCARDS
from cdp_ray.control.toolcards import arrow_schema_to_json_schema, declared_cards, generate, load_cards, stale_cards
from cdp_ray.pipeline.config import PipelineConfig
from cdp_ray.processors import REGISTRY
from cdp_ray.sample import SAMPLE_LAKE
from cdp_ray.sinks import SINKS

runner = CliRunner()


def test_committed_cards_match_the_registries() -> None:
    """Fails when a processor, sink or the source changed its declaration without `cdp-ray tools generate`."""
    assert stale_cards(DEFAULT_TOOLCARDS) == []
    result = runner.invoke(app, ["tools", "generate", "--check"])
    assert result.exit_code == 0, result.output
    cards = load_cards(DEFAULT_TOOLCARDS)
    assert set(cards) == {"source.lake"} | {f"processor.{n}" for n in REGISTRY} | {f"sink.{n}" for n in SINKS}


def test_check_reports_stale_missing_and_extra_cards(tmp_path: Path) -> None:
    cards = tmp_path / "cards"
    generate(cards, measure=False)
    assert stale_cards(cards) == []
    doc = json.loads((cards / "processor.ledgers.json").read_text())
    doc["output_schema"]["properties"].pop("sequence")
    (cards / "processor.ledgers.json").write_text(json.dumps(doc))
    (cards / "sink.parquet.json").unlink()
    (cards / "processor.gone.json").write_text(json.dumps({**doc, "id": "processor.gone", "name": "gone"}))
    problems = stale_cards(cards)
    assert problems == ["processor.ledgers: stale (output_schema changed)", "sink.parquet: missing",
                        "processor.gone: no longer registered"]
    result = runner.invoke(app, ["tools", "generate", "--check", "--dir", str(cards)])
    assert result.exit_code == 1
    assert "processor.ledgers: stale" in result.output and "cdp-ray tools generate" in result.output


def test_processor_card_describes_its_table() -> None:
    card = declared_cards()["processor.ledgers"]
    proc = REGISTRY["ledgers"]
    props = card.output_schema["properties"]
    assert list(props) == proc.schema.names
    seq = proc.schema.field("sequence")
    assert props["sequence"]["description"] == seq.metadata[b"description"].decode()
    assert props["sequence"]["x-arrow-type"] == str(seq.type)
    assert card.output_schema["required"] == [f.name for f in proc.schema if not f.nullable]
    assert card.primary_key == ["sequence"] and card.danger == "read_only"
    assert card.required_scopes["run"] == ["apply"]
    assert card.config_schema == proc.config_model.model_json_schema()
    # The card's example pipeline is a valid pipeline.
    PipelineConfig.model_validate(card.examples[0]["pipeline"])


def test_output_schema_validates_real_rows() -> None:
    """Rows the processor produces on a sample ledger, as the API serialises them, satisfy the card."""
    from cdp_ray.pipeline.source import LakeSource
    from cdp_ray.pipeline.runner import decode_range

    src = LakeSource(uri=str(SAMPLE_LAKE), start=63092982, end=63092982)
    ledgers, _ = decode_range(src.open(), 63092982, 63092982, src.network_passphrase)
    schema = declared_cards()["processor.ledgers"].output_schema
    rows = REGISTRY["ledgers"].process(ledgers).to_pylist()
    assert len(rows) == 1
    jsonschema.validate(_jsonable(rows[0]), schema)
    bad = {**_jsonable(rows[0]), "sequence": "x"}
    assert not jsonschema.Draft202012Validator(schema).is_valid(bad)


def test_arrow_types_map_to_json_schema() -> None:
    schema = pa.schema([
        pa.field("n", pa.int64(), nullable=False),
        pa.field("u", pa.uint32()),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("at", pa.timestamp("us", tz="UTC")),
        pa.field("raw", pa.binary()),
        pa.field("s", pa.struct([pa.field("a", pa.float64())])),
    ])
    js = arrow_schema_to_json_schema(schema, "t")
    p = js["properties"]
    assert p["n"]["type"] == "integer" and js["required"] == ["n"]
    assert p["u"] == {"type": ["integer", "null"], "minimum": 0, "x-arrow-type": "uint32"}
    assert p["tags"]["type"] == ["array", "null"] and p["tags"]["items"]["type"] == ["string", "null"]
    assert p["at"]["format"] == "date-time" and p["raw"]["contentEncoding"] == "base64"
    assert p["s"]["properties"]["a"]["type"] == ["number", "null"]


def test_source_and_sink_cards_carry_config_schemas_and_costs() -> None:
    cards = load_cards(DEFAULT_TOOLCARDS)
    src = cards["source.lake"]
    assert {"uri", "start", "end", "network"} <= set(src.config_schema["properties"])
    assert src.cost["ledgers"] == 10 and src.cost["xdr_bytes_per_ledger"] > src.cost["compressed_bytes_per_ledger"] > 0
    assert {e.error for e in src.errors} >= {"LedgerNotFoundError", "CorruptLedgerFileError", "NetworkMismatchError"}
    sink = cards["sink.parquet"]
    assert sink.danger == "writes" and "uri" in sink.config_schema["properties"]
    jsonschema.validate(sink.examples[0]["config"], sink.config_schema)
