"""``transactions``: one row per applied transaction, the stellar-etl ``history_transactions`` table.

Values follow stellar-etl's ``TransformTransaction`` (``internal/transform/transaction.go``) field by
field, including its quirks: ``max_fee`` is the inner transaction's fee for fee bumps, ``tx_signers``
holds the signatures strkey-encoded with the account version byte, and Soroban fee refunds are read
from the fee account's balance in the meta (matched by its ``M...`` address when muxed, as Go does).
"""

from __future__ import annotations

import base64
import struct
from binascii import b2a_base64
from datetime import datetime
from functools import partial

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field
from stellar_sdk import xdr

from cdp_ray.networks import network_id
from cdp_ray.processors import native
from cdp_ray.processors.base import col, processor, table_from_rows
from cdp_ray.processors.common import (
    TIMESTAMP,
    account_id,
    encode_strkey,
    go_enum_string,
    muxed_account,
    signer_key_address,
    strkey,
)
from cdp_ray.xdr import Ledger, Transaction, fast
from cdp_ray.xdr.fast import raw_xdr, source_xdr
from cdp_ray.xdr.ledger import envelope_hash

if fast.available():
    from cdp_ray.xdr.fast.codec import CODEC, TIDS

    #: ``ends(raw, 0)``: where each change of a raw ``LedgerEntryChanges`` ends (see ``Codec.ends``)
    _CHANGE_ENDS = partial(CODEC.ends, TIDS["LedgerEntryChange"])

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
_MEMO_TYPE = {t: go_enum_string(t) for t in _MEMO}
_RESULT_CODE = {c: go_enum_string(c) for c in xdr.TransactionResultCode}
_SUCCESS = (xdr.TransactionResultCode.txSUCCESS, xdr.TransactionResultCode.txFEE_BUMP_INNER_SUCCESS)
_ENV = xdr.EnvelopeType
_PRECOND = xdr.PreconditionType
_CHANGE = xdr.LedgerEntryChangeType
_ED25519 = xdr.CryptoKeyType.KEY_TYPE_ED25519
#: The Soroban columns ``resource_fee`` .. ``rent_fee_charged`` of a classic transaction
_NO_SOROBAN = (0, 0, 0, 0, 0, None, 0, 0, 0, 0, 0, 0)


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
    if cond.type == _PRECOND.PRECOND_TIME:
        return cond.time_bounds, None
    if cond.type == _PRECOND.PRECOND_V2:
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
        if change.type == _CHANGE.LEDGER_ENTRY_UPDATED:
            entry = change.updated
        elif change.type == _CHANGE.LEDGER_ENTRY_STATE:
            entry = change.state
        else:
            continue
        acct = entry.data.account
        if acct is None or account_id(acct.account_id) != address:
            continue
        if change.type == _CHANGE.LEDGER_ENTRY_UPDATED:
            end = acct.balance.int64
        else:
            start = acct.balance.int64
    return start, end


_UPDATED = _CHANGE.LEDGER_ENTRY_UPDATED.value
_STATE = _CHANGE.LEDGER_ENTRY_STATE.value
#: ``LedgerEntryData`` of an ed25519 account: entry type ACCOUNT, then public key type ED25519
_ACCOUNT_ED25519 = bytes(8)
_BALANCE = struct.Struct(">q").unpack_from


def _raw_balance_change(groups: list[bytes], key: bytes | None) -> tuple[int, int]:
    """:func:`account_balance_change` over raw ``LedgerEntryChanges`` XDR (the lists one after the other) for
    the account whose ed25519 key is ``key`` (None matches nothing): the changes are split by the compiled
    codec without building them and the balance read at its fixed offset, so the lazy changes are not
    materialized."""
    start = end = 0
    for raw in groups:
        ends = _CHANGE_ENDS(raw, 0)
        for at in (4, *ends[:-1]) if ends else ():
            kind = int.from_bytes(raw[at : at + 4], "big")
            entry = at + 4
            # LedgerEntry: lastModifiedLedgerSeq, data type, account id type, key, balance
            if (kind == _UPDATED or kind == _STATE) and raw[entry + 4 : entry + 12] == _ACCOUNT_ED25519:
                if key is not None and raw[entry + 12 : entry + 44] == key:
                    if kind == _UPDATED:
                        end = _BALANCE(raw, entry + 44)[0]
                    else:
                        start = _BALANCE(raw, entry + 44)[0]
    return start, end


