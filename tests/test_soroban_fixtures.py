"""token_transfers, contract_events and contract_invocations on single-transaction fixtures.

The fixtures (stellar-expert/tx-meta-effects-parser) carry StellarExpert's ``expected`` effects, an
independent decoding: ``contractEvent`` effects give each event's topics and data, ``contractInvoked``
the called contract, function and source. Each transaction is wrapped in a one-transaction ledger.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json

import pytest
from stellar_sdk import xdr

from cdp_ray.networks import network_id
from cdp_ray.processors import get_processor
from cdp_ray.processors.token_transfers import InvalidFeeEventError, operation_token_transfers
from cdp_ray.xdr import decode_ledger
from cdp_ray.xdr.ledger import Ledger, Transaction, envelope_hash

TESTNET = "Test SDF Network ; September 2015"
PUBNET = "Public Global Stellar Network ; September 2015"
STANDALONE = "(V) (;,,;) (V)"
FUTURENET = "Test SDF Future Network ; October 2022"
NETWORKS = {"testnet": TESTNET, "public": PUBNET, STANDALONE: STANDALONE}
SEP41 = ("transfer", "mint", "burn", "clawback")


@pytest.fixture(scope="module")
def fixtures(stellar_data):
    return stellar_data / "tx-meta-effects-parser" / "tx-parser-data"


@pytest.fixture(scope="module")
def header_entry(stellar_data):
    raw = gzip.decompress((stellar_data / "wallet-backend/ledger-63092982.xdr.gz").read_bytes())
    return decode_ledger(raw, PUBNET).header_entry


def one_tx_ledger(doc: dict, passphrase: str, header_entry) -> Ledger:
    env = xdr.TransactionEnvelope.from_xdr(doc["tx"])
    h = envelope_hash(env, network_id(passphrase))
    result = doc["result"]
    try:
        tr = xdr.TransactionResult.from_xdr(result)
        pair = xdr.TransactionResultPair(xdr.Hash(h), tr) if tr.to_xdr() == result else None
    except Exception:
        pair = None
    pair = pair or xdr.TransactionResultPair.from_xdr(result)
    tx = Transaction(1, h, env, pair, xdr.TransactionMeta.from_xdr(doc["meta"]), xdr.LedgerEntryChanges([]))
    return Ledger(
        sequence=header_entry.header.ledger_seq.uint32, lcm_version=2, lcm=None, header_entry=header_entry,
        transactions=[tx], envelopes=[env], network_passphrase=passphrase,
    )


def transfers(ledger: Ledger) -> list[dict]:
    """Token transfer rows of the fixture's operation events (RPC meta has no fee events)."""
    return operation_token_transfers(ledger, ledger.transactions[0])


def _load(fixtures, name: str, header_entry, passphrase: str | None = None):
    doc = json.loads((fixtures / name).read_text())
    # fixtures without a "network" are testnet ones (the parser's test data is mostly testnet)
    return doc, one_tx_ledger(doc, passphrase or NETWORKS.get(doc.get("network"), TESTNET), header_entry)


def _effects(doc, kind):
    return [e for op in doc["expected"] for e in (op if isinstance(op, list) else []) if isinstance(e, dict) and e.get("type") == kind]


def _expected_transfers(doc) -> list[tuple]:
    out = []
    for e in _effects(doc, "contractEvent"):
        topics = e["topics"]
        if not topics or topics[0] not in SEP41:
            continue
        data = e["data"]
        amount = data["amount"] if isinstance(data, dict) else data
        if topics[0] == "transfer":
            frm, to = topics[1], topics[2]
        elif topics[0] == "mint":
            frm, to = None, topics[1]
        else:
            frm, to = topics[1], None
        out.append((topics[0], frm, to, str(amount)))
    return out


V4_SOROBAN = [
    "soroban/xlm-batch_transfer-with-5-destinations-protocol-23.json",
    "soroban/transfer-xlm-to-contract-address-protocol-26.json",
    "soroban/xlm-transfer-to-non-existent-account-creates-it-protocol-26.json",
    "soroban/muxed-accounts-in-contracts-meta-v4.json",
    "soroban/clawback-tokens-from-account.json",
    "soroban/sac-token-mint-to-contract-address-meta-v4.json",
    "soroban/credit+debit-for-the-contract-balance.json",
]


