"""``transactions``: one row per applied transaction, the stellar-etl ``history_transactions`` table.

Values follow stellar-etl's ``TransformTransaction`` (``internal/transform/transaction.go``) field by
field, including its quirks: ``max_fee`` is the inner transaction's fee for fee bumps, ``tx_signers``
holds the signatures strkey-encoded with the account version byte, and Soroban fee refunds are read
from the fee account's balance in the meta (matched by its ``M...`` address when muxed, as Go does).
"""

from __future__ import annotations

import base64

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field
from stellar_sdk import xdr

from cdp_ray.networks import network_id
from cdp_ray.processors.base import col, processor
from cdp_ray.processors.common import (
    TIMESTAMP,
    account_id,
    b64,
    encode_strkey,
    go_enum_string,
    muxed_account,
    signer_key_address,
    toid,
)
from cdp_ray.xdr import Ledger, Transaction
from cdp_ray.xdr.ledger import envelope_hash

TRANSACTIONS_SCHEMA = pa.schema(
    [
        col("transaction_hash", pa.string(), "hex transaction hash (the outer hash for fee bumps)", nullable=False),
        col("ledger_sequence", pa.uint32(), "ledger sequence number", nullable=False),
        col("account", pa.string(), "source account of the (inner) transaction, G... strkey", nullable=False),
        col("account_muxed", pa.string(), "M... address when the source account is muxed"),
        col("account_sequence", pa.int64(), "sequence number the transaction consumed"),
        col("max_fee", pa.uint32(), "fee bid of the (inner) transaction, in stroops"),
        col("fee_charged", pa.int64(), "fee actually charged, in stroops"),
        col("operation_count", pa.int32(), "operations in the transaction"),
        col("tx_envelope", pa.string(), "base64 TransactionEnvelope XDR"),
        col("tx_result", pa.string(), "base64 TransactionResult XDR"),
        col("tx_meta", pa.string(), "base64 TransactionMeta XDR"),
        col("tx_fee_meta", pa.string(), "base64 LedgerEntryChanges XDR of the fee processing"),
        col("created_at", TIMESTAMP, "ledger close time (UTC)"),
        col("memo_type", pa.string(), "Go name of the memo type, e.g. MemoTypeMemoText"),
        col("memo", pa.string(), "memo: text, decimal id, or base64 hash; empty when none"),
        col("time_bounds", pa.string(), "'[min,max)' time bounds ('[min,)' when unbounded), empty when none"),
        col("successful", pa.bool_(), "whether the transaction succeeded"),
        col("id", pa.int64(), "TOID of the transaction (ledger << 32 | index << 12)", nullable=False),
        col("fee_account", pa.string(), "fee bump: account paying the fee (G...)"),
        col("fee_account_muxed", pa.string(), "fee bump: M... address of a muxed fee account"),
        col("inner_transaction_hash", pa.string(), "fee bump: hex hash of the inner transaction"),
        col("new_max_fee", pa.int64(), "fee bump: outer fee bid, in stroops"),
        col("ledger_bounds", pa.string(), "'[min,max)' ledger bounds precondition, empty when none"),
        col("min_account_sequence", pa.int64(), "minSeqNum precondition"),
        col("min_account_sequence_age", pa.int64(), "minSeqAge precondition, in seconds"),
        col("min_account_sequence_ledger_gap", pa.int64(), "minSeqLedgerGap precondition"),
        col("extra_signers", pa.list_(pa.string()), "extraSigners precondition, as strkeys"),
        col("closed_at", TIMESTAMP, "ledger close time (UTC)", nullable=False),
        col("resource_fee", pa.int64(), "Soroban: declared resource fee, in stroops"),
        col("soroban_resources_instructions", pa.uint32(), "Soroban: declared CPU instructions"),
        col("soroban_resources_read_bytes", pa.uint32(), "Soroban: declared disk read bytes (legacy name)"),
        col("soroban_resources_disk_read_bytes", pa.uint32(), "Soroban: declared disk read bytes"),
        col("soroban_resources_write_bytes", pa.uint32(), "Soroban: declared write bytes"),
        col(
            "soroban_resources_archived_entries",
            pa.list_(pa.uint32()),
            "Soroban: footprint indexes of archived entries to restore",
        ),
        col("transaction_result_code", pa.string(), "Go name of the outer result code"),
        col("inclusion_fee_bid", pa.int64(), "Soroban: fee bid minus resource fee"),
        col("inclusion_fee_charged", pa.int64(), "Soroban: initial fee charged minus resource fee"),
        col("resource_fee_refund", pa.int64(), "Soroban: resource fee refunded after apply"),
        col("non_refundable_resource_fee_charged", pa.int64(), "Soroban: non-refundable resource fee charged"),
        col("refundable_resource_fee_charged", pa.int64(), "Soroban: refundable resource fee charged"),
        col("rent_fee_charged", pa.int64(), "Soroban: rent fee charged"),
        col("tx_signers", pa.list_(pa.string()), "signatures as G-strkeys like stellar-etl (outer for fee bumps)"),
    ]
)

