"""``operations``: one row per operation of every applied transaction, stellar-etl ``history_operations``.

Failed transactions' operations are included (with their result codes), as stellar-etl does.
``details`` is a JSON object string with stellar-etl's details map (see
:mod:`cdp_ray.processors.operation_details`); query it with ``json_extract``/``->>`` or
``pl.col("details").str.json_decode()``. The text is what stellar-etl's Go encoder writes: keys
sorted, UTF-8, floats spelled as Go spells them (``1e-7``, ``10``), ``<>&`` escaped
(:func:`~cdp_ray.processors.common.go_json`). stellar-etl's ``details_json`` duplicate is not repeated.
"""

from __future__ import annotations

import pyarrow as pa
from stellar_sdk import xdr

from cdp_ray.processors.base import NoConfig, col, processor, table_from_rows
from cdp_ray.processors.common import TIMESTAMP, go_enum_string, go_json, muxed_account, toid
from cdp_ray.processors.operation_details import OPERATION_TYPE_NAMES, operation_details, transaction_source
from cdp_ray.xdr import Ledger, Transaction

OPERATIONS_SCHEMA = pa.schema(
    [
        col("id", pa.int64(), "TOID: ledger << 32 | tx index << 12 | op index (1-based)", nullable=False),
        col("transaction_id", pa.int64(), "TOID of the transaction", nullable=False),
        col("source_account", pa.string(), "operation source (else the transaction's), G... strkey", nullable=False),
        col("source_account_muxed", pa.string(), "M... address when the source account is muxed"),
        col("type", pa.int32(), "XDR OperationType number", nullable=False),
        col("type_string", pa.string(), "operation type in snake case, e.g. manage_sell_offer", nullable=False),
        col("details", pa.string(), "JSON object: stellar-etl's operation details map"),
        col("closed_at", TIMESTAMP, "ledger close time (UTC)", nullable=False),
        col("operation_result_code", pa.string(), "Go name of the OperationResultCode; empty without op results"),
        col("operation_trace_code", pa.string(), "Go name of the operation-specific result code; empty when absent"),
        col("ledger_sequence", pa.uint32(), "ledger sequence number", nullable=False),
    ]
)


#: ``OperationType`` -> the attribute of ``OperationResult.tr`` holding that operation's result
_TR_FIELD = {t: "bump_seq_result" if t == xdr.OperationType.BUMP_SEQUENCE else f"{OPERATION_TYPE_NAMES[t]}_result"
             for t in xdr.OperationType}
_OP_INNER = xdr.OperationResultCode.opINNER


def _result_codes(t: Transaction, index: int) -> tuple[str, str]:
    results = t.operation_results
    if index >= len(results):
        return "", ""
    res = results[index]
    tr = res.tr
    if res.code != _OP_INNER or tr is None:
        return go_enum_string(res.code), ""
    return go_enum_string(res.code), go_enum_string(getattr(tr, _TR_FIELD[tr.type]).code)


def operation_tuples(ledger: Ledger, t: Transaction) -> list[tuple]:
    """stellar-etl ``OperationOutput`` rows of one transaction, as tuples in schema order."""
    seq, closed_at, protocol, passphrase = (
        ledger.sequence, ledger.closed_at, ledger.protocol_version, ledger.network_passphrase
    )
    tx_id = toid(seq, t.index)
    tx_source = None
    rows = []
    for i, op in enumerate(t.operations):
        if op.source_account is not None:
            source, muxed = muxed_account(op.source_account)
        else:
            source, muxed = tx_source = tx_source or muxed_account(transaction_source(t))
        body_type = op.body.type
        rows.append(
            (
                tx_id | (i + 1),
                tx_id,
                source,
                muxed,
                body_type.value,
                OPERATION_TYPE_NAMES[body_type],
                go_json(operation_details(op, i, t, protocol, passphrase), floats_marked=True),
                closed_at,
                *_result_codes(t, i),
                seq,
            )
        )
    return rows


def operation_rows(ledger: Ledger, t: Transaction) -> list[dict]:
    """:func:`operation_tuples` as dicts keyed by column name."""
    return [dict(zip(OPERATIONS_SCHEMA.names, row)) for row in operation_tuples(ledger, t)]


@processor(
    "operations",
    schema=OPERATIONS_SCHEMA,
    primary_key=("id",),
    description="One row per operation (failed transactions included): type, source, result codes and "
    "stellar-etl's details map as JSON (stellar-etl history_operations).",
    tags=("core",),
)
def operations(batch: list[Ledger], config: NoConfig) -> pa.Table:
    rows = [row for ledger in batch for t in ledger.transactions for row in operation_tuples(ledger, t)]
    return table_from_rows(OPERATIONS_SCHEMA, rows)