def _fee_balance_change(groups: list, fee_source: xdr.MuxedAccount) -> tuple[int, int]:
    """:func:`account_balance_change` of the fee account over the change lists ``groups`` (None skipped).

    Matched by Go's ``Address()``: a muxed fee account's ``M...`` address matches no account entry.
    """
    groups = [g for g in groups if g is not None]
    raws = [raw_xdr(g) for g in groups]
    if None not in raws:  # fast-engine values: their raw XDR
        muxed = fee_source.type != _ED25519
        return _raw_balance_change(raws, None if muxed else fee_source.ed25519.uint256)
    address = _source_address(fee_source)
    return account_balance_change([c for g in groups for c in _entries(g)], address)


def _soroban_columns(t: Transaction, inner, fee_bump, protocol: int, fee_charged: int) -> tuple[tuple, int]:
    """The columns ``resource_fee`` .. ``rent_fee_charged`` (``transaction_result_code`` left out) of a Soroban
    transaction, and its ``fee_charged``."""
    data: xdr.SorobanTransactionData = inner.ext.soroban_data
    res = data.resources
    resource_fee = data.resource_fee.int64
    if fee_bump is not None:
        fee_source, bid = fee_bump.fee_source, fee_bump.fee.int64
    else:
        fee_source, bid = inner.source_account, inner.fee.uint32
    archived = None
    if data.ext.v == 1 and data.ext.resource_ext.archived_soroban_entries:
        archived = [e.uint32 for e in data.ext.resource_ext.archived_soroban_entries]
    start, end = _fee_balance_change([t.fee_changes], fee_source)
    inclusion_fee_charged = (start - end) - resource_fee
    refund = non_refundable = refundable = rent = 0
    meta = t.meta
    body = meta.v3 if meta.v == 3 else meta.v4 if meta.v == 4 else None
    if body is not None:
        after = [body.tx_changes_after] + ([t.post_apply_fee_changes] if meta.v == 4 else [])
        start, end = _fee_balance_change(after, fee_source)
        refund = end - start
        sm = body.soroban_meta
        if sm is not None and sm.ext.v == 1:
            v1 = sm.ext.v1
            non_refundable = v1.total_non_refundable_resource_fee_charged.int64
            refundable = v1.total_refundable_resource_fee_charged.int64
            rent = v1.rent_fee_charged.int64
    if protocol < 21 and fee_bump is not None:
        # Protocol 20 charged Soroban fee bumps wrongly; stellar-etl recomputes the fee (stellar-core#4188).
        fee_charged = resource_fee - refund
    disk_read = res.disk_read_bytes.uint32
    columns = (
        resource_fee,
        res.instructions.uint32,
        disk_read,
        disk_read,
        res.write_bytes.uint32,
        archived,
        bid - resource_fee,
        inclusion_fee_charged,
        refund,
        non_refundable,
        refundable,
        rent,
    )
    return columns, fee_charged


def _signers(signatures) -> list[str]:
    return [encode_strkey("G", s.signature.signature) for s in signatures or ()]


def _b64(value) -> str:
    """Base64 of the XDR ``value`` was decoded from (:func:`source_xdr`: no re-encoding of fast values)."""
    return b2a_base64(source_xdr(value), newline=False).decode()


