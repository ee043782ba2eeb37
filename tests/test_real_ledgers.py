"""Every real ledger in ``shared/stellar-data`` goes through ``transactions`` and ``operations``.

Counts are checked against ``inventory.jsonl`` (worked out independently of this code): ``txs`` and
``successful_txs`` per ledger, ``ops`` (every operation of the transaction set, failed transactions
included, which is what the ``operations`` table holds), ``invoke_host_fn_ops`` and the per-type
counts in ``top_ops``. The 320 contiguous lighthorizon ledgers are sampled.

Operation types the ledgers lack (liquidity pools, fee bumps, muxed accounts, sponsorship revocation,
Soroban create/extend/restore) are checked on single real transactions from the tx-meta-effects-parser
corpus, against the StellarExpert effects that come with them.
"""

from __future__ import annotations

import gc
import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from stellar_sdk import xdr

from cdp_ray.errors import CdpRayError, CorruptLedgerFileError, NetworkMismatchError
from cdp_ray.lake.formats import split_ledgers
from cdp_ray.networks import network_id
from cdp_ray.processors import get_processor
from cdp_ray.processors.common import amount_string, strkey
from cdp_ray.processors.operations import operation_rows
from cdp_ray.processors.transactions import transaction_row
from cdp_ray.xdr import decode_ledger
from cdp_ray.xdr.ledger import Transaction, decode_lcm, envelope_hash

PASSPHRASES = {
    "pubnet": "Public Global Stellar Network ; September 2015",
    "testnet": "Test SDF Network ; September 2015",
}
# Network of each directory per the data README (inventory has null where a ledger has no transactions).
DIR_NETWORK = {
    "rs-stellar-xdr": "pubnet",
    "stellar-etl-golden": "pubnet",
    "stellar-go": "pubnet",
    "stellar-go-lighthorizon": "testnet",
    "stellar-go-testbucket": "testnet",
    "stellar-go-ttp": "pubnet",
    "wallet-backend": "pubnet",
}
LIGHTHORIZON_SAMPLE = ("1410048", "1410111", "1410200", "1410303", "1410367")
# Re-encoding the base64 XDR columns is most of the transactions processor's time: check it on one file
# per LedgerCloseMeta version and skip it elsewhere (the goldens check those columns byte for byte).
WITH_XDR = {
    "stellar-go-ttp/burn-ledger-7762802",  # LCM v0, meta v2
    "stellar-go/FCD285FF--53312000.xdr.zstd",  # LCM v1, meta v3
    "rs-stellar-xdr/FC62697B--60659332.xdr",  # LCM v2, meta v4
}

_NO_DATA = "<no stellar-data>"


def _inventory_path() -> Path | None:
    """Parametrisation happens before fixtures exist: use the lookup behind the ``stellar_data`` fixture."""
    try:
        from conftest import STELLAR_DATA
    except ImportError:
        return None
    return None if STELLAR_DATA is None else STELLAR_DATA / "inventory.jsonl"


def _files() -> list[str]:
    path = _inventory_path()
    if path is None or not path.exists():
        return [_NO_DATA]
    files = sorted({json.loads(line)["file"] for line in path.read_text().splitlines() if line.strip()})
    out = []
    for f in files:
        top = f.split("/")[0]
        if top not in DIR_NETWORK:  # synthetic/ is not real network data
            continue
        if top == "stellar-go-lighthorizon" and f.rsplit("/", 1)[-1] not in LIGHTHORIZON_SAMPLE:
            continue
        out.append(f)
    return out


@pytest.fixture(scope="module")
def inventory(stellar_data) -> dict[int, dict]:
    rows = [json.loads(line) for line in (stellar_data / "inventory.jsonl").read_text().splitlines() if line.strip()]
    return {r["seq"]: r for r in rows if not r["file"].startswith("synthetic/")}


