"""``ledgers``: one row per ledger, the stellar-etl ``history_ledgers`` table."""

from __future__ import annotations

import base64

import pyarrow as pa

from cdp_ray.processors import native
from cdp_ray.processors.base import NoConfig, col, processor, table_from_dicts
from cdp_ray.processors.common import TIMESTAMP, account_id, b64, go_enum_name, toid
from cdp_ray.xdr import Ledger

LEDGERS_SCHEMA = pa.schema(
    [
        col("sequence", pa.uint32(), "ledger sequence number", nullable=False),
        col("id", pa.int64(), "TOID of the ledger (sequence << 32)", nullable=False),
        col("ledger_hash", pa.string(), "hex sha256 of the ledger header XDR", nullable=False),
        col("previous_ledger_hash", pa.string(), "hex hash of the previous ledger"),
        col("ledger_header", pa.string(), "base64 LedgerHeader XDR"),
        col("transaction_count", pa.int32(), "successful transactions"),
        col("operation_count", pa.int32(), "operations of successful transactions"),
        col("successful_transaction_count", pa.int32(), "successful transactions"),
        col("failed_transaction_count", pa.int32(), "failed transactions"),
        col("tx_set_operation_count", pa.string(), "operations in the transaction set, failed included"),
        col("closed_at", TIMESTAMP, "UTC close time", nullable=False),
        col("total_coins", pa.int64(), "lumens in existence, in stroops"),
        col("fee_pool", pa.int64(), "fee pool, in stroops"),
        col("base_fee", pa.uint32(), "base fee per operation, in stroops"),
        col("base_reserve", pa.uint32(), "base reserve, in stroops"),
        col("max_tx_set_size", pa.uint32(), "maximum transaction set size"),
        col("protocol_version", pa.uint32(), "protocol version"),
        col("soroban_fee_write_1kb", pa.int64(), "Soroban write fee per 1 KB (LCM ext v1)"),
        col("node_id", pa.string(), "validator that signed the close value (G... strkey), empty if unsigned"),
        col("signature", pa.string(), "base64 close value signature, empty if unsigned"),
        col("total_byte_size_of_bucket_list", pa.uint64(), "size of the live Soroban state (legacy name)"),
        col("total_byte_size_of_live_soroban_state", pa.uint64(), "size of the live Soroban state in bytes"),
        col("evicted_ledger_keys_type", pa.list_(pa.string()), "types of the ledger keys evicted"),
        col("evicted_ledger_keys_hash", pa.list_(pa.string()), "base64 LedgerKey XDR of the evicted keys"),
    ]
)


def ledger_row(ledger: Ledger) -> dict:
    h = ledger.header
    succeeded = [t for t in ledger.transactions if t.successful]
    tx_set_ops = sum(len(e_ops) for e_ops in (_envelope_ops(e) for e in ledger.envelopes))
    body = ledger.body
    fee_write = 0
    soroban_size = 0
    evicted = None
    if ledger.lcm_version in (1, 2):
        if body.ext.v == 1:
            fee_write = body.ext.v1.soroban_fee_write1_kb.int64
        soroban_size = body.total_byte_size_of_live_soroban_state.uint64
        evicted = list(body.evicted_keys)
    node_id = signature = ""
    if h.scp_value.ext.v == 1:
        sig = h.scp_value.ext.lc_value_signature
        node_id = account_id(sig.node_id)
        signature = base64.b64encode(sig.signature.signature).decode()
    return {
        "sequence": ledger.sequence,
        "id": toid(ledger.sequence),
        "ledger_hash": ledger.hash.hex(),
        "previous_ledger_hash": h.previous_ledger_hash.hash.hex(),
        "ledger_header": b64(h),
        "transaction_count": len(succeeded),
        "operation_count": sum(len(t.operation_results) for t in succeeded),
        "successful_transaction_count": len(succeeded),
        "failed_transaction_count": len(ledger.transactions) - len(succeeded),
        "tx_set_operation_count": str(tx_set_ops),
        "closed_at": ledger.closed_at,
        "total_coins": h.total_coins.int64,
        "fee_pool": h.fee_pool.int64,
        "base_fee": h.base_fee.uint32,
        "base_reserve": h.base_reserve.uint32,
        "max_tx_set_size": h.max_tx_set_size.uint32,
        "protocol_version": h.ledger_version.uint32,
        "soroban_fee_write_1kb": fee_write,
        "node_id": node_id,
        "signature": signature,
        "total_byte_size_of_bucket_list": soroban_size,
        "total_byte_size_of_live_soroban_state": soroban_size,
        "evicted_ledger_keys_type": None if evicted is None else [go_enum_name(k.type, "LedgerEntryType") for k in evicted],
        "evicted_ledger_keys_hash": None if evicted is None else [b64(k) for k in evicted],
    }


def _envelope_ops(env) -> list:
    if env.fee_bump is not None:
        return env.fee_bump.tx.inner_tx.v1.tx.operations
    return (env.v1 or env.v0).tx.operations


@processor(
    "ledgers",
    schema=LEDGERS_SCHEMA,
    primary_key=("sequence",),
    description="One row per ledger: header fields, hashes and transaction/operation counts "
    "(stellar-etl history_ledgers).",
    tags=("core",),
)
def ledgers(batch: list[Ledger], config: NoConfig) -> pa.Table:
    return native.table("ledgers", LEDGERS_SCHEMA, batch, (), _python_table)


def _python_table(batch: list[Ledger]) -> pa.Table:
    """The table by the Python rules (the reference of the native builder)."""
    return table_from_dicts(LEDGERS_SCHEMA, [ledger_row(ledger) for ledger in batch])
