"""``payments``: payments and path payments, the FilterPayments / TransformToAppPayment use case.

One row per ``payment``, ``path_payment_strict_receive`` and ``path_payment_strict_send`` operation
(optionally ``create_account`` and ``account_merge``), with sender and recipient as ``G...`` accounts
plus their ``M...`` muxed address and id when muxed, the asset the recipient got and the amount it got,
and for path payments the asset and amount that left the sender. Amounts are exact stroops (``int64``)
and Go ``amount.String`` decimals (``"12.3456789"``). Only successful transactions by default.

Amounts follow Horizon: a strict-receive payment sends the sum bought from the first run of claimed
offers selling the source asset (``last.amount`` when no offer was crossed); a strict-send payment
delivers ``last.amount``. Amounts that only a successful result can tell are null for failed payments.
"""

from __future__ import annotations

import base64

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field
from stellar_sdk import xdr

from cdp_ray.processors.base import col, processor
from cdp_ray.processors.common import TIMESTAMP, account_id, amount_string, asset_parts, muxed_account, strkey, toid
from cdp_ray.xdr import Ledger, Transaction

OPERATION_KEY_COLUMNS = [
    col("ledger_sequence", pa.uint32(), "ledger sequence", nullable=False),
    col("closed_at", TIMESTAMP, "ledger close time (UTC)"),
    col("transaction_hash", pa.string(), "hex transaction hash", nullable=False),
    col("transaction_id", pa.int64(), "TOID of the transaction", nullable=False),
    col("operation_id", pa.int64(), "TOID of the operation", nullable=False),
    col("operation_index", pa.int32(), "1-based index of the operation in its transaction"),
]
"""Leading columns of the one-row-per-operation tables: where the operation sits in the chain."""

PAYMENTS_SCHEMA = pa.schema(
    [
        *OPERATION_KEY_COLUMNS,
        col("operation_type", pa.string(), "payment, path_payment_strict_receive, path_payment_strict_send, "
            "create_account or account_merge"),
        col("successful", pa.bool_(), "whether the transaction succeeded"),
        col("from", pa.string(), "G... sender (operation source, else transaction source)"),
        col("from_muxed", pa.string(), "M... sender when muxed"),
        col("from_muxed_id", pa.uint64(), "muxed id of the sender"),
        col("to", pa.string(), "G... recipient"),
        col("to_muxed", pa.string(), "M... recipient when muxed"),
        col("to_muxed_id", pa.uint64(), "muxed id of the recipient"),
        col("asset", pa.string(), "asset received: native or CODE:ISSUER"),
        col("asset_type", pa.string(), "native, credit_alphanum4 or credit_alphanum12"),
        col("asset_code", pa.string(), "code of the asset received, null for native"),
        col("asset_issuer", pa.string(), "issuer of the asset received, null for native"),
        col("amount", pa.int64(), "stroops received by the recipient (null if unknown for a failed payment)"),
        col("amount_decimal", pa.string(), "amount as a 7-decimal string"),
        col("source_asset", pa.string(), "asset sent: native or CODE:ISSUER"),
        col("source_asset_type", pa.string(), "type of the asset sent"),
        col("source_asset_code", pa.string(), "code of the asset sent, null for native"),
        col("source_asset_issuer", pa.string(), "issuer of the asset sent, null for native"),
        col("source_amount", pa.int64(), "stroops sent (null if unknown for a failed payment)"),
        col("source_amount_decimal", pa.string(), "source_amount as a 7-decimal string"),
        col("source_max", pa.int64(), "strict receive: most the sender would send, stroops"),
        col("destination_min", pa.int64(), "strict send: least the recipient must get, stroops"),
        col("path", pa.list_(pa.string()), "intermediate assets of a path payment (native or CODE:ISSUER)"),
        col("memo_type", pa.string(), "transaction memo type: none, text, id, hash or return"),
        col("memo", pa.string(), "memo: text, decimal id, or base64 hash"),
    ]
)


