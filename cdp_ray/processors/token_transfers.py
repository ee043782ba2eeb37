"""``token_transfers``: CAP-67 / SEP-41 transfer, mint, burn, clawback and fee events (stellar-etl).

Rows follow the Go SDK's ``token_transfer`` processor in its unified-events mode, the mode stellar-etl
runs: fee events come from the transaction-level events of meta v4 and movements from each operation's
events, for classic operations (which the data lake's v4 re-encoding and protocol 23+ carry) and Soroban
contracts alike. A contract event counts when it is SEP-41 shaped (``transfer``/``mint``/``burn``/
``clawback`` symbol, address topics, an ``i128`` amount or an ``{amount, to_muxed_id}`` map); its asset
is filled in only when the last topic names a SEP-11 asset whose Stellar Asset Contract id is the
emitting contract's.

Order within a ledger is the Go processor's: every transaction's fee charge first, then operation
events transaction by transaction, with fee refunds right after their transaction's operation events
before protocol 23 and all together at the end from protocol 23 on. ``event_index`` is that position.

Meta v0-v3 hold no unified events; like stellar-etl the processor refuses them (``on_legacy_meta:
error``) unless told to skip their transactions.
"""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field
from stellar_sdk import StrKey, xdr

from cdp_ray.errors import CdpRayError
from cdp_ray.processors.base import col, processor
from cdp_ray.processors.common import TIMESTAMP, asset_parts, contract_strkey, strkey, toid
from cdp_ray.processors.scval import (
    native_sac_strkey,
    parse_sep11_asset,
    sac_contract_id,
    scval_address,
    scval_i128,
    scval_string,
    scval_symbol,
)
from cdp_ray.xdr import Ledger, Transaction

TOKEN_TRANSFERS_SCHEMA = pa.schema(
    [
        col("transaction_hash", pa.string(), "hex transaction hash", nullable=False),
        col("transaction_id", pa.int64(), "TOID of the transaction", nullable=False),
        col("operation_id", pa.int64(), "TOID of the operation, null for fee events"),
        col("event_topic", pa.string(), "transfer, mint, burn, clawback or fee", nullable=False),
        col("from", pa.string(), "sender (G, C, L or B strkey); null for mint"),
        col("to", pa.string(), "recipient; null for burn, clawback and fee"),
        col("asset", pa.string(), "native or type:code:issuer; '' when the token is not a Stellar asset"),
        col("asset_type", pa.string(), "native, credit_alphanum4, credit_alphanum12 or ''"),
        col("asset_code", pa.string(), "asset code, null for native or unknown tokens"),
        col("asset_issuer", pa.string(), "asset issuer, null for native or unknown tokens"),
        col("amount", pa.float64(), "amount_raw * 1e-7 as float64 (stellar-etl)"),
        col("amount_raw", pa.string(), "exact amount in the token's smallest unit (i128, negative for fee refunds)"),
        col("contract_id", pa.string(), "C... of the token contract (the asset's SAC for classic assets)"),
        col("ledger_sequence", pa.uint32(), "ledger sequence", nullable=False),
        col("closed_at", TIMESTAMP, "ledger close time (UTC)"),
        col("to_muxed", pa.string(), "M... address of the recipient when the event carries a to_muxed_id"),
        col("to_muxed_id", pa.string(), "decimal to_muxed_id (0 for text/hash memos, as stellar-etl)"),
        col("event_index", pa.int32(), "0-based position in the ledger's event stream", nullable=False),
    ]
)


class TokenTransfersConfig(BaseModel):
    """Options of the ``token_transfers`` processor."""

    model_config = ConfigDict(extra="forbid")

    on_legacy_meta: Literal["error", "skip"] = Field(
        "error",
        description="transactions with meta v0-v3 carry no unified events: fail (stellar-etl) or skip them",
    )


class LegacyMetaError(CdpRayError):
    """A transaction's meta predates CAP-67 unified events."""

    hint = (
        "read these ledgers from a data lake that re-encodes history as meta v4 (e.g. the AWS public "
        "blockchain lake), or set `on_legacy_meta: skip` to leave their transactions out"
    )


class InvalidFeeEventError(CdpRayError):
    """A transaction-level fee event is malformed (the ledger does not follow CAP-67)."""

    hint = "the ledger's meta is not valid CAP-67; check its source"


_EXPECTED_TOPICS = {"transfer": 4, "mint": 3, "burn": 3, "clawback": 3}