_MEMO = xdr.MemoType


def _memo(memo: xdr.Memo) -> str:
    t = memo.type
    if t == _MEMO.MEMO_TEXT:
        return memo.text.decode("utf-8", "replace")
    if t == _MEMO.MEMO_ID:
        return str(memo.id.uint64)
    if t == _MEMO.MEMO_HASH:
        return base64.b64encode(memo.hash.hash).decode()
    if t == _MEMO.MEMO_RETURN:
        return base64.b64encode(memo.ret_hash.hash).decode()
    return ""


def _preconditions(tx) -> tuple[xdr.TimeBounds | None, xdr.PreconditionsV2 | None]:
    """``(time bounds, v2 preconditions)`` of a ``Transaction`` or ``TransactionV0`` body."""
    cond = getattr(tx, "cond", None)
    if cond is None:  # TransactionV0
        return tx.time_bounds, None
    if cond.type == xdr.PreconditionType.PRECOND_TIME:
        return cond.time_bounds, None
    if cond.type == xdr.PreconditionType.PRECOND_V2:
        return cond.v2.time_bounds, cond.v2
    return None, None


def _source_address(m: xdr.MuxedAccount) -> str:
    """Go's ``MuxedAccount.Address()``: the M... address for muxed accounts, else G..."""
    base, muxed = muxed_account(m)
    return muxed or base


def _entries(changes) -> list[xdr.LedgerEntryChange]:
    """The change list of a ``LedgerEntryChanges`` (or a plain list; None is empty)."""
    if changes is None:
        return []
    return list(getattr(changes, "ledger_entry_changes", changes))


def account_balance_change(changes, address: str) -> tuple[int, int]:
    """``(balance in the last STATE entry, balance in the last UPDATED entry)`` of account ``address``.

    stellar-etl's ``getAccountBalanceFromLedgerEntryChanges``: zero where no entry matches.
    """
    start = end = 0
    for change in _entries(changes):
        if change.type == xdr.LedgerEntryChangeType.LEDGER_ENTRY_UPDATED:
            entry = change.updated
        elif change.type == xdr.LedgerEntryChangeType.LEDGER_ENTRY_STATE:
            entry = change.state
        else:
            continue
        acct = entry.data.account
        if acct is None or account_id(acct.account_id) != address:
            continue
        if change.type == xdr.LedgerEntryChangeType.LEDGER_ENTRY_UPDATED:
            end = acct.balance.int64
        else:
            start = acct.balance.int64
    return start, end


