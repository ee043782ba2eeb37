"""``contract_events``: one row per Soroban / CAP-67 event, stellar-etl's ``history_contract_events``.

Per transaction the rows come in stellar-etl's order: transaction-level events (meta v4: fee charge and
refund), then each operation's events, then diagnostic events. Meta v3 carries a Soroban transaction's
contract events in ``sorobanMeta.events`` (attributed to its single operation) and its diagnostic events
beside them; meta v1/v2 carry none. The kind of event stays visible twice: ``type_string``
(``ContractEventTypeContract`` / ``System`` / ``Diagnostic``, from the event) and ``event_source``
(``transaction`` / ``operation`` / ``diagnostic``, from where the meta holds it).
"""

from __future__ import annotations

import struct
from binascii import b2a_base64

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field
from stellar_sdk import xdr

from cdp_ray.processors.base import col, processor
from cdp_ray.processors.common import TIMESTAMP, go_enum_string, toid
from cdp_ray.processors.scval import contract_id_strkey, scval_json_of
from cdp_ray.xdr import Ledger, Transaction

CONTRACT_EVENTS_SCHEMA = pa.schema(
    [
        col("transaction_hash", pa.string(), "hex transaction hash", nullable=False),
        col("transaction_id", pa.int64(), "TOID of the transaction", nullable=False),
        col("successful", pa.bool_(), "whether the transaction succeeded"),
        col("ledger_sequence", pa.uint32(), "ledger sequence", nullable=False),
        col("closed_at", TIMESTAMP, "ledger close time (UTC)"),
        col(
            "in_successful_contract_call",
            pa.bool_(),
            "false for diagnostic events emitted by a failed call; true for every contract/system event",
        ),
        col("contract_id", pa.string(), "C... strkey of the emitting contract, '' when the event has none"),
        col("type", pa.int32(), "ContractEventType: 0 system, 1 contract, 2 diagnostic"),
        col("type_string", pa.string(), "ContractEventType as Go prints it, e.g. ContractEventTypeContract"),
        col("topics", pa.list_(pa.string()), "base64 SCVal XDR of each topic"),
        col("topics_decoded", pa.string(), "JSON array of the topics rendered as stellar-etl does"),
        col("data", pa.string(), "base64 SCVal XDR of the event data"),
        col("data_decoded", pa.string(), "JSON of the event data rendered as stellar-etl does"),
        col("contract_event_xdr", pa.string(), "base64 DiagnosticEvent XDR (in_successful_contract_call + event)"),
        col("operation_id", pa.int64(), "TOID of the operation for operation events, null otherwise"),
        col("operation_index", pa.int32(), "1-based operation index for operation events, null otherwise"),
        col("event_index", pa.int32(), "0-based position of the event in the transaction's rows", nullable=False),
        col("event_source", pa.string(), "where the meta holds the event: transaction, operation or diagnostic"),
        col("stage", pa.string(), "for transaction-level events: before_all_txs, after_tx or after_all_txs"),
    ]
)


class ContractEventsConfig(BaseModel):
    """Options of the ``contract_events`` processor."""

    model_config = ConfigDict(extra="forbid")

    include_diagnostic: bool = Field(True, description="emit diagnostic events (stellar-etl does)")
    contract_ids: list[str] | None = Field(
        None, description="keep only events of these C... contract ids (events without a contract are dropped)"
    )


_STAGE = {0: "before_all_txs", 1: "after_tx", 2: "after_all_txs"}


def is_soroban(tx: Transaction) -> bool:
    """Whether the (inner) transaction carries ``SorobanTransactionData``."""
    ext = getattr(tx.tx, "ext", None)
    return ext is not None and ext.v == 1


def transaction_events(tx: Transaction):
    """``(tx_events, op_events, diagnostic_events)`` like Go's ``LedgerTransaction.GetTransactionEvents``.

    ``tx_events`` is a list of ``TransactionEvent``, ``op_events`` a list (per operation) of
    ``ContractEvent`` lists, ``diagnostic_events`` a list of ``DiagnosticEvent``.
    """
    m = tx.meta
    if m.v == 4:
        v4 = m.v4
        return list(v4.events or []), [list(op.events or []) for op in v4.operations], list(v4.diagnostic_events or [])
    if m.v == 3 and is_soroban(tx) and m.v3.soroban_meta is not None:
        sm = m.v3.soroban_meta
        return [], [list(sm.events or [])], list(sm.diagnostic_events or [])
    return [], [], []


def _b64(raw: bytes) -> str:
    return b2a_base64(raw, newline=False).decode()


