"""``trades``: one row per offer or liquidity pool claimed by a successful operation (stellar-etl ``history_trades``).

Follows stellar-etl's ``internal/transform/trade.go``: the claim atoms of ManageSellOffer, ManageBuyOffer,
CreatePassiveSellOffer and both path payments; prices come from the claimed offer's state before the
operation (order book) or from the amounts (pools); pool trades get stellar-etl's rounding slippage.
"""

from __future__ import annotations

import functools
import logging

import pyarrow as pa
from stellar_sdk import xdr

from cdp_ray.processors import native
from cdp_ray.processors.base import col, processor, table_from_dicts
from cdp_ray.processors.common import (
    TIMESTAMP,
    asset_id,
    asset_parts,
    ledger_key_xdr,
    muxed_account,
    pool_id_hex,
    pool_id_strkey,
    stroops_to_real,
    toid,
)
from cdp_ray.processors.effects import claim_body, claim_seller, sorted_operation_changes
from cdp_ray.processors.operation_details import transaction_source
from cdp_ray.processors.filters import FilterConfig, apply_where
from cdp_ray.xdr import Ledger, Transaction

log = logging.getLogger(__name__)

OT = xdr.OperationType
LET = xdr.LedgerEntryType
_MAX_INT64 = (1 << 63) - 1
_MIN_INT64 = -(1 << 63)
_MAX_BIPS = 10_000
_TOID_OFFER_TYPE = 1 << 62

TRADES_SCHEMA = pa.schema(
    [
        col("history_operation_id", pa.int64(), "TOID of the operation that made the trade", nullable=False),
        col("order", pa.int32(), "0-based position of the claim within the operation's result", nullable=False),
        col("ledger_closed_at", TIMESTAMP, "ledger close time (UTC)", nullable=False),
        col("ledger_sequence", pa.uint32(), "ledger sequence (not in stellar-etl's table)", nullable=False),
        col("selling_account_address", pa.string(), "G... owner of the claimed offer; empty for pool trades"),
        col("selling_asset_code", pa.string(), "code of the asset the offer/pool sold (empty if native)"),
        col("selling_asset_issuer", pa.string(), "issuer of the asset sold (empty if native)"),
        col("selling_asset_type", pa.string(), "type of the asset sold"),
        col("selling_asset_id", pa.int64(), "FarmHash asset id of the asset sold"),
        col("selling_amount", pa.float64(), "amount sold by the offer/pool, in units"),
        col("buying_account_address", pa.string(), "G... source account of the taking operation"),
        col("buying_asset_code", pa.string(), "code of the asset bought by the offer/pool (empty if native)"),
        col("buying_asset_issuer", pa.string(), "issuer of the asset bought (empty if native)"),
        col("buying_asset_type", pa.string(), "type of the asset bought"),
        col("buying_asset_id", pa.int64(), "FarmHash asset id of the asset bought"),
        col("buying_amount", pa.float64(), "amount bought by the offer/pool, in units"),
        col("price_n", pa.int64(), "price numerator (offer price before the trade; pool: amount bought)"),
        col("price_d", pa.int64(), "price denominator (offer: its price; pool: amount sold)"),
        col("selling_offer_id", pa.int64(), "id of the claimed offer; null for pool trades"),
        col("buying_offer_id", pa.int64(), "the taker's offer id, or a synthetic id (operation TOID | 1<<62)"),
        col("selling_liquidity_pool_id", pa.string(), "hex id of the claimed pool"),
        col("liquidity_pool_fee", pa.int64(), "fee of the claimed pool, in basis points"),
        col("trade_type", pa.int32(), "1 = order book, 2 = liquidity pool", nullable=False),
        col("rounding_slippage", pa.int64(), "pool trades of path payments: rounding slippage in basis points"),
        col("seller_is_exact", pa.bool_(), "path payments: true for strict receive, false for strict send"),
        col("selling_liquidity_pool_id_strkey", pa.string(), "L... strkey of the claimed pool"),
    ]
)


class TradeError(ValueError):
    """An operation whose result or meta does not support its claims."""