def _soroban_fields(t: Transaction, protocol: int, fee_charged: int) -> dict:
    env = t.envelope
    if env.type == xdr.EnvelopeType.ENVELOPE_TYPE_TX_V0:
        return {}
    inner = t.tx
    if inner.ext.v != 1:
        return {}
    data: xdr.SorobanTransactionData = inner.ext.soroban_data
    res = data.resources
    resource_fee = data.resource_fee.int64
    if t.is_fee_bump:
        fee_address = _source_address(env.fee_bump.tx.fee_source)
        bid = env.fee_bump.tx.fee.int64
    else:
        fee_address = _source_address(inner.source_account)
        bid = inner.fee.uint32
    archived = None
    if data.ext.v == 1 and data.ext.resource_ext.archived_soroban_entries:
        archived = [e.uint32 for e in data.ext.resource_ext.archived_soroban_entries]
    start, end = account_balance_change(t.fee_changes, fee_address)
    out = {
        "resource_fee": resource_fee,
        "soroban_resources_instructions": res.instructions.uint32,
        "soroban_resources_read_bytes": res.disk_read_bytes.uint32,
        "soroban_resources_disk_read_bytes": res.disk_read_bytes.uint32,
        "soroban_resources_write_bytes": res.write_bytes.uint32,
        "soroban_resources_archived_entries": archived,
        "inclusion_fee_bid": bid - resource_fee,
        "inclusion_fee_charged": (start - end) - resource_fee,
    }
    meta = t.meta
    body = meta.v3 if meta.v == 3 else meta.v4 if meta.v == 4 else None
    if body is not None:
        after = _entries(body.tx_changes_after)
        if meta.v == 4:
            after += _entries(t.post_apply_fee_changes)
        start, end = account_balance_change(after, fee_address)
        out["resource_fee_refund"] = end - start
        sm = body.soroban_meta
        if sm is not None and sm.ext.v == 1:
            v1 = sm.ext.v1
            out["non_refundable_resource_fee_charged"] = v1.total_non_refundable_resource_fee_charged.int64
            out["refundable_resource_fee_charged"] = v1.total_refundable_resource_fee_charged.int64
            out["rent_fee_charged"] = v1.rent_fee_charged.int64
    if protocol < 21 and t.is_fee_bump:
        # Protocol 20 charged Soroban fee bumps wrongly; stellar-etl recomputes the fee (stellar-core#4188).
        out["fee_charged"] = resource_fee - out.get("resource_fee_refund", 0)
    return out


def _signers(signatures) -> list[str]:
    return [encode_strkey("G", s.signature.signature) for s in signatures or ()]