def _asset_columns(asset: xdr.Asset | None) -> dict:
    if asset is None:
        return {"asset": "", "asset_type": "", "asset_code": None, "asset_issuer": None}
    t, code, issuer = asset_parts(asset)
    if t == "native":
        return {"asset": "native", "asset_type": "native", "asset_code": None, "asset_issuer": None}
    t = "credit_alphanum12" if len(code) > 4 else "credit_alphanum4"
    return {"asset": f"{t}:{code}:{issuer}", "asset_type": t, "asset_code": code, "asset_issuer": issuer}


def _muxed(to: str | None, muxed_id: int | None) -> tuple[str | None, str | None]:
    if muxed_id is None or to is None or not to.startswith("G"):
        return None, None
    return strkey("M", StrKey.decode_ed25519_public_key(to) + muxed_id.to_bytes(8, "big")), str(muxed_id)


class _Ctx:
    """Per-ledger state: network, native asset contract and the row template."""

    def __init__(self, ledger: Ledger, passphrase: str):
        self.ledger = ledger
        self.passphrase = passphrase
        self.native_sac = native_sac_strkey(passphrase)
        self.native = xdr.Asset(xdr.AssetType.ASSET_TYPE_NATIVE)

    def row(self, tx: Transaction, op_index: int | None, topic: str, *, frm=None, to=None, amount: int,
            asset: xdr.Asset | None, contract_id: str, muxed_id: int | None = None) -> dict:
        seq = self.ledger.sequence
        to_muxed, to_muxed_id = _muxed(to, muxed_id)
        return {
            "transaction_hash": tx.hash.hex(),
            "transaction_id": toid(seq, tx.index),
            "operation_id": None if op_index is None else toid(seq, tx.index, op_index),
            "event_topic": topic,
            "from": frm,
            "to": to,
            **_asset_columns(asset),
            "amount": float(amount) * 0.0000001,
            "amount_raw": str(amount),
            "contract_id": contract_id,
            "ledger_sequence": seq,
            "closed_at": self.ledger.closed_at,
            "to_muxed": to_muxed,
            "to_muxed_id": to_muxed_id,
        }


def _fee_rows(ctx: _Ctx, tx: Transaction) -> list[dict]:
    rows = []
    for te in tx.meta.v4.events or []:
        ev = te.event
        if ev.type != xdr.ContractEventType.CONTRACT or ev.contract_id is None or ev.body.v != 0:
            raise InvalidFeeEventError(f"ledger {ctx.ledger.sequence} tx {tx.hash.hex()}: malformed transaction event")
        topics, data = ev.body.v0.topics, ev.body.v0.data
        if not topics or scval_symbol(topics[0]) != "fee":
            continue
        amount = scval_i128(data)
        frm = scval_address(topics[1]) if len(topics) == 2 else None
        cid = contract_strkey(ev.contract_id)
        if amount is None or frm is None or cid != ctx.native_sac:
            raise InvalidFeeEventError(
                f"ledger {ctx.ledger.sequence} tx {tx.hash.hex()}: fee event needs topics [fee, address], an i128 "
                f"amount and the native asset contract {ctx.native_sac}, got contract {cid}"
            )
        rows.append(ctx.row(tx, None, "fee", frm=frm, amount=amount, asset=ctx.native, contract_id=cid))
    if not 1 <= len(rows) <= 2:
        raise InvalidFeeEventError(f"ledger {ctx.ledger.sequence} tx {tx.hash.hex()}: {len(rows)} fee events, expected 1 or 2")
    return rows


def _amount_and_muxed(data: xdr.SCVal) -> tuple[int, int | None] | None:
    """SEP-41 event data: an ``i128``, or a map with ``amount`` (i128) and optional ``to_muxed_id``."""
    if data.type != xdr.SCValType.SCV_MAP:
        amount = scval_i128(data)
        return None if amount is None else (amount, None)
    if data.map is None:
        return None
    amount = muxed_id = None
    for entry in data.map.sc_map:
        key = scval_symbol(entry.key)
        if key is None:
            return None
        if key == "amount":
            amount = scval_i128(entry.val)
            if amount is None:
                return None
        elif key == "to_muxed_id":
            t = entry.val.type
            if t == xdr.SCValType.SCV_U64:
                muxed_id = entry.val.u64.uint64
            elif t in (xdr.SCValType.SCV_BYTES, xdr.SCValType.SCV_STRING):
                muxed_id = 0  # a hash / text memo: stellar-etl's GetId() reads 0
            else:
                return None
    return None if amount is None else (amount, muxed_id)


