"""``effects``: stellar-etl's golden for ledger 30820015 field by field, and hand-checked effects of real
pubnet transactions (trades, path payments, pool revocation, sponsorship, Soroban SAC transfers)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from stellar_sdk import StrKey

from cdp_ray.processors import get_processor
from cdp_ray.processors.effects import EFFECT_TYPES, transaction_effects

from ledger_files import load, reconstructed


def tx_effects(ledger, tx_hash_prefix: str) -> tuple:
    (t,) = [t for t in ledger.transactions if t.hash.hex().startswith(tx_hash_prefix)]
    rows = transaction_effects(ledger, t)
    for r in rows:
        r["details"] = json.loads(r["details"])
    return t, rows


def stroops(amount: str) -> int:
    return int(Decimal(amount) * 10_000_000)


def test_golden_one_ledger_every_field(stellar_data):
    ledger = reconstructed(stellar_data, 30820015)
    table = get_processor("effects").process([ledger])
    ours = {r["id"]: r for r in table.to_pylist()}
    golden = [
        json.loads(x)
        for x in (stellar_data / "stellar-etl-golden/effects/one_ledger_effects.golden").read_text().splitlines()
    ]
    assert len(golden) == 7
    assert set(ours) == {g["id"] for g in golden}
    for g in golden:
        row = ours[g["id"]]
        assert set(g) == set(row)
        for column, expected in g.items():
            value = row[column]
            if column == "details":
                value = json.loads(value)
            elif column == "closed_at":
                value = value.strftime("%Y-%m-%dT%H:%M:%SZ")
            assert value == expected, (g["id"], column)


def test_only_successful_transactions_have_effects(stellar_data):
    ledger = reconstructed(stellar_data, 30820015)
    failed = [t for t in ledger.transactions if not t.successful]
    assert len(failed) == 15
    assert all(transaction_effects(ledger, t) == [] for t in failed)


def test_manage_buy_offer_claim_effects(stellar_data):
    ledger = reconstructed(stellar_data, 30822024)
    t, rows = tx_effects(ledger, "768507d9a8e7")
    (claim,) = t.operation_results[0].tr.manage_buy_offer_result.success.offers_claimed
    atom = claim.v0
    seller = StrKey.encode_ed25519_public_key(atom.seller_ed25519.uint256)
    buyer = "GCBQGAOEUWXULP74AX6GV7QKN3YQY2Q6JNKKHHKSEDTJTDEHBFAQXNHK"
    # stellar-etl emits each claim as trade/offer_updated/offer_removed/offer_created, buyer then seller.
    kinds = ["trade", "offer_updated", "offer_removed", "offer_created"]
    assert [r["type_string"] for r in rows] == [k for k in kinds for _ in (0, 1)]
    assert [r["address"] for r in rows] == [buyer, seller] * 4
    assert [r["type"] for r in rows] == [EFFECT_TYPES[k] for k in kinds for _ in (0, 1)]
    assert [r["id"] for r in rows] == [f"132379585076572161-{i}" for i in range(8)]
    buyer_view, seller_view = rows[0]["details"], rows[1]["details"]
    assert buyer_view == {
        "offer_id": 265707155,
        "seller": seller,
        "bought_amount": "1.9826805",
        "bought_asset_type": "credit_alphanum4",
        "bought_asset_code": "GVG",
        "bought_asset_issuer": "GBS7KMFN5OQH42SSDLVAAMO7LSY4IP233MN265MM7DWOSCGYVRL2NXIO",
        "sold_amount": "125.1832737",
        "sold_asset_type": "credit_alphanum4",
        "sold_asset_code": "USD",
        "sold_asset_issuer": "GBS7KMFN5OQH42SSDLVAAMO7LSY4IP233MN265MM7DWOSCGYVRL2NXIO",
    }
    assert stroops(buyer_view["bought_amount"]) == atom.amount_sold.int64
    assert stroops(buyer_view["sold_amount"]) == atom.amount_bought.int64
    assert seller_view["seller"] == buyer
    assert seller_view["bought_amount"] == buyer_view["sold_amount"]
    assert seller_view["sold_asset_code"] == "GVG"


def _native_effects(ledger, operation_id: int) -> list[dict]:
    """The same operation's effects as the default (native) engine builds them."""
    table = get_processor("effects").process([ledger])
    return [r for r in table.to_pylist() if r["operation_id"] == operation_id]


