"""``ledger_transactions``: each transaction's raw XDR with its ledger header (stellar-etl
``export_ledger_transaction``), for consumers that decode the XDR themselves."""

from __future__ import annotations

import base64

import pyarrow as pa

from cdp_ray.processors.base import col, processor, table_from_rows
from cdp_ray.processors.common import TIMESTAMP, toid
from cdp_ray.processors.filters import FilterConfig, apply_where
from cdp_ray.xdr import Ledger

LEDGER_TRANSACTIONS_SCHEMA = pa.schema(
    [
        col("ledger_sequence", pa.uint32(), "ledger of the transaction", nullable=False),
        col("tx_envelope", pa.string(), "base64 TransactionEnvelope XDR", nullable=False),
        col("tx_result", pa.string(), "base64 TransactionResultPair XDR (hash and result)", nullable=False),
        col("tx_meta", pa.string(), "base64 TransactionMeta XDR", nullable=False),
        col("tx_fee_meta", pa.string(), "base64 LedgerEntryChanges XDR of the fee processing", nullable=False),
        col("tx_ledger_history", pa.string(), "base64 LedgerHeaderHistoryEntry XDR of the ledger", nullable=False),
        col("closed_at", TIMESTAMP, "ledger close time (UTC)", nullable=False),
        col("transaction_id", pa.int64(), "TOID of the transaction (not in stellar-etl's output)", nullable=False),
    ]
)


def _b64(value) -> str:
    return base64.b64encode(value.to_xdr_bytes()).decode()


@processor(
    "ledger_transactions",
    schema=LEDGER_TRANSACTIONS_SCHEMA,
    primary_key=("ledger_sequence", "transaction_id"),
    config=FilterConfig,
    description="Every transaction's raw XDR (stellar-etl export_ledger_transaction): envelope, result pair, meta, "
    "fee meta and the ledger's header history entry, base64, with sequence and close time; failed transactions "
    "included, in apply order.",
    tags=("core", "transactions", "xdr"),
)
def ledger_transactions(batch: list[Ledger], config: FilterConfig) -> pa.Table:
    rows = []
    for ledger in apply_where(batch, config):
        header = _b64(ledger.header_entry)
        closed_at = ledger.closed_at
        for t in ledger.transactions:
            rows.append(
                (
                    ledger.sequence,
                    _b64(t.envelope),
                    _b64(t.result),
                    _b64(t.meta),
                    _b64(t.fee_changes),
                    header,
                    closed_at,
                    toid(ledger.sequence, t.index),
                )
            )
    return table_from_rows(LEDGER_TRANSACTIONS_SCHEMA, rows)
