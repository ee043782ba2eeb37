"""Transaction filters: filtered outputs equal unfiltered outputs filtered afterwards, each criterion
against an independent derivation, and the raw-byte push-down never drops a matching ledger."""

from __future__ import annotations

import base64
import json

import pytest
from pydantic import ValidationError
from stellar_sdk import StrKey

from cdp_ray.lake.formats import split_ledgers
from cdp_ray.processors import get_processor
from cdp_ray.processors.filters import PushDownStats, TransactionFilter, decode_matching, filtered, select
from cdp_ray.xdr import decode_ledger

PUBNET = "Public Global Stellar Network ; September 2015"
USDC = "USDC:GA5ZSEJYB37JRC5AVCIA5MOP4RHTM335X2KGX3IHOJAPP5RE34K4KZVN"
TRADER = "GAZRYQGITCVUGQQV772HEB5HZWYGZWNWVHOLUX65MHO5TWDFMPJUS572"
POOL_CONTRACT = "CA6PUJLBYKZKUEKLZJMKBZLEKP2OTHANDEOWSFF44FTSYLKQPIICCJBE"

# How each table's rows name their transaction (TOID).
TX_OF = {
    "transactions": lambda r: r["id"],
    "operations": lambda r: r["transaction_id"],
    "effects": lambda r: r["operation_id"] & ~0xFFF,
    "trades": lambda r: r["history_operation_id"] & ~0xFFF,
    "payments": lambda r: r["transaction_id"],
    "accounts": lambda r: r["transaction_id"],
    "trustlines": lambda r: r["transaction_id"],
    "offers": lambda r: r["transaction_id"],
    "liquidity_pools": lambda r: r["transaction_id"],
    "contract_data": lambda r: r["transaction_id"],
    "ttl": lambda r: r["transaction_id"],
    "contract_events": lambda r: r["transaction_id"],
}


@pytest.fixture(scope="module")
def raw60659332(stellar_data):
    path = stellar_data / "rs-stellar-xdr/FC62697B--60659332.xdr"
    (raw,) = split_ledgers(path.read_bytes(), str(path))
    return raw


@pytest.fixture(scope="module")
def ledger(raw60659332):
    return decode_ledger(raw60659332, PUBNET)


@pytest.fixture(scope="module")
def tx_xdr(ledger):
    """TOID -> the transaction's envelope, result, meta and fee meta bytes, from the transactions table."""
    table = get_processor("transactions").process([ledger]).to_pylist()
    cols = ("tx_envelope", "tx_result", "tx_meta", "tx_fee_meta")
    return {r["id"]: b"".join(base64.b64decode(r[c] or "") for c in cols) for r in table}


def matching_ids(ledger, where: TransactionFilter) -> set[int]:
    (view,) = select([ledger], where) or [None]
    return set() if view is None else {(ledger.sequence << 32) | (t.index << 12) for t in view.transactions}


@pytest.mark.parametrize(
    "where",
    [
        {"operation_types": ["path_payment_strict_send", "manage_sell_offer"]},
        {"accounts": [TRADER]},
        {"contract_ids": [POOL_CONTRACT]},
        {"assets": [USDC]},
        {"event_topics": ["transfer"], "operation_types": ["invoke_host_function"]},
    ],
    ids=["op-types", "account", "contract", "asset", "topic+op"],
)
def test_filtered_equals_unfiltered_then_filtered(ledger, where):
    flt = TransactionFilter.model_validate(where)
    ids = matching_ids(ledger, flt)
    assert 0 < len(ids) < len(ledger.transactions)
    for name, tx_of in TX_OF.items():
        full = get_processor(name).process([ledger]).to_pylist()
        expected = [r for r in full if tx_of(r) in ids]
        got = filtered(name, [ledger], flt).to_pylist()
        assert got == expected, name


@pytest.mark.parametrize("name", ["effects", "trades", "assets", "accounts", "contract_data"])
def test_where_option_in_processor_config(ledger, name):
    where = {
        "assets": [USDC],
        "operation_types": ["manage_sell_offer", "path_payment_strict_send", "invoke_host_function"],
    }
    via_config = get_processor(name).process([ledger], {"where": where})
    assert via_config.num_rows > 0
    assert via_config.to_pylist() == filtered(name, [ledger], TransactionFilter.model_validate(where)).to_pylist()


def test_operation_types_match_operations_table(ledger):
    ops = get_processor("operations").process([ledger]).to_pylist()
    expected = {
        r["transaction_id"] for r in ops if r["type_string"] in ("path_payment_strict_send", "manage_sell_offer")
    }
    # Failed transactions' operations count too.
    assert (
        matching_ids(ledger, TransactionFilter(operation_types=["PATH_PAYMENT_STRICT_SEND", "manage_sell_offer"]))
        == expected
    )


