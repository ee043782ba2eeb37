"""token_transfers against stellar-etl's golden for pubnet ledger 30820015, field by field.

The input is the rebuilt ledger (meta v4, as the data lake re-encodes it), so the classic payment's
CAP-67 transfer event and every transaction's fee event are in the meta, as stellar-etl reads them.
The only representational difference: the golden's JSON writes ``amount`` 158239.0 as ``158239``.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from cdp_ray.processors import get_processor
from cdp_ray.xdr import decode_ledger

PUBNET = "Public Global Stellar Network ; September 2015"
FIELDS = [
    "transaction_hash", "transaction_id", "operation_id", "event_topic", "from", "to", "asset", "asset_type",
    "asset_code", "asset_issuer", "amount", "amount_raw", "contract_id", "ledger_sequence", "closed_at",
    "to_muxed", "to_muxed_id",
]


@pytest.fixture(scope="module")
def ledger(stellar_data):
    data = (stellar_data / "stellar-etl-golden/reconstructed/FE29B950--30820015.reconstructed.xdr").read_bytes()
    return decode_ledger(data, PUBNET)


@pytest.fixture(scope="module")
def rows(ledger):
    return get_processor("token_transfers").process([ledger]).to_pylist()


@pytest.fixture(scope="module")
def golden(stellar_data):
    path = stellar_data / "stellar-etl-golden/token_transfers/one_ledger_token_transfers.golden"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _ours(row: dict) -> dict:
    out = {k: row[k] for k in FIELDS}
    out["closed_at"] = row["closed_at"].strftime("%Y-%m-%dT%H:%M:%SZ")
    return out


def _key(r: dict):
    return (r["transaction_hash"], r["event_topic"], r["operation_id"] or 0, r["amount_raw"])


def test_every_golden_row_matches_field_by_field(rows, golden):
    assert len(rows) == len(golden) == 60
    ours = sorted((_ours(r) for r in rows), key=_key)
    theirs = sorted(golden, key=_key)
    for a, b in zip(ours, theirs):
        for f in FIELDS:
            assert a[f] == b[f], (f, a, b)
            assert type(a[f]) is type(b[f]) or f == "amount", (f, a[f], b[f])


def test_counts_by_topic(rows, ledger):
    assert Counter(r["event_topic"] for r in rows) == {"fee": 59, "transfer": 1}
    assert len(ledger.transactions) == 59


def test_fee_events_first_in_apply_order(rows, ledger):
    fees = rows[:59]
    assert [r["event_topic"] for r in fees] == ["fee"] * 59
    assert [r["transaction_hash"] for r in fees] == [t.hash.hex() for t in ledger.transactions]
    assert [r["event_index"] for r in rows] == list(range(60))
    # classic fees are the fee charged in the result, never refunded
    for r, t in zip(fees, ledger.transactions):
        assert int(r["amount_raw"]) == t.result.result.fee_charged.int64
        assert r["operation_id"] is None and r["to"] is None


def test_memo_id_payment_is_muxed_transfer(rows):
    (t,) = [r for r in rows if r["event_topic"] == "transfer"]
    assert t["from"] == "GBDUXW4E5WRM5EM6UXBLE7Y5XGSXJX472BSSBPKFPQ3PJCJHRIA6SH4C"
    assert t["to"] == "GAHK7EEG2WWHVKDNT4CEQFZGKF2LGDSW2IVM4S5DP42RBW3K6BTODB4A"
    assert t["amount_raw"] == "1582390000000" and t["amount"] == 158239.0
    assert t["to_muxed_id"] == "1020515624"
    assert t["to_muxed"] == "MAHK7EEG2WWHVKDNT4CEQFZGKF2LGDSW2IVM4S5DP42RBW3K6BTOCAAAAAADZU6VFBOJ2"
    assert t["contract_id"] == "CAS3J7GYLGXMF6TDJBBYYSE3HQ6BBSMLNUQ34T6TZMYMW2EVH34XOWMA"  # native SAC, pubnet
