"""The four processors through the pipeline on the bundled sample lake (no shared data needed)."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest

from cdp_ray.pipeline.config import PipelineConfig
from cdp_ray.pipeline.dataset import load
from cdp_ray.pipeline.runner import process_local
from cdp_ray.processors import get_processor
from cdp_ray.sample import SAMPLE_LAKE

NAMES = ["token_transfers", "contract_events", "contract_invocations", "payments"]
# ledger 63092982 (inventory.jsonl: 305 txs, 51 host function ops, 431 operation events, 1201 diagnostic)
EXPECTED_63092982 = {"token_transfers": 774, "contract_events": 1988, "contract_invocations": 51, "payments": 137}


@pytest.fixture(scope="module")
def tables():
    return load(NAMES, str(SAMPLE_LAKE), 63092982, 63092982, network="pubnet")


def test_row_counts_and_schemas(tables):
    for name in NAMES:
        t = tables[name]
        assert t.num_rows == EXPECTED_63092982[name], name
        assert t.schema == get_processor(name).schema
        for col in get_processor(name).primary_key:
            assert t.column(col).null_count == 0
        key = get_processor(name).primary_key
        assert len({tuple(r[c] for c in key) for r in t.select(list(key)).to_pylist()}) == t.num_rows, name


def test_cross_table_consistency(tables):
    ev, tt, inv = tables["contract_events"], tables["token_transfers"], tables["contract_invocations"]
    # every fee row of token_transfers is a transaction-level contract event (charge or refund)
    tx_events = pc.sum(pc.equal(ev.column("event_source"), "transaction")).as_py()
    assert pc.sum(pc.equal(tt.column("event_topic"), "fee")).as_py() == tx_events == 356
    assert pc.sum(inv.column("contract_events_count")).as_py() == 13


def test_processor_config_in_pipeline_yaml_form():
    cfg = PipelineConfig.model_validate(
        {
            "source": {"uri": str(SAMPLE_LAKE), "start": 63092982, "end": 63092983, "network": "pubnet"},
            "processors": [
                {"name": "payments", "config": {"include_failed": True, "include_create_account": True}},
                {"name": "contract_events", "config": {"include_diagnostic": False}},
                {"name": "token_transfers", "config": {"source": "derived"}},
            ],
        }
    )
    out = process_local(cfg)
    pays = out["payments"]
    assert pc.sum(pc.invert(pays.column("successful"))).as_py() > 0
    assert set(out["contract_events"].column("event_source").to_pylist()) == {"transaction", "operation"}
    events = load("token_transfers", str(SAMPLE_LAKE), 63092982, 63092983, network="pubnet")
    assert out["token_transfers"].equals(events)