def test_path_payment_strict_receive_effects(stellar_data):
    ledger = reconstructed(stellar_data, 30822025)
    t, rows = tx_effects(ledger, "0163d5948b5e")
    op = t.operations[0].body.path_payment_strict_receive_op
    claims = t.operation_results[0].tr.path_payment_strict_receive_result.success.offers
    assert len(claims) == 3
    account = "GDIO6DX3BFWC5RZSGT76KYOBHLBYR5AVV5FB65V5Z7Q4SBO5KKOMJ62W"
    assert rows[0]["type_string"] == "account_credited" and rows[0]["address"] == account
    assert stroops(rows[0]["details"]["amount"]) == op.dest_amount.int64
    # An XLM -> TDC -> USD -> XLM loop: the amount sent is the first claim's bought XLM only.
    assert rows[1]["type_string"] == "account_debited"
    assert rows[1]["details"] == {"amount": "5.5437016", "asset_type": "native"}
    assert stroops(rows[1]["details"]["amount"]) == claims[0].v0.amount_bought.int64
    # stellar-etl's addPathPaymentStrictReceiveEffects passes isPathPayment=false: every claim gives
    # trade, offer_updated, offer_removed and offer_created, buyer then seller (26 effects, not 20).
    kinds = ["trade", "offer_updated", "offer_removed", "offer_created"]
    sellers = [
        "GCABOQHKVJZ5GTR2RHMBRBIZXB7FN27NATUS5JCUPVZ7IKKX5TZKR7GO",
        "GBGSE3QWNPQ7U3MPT42KHYD4NIJXVQS3AMFHSBNKEBMZRABME2C4ULU5",
        "GCT25MGC5YTQ4LWIF46ATGDUXIJHTHPPPUHHQWUDRKPKQI27ZIFRDZYO",
    ]
    assert len(rows) == 26
    assert [r["id"] for r in rows] == [f"132379589371510785-{i}" for i in range(26)]
    assert [r["type_string"] for r in rows[2:]] == [k for _ in claims for k in kinds for _side in (0, 1)]
    assert [r["address"] for r in rows[2:]] == [a for s in sellers for _ in kinds for a in (account, s)]
    offer_ids = [r["details"]["offer_id"] for r in rows[2::8]]
    assert offer_ids == [c.v0.offer_id.int64 for c in claims] == [265717966, 265800152, 265800137]
    assert rows[24]["details"] == rows[18]["details"] and rows[24]["type"] == EFFECT_TYPES["offer_created"]
    native = _native_effects(ledger, rows[0]["operation_id"])
    assert [(r["id"], r["type_string"], r["address"]) for r in native] == [
        (r["id"], r["type_string"], r["address"]) for r in rows
    ]


def test_path_payments_with_pool_claims_strict_receive_keeps_offer_created(stellar_data):
    """Ledger 53312000: a strict-receive path (2 order-book claims, then 2 pool claims) and a strict-send
    one (2 pool claims, then 1 order-book claim); only strict-send drops offer_created."""
    ledger = load(stellar_data, "stellar-go/FCD285FF--53312000.xdr.zstd")
    book = ["trade", "offer_updated", "offer_removed", "offer_created"]
    _, receive = tx_effects(ledger, "6cca0a56bc38")
    assert [r["type_string"] for r in receive] == (
        ["account_credited", "account_debited"]
        + [k for _ in range(2) for k in book for _side in (0, 1)]
        + ["liquidity_pool_trade"] * 2
    )
    assert [r["id"] for r in receive] == [f"228973296484397057-{i}" for i in range(20)]
    assert [r["details"]["offer_id"] for r in receive[2:18:8]] == [1614872181, 1613486941]
    _, send = tx_effects(ledger, "3641248600b4")
    assert [r["type_string"] for r in send] == (
        ["account_credited", "account_debited", "liquidity_pool_trade", "liquidity_pool_trade"]
        + [k for k in book[:3] for _side in (0, 1)]
    )
    assert [r["id"] for r in send] == [f"228973296484622337-{i}" for i in range(10)]
    assert send[4]["details"]["offer_id"] == 1614872181
    for rows in (receive, send):
        native = _native_effects(ledger, rows[0]["operation_id"])
        assert [(r["id"], r["type_string"], r["address"], json.loads(r["details"])) for r in native] == [
            (r["id"], r["type_string"], r["address"], r["details"]) for r in rows
        ]