def _claims(op_type, tr) -> tuple[list, xdr.OfferEntry | None, bool | None]:
    """``(claim atoms, the taker's resulting offer or None, seller_is_exact)`` of a trading operation."""
    if op_type == OT.MANAGE_BUY_OFFER:
        s = tr.manage_buy_offer_result.success
        return list(s.offers_claimed), s.offer.offer, None
    if op_type in (OT.MANAGE_SELL_OFFER, OT.CREATE_PASSIVE_SELL_OFFER):
        # stellar-core sets the ManageSellOffer result arm for passive offers.
        res = tr.manage_sell_offer_result if tr.type == OT.MANAGE_SELL_OFFER else tr.create_passive_sell_offer_result
        s = res.success
        return list(s.offers_claimed), s.offer.offer, None
    if op_type == OT.PATH_PAYMENT_STRICT_SEND:
        return list(tr.path_payment_strict_send_result.success.offers), None, False
    return list(tr.path_payment_strict_receive_result.success.offers), None, True


def _latest_pre(changes: list, key: bytes):
    """Pre-state of the last change (in ledger-key order) of the entry with ledger key ``key``."""
    for pre, _ in reversed(changes):
        if pre is not None and ledger_key_xdr(pre.data) == key:
            return pre
    return None


def _offer_key(seller: xdr.AccountID, offer_id: int) -> bytes:
    return LET.OFFER.value.to_bytes(4, "big") + seller.to_xdr_bytes() + offer_id.to_bytes(8, "big", signed=True)


def _pool_key(pool_id: xdr.PoolID) -> bytes:
    return LET.LIQUIDITY_POOL.value.to_bytes(4, "big") + pool_id.to_xdr_bytes()


def pool_payout(reserve_a: int, reserve_b: int, received: int, fee_bips: int) -> tuple[int, int, bool]:
    """Go ``orderbook.CalculatePoolPayout`` with rounding slippage: ``(payout, slippage_bips, ok)``."""
    if fee_bips < 0 or fee_bips >= _MAX_BIPS or received > _MAX_INT64 - reserve_a:
        return 0, 0, False
    f = _MAX_BIPS - fee_bips
    denom = reserve_a * _MAX_BIPS + received * f
    if denom == 0:
        return 0, 0, False
    numer = reserve_b * received * f
    result = numer // denom
    slippage, ok = 0, True
    if numer % denom:
        unrounded = numer * _MAX_BIPS // denom
        s = abs(unrounded - result * _MAX_BIPS) * _MAX_BIPS
        s = s // unrounded if unrounded else 0
        slippage = s // 100
        ok = slippage <= _MAX_INT64
    ok = ok and 0 < result <= _MAX_INT64
    return result, slippage, ok


def _rounding_slippage(op_type, claim: xdr.ClaimLiquidityAtom, pre_pool: xdr.LedgerEntry) -> int:
    cp = pre_pool.data.liquidity_pool.body.constant_product
    disbursed, deposited = cp.reserve_a.int64, cp.reserve_b.int64
    if claim.asset_sold.to_xdr_bytes() != cp.params.asset_a.to_xdr_bytes():
        disbursed, deposited = deposited, disbursed
    fee = cp.params.fee.int32
    if op_type == OT.PATH_PAYMENT_STRICT_RECEIVE:
        # stellar-etl passes the disbursed amount here; kept for parity.
        _, slip, ok = pool_payout(deposited, disbursed, claim.amount_sold.int64, fee)
        return slip if ok else _MAX_INT64
    if op_type == OT.PATH_PAYMENT_STRICT_SEND:
        _, slip, ok = pool_payout(deposited, disbursed, claim.amount_bought.int64, fee)
        return slip if ok else _MIN_INT64
    raise TradeError(f"unexpected trade operation type {op_type.name}")