def test_accounts_and_contracts_are_byte_occurrences(ledger, tx_xdr):
    key = StrKey.decode_ed25519_public_key(TRADER)
    assert matching_ids(ledger, TransactionFilter(accounts=[TRADER])) == {i for i, b in tx_xdr.items() if key in b}
    cid = StrKey.decode_contract(POOL_CONTRACT)
    assert matching_ids(ledger, TransactionFilter(contract_ids=[POOL_CONTRACT])) == {
        i for i, b in tx_xdr.items() if cid in b
    }
    # Every transaction whose source is an account is matched by that account.
    txs = get_processor("transactions").process([ledger]).to_pylist()
    for r in txs[:20]:
        assert r["id"] in matching_ids(ledger, TransactionFilter(accounts=[r["account"]]))


def test_asset_filter_covers_classic_and_soroban_use(ledger):
    ids = matching_ids(ledger, TransactionFilter(assets=[USDC]))
    trades = get_processor("trades").process([ledger]).to_pylist()
    usdc = ("USDC", "GA5ZSEJYB37JRC5AVCIA5MOP4RHTM335X2KGX3IHOJAPP5RE34K4KZVN")
    traded = {
        r["history_operation_id"] & ~0xFFF
        for r in trades
        if usdc
        in ((r["selling_asset_code"], r["selling_asset_issuer"]), (r["buying_asset_code"], r["buying_asset_issuer"]))
    }
    assert traded and traded <= ids
    effects = get_processor("effects").process([ledger]).to_pylist()
    details = [(r["operation_id"] & ~0xFFF, json.loads(r["details"])) for r in effects]
    moved = {tx for tx, d in details if (d.get("asset_code"), d.get("asset_issuer")) == usdc}
    assert moved <= ids
    native = matching_ids(ledger, TransactionFilter(assets=["native"]))
    # Meta v4 gives every transaction a native fee event; that alone must not match "native".
    assert 0 < len(native) < len(ledger.transactions)


def test_event_topics_match_contract_events(ledger):
    events = get_processor("contract_events").process([ledger]).to_pylist()
    ids = matching_ids(ledger, TransactionFilter(event_topics=["transfer"]))
    with_transfer = {
        r["transaction_id"]
        for r in events
        if r["type_string"] != "ContractEventTypeDiagnostic" and '"transfer"' in (r["topics_decoded"] or "")
    }
    assert ids and ids == with_transfer


def test_combined_criteria_intersect(ledger):
    a = matching_ids(ledger, TransactionFilter(assets=[USDC]))
    b = matching_ids(ledger, TransactionFilter(operation_types=["path_payment_strict_send"]))
    assert matching_ids(ledger, TransactionFilter(assets=[USDC], operation_types=["path_payment_strict_send"])) == a & b


def test_push_down_skips_ledgers_that_cannot_match(stellar_data, raw60659332):
    sample = sorted((stellar_data / "wallet-backend").glob("ledger-630929*.xdr.gz"))[:6]
    raws = [split_ledgers(p.read_bytes(), str(p))[0] for p in sample] + [raw60659332]
    flt = TransactionFilter(accounts=[TRADER])
    stats = PushDownStats()
    kept = decode_matching(raws, PUBNET, flt, stats=stats)
    assert (stats.ledgers, stats.decoded, stats.kept) == (7, 1, 1)
    assert [lg.sequence for lg in kept] == [60659332]
    # Soundness: a ledger the byte check rejects has no matching transaction once decoded.
    for raw in raws:
        for where in ({"accounts": [TRADER]}, {"assets": [USDC]}, {"event_topics": ["transfer"]}):
            f = TransactionFilter.model_validate(where)
            if not f.may_match(raw, PUBNET):
                assert select([decode_ledger(raw, PUBNET)], f) == []


def test_entry_positions_survive_narrowing(ledger):
    flt = TransactionFilter(accounts=[TRADER])
    full = {r["change_index"]: r for r in get_processor("accounts").process([ledger]).to_pylist()}
    got = filtered("accounts", [ledger], flt).to_pylist()
    assert got and all(full[r["change_index"]] == r for r in got)


def test_invalid_filters_are_rejected():
    with pytest.raises(ValidationError, match="unknown operation type"):
        TransactionFilter(operation_types=["pay"])
    with pytest.raises(ValidationError, match="not a G"):
        TransactionFilter(accounts=[POOL_CONTRACT])
    with pytest.raises(ValidationError, match="not a C"):
        TransactionFilter(contract_ids=[TRADER])
    with pytest.raises(ValidationError, match="not an asset"):
        TransactionFilter(assets=["USDC"])
    assert TransactionFilter().empty


def test_transaction_xdr_is_the_encoding_of_its_parts(raw60659332):
    from cdp_ray.processors.filters import transaction_xdr

    for engine in ("fast", "sdk"):
        for t in decode_ledger(raw60659332, PUBNET, engine=engine).transactions:
            parts = [t.envelope, t.result, t.meta, t.fee_changes] + [t.post_apply_fee_changes] * (
                t.post_apply_fee_changes is not None
            )
            assert transaction_xdr(t) == b"".join(p.to_xdr_bytes() for p in parts), (engine, t.index)