def test_liquidity_pool_revocation_effects(stellar_data):
    ledger = load(stellar_data, "stellar-go-ttp/revoke-trustline-ledger-56065483")
    _, rows = tx_effects(ledger, "78d42855ecb8")
    third = [r for r in rows if r["operation_id"] == 240799415920771075]
    assert [r["type_string"] for r in third] == (
        ["trustline_flags_updated"]
        + ["claimable_balance_created", "claimable_balance_claimant_created"] * 4
        + ["liquidity_pool_revoked"]
        + ["claimable_balance_sponsorship_created"] * 4
    )
    # Claimable balances are ordered by asset (type, code, issuer), like Go's Asset.LessThan.
    assets = [r["details"]["asset"].split(":")[0] for r in third if r["type_string"] == "claimable_balance_created"]
    assert assets == ["USDr", "USDr", "XRP", "MONEYGRAM"]
    revoked = third[9]["details"]
    assert revoked["shares_revoked"] == "8326.5941584"
    assert revoked["liquidity_pool"]["id"] == "77dce4a7e1816f341653606de49e8582d3c45840a79eb52f6bbcfd0c084dceae"
    assert revoked["liquidity_pool"]["fee_bp"] == 30
    assert revoked["reserves_revoked"] == [
        {
            "asset": "USDr:GCVNEYFLWPWNUO3BJ7LVES5DCM2WF3S4SO3T3RHXWIONKM2TSWOQUSDR",
            "amount": "82530680.9135733",
            "claimable_balance_id": "0000000013fb8d97866b1ab9901ba6f1265a806a19d63975a8af3b5d4c16449e10a6981a",
        },
        {
            "asset": "XRP:GBXRPL45NPHCVMFFAYZVUVFFVKSIZ362ZXFP7I2ETNQ3QKZMFLPRDTD5",
            "amount": "2.4818291",
            "claimable_balance_id": "00000000843c88bafef63714f1c37725744d0066ef9d3c7eed52a862febbaaaf13d1ac2d",
        },
    ]
    claimant = third[2]
    assert claimant["address"] == "GA3LTDZD2LMLVKVY2EWPIISS62WBUCJKTZEVE5BRJTY64V62PHZ5K2SA"
    assert claimant["details"]["predicate"] == {"unconditional": True}


def test_sponsored_account_creation_effects(stellar_data):
    ledger = load(stellar_data, "wallet-backend/ledger-51000294.xdr.gz")
    _, rows = tx_effects(ledger, "44dda719c9fb")
    sponsor = "GBRKMQ4IO5UURRRFLGLDIWBOWEF7ENC2BU5PB26ATAQRSWIZALE5EW2L"
    new = "GD3KZT34WWM4PNOOI7GSXAFDLKLM5GDBFI5AW3V5U2XVL775CLP3DWQS"
    by_kind = {r["type_string"]: r for r in rows}
    assert by_kind["account_created"]["address"] == new
    assert by_kind["account_created"]["details"] == {"starting_balance": "0.0000000"}
    assert by_kind["account_sponsorship_created"]["details"] == {"sponsor": sponsor}
    assert by_kind["signer_sponsorship_created"] == {
        **by_kind["signer_sponsorship_created"],
        "address": new,
        "details": {"signer": "GD2BWVV2IGTQZIRLYGJPN2LZVPKGQOPXPM2R3QXSXKLVMDK4FZ6AJYQX", "sponsor": sponsor},
    }
    trustlines = [r["details"] for r in rows if r["type_string"] == "trustline_sponsorship_created"]
    assert [d["asset"].split(":")[0] for d in trustlines] == ["RIO", "USD"]
    # Begin/End sponsoring operations have no effects of their own.
    assert {r["operation_id"] & 0xFFF for r in rows} == {2, 5, 8, 11}