@pytest.mark.parametrize("rel", _files())
def test_file_yields_inventory_counts(stellar_data, inventory, rel):
    if rel == _NO_DATA:
        pytest.skip("inventory.jsonl not found at collection time")
    path = stellar_data / rel
    network = DIR_NETWORK[rel.split("/")[0]]
    lcms = split_ledgers(path.read_bytes(), rel)
    assert lcms
    tx_proc, op_proc = get_processor("transactions"), get_processor("operations")
    for lcm in lcms:
        ledger = decode_ledger(lcm, PASSPHRASES[network], key=rel)
        inv = inventory[ledger.sequence]
        assert inv["file"] == rel
        assert inv["network"] in (network, None)

        txs = tx_proc.process([ledger], {"include_xdr": rel in WITH_XDR})
        ops = op_proc.process([ledger])
        assert txs.schema == tx_proc.schema and ops.schema == op_proc.schema
        assert txs.num_rows == inv["txs"]
        assert sum(txs.column("successful").to_pylist()) == inv["successful_txs"]
        assert ops.num_rows == inv["ops"]
        assert sum(txs.column("operation_count").to_pylist()) == inv["ops"]

        for r in txs.to_pylist():
            # Soroban fee accounting: charged = inclusion fee charged + resource fee - refund (stellar-etl
            # reads the fee account by its M-address, so a muxed fee account reads zero balances)
            if r["resource_fee"] and r["account_muxed"] is None and r["fee_account_muxed"] is None:
                assert r["fee_charged"] == r["inclusion_fee_charged"] + r["resource_fee"] - r["resource_fee_refund"]
                assert r["inclusion_fee_bid"] == (r["new_max_fee"] or r["max_fee"]) - r["resource_fee"]

        if rel in WITH_XDR:
            nid = network_id(PASSPHRASES[network])
            for r, t in zip(txs.to_pylist(), ledger.transactions):
                env = xdr.TransactionEnvelope.from_xdr(r["tx_envelope"])
                assert envelope_hash(env, nid).hex() == r["transaction_hash"]
                assert xdr.TransactionMeta.from_xdr(r["tx_meta"]).v == t.meta.v
                assert xdr.TransactionResult.from_xdr(r["tx_result"]).fee_charged.int64 == r["fee_charged"]

        tx_ids = txs.column("id").to_pylist()
        assert tx_ids == sorted(set(tx_ids))
        assert set(txs.column("transaction_hash").to_pylist()) == {t.hash.hex() for t in ledger.transactions}
        assert set(txs.column("ledger_sequence").to_pylist()) <= {ledger.sequence}

        op_rows = ops.to_pylist()
        op_ids = [r["id"] for r in op_rows]
        assert len(set(op_ids)) == len(op_ids)
        assert {r["transaction_id"] for r in op_rows} <= set(tx_ids)
        for r in op_rows:
            assert r["id"] >> 32 == ledger.sequence and r["id"] & 0xFFF >= 1
            assert r["id"] - (r["id"] & 0xFFF) == r["transaction_id"]
            assert isinstance(json.loads(r["details"]), dict)
        by_type = Counter(r["type_string"].upper() for r in op_rows)
        for name, count in inv["top_ops"].items():
            assert by_type[name] == count, name
        assert by_type["INVOKE_HOST_FUNCTION"] == inv["invoke_host_fn_ops"]


def test_wrong_network_is_refused(stellar_data):
    rel = "stellar-go-testbucket/FFFFFC18--999.xdr.zstd"
    (lcm,) = split_ledgers((stellar_data / rel).read_bytes(), rel)
    with pytest.raises(NetworkMismatchError):
        decode_ledger(lcm, PASSPHRASES["pubnet"], key=rel)


