"""``operations``: one row per operation of every applied transaction, stellar-etl ``history_operations``.

Failed transactions' operations are included (with their result codes), as stellar-etl does.
``details`` is a JSON object string with stellar-etl's details map (see
:mod:`cdp_ray.processors.operation_details`); query it with ``json_extract``/``->>`` or
``pl.col("details").str.json_decode()``. The text is what stellar-etl's Go encoder writes: keys
sorted, UTF-8, floats spelled as Go spells them (``1e-7``, ``10``), ``<>&`` escaped
(:func:`~cdp_ray.processors.common.go_json`). stellar-etl's ``details_json`` duplicate is not repeated.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterator

import pyarrow as pa
from stellar_sdk import xdr

from cdp_ray.processors import native
from cdp_ray.processors.base import NoConfig, col, processor, table_from_rows
from cdp_ray.processors.common import TIMESTAMP, asset_id, go_enum_string, go_json, muxed_account, toid
from cdp_ray.processors.operation_details import (
    OPERATION_TYPE_NAMES,
    complete_details,
    operation_details,
    read_operation,
    transaction_source,
)
from cdp_ray.xdr import Ledger, Transaction
from cdp_ray.xdr.fast import kept_xdr

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
_OP_CODE_NAMES = {c: go_enum_string(c) for c in xdr.OperationResultCode}
#: ``(operation type, inner result code)`` -> Go name of the code, filled as met
_INNER_CODE_NAMES: dict[tuple[int, int], str] = {}


@functools.cache
def _result_code_enum(op_type: int) -> type[enum.IntEnum]:
    """The result code enum of an operation type's result (from the fast engine's schema: only its raw
    results come as bare integers)."""
    from cdp_ray.xdr.fast.codec import load_schema

    schema = load_schema()
    _, _, _, arms, cases = schema["OperationResultTr"]
    result_type = dict(arms)[dict(cases)[op_type]][1]
    return getattr(xdr, schema[result_type][2][1])


def _code_names(code: int | None, tr_type: int | None, inner: int | None) -> tuple[str, str]:
    """``(operation_result_code, operation_trace_code)`` of a result's code, tr type and inner code
    (members or bare integers; None where there is no result, no inner result)."""
    if code is None:
        return "", ""
    if tr_type is None:
        return _OP_CODE_NAMES[code], ""
    name = _INNER_CODE_NAMES.get((tr_type, inner))
    if name is None:
        member = inner if isinstance(inner, enum.Enum) else _result_code_enum(tr_type)(inner)
        name = _INNER_CODE_NAMES[(tr_type, inner)] = go_enum_string(member)
    return _OP_CODE_NAMES[code], name


def _result_codes(t: Transaction, index: int) -> tuple[str, str]:
    results = t.operation_results
    if index >= len(results):
        return "", ""
    res = results[index]
    tr = res.tr
    if res.code != _OP_INNER or tr is None:
        return _code_names(res.code, None, None)
    return _code_names(res.code, tr.type, getattr(tr, _TR_FIELD[tr.type]).code)


def operation_tuples(ledger: Ledger, t: Transaction) -> list[tuple]:
    """stellar-etl ``OperationOutput`` rows of one transaction, as tuples in schema order."""
    seq, closed_at = ledger.sequence, ledger.closed_at
    tx_id = toid(seq, t.index)
    return [
        (
            tx_id | (i + 1),
            tx_id,
            source,
            muxed,
            int(op_type),
            OPERATION_TYPE_NAMES[op_type],
            go_json(details, floats_marked=True),
            closed_at,
            *codes,
            seq,
        )
        for i, (source, muxed, op_type, details, codes) in enumerate(_operation_parts(ledger, t))
    ]


def _operation_parts(ledger: Ledger, t: Transaction) -> Iterator[tuple]:
    """``(source, source_muxed, type, details, (result code, trace code))`` of each operation.

    Operations and results the fast engine kept as XDR are read from it in C (:data:`read_operation`),
    undecoded unless the Python rules build their details map; other values are read as objects.
    """
    protocol, passphrase = ledger.protocol_version, ledger.network_passphrase
    ops, results = t.operations, t.operation_results
    if read_operation is not None:
        ops_xdr, results_xdr = [kept_xdr(op) for op in ops], [kept_xdr(r) for r in results]
        if None not in ops_xdr and None not in results_xdr:
            tx_source, successful = transaction_source(t).to_xdr_bytes(), t.successful
            for i, raw in enumerate(ops_xdr):
                source, muxed, op_type, details, code, tr_type, inner = read_operation(
                    raw, tx_source, results_xdr[i] if i < len(results_xdr) else None, successful
                )
                details = complete_details(details, ops[i], op_type, i, t, protocol, passphrase)
                yield source, muxed, op_type, details, _code_names(code, tr_type, inner)
            return
    tx_source = None
    for i, op in enumerate(ops):
        if op.source_account is not None:
            source, muxed = muxed_account(op.source_account)
        else:
            source, muxed = tx_source = tx_source or muxed_account(transaction_source(t))
        details = operation_details(op, i, t, protocol, passphrase)
        yield source, muxed, op.body.type, details, _result_codes(t, i)


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
    return native.table("operations", OPERATIONS_SCHEMA, batch, (), _python_table, _native_hooks)


def _python_table(batch: list[Ledger]) -> pa.Table:
    """The table by the Python rules (the reference of the native builder)."""
    rows = [row for ledger in batch for t in ledger.transactions for row in operation_tuples(ledger, t)]
    return table_from_rows(OPERATIONS_SCHEMA, rows)


def _native_hooks(ledgers: list[Ledger]) -> tuple:
    """The native builder's hooks over ``ledgers``: the details map of an operation it leaves to the Python rules
    (as JSON text; the transaction decoded alone), stellar-etl's asset id, and the Stellar asset a SEP-41 event
    names (the token_transfers columns of it, with those of native and of no asset, and a cache)."""
    from cdp_ray.processors.token_transfers import _NATIVE_COLUMNS, _NO_ASSET, _sac_columns


    def details(position: int, tx: int, index: int, op_type: int) -> str:
        ledger = ledgers[position]
        t = ledger.transaction_at(tx)
        op = t.operations[index]
        d = complete_details(None, op, op_type, index, t, ledger.protocol_version, ledger.network_passphrase)
        return go_json(d, floats_marked=True)

    return details, asset_id, _sac_columns, _NATIVE_COLUMNS, _NO_ASSET, {}
