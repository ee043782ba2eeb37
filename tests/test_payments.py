"""payments: against stellar-etl's operations golden (30820015) and real pubnet / fixture transactions."""

from __future__ import annotations

import gzip
import json

import pytest
from stellar_sdk import MuxedAccount, xdr

from cdp_ray.processors import get_processor
from cdp_ray.processors.payments import strict_receive_send_amount
from cdp_ray.xdr import decode_ledger
from cdp_ray.xdr.ledger import Ledger, Transaction

PUBNET = "Public Global Stellar Network ; September 2015"
PAYMENT_TYPES = {1: "payment", 2: "path_payment_strict_receive", 13: "path_payment_strict_send", 0: "create_account",
                 8: "account_merge"}
ALL = {"include_failed": True, "include_create_account": True, "include_account_merge": True}


@pytest.fixture(scope="module")
def etl_ledger(stellar_data):
    data = (stellar_data / "stellar-etl-golden/reconstructed/FE29B950--30820015.reconstructed.xdr").read_bytes()
    return decode_ledger(data, PUBNET)


@pytest.fixture(scope="module")
def golden_ops(stellar_data):
    path = stellar_data / "stellar-etl-golden/operations/one_ledger_ops.golden"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["id"]: r for r in rows if r["type"] in PAYMENT_TYPES}


@pytest.fixture(scope="module")
def p26(stellar_data):
    return decode_ledger(gzip.decompress((stellar_data / "wallet-backend/ledger-63092982.xdr.gz").read_bytes()), PUBNET)


def _canon(code, issuer, t):
    return "native" if t == "native" else f"{code}:{issuer}"


def test_matches_stellar_etl_operation_details(etl_ledger, golden_ops):
    rows = {r["operation_id"]: r for r in get_processor("payments").process([etl_ledger], ALL).to_pylist()}
    assert set(rows) == set(golden_ops) and len(rows) == 14
    for op_id, g in golden_ops.items():
        r, d = rows[op_id], g["details"]
        assert r["operation_type"] == g["type_string"] == PAYMENT_TYPES[g["type"]]
        assert r["transaction_id"] == g["transaction_id"]
        assert (r["from"], r["to"]) == (d["from"], d["to"])
        assert r["from"] == g["source_account"]
        assert r["amount"] / 1e7 == d["amount"]
        assert r["amount_decimal"] == f"{r['amount'] // 10**7}.{r['amount'] % 10**7:07d}"
        assert r["asset_type"] == d["asset_type"]
        assert r["asset"] == _canon(d.get("asset_code"), d.get("asset_issuer"), d["asset_type"])
        assert (r["asset_code"], r["asset_issuer"]) == (d.get("asset_code"), d.get("asset_issuer"))
        if r["operation_type"] == "path_payment_strict_receive":
            assert r["source_max"] / 1e7 == d["source_max"]
            assert r["source_asset_type"] == d["source_asset_type"]
            assert r["path"] == [_canon(p["asset_code"], p["asset_issuer"], p["asset_type"]) for p in d["path"]]
            if r["successful"]:
                assert r["source_amount_decimal"] == d["source_amount"]
            else:
                assert r["source_amount"] is None and d["source_amount"] == "0.0000000"
        assert r["successful"] == (g["operation_trace_code"].endswith("Success"))


def test_default_keeps_successful_payments_only(etl_ledger):
    rows = get_processor("payments").process([etl_ledger]).to_pylist()
    assert rows and all(r["successful"] for r in rows)
    assert {r["operation_type"] for r in rows} <= {"payment", "path_payment_strict_receive", "path_payment_strict_send"}


def test_memo_id_payment(etl_ledger):
    rows = get_processor("payments").process([etl_ledger]).to_pylist()
    (r,) = [r for r in rows if r["transaction_hash"] == "51dc35480c3460b69b5b1a5d7650f3104420d3a4e3bed1b4cd72566649cf427a"]
    assert (r["from"], r["to"], r["amount"], r["amount_decimal"]) == (
        "GBDUXW4E5WRM5EM6UXBLE7Y5XGSXJX472BSSBPKFPQ3PJCJHRIA6SH4C",
        "GAHK7EEG2WWHVKDNT4CEQFZGKF2LGDSW2IVM4S5DP42RBW3K6BTODB4A", 1582390000000, "158239.0000000",
    )
    assert (r["memo_type"], r["memo"], r["to_muxed"]) == ("id", "1020515624", None)


def test_amounts_agree_with_token_transfer_events(p26):
    """Every successful payment's delivered amount equals the CAP-67 event core emitted for it."""
    pays = get_processor("payments").process([p26]).to_pylist()
    events = get_processor("token_transfers").process([p26]).to_pylist()
    by_op: dict[int, list[dict]] = {}
    for e in events:
        if e["operation_id"] is not None:
            by_op.setdefault(e["operation_id"], []).append(e)
    assert len(pays) == 137
    for p in pays:
        evs = by_op[p["operation_id"]]
        last = evs[-1]  # the final hop credits the recipient
        assert last["to"] == p["to"] or last["event_topic"] == "burn", p
        assert int(last["amount_raw"]) == p["amount"], p
        if p["operation_type"] != "payment" and p["source_asset"] != p["asset"]:
            # what left the sender: its transfers (burns when it trades back to the issuer) in the source asset
            paid = sum(
                int(e["amount_raw"]) for e in evs[:-1]
                if e["from"] == p["from"] and e["asset"].split(":", 1)[-1] == p["source_asset"]
            )
            assert paid == p["source_amount"], p


