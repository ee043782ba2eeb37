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
from datetime import datetime
from functools import partial
from typing import Callable

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field
from stellar_sdk import StrKey, xdr

from cdp_ray.processors import native
from cdp_ray.processors.base import col, processor, table_from_rows
from cdp_ray.processors.common import TIMESTAMP, encode_strkey, go_enum_string, strkey, toid
from cdp_ray.processors.scval import SCVAL_TEXTS_BY_XDR, XdrMemo, scval_texts
from cdp_ray.xdr import Ledger, Transaction, fast

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
#: ``ContractEventType`` (or its value) -> (value, Go name, XDR of the event's ``type`` and ``body.v`` (0))
_EVENT_TYPE = {
    t: (t.value, go_enum_string(t), struct.pack(">iI", t.value, 0)) for t in xdr.ContractEventType
}
#: ``inSuccessfulContractCall``, the head of a ``DiagnosticEvent``
_CALL_OK = {True: b"\0\0\0\1", False: b"\0\0\0\0"}
_EXT_V0 = b"\0\0\0\0"
_NO_CONTRACT = b"\0\0\0\0"
_CONTRACT = b"\0\0\0\1"
_count = struct.Struct(">I").pack
if fast.available():
    from cdp_ray.xdr.fast.codec import CODEC, TIDS

    _FAST_ENCODE_SCVAL: Callable[[xdr.SCVal], bytes] | None = partial(CODEC.encode, TIDS["SCVal"])
    _SCVAL_ENDS = partial(CODEC.ends, TIDS["SCVal"])
else:
    _FAST_ENCODE_SCVAL = None


def is_soroban(tx: Transaction) -> bool:
    """Whether the (inner) transaction carries ``SorobanTransactionData``."""
    ext = getattr(tx.tx, "ext", None)
    return ext is not None and ext.v == 1


def transaction_events(tx: Transaction):
    """``(tx_events, op_events, diagnostic_events)`` like Go's ``LedgerTransaction.GetTransactionEvents``.

    ``tx_events`` is a sequence of ``TransactionEvent``, ``op_events`` a list (per operation) of
    ``ContractEvent`` sequences, ``diagnostic_events`` a sequence of ``DiagnosticEvent``.
    """
    m = tx.meta
    if m.v == 4:
        v4 = m.v4
        return v4.events or (), [op.events or () for op in v4.operations], v4.diagnostic_events or ()
    if m.v == 3 and is_soroban(tx) and m.v3.soroban_meta is not None:
        sm = m.v3.soroban_meta
        return (), [sm.events or ()], sm.diagnostic_events or ()
    return (), [], ()


def _scval_encoder(sample) -> Callable[[xdr.SCVal], bytes]:
    """XDR encoder for the ``SCVal`` objects of ``sample``'s tree: the compiled codec's for fast-engine objects,
    else the SDK's own (so the sdk engine stays an independent check of the fast one)."""
    if _FAST_ENCODE_SCVAL is not None and hasattr(type(sample), "_xdr_tid"):
        return _FAST_ENCODE_SCVAL
    return xdr.SCVal.to_xdr_bytes


_TOPICS_BY_XDR: XdrMemo = XdrMemo(max_key=2048)


def topics_texts(topics: list[xdr.SCVal] | None, topics_raw: list[bytes], key: bytes) -> tuple[tuple[str, ...], str]:
    """``(base64 XDR of each topic, JSON array of the topics)``, memoised by ``key``, the topics' XDR joined
    (unambiguous: XDR values delimit themselves). Whole topic lists repeat: ``["transfer", from, to, asset]``.
    Without ``topics`` a topic is decoded from its XDR where its JSON needs it."""
    texts = _TOPICS_BY_XDR.get(key)
    if texts is None:
        memo = SCVAL_TEXTS_BY_XDR
        values = topics if topics is not None else [None] * len(topics_raw)
        each = [memo.get(r) or scval_texts(t, r) for t, r in zip(values, topics_raw)]
        b64s, jsons = zip(*each) if each else ((), ())
        texts = _TOPICS_BY_XDR.keep(key, (b64s, "[" + ",".join(jsons) + "]"))
    return texts


