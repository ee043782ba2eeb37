"""contract_events, token_transfers and contract_invocations over real pubnet Soroban ledgers.

Counts are checked against ``inventory.jsonl`` (computed by a separate tool); token transfers are
re-derived here from the raw event XDR with ``stellar_sdk.scval.to_native`` and SAC ids with
``stellar_sdk.Asset.contract_id``, independently of cdp_ray's decoders.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter

import pytest
from stellar_sdk import Asset, StrKey, scval, xdr

from cdp_ray.processors import get_processor
from cdp_ray.processors.token_transfers import LegacyMetaError
from cdp_ray.xdr import decode_ledger

PUBNET = "Public Global Stellar Network ; September 2015"
SOROBAN_LEDGERS = [*range(63092982, 63093002), 60659332, 51000294, 57500008]


def _file(stellar_data, seq: int):
    if seq == 60659332:
        return stellar_data / "rs-stellar-xdr/FC62697B--60659332.xdr"
    if seq == 53312000:
        return stellar_data / "stellar-go/FCD285FF--53312000.xdr.zstd"
    return stellar_data / f"wallet-backend/ledger-{seq}.xdr.gz"


def _load(stellar_data, seq: int):
    path = _file(stellar_data, seq)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    elif path.suffix == ".zstd":
        import zstandard

        raw = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    if seq in (60659332, 53312000):  # LedgerCloseMetaBatch of one ledger
        raw = xdr.LedgerCloseMetaBatch.from_xdr_bytes(raw).ledger_close_metas[0].to_xdr_bytes()
    return decode_ledger(raw, PUBNET)


@pytest.fixture(scope="module")
def inventory(stellar_data):
    rows = [json.loads(line) for line in (stellar_data / "inventory.jsonl").read_text().splitlines() if line.strip()]
    return {r["seq"]: r for r in rows}


@pytest.fixture(scope="module")
def ledgers(stellar_data):
    return {seq: _load(stellar_data, seq) for seq in SOROBAN_LEDGERS}


@pytest.fixture(scope="module")
def first(ledgers):
    return ledgers[63092982]


def _is_soroban(tx) -> bool:
    return getattr(tx.tx, "ext", None) is not None and tx.tx.ext.v == 1


def test_contract_event_counts_match_inventory(ledgers, inventory):
    proc = get_processor("contract_events")
    for seq, ledger in ledgers.items():
        inv = inventory[seq]
        rows = proc.process([ledger]).to_pylist()
        by_source = Counter(r["event_source"] for r in rows)
        assert by_source["operation"] == inv["op_events_total"], seq
        assert by_source["diagnostic"] == inv["diagnostic_events"], seq
        soroban = {t.hash.hex() for t in ledger.transactions if _is_soroban(t)}
        assert sum(r["event_source"] == "operation" and r["transaction_hash"] in soroban for r in rows) == (
            inv["soroban_tx_contract_events"]
        ), seq
        # every transaction of meta v4 has exactly one fee charge among its transaction-level events
        charges = [r for r in rows if r["event_source"] == "transaction" and r["stage"] == "before_all_txs"]
        assert len(charges) == inv["txs"], seq
        assert {r["type_string"] for r in rows if r["event_source"] == "operation"} <= {
            "ContractEventTypeContract", "ContractEventTypeSystem"
        }
        assert all(r["operation_id"] is not None for r in rows if r["event_source"] == "operation")
        assert all(r["operation_id"] is None for r in rows if r["event_source"] != "operation")


def test_contract_event_row_decodes_topics_and_data(first):
    rows = get_processor("contract_events").process([first]).to_pylist()
    sac = [
        r for r in rows
        if r["transaction_hash"] == "9c2d6f000929a020bc2d0cb635e7a91564738229033bed9d4bf2e5021f566757"
        and r["event_source"] == "operation"
    ]
    usdc = "USDC:GA5ZSEJYB37JRC5AVCIA5MOP4RHTM335X2KGX3IHOJAPP5RE34K4KZVN"
    r = next(r for r in sac if r["contract_id"] == "CCW67TSZV3SSS2HXMBQ5JFGCKJNXKZM7UQUWUZPUTHXSTZLEO7SJMI75")
    assert json.loads(r["topics_decoded"]) == [
        {"symbol": "transfer"},
        {"address": "CA6PUJLBYKZKUEKLZJMKBZLEKP2OTHANDEOWSFF44FTSYLKQPIICCJBE"},
        {"address": "CDPXVYXI3IEFKOK5KSJHEIBNW7LC2EV7KZV5CSWG2CIAY33METHJV2SO"},
        {"string": usdc},
    ]
    assert r["data_decoded"] == '{"i128":"8491331502"}'
    assert [scval.to_native(xdr.SCVal.from_xdr(t)) for t in r["topics"]][0] == "transfer"
    diag = xdr.DiagnosticEvent.from_xdr(r["contract_event_xdr"])
    assert diag.in_successful_contract_call and diag.event.body.v0.data.to_xdr() == r["data"]
    assert r["operation_id"] == 270982294298185729 and r["operation_index"] == 1
    assert r["type"] == 1 and r["type_string"] == "ContractEventTypeContract" and r["successful"]
    # contract_event_xdr is assembled from the packed parts: it must be the DiagnosticEvent's own XDR
    for row in rows:
        d = xdr.DiagnosticEvent.from_xdr(row["contract_event_xdr"])
        assert d.to_xdr() == row["contract_event_xdr"]
        assert [t.to_xdr() for t in d.event.body.v0.topics] == row["topics"]
        assert d.event.body.v0.data.to_xdr() == row["data"]
        assert d.in_successful_contract_call == row["in_successful_contract_call"]


def _independent_transfers(ledger) -> list[tuple]:
    """(tx hash, op index, topic, from, to, amount, asset) of SEP-41 events, decoded with stellar_sdk."""
    out = []
    for tx in ledger.transactions:
        if not tx.successful:
            continue
        for i, op in enumerate(tx.meta.v4.operations, start=1):
            for ev in op.events:
                topics = [scval.to_native(t) for t in ev.body.v0.topics]
                if ev.type != xdr.ContractEventType.CONTRACT or not topics or topics[0] not in (
                    "transfer", "mint", "burn", "clawback"
                ):
                    continue
                data = scval.to_native(ev.body.v0.data)
                amount = data["amount"] if isinstance(data, dict) else data
                addrs = [t.address for t in topics[1:] if hasattr(t, "address")]
                if topics[0] == "transfer":
                    frm, to = addrs[0], addrs[1]
                elif topics[0] == "mint":
                    frm, to = None, addrs[0]
                else:
                    frm, to = addrs[0], None
                cid = StrKey.encode_contract(ev.contract_id.contract_id.hash)
                asset = ""
                name = topics[-1] if isinstance(topics[-1], str) and len(topics) == (4 if topics[0] == "transfer" else 3) else None
                if name:
                    a = Asset.native() if name == "native" else Asset(*name.split(":"))
                    if a.contract_id(PUBNET) == cid:
                        asset = "native" if a.is_native() else f"{a.type}:{a.code}:{a.issuer}"
                out.append((tx.hash.hex(), i, topics[0], frm, to, str(amount), asset))
    return out


def test_token_transfers_match_raw_events_on_all_soroban_ledgers(ledgers, inventory):
    proc = get_processor("token_transfers")
    for seq, ledger in ledgers.items():
        rows = proc.process([ledger]).to_pylist()
        ops = [r for r in rows if r["event_topic"] != "fee"]
        got = [
            (r["transaction_hash"], r["operation_id"] & 0xFFF, r["event_topic"], r["from"], r["to"], r["amount_raw"], r["asset"])
            for r in ops
        ]
        assert got == _independent_transfers(ledger), seq
        fees = [r for r in rows if r["event_topic"] == "fee"]
        charges = [r for r in fees if int(r["amount_raw"]) > 0]
        assert len(charges) == inventory[seq]["txs"], seq
        # refunds (negative fee events) only for Soroban transactions
        soroban = {t.hash.hex() for t in ledger.transactions if _is_soroban(t)}
        assert {r["transaction_hash"] for r in fees if int(r["amount_raw"]) < 0} <= soroban
        assert [r["event_index"] for r in rows] == list(range(len(rows)))


def test_protocol_23_order_puts_refunds_last(first):
    rows = get_processor("token_transfers").process([first]).to_pylist()
    kinds = ["charge" if r["event_topic"] == "fee" and int(r["amount_raw"]) > 0 else
             "refund" if r["event_topic"] == "fee" else "op" for r in rows]
    n_tx = len(first.transactions)
    assert kinds[:n_tx] == ["charge"] * n_tx
    first_refund = kinds.index("refund")
    assert set(kinds[first_refund:]) == {"refund"} and "op" in kinds[n_tx:first_refund]
    assert Counter(kinds) == {"charge": 305, "op": 418, "refund": 51}


def test_specific_sac_transfers_in_63092982(first):
    rows = get_processor("token_transfers").process([first]).to_pylist()
    tx = [r for r in rows if r["transaction_hash"] == "9c2d6f000929a020bc2d0cb635e7a91564738229033bed9d4bf2e5021f566757"
          and r["event_topic"] != "fee"]
    assert [(r["from"], r["to"], r["amount_raw"], r["asset"], r["contract_id"]) for r in tx] == [
        ("GAQCCRRVYDTBES66MW5GS6ZCVTLLQP4GLV35WI7TWQQYTMWX7MVHDDPY", "CDPXVYXI3IEFKOK5KSJHEIBNW7LC2EV7KZV5CSWG2CIAY33METHJV2SO",
         "36621093750", "native", "CAS3J7GYLGXMF6TDJBBYYSE3HQ6BBSMLNUQ34T6TZMYMW2EVH34XOWMA"),
        ("CDPXVYXI3IEFKOK5KSJHEIBNW7LC2EV7KZV5CSWG2CIAY33METHJV2SO", "CA6PUJLBYKZKUEKLZJMKBZLEKP2OTHANDEOWSFF44FTSYLKQPIICCJBE",
         "36621093750", "native", "CAS3J7GYLGXMF6TDJBBYYSE3HQ6BBSMLNUQ34T6TZMYMW2EVH34XOWMA"),
        ("CA6PUJLBYKZKUEKLZJMKBZLEKP2OTHANDEOWSFF44FTSYLKQPIICCJBE", "CDPXVYXI3IEFKOK5KSJHEIBNW7LC2EV7KZV5CSWG2CIAY33METHJV2SO",
         "8491331502", "credit_alphanum4:USDC:GA5ZSEJYB37JRC5AVCIA5MOP4RHTM335X2KGX3IHOJAPP5RE34K4KZVN",
         "CCW67TSZV3SSS2HXMBQ5JFGCKJNXKZM7UQUWUZPUTHXSTZLEO7SJMI75"),
        ("CDPXVYXI3IEFKOK5KSJHEIBNW7LC2EV7KZV5CSWG2CIAY33METHJV2SO", "GAQCCRRVYDTBES66MW5GS6ZCVTLLQP4GLV35WI7TWQQYTMWX7MVHDDPY",
         "8491331502", "credit_alphanum4:USDC:GA5ZSEJYB37JRC5AVCIA5MOP4RHTM335X2KGX3IHOJAPP5RE34K4KZVN",
         "CCW67TSZV3SSS2HXMBQ5JFGCKJNXKZM7UQUWUZPUTHXSTZLEO7SJMI75"),
    ]
    assert tx[2]["asset_code"] == "USDC" and tx[2]["asset_type"] == "credit_alphanum4"
    assert tx[0]["amount"] == 36621093750 * 0.0000001
    # a custom (non-SAC) token's mint keeps an empty asset, as stellar-etl does
    (mint,) = [r for r in rows if r["event_topic"] == "mint" and r["asset"] == ""]
    assert mint["to"] == mint["contract_id"] == "CCA2ZJP5BVRXYTQH4FAGHCAUMRYCXVC4CRYC2NXHWMR7TIVX36U7F5HR"
    assert mint["amount_raw"] == "122616059" and mint["asset_code"] is None and mint["asset_type"] == ""


def test_contract_invocations_one_row_per_host_function_op(ledgers, inventory):
    proc = get_processor("contract_invocations")
    for seq, ledger in ledgers.items():
        rows = proc.process([ledger]).to_pylist()
        assert len(rows) == inventory[seq]["invoke_host_fn_ops"], seq
    rows = proc.process([ledgers[63092982]]).to_pylist()
    r = next(r for r in rows if r["transaction_hash"] == "3c002a57dd147a65642e282224801b8f8ffd1ca593d13e0d961151c35cff8462")
    assert r["contract_id"] == "CDL74RF5BLYR2YBLCCI7F5FB6TPSCLKEJUBSD2RSVWZ4YHF3VMFAIGWA" and r["function_name"] == "plant"
    assert json.loads(r["args"]) == [{"address": "GCIT5RC2EBXJJ7C25HAI5ZKHPCTBBO3UHDAUVRN2F357H7VBEZU4UYUV"}, {"i128": "0"}]
    assert r["result_code"] == "success" and r["return_value"] == '"void"'
    assert (r["instructions"], r["write_bytes"], r["read_only_keys"], r["read_write_keys"]) == (1755054, 1472, 1, 3)
    assert (r["resource_fee"], r["non_refundable_resource_fee_charged"], r["refundable_resource_fee_charged"],
            r["rent_fee_charged"]) == (288590, 14544, 4229, 4209)
    assert json.loads(r["auth"])[0]["credentials"] == "source_account"
    # event counts per invocation add up to the Soroban transactions' contract events
    assert sum(r["contract_events_count"] for r in rows) == inventory[63092982]["soroban_tx_contract_events"]


def test_meta_v3_ledger(stellar_data, inventory):
    ledger = _load(stellar_data, 53312000)
    rows = get_processor("contract_events").process([ledger]).to_pylist()
    assert Counter(r["event_source"] for r in rows) == {"diagnostic": inventory[53312000]["diagnostic_events"]}
    with pytest.raises(LegacyMetaError, match="meta v3"):
        get_processor("token_transfers").process([ledger], {"source": "events"})
    derived = get_processor("token_transfers").process([ledger]).to_pylist()  # source: auto derives
    assert Counter(r["event_topic"] for r in derived) == {"fee": 164, "transfer": 132}
    (inv,) = get_processor("contract_invocations").process([ledger]).to_pylist()
    assert inv["host_function_type"] in {"invoke_contract", "create_contract", "upload_contract_wasm", "create_contract_v2"}


def test_config_options(first):
    usdc_sac = "CCW67TSZV3SSS2HXMBQ5JFGCKJNXKZM7UQUWUZPUTHXSTZLEO7SJMI75"
    rows = get_processor("contract_events").process([first], {"contract_ids": [usdc_sac]}).to_pylist()
    assert rows and {r["contract_id"] for r in rows} == {usdc_sac}
    everything = get_processor("contract_events").process([first]).to_pylist()
    assert [r["event_index"] for r in rows] == [r["event_index"] for r in everything if r["contract_id"] == usdc_sac]
    no_diag = get_processor("contract_events").process([first], {"include_diagnostic": False}).to_pylist()
    assert len(no_diag) == len(everything) - 1201
    ok = get_processor("contract_invocations").process([first], {"include_failed": False}).to_pylist()
    all_inv = get_processor("contract_invocations").process([first]).to_pylist()
    assert all(r["successful"] for r in ok) and len(ok) == sum(r["successful"] for r in all_inv) < len(all_inv)
    assert {r["result_code"] for r in all_inv if not r["successful"]} - {"success"}
