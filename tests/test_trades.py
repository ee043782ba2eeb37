"""``trades``: rows checked against the claim atoms and ledger entry changes of real pubnet transactions
(stellar-etl's trades golden has no raw XDR, so expectations are derived here from the operation results)."""

from __future__ import annotations

from stellar_sdk import StrKey

from cdp_ray.processors import get_processor
from cdp_ray.processors.common import asset_id, asset_parts
from cdp_ray.processors.trades import ledger_trades, pool_payout

from ledger_files import load, reconstructed

SYNTHETIC_OFFER = 1 << 62


def offer_states(t, op_index: int) -> dict[int, list]:
    """Offer id -> [prices of its STATE entries] in the operation's meta."""
    out: dict[int, list] = {}
    for c in t.operation_meta()[op_index].changes.ledger_entry_changes:
        if c.state is not None and c.state.data.offer is not None:
            o = c.state.data.offer
            out.setdefault(o.offer_id.int64, []).append((o.price.n.int32, o.price.d.int32))
    return out


def test_manage_buy_offer_fully_filled(stellar_data):
    ledger = reconstructed(stellar_data, 30822024)
    (t,) = [t for t in ledger.transactions if t.hash.hex().startswith("768507d9a8e7")]
    (row,) = [r for r in ledger_trades(ledger) if r["history_operation_id"] == 132379585076572161]
    usd = ("USD", "GBS7KMFN5OQH42SSDLVAAMO7LSY4IP233MN265MM7DWOSCGYVRL2NXIO", "credit_alphanum4")
    gvg = ("GVG", "GBS7KMFN5OQH42SSDLVAAMO7LSY4IP233MN265MM7DWOSCGYVRL2NXIO", "credit_alphanum4")
    assert row == {
        "history_operation_id": 132379585076572161,
        "order": 0,
        "ledger_closed_at": ledger.closed_at,
        "ledger_sequence": 30822024,
        "selling_account_address": "GAPJHJSYZCQBHXKOSD2PGO6P5DOJTXLJML6B2X5LO3LOSXKSWKGM6UEO",
        "selling_asset_code": gvg[0],
        "selling_asset_issuer": gvg[1],
        "selling_asset_type": gvg[2],
        "selling_asset_id": asset_id(*gvg),
        "selling_amount": 1.9826805,
        "buying_account_address": "GCBQGAOEUWXULP74AX6GV7QKN3YQY2Q6JNKKHHKSEDTJTDEHBFAQXNHK",
        "buying_asset_code": usd[0],
        "buying_asset_issuer": usd[1],
        "buying_asset_type": usd[2],
        "buying_asset_id": asset_id(*usd),
        "buying_amount": 125.1832737,
        # The claimed offer's price before the trade.
        "price_n": 1675118187,
        "price_d": 26530894,
        "selling_offer_id": 265707155,
        # Fully filled: no offer of its own, so a synthetic id from the operation's TOID.
        "buying_offer_id": 132379585076572161 | SYNTHETIC_OFFER,
        "selling_liquidity_pool_id": None,
        "liquidity_pool_fee": None,
        "trade_type": 1,
        "rounding_slippage": None,
        "seller_is_exact": None,
        "selling_liquidity_pool_id_strkey": None,
    }
    assert offer_states(t, 0)[265707155] == [(1675118187, 26530894)]
    assert t.operation_results[0].tr.manage_buy_offer_result.success.offer.offer is None


