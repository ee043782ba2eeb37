"""Ledger entry change tables checked against the raw meta of real pubnet ledgers, and the compaction
rules of Go's ``ChangeCompactor``."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from stellar_sdk import StrKey, xdr

from cdp_ray.lake.formats import split_ledgers
from cdp_ray.processors import get_processor
from cdp_ray.processors.common import asset_id
from cdp_ray.processors.entries import EntryChange, compact_changes
from cdp_ray.xdr import decode_ledger

from conftest import PUBNET
from ledger_files import load, reconstructed

ENTRY_TABLES = ["accounts", "trustlines", "offers", "liquidity_pools", "claimable_balances", "contract_data", "ttl"]


@pytest.fixture(scope="module")
def l30820015(stellar_data):
    return reconstructed(stellar_data, 30820015)


@pytest.fixture(scope="module")
def l60659332(stellar_data):
    return load(stellar_data, "rs-stellar-xdr/FC62697B--60659332.xdr")


def rows(name: str, ledger, **config) -> list[dict]:
    return get_processor(name).process([ledger], config).to_pylist()


def _account_states(changes, address: str) -> list[int]:
    out = []
    for c in changes.ledger_entry_changes:
        e = c.state or c.updated or c.created
        if e is not None and e.data.account is not None:
            if StrKey.encode_ed25519_public_key(e.data.account.account_id.account_id.ed25519.uint256) == address:
                out.append(e.data.account.balance.int64)
    return out


def test_payment_moves_balances(l30820015):
    op_id = 132370956487426049  # 158239 XLM payment, in the effects golden too
    (t,) = [t for t in l30820015.transactions if t.index == (op_id >> 12) & 0xFFFFF]
    changes = t.operation_meta()[0].changes
    dest, source = (
        "GAHK7EEG2WWHVKDNT4CEQFZGKF2LGDSW2IVM4S5DP42RBW3K6BTODB4A",
        "GBDUXW4E5WRM5EM6UXBLE7Y5XGSXJX472BSSBPKFPQ3PJCJHRIA6SH4C",
    )
    before, after = _account_states(changes, dest)
    assert after - before == 158239_0000000
    s_before, s_after = _account_states(changes, source)
    assert s_before - s_after == 158239_0000000
    by_account = {r["account_id"]: r for r in rows("accounts", l30820015) if r["operation_id"] == op_id}
    assert set(by_account) == {dest, source}
    assert by_account[dest]["balance"] == after / 1e7 == 371469.3207559
    assert by_account[source]["balance"] == s_after / 1e7
    for r in by_account.values():
        assert (r["reason"], r["change_type"], r["ledger_entry_change"], r["deleted"]) == (
            "operation",
            "updated",
            1,
            False,
        )
        assert r["transaction_hash"] == t.hash.hex() and r["transaction_id"] == op_id - 1
        assert r["last_modified_ledger"] == 30820015 and r["sponsor"] is None


def test_fee_rows_charge_each_transaction(l30820015):
    fees = [r for r in rows("accounts", l30820015) if r["reason"] == "fee"]
    assert len(fees) == len(l30820015.transactions) == 59
    by_tx = {r["transaction_hash"]: r for r in fees}
    for t in l30820015.transactions:
        r = by_tx[t.hash.hex()]
        (state, updated) = t.fee_changes.ledger_entry_changes
        charged = t.result.result.fee_charged.int64
        assert state.state.data.account.balance.int64 - charged == updated.updated.data.account.balance.int64
        assert r["balance"] == updated.updated.data.account.balance.int64 / 1e7
        assert r["operation_id"] is None


def test_trustline_authorization(l30820015):
    (r,) = [r for r in rows("trustlines", l30820015) if r["operation_id"] == 132370956487307265]
    issuer = "GBRDHSZL4ZKOI2PTUMM53N3NICZXC5OX3KPCD4WD4NG4XGCBC2ZA3KAG"
    assert (r["account_id"], r["asset_code"], r["asset_issuer"], r["asset_type"]) == (
        "GDYYZYZHD3XCLDIWI5PHNPY3AEG2WAKUEFCSW6X6JDIIR3YOENPSBWR7",
        "FTSE",
        issuer,
        "credit_alphanum4",
    )
    assert r["flags"] & 1  # AllowTrust authorized it
    # stellar-etl's trustline asset_id hashes Go's enum name of the asset type.
    assert r["asset_id"] == asset_id("FTSE", issuer, "AssetTypeAssetTypeCreditAlphanum4")
    key = xdr.LedgerKey.from_xdr(r["ledger_key"])
    assert key.type == xdr.LedgerEntryType.TRUSTLINE
    assert r["liquidity_pool_id"] == "" and r["liquidity_pool_id_strkey"] == ""


def test_claimed_offer_is_updated(stellar_data):
    ledger = reconstructed(stellar_data, 30822024)
    (r,) = [r for r in rows("offers", ledger) if r["offer_id"] == 265707155]
    # 1.9826805 GVG of 102.7171310 were taken by a ManageBuyOffer.
    assert r["amount"] == 100.7344505 == (1027171310 - 19826805) / 1e7
    assert (r["pricen"], r["priced"]) == (1675118187, 26530894)
    assert r["price"] == 1675118187 / 26530894
    assert r["seller_id"] == "GAPJHJSYZCQBHXKOSD2PGO6P5DOJTXLJML6B2X5LO3LOSXKSWKGM6UEO"
    assert (r["selling_asset_code"], r["buying_asset_code"]) == ("GVG", "USD")
    assert (r["reason"], r["change_type"], r["operation_id"]) == ("operation", "updated", 132379585076572161)


def test_claimable_balance_created(l60659332):
    (r,) = [r for r in rows("claimable_balances", l60659332) if r["transaction_hash"].startswith("43349c789134")]
    creator = "GBAUUU2JJKQT7ZTPPTREBKXH2IRE6V2L3QLGBVSBZGOQSNOULB5NJSSU"
    assert r["balance_id"] == "000000009cc05c924ad4932f61639e06cb3686a582ab1f6827840a023fda44f8037efdb1"
    assert StrKey.decode_claimable_balance(r["balance_id_strkey"]).hex() == r["balance_id"][6:]
    assert json.loads(r["claimants"]) == [
        {
            "destination": "GDHEPKLDDBQ45J6UDCM5JTHK76GZVYTCY2D3XUHSU2LO42PCCP5BAUTZ",
            "predicate": {"unconditional": True},
        },
        {"destination": creator, "predicate": {"unconditional": True}},
    ]
    assert (r["asset_code"], r["asset_type"], r["asset_amount"], r["flags"]) == (
        "HERCULES",
        "credit_alphanum12",
        1.0,
        0,
    )
    assert r["sponsor"] == creator
    assert (r["change_type"], r["ledger_entry_change"], r["deleted"]) == ("created", 0, False)


def test_contract_data_balances_and_ttls(l60659332):
    data = rows("contract_data", l60659332)
    ttls = rows("ttl", l60659332)
    holder = "CA6PUJLBYKZKUEKLZJMKBZLEKP2OTHANDEOWSFF44FTSYLKQPIICCJBE"
    balances = [r for r in data if r["balance_holder"] == holder]
    assert [r["balance"] for r in balances] == ["111733215568599", "26367152029687"]
    for r in balances:
        assert json.loads(r["key_decoded"]) == {"vec": [{"symbol": "Balance"}, {"address": holder}]}
        amount = json.loads(r["val_decoded"])["map"][0]
        assert amount == {"key": {"symbol": "amount"}, "val": {"i128": r["balance"]}}
        assert r["contract_key_type"] == "ScValTypeScvVec"
        assert r["contract_durability"] == "ContractDataDurabilityPersistent"
    # Every new contract data entry gets a TTL entry keyed by the hash of its ledger key, in the same change.
    created = [r for r in data if r["change_type"] == "created"]
    ttl_keys = {(r["transaction_hash"], r["key_hash"]) for r in ttls if r["change_type"] == "created"}
    assert created and all((r["transaction_hash"], r["ledger_key_hash"]) in ttl_keys for r in created)
    removed = {(r["transaction_hash"], r["ledger_key_hash"]) for r in data if r["deleted"]}
    assert removed == {(r["transaction_hash"], r["key_hash"]) for r in ttls if r["deleted"]}


def test_soroban_fee_refunds(l60659332):
    refunds = [r for r in rows("accounts", l60659332) if r["reason"] == "fee_refund"]
    soroban = {t.hash.hex() for t in l60659332.transactions if t.tx.ext.v == 1}
    assert len(refunds) == 42 and {r["transaction_hash"] for r in refunds} <= soroban


def test_change_index_is_unique_across_tables(l60659332):
    per_table = {name: [r["change_index"] for r in rows(name, l60659332)] for name in ENTRY_TABLES}
    indexes = [i for ix in per_table.values() for i in ix]
    assert len(indexes) == len(set(indexes))
    assert len(per_table["accounts"]) == 987 and len(per_table["liquidity_pools"]) == 26
    # Within a table, rows come in change order.
    assert all(ix == sorted(ix) for ix in per_table.values())


def test_compact_keeps_one_net_change_per_entry(l30820015):
    full = rows("accounts", l30820015)
    compact = rows("accounts", l30820015, compact=True)
    last = {}
    for r in full:
        last[r["account_id"]] = r
    assert Counter(r["account_id"] for r in compact).most_common(1)[0][1] == 1
    assert {r["account_id"] for r in compact} == set(last)
    for r in compact:
        assert r["balance"] == last[r["account_id"]]["balance"]
        assert r["reason"] is None and r["transaction_hash"] is None
        assert r["change_type"] == "updated"


def _ttl(key: bytes, live_until: int, modified: int) -> xdr.LedgerEntry:
    data = xdr.LedgerEntryData(xdr.LedgerEntryType.TTL, ttl=xdr.TTLEntry(xdr.Hash(key), xdr.Uint32(live_until)))
    return xdr.LedgerEntry(xdr.Uint32(modified), data, xdr.LedgerEntryExt(0))


def _change(kind: int, pre, post) -> EntryChange:
    return EntryChange(xdr.LedgerEntryType.TTL, kind, pre, post, reason="operation")


def test_compaction_rules():
    a, b, c = b"a" * 32, b"b" * 32, b"c" * 32
    created, updated, removed = 0, 1, 2
    out = compact_changes(
        [
            _change(created, None, _ttl(a, 10, 5)),  # created then removed: gone
            _change(removed, _ttl(a, 10, 5), None),
            _change(updated, _ttl(b, 10, 1), _ttl(b, 30, 5)),  # updated twice: first pre, later TTL kept
            _change(updated, _ttl(b, 30, 5), _ttl(b, 20, 5)),
            _change(removed, _ttl(c, 10, 1), None),  # removed then created: updated
            _change(created, None, _ttl(c, 40, 5)),
        ],
        5,
    )
    assert [(ch.entry.data.ttl.key_hash.hash, ch.change_type) for ch in out] == [(b, updated), (c, updated)]
    assert out[0].pre.data.ttl.live_until_ledger_seq.uint32 == 10
    assert out[0].post.data.ttl.live_until_ledger_seq.uint32 == 30
    assert (
        out[1].pre.data.ttl.live_until_ledger_seq.uint32 == 10
        and out[1].post.data.ttl.live_until_ledger_seq.uint32 == 40
    )
    assert all(ch.reason is None for ch in out)


def _sac_instance(contract: bytes, kind: bytes, fields: list | None) -> xdr.ContractDataEntry:
    def sym(s: bytes) -> xdr.SCVal:
        return xdr.SCVal(xdr.SCValType.SCV_SYMBOL, sym=xdr.SCSymbol(s))

    body = (
        sym(b"x")
        if fields is None
        else xdr.SCVal(xdr.SCValType.SCV_MAP, map=xdr.SCMap([xdr.SCMapEntry(sym(k), v) for k, v in fields]))
    )
    info = xdr.SCVal(xdr.SCValType.SCV_VEC, vec=xdr.SCVec([sym(kind), body]))
    key = xdr.SCVal(xdr.SCValType.SCV_VEC, vec=xdr.SCVec([sym(b"AssetInfo")]))
    instance = xdr.SCContractInstance(
        xdr.ContractExecutable(xdr.ContractExecutableType.CONTRACT_EXECUTABLE_STELLAR_ASSET),
        xdr.SCMap([xdr.SCMapEntry(key, info)]),
    )
    return xdr.ContractDataEntry(
        xdr.ExtensionPoint(0),
        xdr.SCAddress(xdr.SCAddressType.SC_ADDRESS_TYPE_CONTRACT, contract_id=xdr.ContractID(xdr.Hash(contract))),
        xdr.SCVal(xdr.SCValType.SCV_LEDGER_KEY_CONTRACT_INSTANCE),
        xdr.ContractDataDurability.PERSISTENT,
        xdr.SCVal(xdr.SCValType.SCV_CONTRACT_INSTANCE, instance=instance),
    )


def test_stellar_asset_contract_instances_name_their_asset():
    from cdp_ray.processors.entries import contract_data_asset
    from cdp_ray.processors.scval import parse_sep11_asset, sac_contract_id

    issuer = "GA5ZSEJYB37JRC5AVCIA5MOP4RHTM335X2KGX3IHOJAPP5RE34K4KZVN"
    usdc = parse_sep11_asset(f"USDC:{issuer}")
    fields = [
        (b"asset_code", xdr.SCVal(xdr.SCValType.SCV_STRING, str=xdr.SCString(b"USDC"))),
        (b"issuer", xdr.SCVal(xdr.SCValType.SCV_BYTES, bytes=xdr.SCBytes(StrKey.decode_ed25519_public_key(issuer)))),
    ]
    entry = _sac_instance(sac_contract_id(usdc, PUBNET), b"AlphaNum4", fields)
    assert contract_data_asset(entry, PUBNET).to_xdr_bytes() == usdc.to_xdr_bytes()
    # The contract id must be the asset's SAC on this network.
    assert contract_data_asset(entry, "Test SDF Network ; September 2015") is None
    assert contract_data_asset(_sac_instance(b"\1" * 32, b"AlphaNum4", fields), PUBNET) is None
    native = xdr.Asset(xdr.AssetType.ASSET_TYPE_NATIVE)
    assert (
        contract_data_asset(_sac_instance(sac_contract_id(native, PUBNET), b"Native", None), PUBNET).type == native.type
    )


def test_upgrade_changes(stellar_data):
    # Synthetic load-test ledger 93: a flags upgrade that creates 200 accounts, and no transactions.
    path = stellar_data / "synthetic/stellar-go-loadtest/load-test-ledgers-v23.xdr.zstd"
    raws = split_ledgers(path.read_bytes(), str(path))
    (ledger,) = [lg for lg in (decode_ledger(r, "load test network", verify=False) for r in raws) if lg.sequence == 93]
    assert ledger.transactions == []
    accounts = rows("accounts", ledger)
    assert len(accounts) == 200
    assert {(r["reason"], r["change_type"], r["transaction_hash"], r["operation_id"]) for r in accounts} == {
        ("upgrade", "created", None, None)
    }
    assert [r["change_index"] for r in accounts] == list(range(200))
    # Upgrades belong to no transaction, so a transaction filter drops them.
    assert rows("accounts", ledger, where={"operation_types": ["payment"]}) == []