topics_texts.cache_clear = _TOPICS_BY_XDR.clear  # type: ignore[attr-defined]  (like functools' caches)


#: The columns ``contract_id`` .. ``contract_event_xdr`` by ``DiagnosticEvent`` XDR: half the events of a
#: ledger repeat whole, nearly all of them small (diagnostic metrics, fees)
_EVENTS_BY_XDR: XdrMemo = XdrMemo(max_key=256)


def _event_values(event: xdr.ContractEvent, in_successful_call: bool, enc: Callable[[xdr.SCVal], bytes]) -> tuple:
    """The columns ``contract_id`` .. ``contract_event_xdr`` of one event: from the bytes the fast engine
    decoded it from when it kept them, else from its values encoded with ``enc``."""
    src = fast.kept_xdr(event)
    if src is None:
        return _encoded_event_values(event, in_successful_call, enc)
    event_xdr = _CALL_OK[in_successful_call] + src
    return _EVENTS_BY_XDR.get(event_xdr) or _EVENTS_BY_XDR.keep(event_xdr, _sliced_event_values(event_xdr))


_event_values.cache_clear = _EVENTS_BY_XDR.clear  # type: ignore[attr-defined]


def _sliced_event_values(event_xdr: bytes) -> tuple:
    """:func:`_event_values` of an event from its ``DiagnosticEvent`` XDR alone: its parts are sliced out of
    it, and a topic or the data is decoded only where its JSON needs the value (the event stays undecoded)."""
    # inSuccessfulContractCall, ext (v0), contractID (flag, hash), type, body's arm (v0), then from ``start``
    # the topics (count, SCVals) and the data
    start = 52 if event_xdr[11] else 20
    ends = _SCVAL_ENDS(event_xdr, start)
    mid = ends[-1] if ends else start + 4
    topics_xdr = event_xdr[start + 4 : mid]
    topic_texts = _TOPICS_BY_XDR.get(topics_xdr) or topics_texts(
        None, [event_xdr[a:b] for a, b in zip((start + 4, *ends), ends)], topics_xdr
    )
    data_xdr = event_xdr[mid:]
    data_texts = SCVAL_TEXTS_BY_XDR.get(data_xdr) or scval_texts(None, data_xdr)
    contract = strkey("C", event_xdr[12:44]) if event_xdr[11] else ""
    event_type = event_xdr[start - 5]  # ContractEventType values fit the type's last byte
    return _columns(contract, event_type, topic_texts, data_texts, event_xdr)


def _columns(contract: str, event_type: int, topics: tuple, data: tuple, event_xdr: bytes) -> tuple:
    """The columns ``contract_id`` .. ``contract_event_xdr`` from their parts (``event_type``: a
    ``ContractEventType`` or its value; ``topics`` and ``data``: base64 and JSON texts)."""
    type_value, type_string, _ = _EVENT_TYPE[event_type]
    return (contract, type_value, type_string, *topics, *data, b2a_base64(event_xdr, newline=False).decode())


def _encoded_event_values(
    event: xdr.ContractEvent, in_successful_call: bool, enc: Callable[[xdr.SCVal], bytes]
) -> tuple:
    """:func:`_event_values` of an event without kept bytes, each value packed once."""
    body = event.body.v0
    topics = body.topics
    topics_raw = [enc(t) for t in topics]
    topics_xdr = b"".join(topics_raw)
    topic_texts = _TOPICS_BY_XDR.get(topics_xdr) or topics_texts(topics, topics_raw, topics_xdr)
    data = body.data
    data_raw = enc(data)
    type_words = _EVENT_TYPE[event.type][2]
    cid = event.contract_id
    cid_hash = None if cid is None else cid.contract_id.hash
    # DiagnosticEvent XDR from the packed parts; ``ext`` and ``body`` have one arm (0), the decoders reject others
    event_xdr = b"".join(
        (
            _CALL_OK[in_successful_call],
            _EXT_V0,
            _NO_CONTRACT if cid_hash is None else _CONTRACT + cid_hash,
            type_words,
            _count(len(topics_raw)),
            topics_xdr,
            data_raw,
        )
    )
    contract = "" if cid_hash is None else strkey("C", cid_hash)
    return _columns(contract, event.type, topic_texts, scval_texts(data, data_raw), event_xdr)


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
    tx_id = toid(ledger.sequence, tx.index)
    values = (
        tx.hash.hex(),
        tx_id,
        tx.successful,
        ledger.sequence,
        ledger.closed_at,
        in_successful_call,
        *_event_values(event, in_successful_call, _scval_encoder(event)),
        None if op_index is None else tx_id | op_index,
        op_index,
        index,
        source,
        stage,
    )
    row = dict(zip(CONTRACT_EVENTS_SCHEMA.names, values))
    row["topics"] = list(row["topics"])
    return row