def test_path_payment_strict_receive_claims(stellar_data):
    ledger = reconstructed(stellar_data, 30822025)
    (t,) = [t for t in ledger.transactions if t.hash.hex().startswith("0163d5948b5e")]
    claims = t.operation_results[0].tr.path_payment_strict_receive_result.success.offers
    op_id = (30822025 << 32) | (t.index << 12) | 1
    rows = [r for r in ledger_trades(ledger) if r["history_operation_id"] == op_id]
    states = offer_states(t, 0)
    assert [r["order"] for r in rows] == [0, 1, 2]
    for r, claim in zip(rows, claims):
        atom = claim.v0
        assert r["selling_offer_id"] == atom.offer_id.int64
        assert r["selling_account_address"] == StrKey.encode_ed25519_public_key(atom.seller_ed25519.uint256)
        assert round(r["selling_amount"] * 10_000_000) == atom.amount_sold.int64
        assert round(r["buying_amount"] * 10_000_000) == atom.amount_bought.int64
        assert (r["price_n"], r["price_d"]) == states[atom.offer_id.int64][-1]
        assert r["seller_is_exact"] is True and r["trade_type"] == 1
        assert r["buying_offer_id"] == op_id | SYNTHETIC_OFFER
        assert r["buying_account_address"] == "GDIO6DX3BFWC5RZSGT76KYOBHLBYR5AVV5FB65V5Z7Q4SBO5KKOMJ62W"
    assert [r["selling_asset_code"] for r in rows] == ["TDC", "USD", ""]
    assert [r["buying_asset_type"] for r in rows] == ["native", "credit_alphanum4", "credit_alphanum4"]


def test_liquidity_pool_trades_follow_the_constant_product(stellar_data):
    ledger = load(stellar_data, "rs-stellar-xdr/FC62697B--60659332.xdr")
    rows = [r for r in ledger_trades(ledger) if r["trade_type"] == 2]
    assert len(rows) == 26
    by_op = {t.index: t for t in ledger.transactions}
    checked = 0
    for r in rows:
        assert r["selling_offer_id"] is None and r["selling_account_address"] == ""
        assert r["liquidity_pool_fee"] == 30
        assert (
            StrKey.decode_liquidity_pool(r["selling_liquidity_pool_id_strkey"]).hex() == r["selling_liquidity_pool_id"]
        )
        assert (r["price_n"], r["price_d"]) == (round(r["buying_amount"] * 1e7), round(r["selling_amount"] * 1e7))
        if r["seller_is_exact"] is False:
            # Strict send: the pool pays out exactly the constant-product amount for what it received.
            t = by_op[(r["history_operation_id"] >> 12) & 0xFFFFF]
            pool = _pool_pre_state(t, (r["history_operation_id"] & 0xFFF) - 1, r["selling_liquidity_pool_id"])
            cp = pool.body.constant_product
            sold = (r["selling_asset_type"], r["selling_asset_code"], r["selling_asset_issuer"])
            sold_is_a = asset_parts(cp.params.asset_a) == sold
            disbursed, deposited = (
                (cp.reserve_a.int64, cp.reserve_b.int64) if sold_is_a else (cp.reserve_b.int64, cp.reserve_a.int64)
            )
            payout, slippage, ok = pool_payout(deposited, disbursed, round(r["buying_amount"] * 1e7), 30)
            assert ok and payout == round(r["selling_amount"] * 1e7)
            assert slippage == r["rounding_slippage"]
            checked += 1
    assert checked == 24


def _pool_pre_state(t, op_index: int, pool_hex: str):
    for c in t.operation_meta()[op_index].changes.ledger_entry_changes:
        if c.state is not None and c.state.data.liquidity_pool is not None:
            lp = c.state.data.liquidity_pool
            if lp.liquidity_pool_id.pool_id.hash.hex() == pool_hex:
                return lp
    raise AssertionError("pool state not found")


def test_pool_payout_and_rounding_slippage():
    # 10/10 reserves, 3 in at 0.3%: 3*10*0.997/(10+3*0.997) = 2.302 -> 2 out, 13 bips lost to rounding.
    assert pool_payout(10, 10, 3, 30) == (2, 13, True)
    # Exact division: no slippage.
    assert pool_payout(10_000, 10_000, 10_000, 0) == (5_000, 0, True)
    # Nothing out is not a valid payout; fees of 100% or more are rejected.
    assert pool_payout(2, 3, 1, 30)[2] is False
    assert pool_payout(10, 10, 3, 10_000) == (0, 0, False)


def test_failed_transactions_have_no_trades(stellar_data):
    ledger = reconstructed(stellar_data, 30820015)
    table = get_processor("trades").process([ledger])
    ops = {r["history_operation_id"] for r in table.to_pylist()}
    failed_tx = {t.index for t in ledger.transactions if not t.successful}
    assert failed_tx and not {(o >> 12) & 0xFFFFF for o in ops} & failed_tx