def test_strict_send_row(p26):
    rows = get_processor("payments").process([p26]).to_pylist()
    (r,) = [r for r in rows if r["transaction_hash"] == "ff088d9063d2466cb4b0f0bbe8e8796a54ebb4366085d6fd1e7a23df9a12ef04"]
    assert r["operation_type"] == "path_payment_strict_send"
    assert (r["amount"], r["amount_decimal"], r["destination_min"]) == (68984742201, "6898.4742201", 68984742201)
    assert (r["source_amount"], r["source_amount_decimal"]) == (15988471719, "1598.8471719")
    assert r["source_asset"] == "USDC:GA5ZSEJYB37JRC5AVCIA5MOP4RHTM335X2KGX3IHOJAPP5RE34K4KZVN"
    assert r["asset"] == "native" and r["asset_code"] is None and r["path"] == []


def test_muxed_source_and_destination(stellar_data, p26):
    """An account merge between muxed accounts (tx-meta-effects-parser fixture, meta v2)."""
    doc = json.loads((stellar_data / "tx-meta-effects-parser/tx-parser-data/classic-ops/muxed-accounts.json").read_text())
    env = xdr.TransactionEnvelope.from_xdr(doc["tx"])
    pair = xdr.TransactionResultPair(xdr.Hash(bytes(32)), xdr.TransactionResult.from_xdr(doc["result"]))
    tx = Transaction(1, bytes(32), env, pair, xdr.TransactionMeta.from_xdr(doc["meta"]), xdr.LedgerEntryChanges([]))
    ledger = Ledger(sequence=p26.sequence, lcm_version=2, lcm=None, header_entry=p26.header_entry, transactions=[tx])
    assert get_processor("payments").process([ledger]).num_rows == 0  # merges are opt-in
    (r,) = get_processor("payments").process([ledger], {"include_account_merge": True}).to_pylist()
    debited, _, credited = doc["expected"][0]
    assert r["operation_type"] == "account_merge" and r["asset"] == "native"
    assert r["from"] == debited["source"] and r["to"] == credited["source"]
    assert r["amount"] == int(debited["amount"]) == int(credited["amount"]) == 99999999900
    assert r["amount_decimal"] == "9999.9999900"
    assert r["from_muxed"] == "MAVDIEK6LJDYSBPAEG3PPS26QYHLVAVOH3SQHK4OWTHA7RHPFNDVOAAAAAAAL5PA74XY4"
    assert r["to_muxed"] == "MAG5OVG57VHOSRJAZDVQ45FQEW2TEG5KPJYK55QERGZMW3XTIYJRWAAAAAAHEZFEB3ZLG"
    assert r["from_muxed_id"] == MuxedAccount.from_account(r["from_muxed"]).account_muxed_id
    assert r["to_muxed_id"] == MuxedAccount.from_account(r["to_muxed"]).account_muxed_id


def test_strict_receive_send_amount_stops_at_first_asset_change():
    usd = xdr.Asset(xdr.AssetType.ASSET_TYPE_NATIVE)
    eur = xdr.Asset.from_xdr("AAAAAUVVUgAAAAAAW9q5HHmt0ePPXHKSnzLQGW4Cw6wGrgUJmyQ8P3LdvdE=")

    def atom(bought: xdr.Asset, amount: int) -> xdr.ClaimAtom:
        offer = xdr.ClaimOfferAtom(
            xdr.AccountID(xdr.PublicKey(xdr.PublicKeyType.PUBLIC_KEY_TYPE_ED25519, xdr.Uint256(bytes(32)))),
            xdr.Int64(1), eur, xdr.Int64(1), bought, xdr.Int64(amount),
        )
        return xdr.ClaimAtom(xdr.ClaimAtomType.CLAIM_ATOM_TYPE_ORDER_BOOK, order_book=offer)

    last = xdr.SimplePaymentResult(
        xdr.AccountID(xdr.PublicKey(xdr.PublicKeyType.PUBLIC_KEY_TYPE_ED25519, xdr.Uint256(bytes(32)))), eur, xdr.Int64(9)
    )
    res = xdr.PathPaymentStrictReceiveResult(
        xdr.PathPaymentStrictReceiveResultCode.PATH_PAYMENT_STRICT_RECEIVE_SUCCESS,
        success=xdr.PathPaymentStrictReceiveResultSuccess([atom(usd, 3), atom(usd, 4), atom(eur, 100), atom(usd, 50)], last),
    )
    assert strict_receive_send_amount(res) == 7
    res.success.offers = []
    assert strict_receive_send_amount(res) == 9