def _operation_row(ctx: _Ctx, tx: Transaction, op_index: int, ev: xdr.ContractEvent) -> dict | None:
    """A row for a SEP-41 shaped contract event, ``None`` for any other event."""
    if ev.type != xdr.ContractEventType.CONTRACT or ev.contract_id is None or ev.body.v != 0:
        return None
    topics = ev.body.v0.topics
    if len(topics) < 2:
        return None
    fn = scval_symbol(topics[0])
    if fn not in _EXPECTED_TOPICS:
        return None
    parsed = _amount_and_muxed(ev.body.v0.data)
    if parsed is None:
        return None
    amount, muxed_id = parsed
    frm = to = None
    if fn == "transfer":
        if len(topics) < 3:
            return None
        frm, to = scval_address(topics[1]), scval_address(topics[2])
        if frm is None or to is None:
            return None
    elif fn == "mint":
        to = scval_address(topics[1])
        if to is None:
            return None
    else:
        frm = scval_address(topics[1])
        if frm is None:
            return None
    asset = None
    if len(topics) == _EXPECTED_TOPICS[fn]:
        name = scval_string(topics[-1])
        candidate = parse_sep11_asset(name) if name else None
        if candidate is not None and sac_contract_id(candidate, ctx.passphrase) == ev.contract_id.contract_id.hash:
            asset = candidate
    return ctx.row(
        tx, op_index, fn, frm=frm, to=to, amount=amount, asset=asset,
        contract_id=contract_strkey(ev.contract_id), muxed_id=muxed_id,
    )


def _context(ledger: Ledger) -> _Ctx:
    passphrase = getattr(ledger, "network_passphrase", None)
    if not passphrase:
        raise CdpRayError(
            f"ledger {ledger.sequence}: network passphrase unknown",
            hint="decode ledgers with cdp_ray.xdr.decode_ledger(data, network_passphrase)",
        )
    return _Ctx(ledger, passphrase)


def _op_rows(ctx: _Ctx, tx: Transaction) -> list[dict]:
    rows = []
    if tx.successful:
        for i, op_meta in enumerate(tx.meta.v4.operations, start=1):
            for ev in op_meta.events or []:
                row = _operation_row(ctx, tx, i, ev)
                if row is not None:
                    rows.append(row)
    return rows


def operation_token_transfers(ledger: Ledger, tx: Transaction) -> list[dict]:
    """Rows of one meta-v4 transaction's operation events only (no fee events, no ``event_index``).

    Useful for transactions whose transaction-level events were stripped, as RPC responses do.
    """
    return _op_rows(_context(ledger), tx)


def ledger_token_transfers(ledger: Ledger, config: TokenTransfersConfig | None = None) -> list[dict]:
    """All token transfer rows of one ledger, in the Go processor's order."""
    config = config or TokenTransfersConfig()
    ctx = _context(ledger)
    p23 = ledger.protocol_version >= 23
    fees: list[dict] = []
    ops: list[dict] = []
    refunds: list[dict] = []
    for tx in ledger.transactions:
        if tx.meta.v != 4:
            if config.on_legacy_meta == "skip":
                continue
            raise LegacyMetaError(
                f"ledger {ledger.sequence} tx {tx.hash.hex()}: transaction meta v{tx.meta.v} has no CAP-67 "
                "unified events (token_transfers needs meta v4, as stellar-etl does)"
            )
        tx_fees = _fee_rows(ctx, tx)
        fees.append(tx_fees[0])
        ops.extend(_op_rows(ctx, tx))
        if len(tx_fees) == 2:
            (refunds if p23 else ops).append(tx_fees[1])
    rows = fees + ops + refunds
    for i, r in enumerate(rows):
        r["event_index"] = i
    return rows


@processor(
    "token_transfers",
    schema=TOKEN_TRANSFERS_SCHEMA,
    primary_key=("ledger_sequence", "event_index"),
    description="CAP-67 / SEP-41 token movements (transfer, mint, burn, clawback, fee) from unified events "
    "of meta v4, classic and Soroban alike (stellar-etl token_transfers).",
    config=TokenTransfersConfig,
    tags=("core", "soroban", "events"),
)
def token_transfers(batch: list[Ledger], config: TokenTransfersConfig) -> list[dict]:
    return [row for ledger in batch for row in ledger_token_transfers(ledger, config)]