def _diagnostic_event_xdr(
    event: xdr.ContractEvent, in_successful_call: bool, topics_raw: list[bytes], data_raw: bytes
) -> bytes:
    """``DiagnosticEvent`` XDR assembled from the already packed topics and data (packs each value once)."""
    if event.ext.v != 0 or event.body.v != 0:
        return xdr.DiagnosticEvent(in_successful_contract_call=in_successful_call, event=event).to_xdr_bytes()
    cid = event.contract_id
    head = b"".join(
        (
            struct.pack(">II", int(in_successful_call), 0),
            b"\0\0\0\0" if cid is None else b"\0\0\0\1" + cid.contract_id.hash,
            struct.pack(">iiI", event.type.value, 0, len(topics_raw)),
        )
    )
    return head + b"".join(topics_raw) + data_raw


def event_row(
    ledger: Ledger,
    tx: Transaction,
    event: xdr.ContractEvent,
    in_successful_call: bool,
    *,
    source: str,
    index: int,
    op_index: int | None = None,
    stage: str | None = None,
) -> dict:
    """One ``contract_events`` row."""
    return _event_row(_tx_fields(ledger, tx), ledger.sequence, event, in_successful_call, source, index, op_index, stage)


def _tx_fields(ledger: Ledger, tx: Transaction) -> tuple:
    """The columns every event row of ``tx`` shares: hash, TOID, successful, closed_at."""
    tx_id = toid(ledger.sequence, tx.index)
    return tx.hash.hex(), tx_id, tx.successful, ledger.closed_at


def _event_row(
    shared: tuple,
    sequence: int,
    event: xdr.ContractEvent,
    in_successful_call: bool,
    source: str,
    index: int,
    op_index: int | None,
    stage: str | None,
) -> dict:
    tx_hash, tx_id, successful, closed_at = shared
    body = event.body.v0
    topics = body.topics
    topics_raw = [t.to_xdr_bytes() for t in topics]
    data = body.data
    data_raw = data.to_xdr_bytes()
    return {
        "transaction_hash": tx_hash,
        "transaction_id": tx_id,
        "successful": successful,
        "ledger_sequence": sequence,
        "closed_at": closed_at,
        "in_successful_contract_call": in_successful_call,
        "contract_id": contract_id_strkey(event.contract_id) or "",
        "type": event.type.value,
        "type_string": go_enum_string(event.type),
        "topics": [_b64(t) for t in topics_raw],
        "topics_decoded": "[" + ",".join([scval_json_of(t, r) for t, r in zip(topics, topics_raw)]) + "]",
        "data": _b64(data_raw),
        "data_decoded": scval_json_of(data, data_raw),
        "contract_event_xdr": _b64(_diagnostic_event_xdr(event, in_successful_call, topics_raw, data_raw)),
        "operation_id": None if op_index is None else tx_id | op_index,
        "operation_index": op_index,
        "event_index": index,
        "event_source": source,
        "stage": stage,
    }


def transaction_event_rows(ledger: Ledger, tx: Transaction, include_diagnostic: bool = True) -> list[dict]:
    """Every event row of one transaction, in stellar-etl's order."""
    tx_events, op_events, diagnostic = transaction_events(tx)
    if not (tx_events or diagnostic or any(op_events)):
        return []
    shared = _tx_fields(ledger, tx)
    seq = ledger.sequence
    rows: list[dict] = []
    for te in tx_events:
        stage = _STAGE.get(te.stage.value)
        rows.append(_event_row(shared, seq, te.event, True, "transaction", len(rows), None, stage))
    for i, events in enumerate(op_events, start=1):
        for ev in events:
            rows.append(_event_row(shared, seq, ev, True, "operation", len(rows), i, None))
    if include_diagnostic:
        for de in diagnostic:
            rows.append(
                _event_row(shared, seq, de.event, de.in_successful_contract_call, "diagnostic", len(rows), None, None)
            )
    return rows


@processor(
    "contract_events",
    schema=CONTRACT_EVENTS_SCHEMA,
    primary_key=("transaction_id", "event_index"),
    description="One row per contract, system or diagnostic event (meta v3 and v4), topics and data as base64 "
    "XDR and as JSON (stellar-etl history_contract_events).",
    config=ContractEventsConfig,
    tags=("soroban", "events"),
)
def contract_events(batch: list[Ledger], config: ContractEventsConfig) -> list[dict]:
    wanted = set(config.contract_ids) if config.contract_ids else None
    rows: list[dict] = []
    for ledger in batch:
        for tx in ledger.transactions:
            for row in transaction_event_rows(ledger, tx, config.include_diagnostic):
                if wanted is None or row["contract_id"] in wanted:
                    rows.append(row)
    return rows