@pytest.mark.parametrize("name", V4_SOROBAN)
def test_token_transfers_match_expected_contract_events(fixtures, header_entry, name):
    doc, ledger = _load(fixtures, name, header_entry)
    rows = transfers(ledger)
    ops = [(r["event_topic"], r["from"], r["to"], r["amount_raw"]) for r in rows]
    assert ops == _expected_transfers(doc)
    assert ops, "fixture has no SEP-41 events"
    assert all(r["operation_id"] == r["transaction_id"] + 1 for r in rows)


def test_batch_transfer_on_standalone_network_resolves_native_sac(fixtures, header_entry):
    _, ledger = _load(fixtures, "soroban/xlm-batch_transfer-with-5-destinations-protocol-23.json", header_entry)
    rows = transfers(ledger)
    assert len(rows) == 5
    assert {r["contract_id"] for r in rows} == {"CC5KHEYQLX3VS2JQD3M45AXMZH7DRVAGH6L2YCSB2B5HWUC5R2OUHQDP"}
    assert {r["asset"] for r in rows} == {"native"} and {r["amount_raw"] for r in rows} == {"1"}
    assert [r["to"] for r in rows] == [
        "GCHAUJ3RB7TIS5KHKJPPS3APKUKCFXYRYBAKYAJU7DMR7IQ5CJ4LWKNJ",
        "GC2VNEJGZZECDGVEQJVD5BKBRIM7IJFWO4ATORMX7Y3RWHWLFC75GCSQ",
        "GAOLV3WY4I3X52OL6QQUGUZASJJ3IVATWEUJR32RCCKGJSTUE7BWBEKQ",
        "GDYLEDL5C7ZJQM66IXIGAEMSR7QIMMOOCYGAOGGPUDNLFGPCWLK5S37C",
        "GCVSLVN7P2UUAXPYJC2IM7F7KMK2HNWQBOAITXMAAJCXBIB6I66TDUEM",
    ]
    # RPC strips transaction-level (fee) events: the full processor refuses such meta, like the Go one
    with pytest.raises(InvalidFeeEventError, match="0 fee events"):
        get_processor("token_transfers").process([ledger])


def test_transfer_to_muxed_account_in_contract(fixtures, header_entry):
    doc, ledger = _load(fixtures, "soroban/muxed-accounts-in-contracts-meta-v4.json", header_entry)
    (t,) = transfers(ledger)
    assert t["from"] == "CAYXY6QGTPOCZ676MLGT5JFESVROJ6OJF7VW3LLXMTC2RQIZTP5JYNEL"
    assert t["to"] == "GBN4NNCDGJO4XW4KQU3CBIESUJWFVBUZPOKUZHT7W7WRB7CWOA7BXVQF"
    assert t["to_muxed_id"] == "1755209876870"
    # the M address the caller passed as argument (from the expected contractInvoked effect)
    (inv,) = [e for e in _effects(doc, "contractInvoked") if e["function"] == "transfer"]
    assert t["to_muxed"] == inv["args"][1] == "MBN4NNCDGJO4XW4KQU3CBIESUJWFVBUZPOKUZHT7W7WRB7CWOA7BWAAAAGMKVKKFQ2JKS"
    assert t["asset"] == "credit_alphanum4:USDC:GDQOE23CFSUMSVQK4Y5JHPPYK73VYCNHZHA7ENKCV37P6SUEO6XQBKPP"
    assert t["amount_raw"] == "10000000" and t["amount"] == 1.0
    # the invocation's args keep the muxed address as an SCAddress of type muxed account
    (row,) = get_processor("contract_invocations").process([ledger]).to_pylist()
    assert json.loads(row["args"])[1] == {"address": "MBN4NNCDGJO4XW4KQU3CBIESUJWFVBUZPOKUZHT7W7WRB7CWOA7BWAAAAGMKVKKFQ2JKS"}
    assert json.loads(row["args"])[2] == {"i128": "10000000"}
    assert row["auth_addresses"] == ["CAYXY6QGTPOCZ676MLGT5JFESVROJ6OJF7VW3LLXMTC2RQIZTP5JYNEL"]


def test_clawback_of_alphanum12_asset(fixtures, header_entry):
    _, ledger = _load(fixtures, "soroban/clawback-tokens-from-account.json", header_entry)
    (c,) = transfers(ledger)
    assert c["from"] == "GAIENXLII66MJPJLGYOEHKXRCZEXHTXNJCRZ7GIGZCUX6C57URK7RNMU" and c["to"] is None
    assert c["asset_type"] == "credit_alphanum12" and c["asset_code"] == "f0db7575d4ca"
    assert c["asset"] == "credit_alphanum12:f0db7575d4ca:GDKSK5Y3QOUX4EA5IPR5SEIEUAFNA2Z7O3BPTPA6RCCGO77WN5KOGX6E"
    assert c["contract_id"] == "CCOBO4LPGQOZOBCERZB3EVBQDKGESFYMSGZTUVXP2QLLPPMH7FAJ2GNX"
    assert c["amount_raw"] == "42000000000"