def test_soroban_sac_transfer_effects(stellar_data):
    ledger = load(stellar_data, "rs-stellar-xdr/FC62697B--60659332.xdr")
    _, rows = tx_effects(ledger, "83532c3ea762")
    account = "GAZRYQGITCVUGQQV772HEB5HZWYGZWNWVHOLUX65MHO5TWDFMPJUS572"
    contract = "CA6PUJLBYKZKUEKLZJMKBZLEKP2OTHANDEOWSFF44FTSYLKQPIICCJBE"
    assert [(r["type_string"], r["address"]) for r in rows] == [
        ("account_debited", account),
        ("contract_credited", account),
        ("contract_debited", account),
        ("account_credited", account),
    ]
    assert rows[1]["details"] == {
        "amount": "901.5487152",
        "asset_type": "credit_alphanum4",
        "asset_code": "USDC",
        "asset_issuer": "GA5ZSEJYB37JRC5AVCIA5MOP4RHTM335X2KGX3IHOJAPP5RE34K4KZVN",
        "contract": contract,
        "contract_event_type": "transfer",
    }
    assert rows[3]["details"] == {"amount": "3817.8657771", "asset_type": "native", "contract_event_type": "transfer"}


def test_liquidity_pool_trade_matches_pool_change(stellar_data):
    ledger = load(stellar_data, "rs-stellar-xdr/FC62697B--60659332.xdr")
    t, rows = tx_effects(ledger, "d0de0f3e9351")
    trades = [r for r in rows if r["type_string"] == "liquidity_pool_trade"]
    assert trades
    for r in trades:
        d = r["details"]
        assert set(d) == {"liquidity_pool", "sold", "bought"}
        pool = d["liquidity_pool"]
        assert pool["type"] == "constant_product" and len(pool["reserves"]) == 2
        assert {d["sold"]["asset"], d["bought"]["asset"]} == {x["asset"] for x in pool["reserves"]}


@pytest.mark.parametrize("seq", [30822015, 30822019, 30822025])
def test_effect_ids_unique_and_dense(stellar_data, seq):
    ledger = reconstructed(stellar_data, seq)
    table = get_processor("effects").process([ledger])
    rows = table.to_pylist()
    assert len({r["id"] for r in rows}) == len(rows) > 0
    by_op: dict[int, list[int]] = {}
    for r in rows:
        by_op.setdefault(r["operation_id"], []).append(r["index"])
        assert r["ledger_sequence"] == seq and r["operation_id"] >> 32 == seq
    assert all(sorted(ix) == list(range(len(ix))) for ix in by_op.values())


def test_golden_10_ledgers_every_field(stellar_data):
    """stellar-etl ``export_effects -s 30822015 -e 30822025`` (acceptance data, kept out of some copies of the
    data set): its strict-receive path payment has 26 effects, offer_created included."""
    path = stellar_data / "stellar-etl-golden/effects/10_ledgers_effects.golden"
    if not path.exists():
        pytest.skip("10_ledgers_effects.golden is not in this copy of the data set")
    ledgers = [reconstructed(stellar_data, s) for s in range(30822015, 30822026)]
    ours = {r["id"]: r for r in get_processor("effects").process(ledgers).to_pylist()}
    golden = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    assert set(ours) == {g["id"] for g in golden}
    for g in golden:
        row = ours[g["id"]]
        for column, expected in g.items():
            value = row[column]
            if column == "details":
                value = json.loads(value)
            elif column == "closed_at":
                value = value.strftime("%Y-%m-%dT%H:%M:%SZ")
            assert value == expected, (g["id"], column)