def test_sdk_engine_decodes_with_the_collector_paused(stellar_data, inventory, monkeypatch):
    """stellar-sdk's values are all tracked by the cyclic collector: a pass during a decode would re-walk
    every ledger held (a pipeline chunk holds 64), so none may start inside stellar-sdk's decoder, and the
    collector is on again after, after a failed decode too."""
    entry = next(e for e in inventory.values() if e["protocol"] == 26 and e["network"] == "pubnet")
    raw = next(r for r in split_ledgers((stellar_data / entry["file"]).read_bytes(), entry["file"])
               if decode_lcm(r, engine="sdk").v2.ledger_header.header.ledger_seq.uint32 == entry["seq"])
    inside, passes = [], []
    sdk_decode = xdr.LedgerCloseMeta.from_xdr_bytes

    def watched(data: bytes) -> xdr.LedgerCloseMeta:
        inside.append(True)
        try:
            return sdk_decode(data)
        finally:
            inside.pop()

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start" and inside:
            passes.append(info["generation"])

    monkeypatch.setattr(xdr.LedgerCloseMeta, "from_xdr_bytes", watched)
    gc.callbacks.append(on_gc)
    try:
        watched(raw)
        assert passes, "the decoder allocates enough to start collector passes when not paused"
        passes.clear()
        held = [decode_ledger(raw, PASSPHRASES["pubnet"], engine="sdk") for _ in range(3)]
        assert passes == [] and gc.isenabled()
        assert [h.sequence for h in held] == [entry["seq"]] * 3 and len(held[0].transactions) == entry["txs"]
        with pytest.raises(CorruptLedgerFileError):
            decode_ledger(raw[:-1], PASSPHRASES["pubnet"], engine="sdk")
        assert passes == [] and gc.isenabled()
    finally:
        gc.callbacks.remove(on_gc)


# --- transaction-level corpus (tx-meta-effects-parser): op types the ledgers above lack ------------------
#
# Each case is one real transaction (envelope, result, meta). StellarExpert's expected effects shipped
# with it give independent values to check ours against.

CORPUS = "tx-meta-effects-parser/tx-parser-data"


def _corpus_tx(stellar_data, rel: str, protocol: int = 22, network: str = "testnet"):
    """``(ledger stand-in, Transaction, expected effects)`` for one corpus file."""
    d = json.loads((stellar_data / CORPUS / rel).read_text())
    env = xdr.TransactionEnvelope.from_xdr(d["tx"])
    try:
        pair = xdr.TransactionResultPair.from_xdr(d["result"])
        if pair.to_xdr() != d["result"]:
            raise ValueError("not a TransactionResultPair")
    except Exception:
        pair = xdr.TransactionResultPair(xdr.Hash(bytes(32)), xdr.TransactionResult.from_xdr(d["result"]))
    t = Transaction(
        index=1,
        hash=pair.transaction_hash.hash,
        envelope=env,
        result=pair,
        meta=xdr.TransactionMeta.from_xdr(d["meta"]),
        fee_changes=xdr.LedgerEntryChanges([]),
    )
    ledger = SimpleNamespace(
        sequence=1000,
        closed_at=datetime(2024, 1, 1, tzinfo=timezone.utc),
        protocol_version=protocol,
        network_passphrase=PASSPHRASES[network],
    )
    return ledger, t, d["expected"]


def _ops(ledger, t) -> list[dict]:
    rows = operation_rows(ledger, t)
    for r in rows:
        r["details"] = json.loads(r["details"])
    return rows


def _effects(expected, kind: str) -> list[dict]:
    flat = [e for group in expected for e in (group if isinstance(group, list) else [group])]
    return [e for e in flat if e["type"] == kind]


# Keys stellar-etl always sets, per operation type (``sponsor``, muxed and result-dependent keys vary).
ALWAYS_KEYS = {
    "inflation": set(),
    "bump_sequence": {"bump_to"},
    "create_passive_sell_offer": {"amount", "price", "price_r", "buying_asset_type", "buying_asset_id",
                                  "selling_asset_type", "selling_asset_id"},
    "clawback": {"amount", "from", "asset_type", "asset_code", "asset_issuer", "asset_id"},
    "clawback_claimable_balance": {"balance_id", "balance_id_strkey"},
    "upload_wasm": {"function", "type", "ledger_key_hash", "contract_code_hash"},
    "create_contract": {"function", "type", "ledger_key_hash", "contract_id", "contract_code_hash", "from"},
}