INVOKED = V4_SOROBAN + [
    "soroban/tx-meta-v4-events.json",
    "soroban/custom-token-transfer.json",
    "soroban/custom-token-mint.json",
    "soroban/cross-call-invoke-set-data.json",
]


@pytest.mark.parametrize("name", INVOKED)
def test_contract_invocations_match_expected_top_level_call(fixtures, header_entry, name):
    doc, ledger = _load(fixtures, name, header_entry)
    (row,) = get_processor("contract_invocations").process([ledger]).to_pylist()
    top = [e for e in _effects(doc, "contractInvoked") if "depth" not in e]
    assert (row["contract_id"], row["function_name"], row["source_account"]) == (
        top[0]["contract"], top[0]["function"], top[0]["source"]
    )
    assert row["host_function_type"] == "invoke_contract" and row["result_code"] == "success"


def test_contract_deployed_with_constructor(fixtures, header_entry):
    doc, ledger = _load(fixtures, "soroban/contract-deployed-with-constructor.json", header_entry)
    (row,) = get_processor("contract_invocations").process([ledger]).to_pylist()
    created = _effects(doc, "contractCreated")[0]
    assert row["host_function_type"] == "create_contract_v2"
    assert row["contract_id"] == created["contract"] == "CBOUXHKCWBON5KCQZOFCEDXKRJVLEGTMMSRG7BL5GGQ72HH53ARRNYBW"
    assert row["wasm_hash"] == created["wasmHash"]
    assert json.loads(row["args"]) == [{"string": "World!"}]
    assert row["args_xdr"] == ["AAAADgAAAAZXb3JsZCEAAA=="]
    assert json.loads(row["return_value"]) == {"address": created["contract"]}


def test_contract_events_of_v3_and_v4_fixture(fixtures, header_entry):
    doc, ledger = _load(fixtures, "soroban/custom-token-transfer.json", header_entry)
    rows = get_processor("contract_events").process([ledger]).to_pylist()
    op_rows = [r for r in rows if r["event_source"] == "operation"]
    expected = _effects(doc, "contractEvent")
    assert [r["topics"] for r in op_rows] == [e["rawTopics"] for e in expected]
    assert [r["data"] for r in op_rows] == [e["rawData"] for e in expected]
    assert [r["contract_id"] for r in op_rows] == [e["contract"] for e in expected]
    assert all(r["operation_index"] == 1 for r in op_rows)
    assert ledger.transactions[0].meta.v == 3


def test_sac_deployment_upload_and_wasm_deployment(fixtures, header_entry):
    # futurenet fixtures: the deployed ids only match with the futurenet passphrase
    doc, ledger = _load(fixtures, "soroban/sac-contract-deployed.json", header_entry, FUTURENET)
    (row,) = get_processor("contract_invocations").process([ledger]).to_pylist()
    created = _effects(doc, "contractCreated")[0]
    code, issuer, _ = created["asset"].split("-")
    assert row["host_function_type"] == "create_contract" and row["wasm_hash"] is None
    assert row["contract_id"] == created["contract"] and row["asset"] == f"{code}:{issuer}"
    assert row["function_name"] is None and row["args"] == "[]"

    doc, ledger = _load(fixtures, "soroban/contract-uploaded.json", header_entry)
    (row,) = get_processor("contract_invocations").process([ledger]).to_pylist()
    wasm = base64.b64decode(_effects(doc, "contractCodeUploaded")[0]["wasm"])
    assert row["host_function_type"] == "upload_contract_wasm" and row["contract_id"] is None
    assert row["wasm_hash"] == hashlib.sha256(wasm).hexdigest()
    assert json.loads(row["return_value"]) == {"bytes": row["wasm_hash"]}

    doc, ledger = _load(fixtures, "soroban/deployer-contract-created.json", header_entry, FUTURENET)
    (row,) = get_processor("contract_invocations").process([ledger]).to_pylist()
    created = _effects(doc, "contractCreated")[0]
    assert (row["contract_id"], row["wasm_hash"]) == (created["contract"], created["wasmHash"])
    assert row["source_account"] == created["source"]