def transaction_row(ledger: Ledger, t: Transaction, *, include_xdr: bool = True) -> dict:
    """One stellar-etl ``TransactionOutput`` row (the four base64 XDR columns null without ``include_xdr``)."""
    env = t.envelope
    tx = t.tx
    account, account_muxed = muxed_account(
        tx.source_account if hasattr(tx, "source_account") else _v0_source(tx)
    )
    fee = tx.fee.uint32
    time_bounds, v2 = _preconditions(tx)
    tb = ""
    if time_bounds is not None:
        lo, hi = time_bounds.min_time.time_point.uint64, time_bounds.max_time.time_point.uint64
        tb = f"[{lo},)" if hi == 0 else f"[{lo},{hi})"
    lb = ""
    min_seq = min_age = min_gap = extra = None
    if v2 is not None:
        if v2.ledger_bounds is not None:
            lb = f"[{v2.ledger_bounds.min_ledger.uint32},{v2.ledger_bounds.max_ledger.uint32})"
        if v2.min_seq_num is not None:
            min_seq = v2.min_seq_num.sequence_number.int64
        min_age = v2.min_seq_age.duration.uint64
        min_gap = v2.min_seq_ledger_gap.uint32
        extra = [signer_key_address(k) for k in v2.extra_signers] or None
    fee_charged = t.result.result.fee_charged.int64
    closed_at = ledger.closed_at
    row = {
        "transaction_hash": t.hash.hex(),
        "ledger_sequence": ledger.sequence,
        "account": account,
        "account_muxed": account_muxed,
        "account_sequence": tx.seq_num.sequence_number.int64,
        "max_fee": fee,
        "fee_charged": fee_charged,
        "operation_count": len(tx.operations),
        "tx_envelope": b64(env) if include_xdr else None,
        "tx_result": b64(t.result.result) if include_xdr else None,
        "tx_meta": b64(t.meta) if include_xdr else None,
        "tx_fee_meta": b64(t.fee_changes) if include_xdr else None,
        "created_at": closed_at,
        "memo_type": go_enum_string(tx.memo.type),
        "memo": _memo(tx.memo),
        "time_bounds": tb,
        "successful": t.successful,
        "id": toid(ledger.sequence, t.index),
        "fee_account": None,
        "fee_account_muxed": None,
        "inner_transaction_hash": None,
        "new_max_fee": None,
        "ledger_bounds": lb,
        "min_account_sequence": min_seq,
        "min_account_sequence_age": min_age,
        "min_account_sequence_ledger_gap": min_gap,
        "extra_signers": extra,
        "closed_at": closed_at,
        "resource_fee": 0,
        "soroban_resources_instructions": 0,
        "soroban_resources_read_bytes": 0,
        "soroban_resources_disk_read_bytes": 0,
        "soroban_resources_write_bytes": 0,
        "soroban_resources_archived_entries": None,
        "transaction_result_code": go_enum_string(t.result_code),
        "inclusion_fee_bid": 0,
        "inclusion_fee_charged": 0,
        "resource_fee_refund": 0,
        "non_refundable_resource_fee_charged": 0,
        "refundable_resource_fee_charged": 0,
        "rent_fee_charged": 0,
        "tx_signers": _signers(t.inner_envelope.signatures),
    }
    row.update(_soroban_fields(t, ledger.protocol_version, fee_charged))
    if t.is_fee_bump:
        fb = env.fee_bump
        row["fee_account"], row["fee_account_muxed"] = muxed_account(fb.tx.fee_source)
        row["inner_transaction_hash"] = _inner_hash(t, ledger.network_passphrase)
        row["new_max_fee"] = fb.tx.fee.int64
        row["tx_signers"] = _signers(fb.signatures)
    return row


def _inner_hash(t: Transaction, network_passphrase: str | None) -> str | None:
    """Hex hash of a fee bump's inner transaction: from its result pair, else hashed from the envelope."""
    pair = t.result.result.result.inner_result_pair
    if pair is not None:
        return pair.transaction_hash.hash.hex()
    if network_passphrase is None:
        return None
    inner = xdr.TransactionEnvelope(type=xdr.EnvelopeType.ENVELOPE_TYPE_TX, v1=t.inner_envelope)
    return envelope_hash(inner, network_id(network_passphrase)).hex()


def _v0_source(tx: xdr.TransactionV0) -> xdr.MuxedAccount:
    return xdr.MuxedAccount(type=xdr.CryptoKeyType.KEY_TYPE_ED25519, ed25519=tx.source_account_ed25519)


class TransactionsConfig(BaseModel):
    """Options of the ``transactions`` processor."""

    model_config = ConfigDict(extra="forbid")

    include_xdr: bool = Field(
        True,
        description="Fill tx_envelope, tx_result, tx_meta and tx_fee_meta (base64 XDR). Re-encoding the meta is "
        "most of this processor's time and of the table's size; false leaves the four columns null.",
    )


@processor(
    "transactions",
    schema=TRANSACTIONS_SCHEMA,
    primary_key=("id",),
    description="One row per applied transaction: source, fees, memo, preconditions, Soroban resources and "
    "base64 envelope/result/meta XDR (stellar-etl history_transactions).",
    config=TransactionsConfig,
    tags=("core",),
)
def transactions(batch: list[Ledger], config: TransactionsConfig) -> list[dict]:
    return [transaction_row(ledger, t, include_xdr=config.include_xdr) for ledger in batch for t in ledger.transactions]