class PaymentsConfig(BaseModel):
    """Options of the ``payments`` processor."""

    model_config = ConfigDict(extra="forbid")

    include_failed: bool = Field(False, description="also emit operations of failed transactions")
    include_create_account: bool = Field(False, description="emit create_account as a native payment")
    include_account_merge: bool = Field(False, description="emit account_merge as a native payment of the balance")


_OT = xdr.OperationType
_TYPES = {
    _OT.PAYMENT: "payment",
    _OT.PATH_PAYMENT_STRICT_RECEIVE: "path_payment_strict_receive",
    _OT.PATH_PAYMENT_STRICT_SEND: "path_payment_strict_send",
    _OT.CREATE_ACCOUNT: "create_account",
    _OT.ACCOUNT_MERGE: "account_merge",
}
_NATIVE = xdr.Asset(xdr.AssetType.ASSET_TYPE_NATIVE)


def operation_source(tx: Transaction, op: xdr.Operation) -> tuple[str, str | None]:
    """``(G..., M... or None)`` of an operation's source: its own, else the (inner) transaction's."""
    if op.source_account is not None:
        return muxed_account(op.source_account)
    body = tx.tx
    if isinstance(body, xdr.TransactionV0):
        return strkey("G", body.source_account_ed25519.uint256), None
    return muxed_account(body.source_account)


def operation_key(ledger: Ledger, tx: Transaction, op_index: int) -> dict:
    """The ``OPERATION_KEY_COLUMNS`` values of operation ``op_index`` (1-based) of ``tx``."""
    seq = ledger.sequence
    return {
        "ledger_sequence": seq,
        "closed_at": ledger.closed_at,
        "transaction_hash": tx.hash.hex(),
        "transaction_id": toid(seq, tx.index),
        "operation_id": toid(seq, tx.index, op_index),
        "operation_index": op_index,
    }


def _muxed_id(m: xdr.MuxedAccount) -> int | None:
    return m.med25519.id.uint64 if m.type == xdr.CryptoKeyType.KEY_TYPE_MUXED_ED25519 else None


def _asset_cols(asset: xdr.Asset, prefix: str = "") -> dict:
    t, code, issuer = asset_parts(asset)
    native = t == "native"
    return {
        f"{prefix}asset": "native" if native else f"{code}:{issuer}",
        f"{prefix}asset_type": t,
        f"{prefix}asset_code": None if native else code,
        f"{prefix}asset_issuer": None if native else issuer,
    }


def _canonical(asset: xdr.Asset) -> str:
    t, code, issuer = asset_parts(asset)
    return "native" if t == "native" else f"{code}:{issuer}"


def _asset_bought(atom: xdr.ClaimAtom) -> tuple[bytes, int]:
    a = atom.v0 or atom.order_book or atom.liquidity_pool
    return a.asset_bought.to_xdr_bytes(), a.amount_bought.int64


def strict_receive_send_amount(result: xdr.PathPaymentStrictReceiveResult) -> int:
    """Horizon's ``SendAmount``: stroops the sender paid in a successful strict-receive payment."""
    s = result.success
    if not s.offers:
        return s.last.amount.int64
    first, total = _asset_bought(s.offers[0])[0], 0
    for atom in s.offers:
        asset, amount = _asset_bought(atom)
        if asset != first:
            break
        total += amount
    return total


def _memo(tx: Transaction) -> tuple[str, str | None]:
    m = tx.tx.memo
    t = m.type
    if t == xdr.MemoType.MEMO_TEXT:
        return "text", m.text.decode("utf-8", "replace")
    if t == xdr.MemoType.MEMO_ID:
        return "id", str(m.id.uint64)
    if t == xdr.MemoType.MEMO_HASH:
        return "hash", base64.b64encode(m.hash.hash).decode()
    if t == xdr.MemoType.MEMO_RETURN:
        return "return", base64.b64encode(m.ret_hash.hash).decode()
    return "none", None