def operation_trades(ledger: Ledger, t: Transaction, index: int, op: xdr.Operation) -> list[dict]:
    """Trade rows of operation ``index`` (0-based) of a successful transaction."""
    tr = t.operation_results[index].tr
    claims, taker_offer, seller_is_exact = _claims(op.body.type, tr)
    op_id = toid(ledger.sequence, t.index, index + 1)
    buyer = muxed_account(op.source_account if op.source_account is not None else transaction_source(t))[0]
    buying_offer_id = taker_offer.offer_id.int64 if taker_offer is not None else op_id | _TOID_OFFER_TYPE
    changes = sorted_operation_changes(t, index, ledger.protocol_version) if claims else []
    rows = []
    for order, claim in enumerate(claims):
        c = claim_body(claim)
        sold, bought = c.amount_sold.int64, c.amount_bought.int64
        if sold < 0 or bought < 0:
            raise TradeError(f"operation {op_id}: negative claim amount")
        if sold == 0 and bought == 0:
            continue
        s_type, s_code, s_issuer = asset_parts(c.asset_sold)
        b_type, b_code, b_issuer = asset_parts(c.asset_bought)
        row = {
            "history_operation_id": op_id,
            "order": order,
            "ledger_closed_at": ledger.closed_at,
            "ledger_sequence": ledger.sequence,
            "selling_account_address": "",
            "selling_asset_code": s_code,
            "selling_asset_issuer": s_issuer,
            "selling_asset_type": s_type,
            "selling_asset_id": asset_id(s_code, s_issuer, s_type),
            "selling_amount": stroops_to_real(sold),
            "buying_account_address": buyer,
            "buying_asset_code": b_code,
            "buying_asset_issuer": b_issuer,
            "buying_asset_type": b_type,
            "buying_asset_id": asset_id(b_code, b_issuer, b_type),
            "buying_amount": stroops_to_real(bought),
            "selling_offer_id": None,
            "buying_offer_id": buying_offer_id,
            "selling_liquidity_pool_id": None,
            "liquidity_pool_fee": None,
            "rounding_slippage": None,
            "seller_is_exact": seller_is_exact,
            "selling_liquidity_pool_id_strkey": None,
        }
        if claim.type == xdr.ClaimAtomType.CLAIM_ATOM_TYPE_LIQUIDITY_POOL:
            pre_pool = _latest_pre(changes, _pool_key(c.liquidity_pool_id))
            if pre_pool is None:
                raise TradeError(f"operation {op_id}: no change for liquidity pool {pool_id_hex(c.liquidity_pool_id)}")
            row.update(
                price_n=bought,
                price_d=sold,
                trade_type=2,
                selling_liquidity_pool_id=pool_id_hex(c.liquidity_pool_id),
                selling_liquidity_pool_id_strkey=pool_id_strkey(c.liquidity_pool_id),
                liquidity_pool_fee=pre_pool.data.liquidity_pool.body.constant_product.params.fee.int32,
                rounding_slippage=_rounding_slippage(op.body.type, c, pre_pool),
            )
        else:
            seller = claim_seller(claim)
            seller_id = (
                c.seller_id
                if claim.type == xdr.ClaimAtomType.CLAIM_ATOM_TYPE_ORDER_BOOK
                else xdr.AccountID(xdr.PublicKey(xdr.PublicKeyType.PUBLIC_KEY_TYPE_ED25519, c.seller_ed25519))
            )
            pre_offer = _latest_pre(changes, _offer_key(seller_id, c.offer_id.int64))
            if pre_offer is None:
                raise TradeError(f"operation {op_id}: no change for claimed offer {c.offer_id.int64}")
            price = pre_offer.data.offer.price
            row.update(
                price_n=price.n.int32,
                price_d=price.d.int32,
                trade_type=1,
                selling_account_address=seller,
                selling_offer_id=c.offer_id.int64,
            )
        rows.append(row)
    return rows


_TRADING = (
    OT.MANAGE_BUY_OFFER,
    OT.MANAGE_SELL_OFFER,
    OT.CREATE_PASSIVE_SELL_OFFER,
    OT.PATH_PAYMENT_STRICT_SEND,
    OT.PATH_PAYMENT_STRICT_RECEIVE,
)


def ledger_trades(ledger: Ledger) -> list[dict]:
    """Trade rows of a ledger. Like stellar-etl, an operation whose meta lacks a claimed offer's or pool's
    prior state is skipped with a warning."""
    rows = []
    for t in ledger.transactions:
        if not t.successful:
            continue
        for i, op in enumerate(t.operations):
            if op.body.type not in _TRADING:
                continue
            try:
                rows.extend(operation_trades(ledger, t, i, op))
            except TradeError as exc:
                log.warning("ledger %d transaction %s: skipping trades: %s", ledger.sequence, t.hash.hex(), exc)
    return rows


@processor(
    "trades",
    schema=TRADES_SCHEMA,
    primary_key=("history_operation_id", "order"),
    description="One row per order-book offer or liquidity pool claimed by a successful offer or path payment "
    "operation (stellar-etl history_trades): assets, amounts (float units), price, offer/pool ids, pool fee and "
    "rounding slippage.",
    config=FilterConfig,
    tags=("core", "dex"),
)
def trades(batch: list[Ledger], config: FilterConfig) -> pa.Table:
    if config.where is not None and not config.where.empty:
        return _python_table(config, batch)
    return native.table("trades", TRADES_SCHEMA, batch, (), functools.partial(_python_table, config),
                        (asset_id, pool_payout))


def _python_table(config: FilterConfig, batch: list[Ledger]) -> pa.Table:
    """The table by the Python rules (the reference of the native builder)."""
    return table_from_dicts(TRADES_SCHEMA, [row for ledger in apply_where(batch, config) for row in ledger_trades(ledger)])