def test_corpus_every_transaction_processes(stellar_data):
    """All 27 operation types and all 4 host function types occur in the corpus and all process."""
    files = sorted((stellar_data / CORPUS).rglob("*.json"))
    assert len(files) > 80
    seen: dict[str, set] = {}
    for path in files:
        if "result" not in json.loads(path.read_text()):
            continue
        ledger, t, _ = _corpus_tx(stellar_data, str(path.relative_to(stellar_data / CORPUS)))
        row = transaction_row(ledger, t)
        ops = _ops(ledger, t)
        assert row["operation_count"] == len(ops) == len(t.operations)
        assert [o["type"] for o in ops] == [op.body.type.value for op in t.operations]
        for o in ops:
            seen.setdefault(o["type_string"], set()).add(frozenset(o["details"]))
            if o["type_string"] == "invoke_host_function":
                seen.setdefault(o["details"]["type"], set()).add(frozenset(o["details"]))
    assert set(seen) >= {t.name.lower() for t in xdr.OperationType}
    assert {"invoke_contract", "create_contract", "create_contract_v2", "upload_wasm"} <= set(seen)
    for kind, keys in ALWAYS_KEYS.items():
        assert seen[kind] and all(keys <= k for k in seen[kind]), kind


def test_corpus_liquidity_pool_deposit_and_withdraw(stellar_data):
    ledger, t, expected = _corpus_tx(stellar_data, "classic-ops/deposit-to-lp-withdraw-half-withdraw-rest.json")
    ops = _ops(ledger, t)
    assert [o["type_string"] for o in ops] == [
        "change_trust", "liquidity_pool_deposit", "liquidity_pool_withdraw", "liquidity_pool_withdraw", "change_trust"
    ]
    (deposited,) = _effects(expected, "liquidityPoolDeposited")
    withdrew = _effects(expected, "liquidityPoolWithdrew")
    pool = deposited["pool"]
    assert ops[0]["details"]["asset_type"] == "liquidity_pool_shares"
    assert ops[0]["details"]["liquidity_pool_id_strkey"] == pool
    dep = ops[1]["details"]
    assert dep["liquidity_pool_id_strkey"] == pool
    assert dep["reserve_a_asset_type"] == "native" and dep["reserve_b_asset_code"] == "USD"
    assert dep["reserve_a_deposit_amount"] == int(deposited["assets"][0]["amount"]) / 1e7
    assert dep["reserve_b_deposit_amount"] == int(deposited["assets"][1]["amount"]) / 1e7
    assert dep["shares_received"] == int(deposited["shares"]) / 1e7
    assert dep["min_price_r"] == {"n": 1, "d": 10} and dep["max_price"] == 10.0
    for op, eff in zip(ops[2:4], withdrew):
        assert op["details"]["reserve_a_withdraw_amount"] == int(eff["assets"][0]["amount"]) / 1e7
        assert op["details"]["reserve_b_withdraw_amount"] == int(eff["assets"][1]["amount"]) / 1e7
        assert op["details"]["shares"] == int(eff["shares"]) / 1e7


def test_corpus_failed_liquidity_pool_deposit_uses_go_defaults(stellar_data):
    ledger, t, _ = _corpus_tx(stellar_data, "classic-ops/failed-lp-deposit.json")
    row = transaction_row(ledger, t)
    assert row["successful"] is False and row["transaction_result_code"] == "TransactionResultCodeTxFailed"
    dep = _ops(ledger, t)[1]
    assert dep["operation_trace_code"] == "LiquidityPoolDepositResultCodeLiquidityPoolDepositUnderfunded"
    # stellar-etl leaves Go's zero values for failed transactions: the native asset and 0 amounts
    d = dep["details"]
    assert (d["reserve_a_asset_type"], d["reserve_b_asset_type"]) == ("native", "native")
    assert d["reserve_a_deposit_amount"] == d["reserve_b_deposit_amount"] == d["shares_received"] == 0.0
    assert d["reserve_b_max_amount"] == 200.0


