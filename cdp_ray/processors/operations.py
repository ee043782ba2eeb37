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

from cdp_ray.processors.base import NoConfig, col, processor
from cdp_ray.processors.common import TIMESTAMP, go_enum_string, go_json, muxed_account, toid
from cdp_ray.processors.operation_details import OPERATION_TYPE_NAMES, operation_details
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


def _result_codes(t: Transaction, index: int) -> tuple[str, str]:
    results = t.operation_results
    if index >= len(results):
        return "", ""
    res = results[index]
    code = go_enum_string(res.code)
    if res.code != xdr.OperationResultCode.opINNER or res.tr is None:
        return code, ""
    tr = res.tr
    name = OPERATION_TYPE_NAMES[tr.type]
    inner = getattr(tr, _TR_FIELD.get(name, name + "_result"))
    return code, go_enum_string(inner.code)


_TR_FIELD = {"bump_sequence": "bump_seq_result"}


def operation_rows(ledger: Ledger, t: Transaction) -> list[dict]:
    """stellar-etl ``OperationOutput`` rows of one transaction."""
    tx_source = t.tx.source_account if hasattr(t.tx, "source_account") else None
    seq, closed_at, protocol, passphrase = (
        ledger.sequence, ledger.closed_at, ledger.protocol_version, ledger.network_passphrase
    )
    tx_id = toid(seq, t.index)
    rows = []
    for i, op in enumerate(t.operations):
        if op.source_account is not None:
            source, muxed = muxed_account(op.source_account)
        elif tx_source is not None:
            source, muxed = muxed_account(tx_source)
        else:  # TransactionV0: a bare ed25519 key
            source, muxed = muxed_account(
                xdr.MuxedAccount(type=xdr.CryptoKeyType.KEY_TYPE_ED25519, ed25519=t.tx.source_account_ed25519)
            )
        details = operation_details(op, i, t, protocol, passphrase)
        result_code, trace_code = _result_codes(t, i)
        rows.append(
            {
                "id": tx_id | (i + 1),
                "transaction_id": tx_id,
                "source_account": source,
                "source_account_muxed": muxed,
                "type": op.body.type.value,
                "type_string": OPERATION_TYPE_NAMES[op.body.type],
                "details": go_json(details),
                "closed_at": closed_at,
                "operation_result_code": result_code,
                "operation_trace_code": trace_code,
                "ledger_sequence": seq,
            }
        )
    return rows


@processor(
    "operations",
    schema=OPERATIONS_SCHEMA,
    primary_key=("id",),
    description="One row per operation (failed transactions included): type, source, result codes and "
    "stellar-etl's details map as JSON (stellar-etl history_operations).",
    tags=("core",),
)
def operations(batch: list[Ledger], config: NoConfig) -> list[dict]:
    return [row for ledger in batch for t in ledger.transactions for row in operation_rows(ledger, t)]