def payment_row(ledger: Ledger, tx: Transaction, op_index: int, op: xdr.Operation) -> dict | None:
    """The row of a payment-like operation (``None`` for other operation types)."""
    t = op.body.type
    if t not in _TYPES:
        return None
    frm, from_muxed = operation_source(tx, op)
    results = tx.operation_results
    tr = results[op_index - 1].tr if tx.successful and op_index <= len(results) else None
    source_max = destination_min = None
    path: list[str] | None = None
    if t == _OT.PAYMENT:
        p = op.body.payment_op
        dest, asset, src_asset = p.destination, p.asset, p.asset
        amount = source_amount = p.amount.int64
    elif t == _OT.PATH_PAYMENT_STRICT_RECEIVE:
        p = op.body.path_payment_strict_receive_op
        dest, asset, src_asset = p.destination, p.dest_asset, p.send_asset
        amount = p.dest_amount.int64
        source_amount = strict_receive_send_amount(tr.path_payment_strict_receive_result) if tr else None
        source_max = p.send_max.int64
        path = [_canonical(a) for a in p.path]
    elif t == _OT.PATH_PAYMENT_STRICT_SEND:
        p = op.body.path_payment_strict_send_op
        dest, asset, src_asset = p.destination, p.dest_asset, p.send_asset
        source_amount = p.send_amount.int64
        amount = tr.path_payment_strict_send_result.success.last.amount.int64 if tr else None
        destination_min = p.dest_min.int64
        path = [_canonical(a) for a in p.path]
    elif t == _OT.CREATE_ACCOUNT:
        p = op.body.create_account_op
        dest = None
        to, to_muxed = account_id(p.destination), None
        asset = src_asset = _NATIVE
        amount = source_amount = p.starting_balance.int64
    else:
        dest = op.body.destination
        asset = src_asset = _NATIVE
        bal = tr.account_merge_result.source_account_balance if tr else None
        amount = source_amount = None if bal is None else bal.int64
    if dest is not None:
        to, to_muxed = muxed_account(dest)
    memo_type, memo = _memo(tx)
    return {
        **operation_key(ledger, tx, op_index),
        "operation_type": _TYPES[t],
        "successful": tx.successful,
        "from": frm,
        "from_muxed": from_muxed,
        "from_muxed_id": _muxed_id(op.source_account or tx.tx.source_account) if from_muxed else None,
        "to": to,
        "to_muxed": to_muxed,
        "to_muxed_id": _muxed_id(dest) if to_muxed else None,
        **_asset_cols(asset),
        "amount": amount,
        "amount_decimal": None if amount is None else amount_string(amount),
        **_asset_cols(src_asset, "source_"),
        "source_amount": source_amount,
        "source_amount_decimal": None if source_amount is None else amount_string(source_amount),
        "source_max": source_max,
        "destination_min": destination_min,
        "path": path,
        "memo_type": memo_type,
        "memo": memo,
    }


@processor(
    "payments",
    schema=PAYMENTS_SCHEMA,
    primary_key=("operation_id",),
    description="Payments and path payments (optionally account creations and merges): sender, recipient "
    "with muxed ids, asset, exact and decimal amounts, path and memo.",
    config=PaymentsConfig,
    tags=("core", "payments"),
)
def payments(batch: list[Ledger], config: PaymentsConfig) -> list[dict]:
    skip = set()
    if not config.include_create_account:
        skip.add(_OT.CREATE_ACCOUNT)
    if not config.include_account_merge:
        skip.add(_OT.ACCOUNT_MERGE)
    rows: list[dict] = []
    for ledger in batch:
        for tx in ledger.transactions:
            if not (config.include_failed or tx.successful):
                continue
            for i, op in enumerate(tx.operations, start=1):
                if op.body.type in skip:
                    continue
                row = payment_row(ledger, tx, i, op)
                if row is not None:
                    rows.append(row)
    return rows