def test_corpus_fee_bump(stellar_data):
    ledger, t, expected = _corpus_tx(stellar_data, "tx-effects/fee-bump-transaction.json")
    row = transaction_row(ledger, t)
    (fee,) = _effects(expected, "feeCharged")
    assert fee["bump"] is True
    assert row["fee_account"] == fee["source"]
    assert row["new_max_fee"] == int(fee["bid"]) and row["fee_charged"] == int(fee["charged"])
    assert row["max_fee"] == t.tx.fee.uint32 < row["new_max_fee"]
    assert row["transaction_result_code"] == "TransactionResultCodeTxFeeBumpInnerSuccess"
    inner_env = xdr.TransactionEnvelope(type=xdr.EnvelopeType.ENVELOPE_TYPE_TX, v1=t.inner_envelope)
    inner = envelope_hash(inner_env, network_id(PASSPHRASES["testnet"]))
    assert row["inner_transaction_hash"] == inner.hex()
    assert row["tx_signers"] == [strkey("G", s.signature.signature) for s in t.envelope.fee_bump.signatures]


def test_corpus_muxed_accounts(stellar_data):
    ledger, t, expected = _corpus_tx(stellar_data, "classic-ops/muxed-accounts.json")
    (merge,) = _ops(ledger, t)
    (removed,) = _effects(expected, "accountRemoved")
    d = merge["details"]
    assert merge["source_account_muxed"] == d["account_muxed"] == removed["source"]
    assert d["account_muxed_id"] == 99999999 and d["into_muxed_id"] == 1919198222
    assert d["into"] == _effects(expected, "accountCredited")[0]["source"]


def test_corpus_sponsorship_revocations(stellar_data):
    ledger, t, expected = _corpus_tx(stellar_data, "classic-ops/update-ledger-entries-sponsorship.json")
    ops = _ops(ledger, t)
    new_sponsor = _effects(expected, "signerSponsorshipUpdated")[0]["sponsor"]
    assert ops[-1]["type_string"] == "end_sponsoring_future_reserves"
    assert ops[-1]["details"] == {"begin_sponsor": new_sponsor}
    keys = [set(o["details"]) for o in ops if o["type_string"] == "revoke_sponsorship"]
    assert {"signer_account_id", "signer_key"} in keys
    assert {"trustline_account_id", "trustline_asset"} in keys
    assert {"data_account_id", "data_name"} in keys
    assert {"claimable_balance_id", "claimable_balance_id_strkey"} in keys
    assert {"offer_id"} in keys and {"account_id"} in keys
    assert {"trustline_account_id", "trustline_liquidity_pool_id", "trustline_liquidity_pool_id_strkey"} in keys


def test_corpus_claimable_balances(stellar_data):
    ledger, t, expected = _corpus_tx(stellar_data, "classic-ops/create-claimable-balances.json")
    ops = _ops(ledger, t)
    created = _effects(expected, "claimableBalanceCreated")
    for op, eff in zip(ops, created):
        d = op["details"]
        assert d["amount"] == int(eff["amount"]) / 1e7
        assert d["sponsor"] == eff["sponsor"]
        epoch = eff["claimants"][0]["predicate"]["absBefore"]
        # the predicate holds a millisecond value, so Go prints an expanded (5-digit) year
        assert d["claimants"][0]["predicate"]["abs_before_epoch"] == epoch
        assert d["claimants"][0]["predicate"]["abs_before"].startswith("+54928-11-10T20:36:2")
    assert ops[0]["details"]["asset"] == "native"
    assert ops[1]["details"]["asset"].startswith("USD:G")