def transaction_event_rows(
    tx: Transaction, sequence: int, closed_at: datetime, include_diagnostic: bool = True
) -> list[tuple]:
    """Every event row of one transaction of ledger ``sequence``, in stellar-etl's order, as tuples in schema
    order."""
    tx_events, op_events, diagnostic = transaction_events(tx)
    if not include_diagnostic:
        diagnostic = ()
    if not (tx_events or diagnostic or any(op_events)):
        return []
    enc = _scval_encoder(tx.meta)
    tx_id = toid(sequence, tx.index)
    head = (tx.hash.hex(), tx_id, tx.successful, sequence, closed_at)
    rows: list[tuple] = []
    for te in tx_events:
        values = _event_values(te.event, True, enc)
        rows.append((*head, True, *values, None, None, len(rows), "transaction", _STAGE.get(te.stage)))
    for i, events in enumerate(op_events, start=1):
        for ev in events:
            values = _event_values(ev, True, enc)
            rows.append((*head, True, *values, tx_id | i, i, len(rows), "operation", None))
    for de in diagnostic:
        ok = de.in_successful_contract_call
        rows.append((*head, ok, *_event_values(de.event, ok, enc), None, None, len(rows), "diagnostic", None))
    return rows


_CONTRACT_ID = CONTRACT_EVENTS_SCHEMA.names.index("contract_id")


@processor(
    "contract_events",
    schema=CONTRACT_EVENTS_SCHEMA,
    primary_key=("transaction_id", "event_index"),
    description="One row per contract, system or diagnostic event (meta v3 and v4), topics and data as base64 "
    "XDR and as JSON (stellar-etl history_contract_events).",
    config=ContractEventsConfig,
    tags=("soroban", "events"),
)
def contract_events(batch: list[Ledger], config: ContractEventsConfig) -> pa.Table:
    return native.table(
        "contract_events", CONTRACT_EVENTS_SCHEMA, batch, _native_options(config), partial(_python_table, config)
    )


def _native_options(config: ContractEventsConfig) -> tuple:
    """The native builder's options: ``(include_diagnostic, wanted contract ids (sorted raw 32-byte ids joined)
    or None, whether events without a contract are wanted)``. A wanted text that is no C... strkey (as the
    table spells them) matches no event."""
    if not config.contract_ids:
        return config.include_diagnostic, None, False
    ids = set()
    for text in config.contract_ids:
        try:
            raw = StrKey.decode_contract(text)
        except Exception:  # noqa: BLE001  (not a contract strkey: it matches nothing)
            continue
        if encode_strkey("C", raw) == text:
            ids.add(raw)
    return config.include_diagnostic, b"".join(sorted(ids)), "" in config.contract_ids


def _python_table(config: ContractEventsConfig, batch: list[Ledger]) -> pa.Table:
    """The table by the Python rules (the reference of the native builder)."""
    wanted = set(config.contract_ids) if config.contract_ids else None
    rows: list[tuple] = []
    for ledger in batch:
        sequence, closed_at = ledger.sequence, ledger.closed_at
        for tx in ledger.transactions:
            rows += transaction_event_rows(tx, sequence, closed_at, config.include_diagnostic)
    if wanted is not None:
        rows = [r for r in rows if r[_CONTRACT_ID] in wanted]
    return table_from_rows(CONTRACT_EVENTS_SCHEMA, rows)