def _row_values(ledger: Ledger, closed_at: datetime, t: Transaction, include_xdr: bool) -> tuple:
    """:func:`transaction_row` as a tuple in schema order (``closed_at``: the ledger's, converted once)."""
    sequence = ledger.sequence
    env = t.envelope
    env_type = env.type
    fee_bump = None
    if env_type == _ENV.ENVELOPE_TYPE_TX_FEE_BUMP:
        fee_bump = env.fee_bump.tx
        inner_env = fee_bump.inner_tx.v1
    else:
        inner_env = env.v1 if env_type == _ENV.ENVELOPE_TYPE_TX else env.v0
    tx = inner_env.tx
    if env_type == _ENV.ENVELOPE_TYPE_TX_V0:
        account, account_muxed = strkey("G", tx.source_account_ed25519.uint256), None
    else:
        account, account_muxed = muxed_account(tx.source_account)
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
    result = t.result.result
    result_code = result.result.code
    fee_charged = result.fee_charged.int64
    soroban = _NO_SOROBAN
    if env_type != _ENV.ENVELOPE_TYPE_TX_V0 and tx.ext.v == 1:
        soroban, fee_charged = _soroban_columns(t, tx, fee_bump, ledger.protocol_version, fee_charged)
    if fee_bump is not None:
        fee_account, fee_account_muxed = muxed_account(fee_bump.fee_source)
        inner_hash = _inner_hash(t, ledger.network_passphrase)
        new_max_fee = fee_bump.fee.int64
        signers = _signers(env.fee_bump.signatures)
    else:
        fee_account = fee_account_muxed = inner_hash = new_max_fee = None
        signers = _signers(inner_env.signatures)
    memo = tx.memo
    return (
        t.hash.hex(),
        sequence,
        account,
        account_muxed,
        tx.seq_num.sequence_number.int64,
        tx.fee.uint32,
        fee_charged,
        len(tx.operations),
        _b64(env) if include_xdr else None,
        _b64(result) if include_xdr else None,
        _b64(t.meta) if include_xdr else None,
        _b64(t.fee_changes) if include_xdr else None,
        closed_at,
        _MEMO_TYPE[memo.type],
        _memo(memo),
        tb,
        result_code in _SUCCESS,
        (sequence << 32) | (t.index << 12),
        fee_account,
        fee_account_muxed,
        inner_hash,
        new_max_fee,
        lb,
        min_seq,
        min_age,
        min_gap,
        extra,
        closed_at,
        *soroban[:6],
        _RESULT_CODE[result_code],
        *soroban[6:],
        signers,
    )


def transaction_row(ledger: Ledger, t: Transaction, *, include_xdr: bool = True) -> dict:
    """One stellar-etl ``TransactionOutput`` row (the four base64 XDR columns null without ``include_xdr``)."""
    return dict(zip(TRANSACTIONS_SCHEMA.names, _row_values(ledger, ledger.closed_at, t, include_xdr)))


def _inner_hash(t: Transaction, network_passphrase: str | None) -> str | None:
    """Hex hash of a fee bump's inner transaction: from its result pair, else hashed from the envelope."""
    pair = t.result.result.result.inner_result_pair
    if pair is not None:
        return pair.transaction_hash.hash.hex()
    if network_passphrase is None:
        return None
    inner = xdr.TransactionEnvelope(type=xdr.EnvelopeType.ENVELOPE_TYPE_TX, v1=t.inner_envelope)
    return envelope_hash(inner, network_id(network_passphrase)).hex()


class TransactionsConfig(BaseModel):
    """Options of the ``transactions`` processor."""

    model_config = ConfigDict(extra="forbid")

    include_xdr: bool = Field(
        True,
        description="Fill tx_envelope, tx_result, tx_meta and tx_fee_meta (base64 XDR): about 90% of the table's "
        "size, and most of this processor's time on the sdk engine, which re-encodes them (the fast engine keeps the "
        "decoded bytes); false leaves the four columns null.",
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
def transactions(batch: list[Ledger], config: TransactionsConfig) -> pa.Table:
    return native.table(
        "transactions", TRANSACTIONS_SCHEMA, batch, (config.include_xdr,), partial(_python_table, config.include_xdr)
    )


def _python_table(include_xdr: bool, batch: list[Ledger]) -> pa.Table:
    """The table by the Python rules (the reference of the native builder)."""
    rows = []
    for ledger in batch:
        closed_at = ledger.closed_at
        rows += [_row_values(ledger, closed_at, t, include_xdr) for t in ledger.transactions]
    return table_from_rows(TRANSACTIONS_SCHEMA, rows)