def test_corpus_soroban_invoke_with_sac_mint(stellar_data):
    ledger, t, expected = _corpus_tx(stellar_data, "soroban/sac-token-mint-to-contract-address.json")
    row = transaction_row(ledger, t)
    assert row["resource_fee"] > 0 and row["soroban_resources_instructions"] > 0
    assert row["non_refundable_resource_fee_charged"] + row["refundable_resource_fee_charged"] > 0
    (op,) = _ops(ledger, t)
    d = op["details"]
    (invoked, *_) = _effects(expected, "contractInvoked")
    (minted,) = _effects(expected, "assetMinted")
    assert d["type"] == "invoke_contract" and d["function"] == "HostFunctionTypeHostFunctionTypeInvokeContract"
    assert d["contract_id"] == invoked["contract"]
    assert d["parameters_decoded"][1] == {"type": "Sym", "value": invoked["function"]}
    assert [p["value"] for p in d["parameters_decoded"][2:]] == invoked["args"]
    assert d["parameters_json_decoded"][1] == {"symbol": invoked["function"]}
    assert len(d["ledger_key_hash"]) == len(t.tx.ext.soroban_data.resources.footprint.read_only) + len(
        t.tx.ext.soroban_data.resources.footprint.read_write
    )
    (change,) = d["asset_balance_changes"]
    code, issuer, _ = minted["asset"].split("-")
    assert change == {
        "type": "mint",
        "to": _effects(expected, "accountCredited")[0]["source"],
        "amount": amount_string(int(minted["amount"])),
        "asset_type": "credit_alphanum4",
        "asset_code": code,
        "asset_issuer": issuer,
    }
    # SAC events are recognised by their contract id, which depends on the network
    ledger.network_passphrase = PASSPHRASES["pubnet"]
    assert json.loads(operation_rows(ledger, t)[0]["details"])["asset_balance_changes"] == []
    ledger.network_passphrase = None
    with pytest.raises(CdpRayError, match="network passphrase"):
        operation_rows(ledger, t)


def test_corpus_soroban_create_contract_v2_and_ttl_ops(stellar_data):
    ledger, t, expected = _corpus_tx(stellar_data, "soroban/contract-deployed-with-constructor.json")
    (op,) = _ops(ledger, t)
    d = op["details"]
    created = _effects(expected, "contractCreated")
    assert d["type"] == "create_contract_v2" and d["from"] == "address"
    assert d["contract_id"] == created[0]["contract"]
    assert d["address"] == created[0]["source"]
    assert d["parameters_decoded"] == [{"type": "Str", "value": "World!"}]
    assert d["parameters_json_decoded"] == [{"string": "World!"}]
    assert d["parameters_json"] == created[1]["constructorArgs"]

    ledger, t, _ = _corpus_tx(stellar_data, "soroban/extend-ttl-no-effect.json")
    (op,) = _ops(ledger, t)
    assert op["type_string"] == "extend_footprint_ttl"
    assert op["operation_trace_code"] == "ExtendFootprintTtlResultCodeExtendFootprintTtlSuccess"
    assert op["details"]["extend_to"] == t.operations[0].body.extend_footprint_ttl_op.extend_to.uint32
    assert op["details"]["contract_code_hash"] is None

    ledger, t, _ = _corpus_tx(stellar_data, "soroban/restore-footprint-no-effect.json")
    (op,) = _ops(ledger, t)
    assert op["type_string"] == "restore_footprint" and op["details"]["type"] == "restore_footprint"


def test_corpus_soroban_fee_breakdown(stellar_data):
    ledger, t, expected = _corpus_tx(stellar_data, "contract-metrics/fee-details.json")
    row = transaction_row(ledger, t)
    (metrics,) = _effects(expected, "contractMetrics")
    assert row["non_refundable_resource_fee_charged"] == metrics["fee"]["nonrefundable"]
    assert row["refundable_resource_fee_charged"] == metrics["fee"]["refundable"]
    assert row["rent_fee_charged"] == metrics["fee"]["rent"]
    assert row["inclusion_fee_bid"] == row["max_fee"] - row["resource_fee"]
