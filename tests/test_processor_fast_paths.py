"""The shortcuts of the transactions / contract_events / operations processors and the rows -> Arrow step,
checked against the plain paths they replace on every real ledger: raw balance scans, direct SCVal JSON
text, no materialized entry changes, the C details maps, and column building."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from types import SimpleNamespace

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stellar_sdk import xdr
from test_fast_decode import _groups, real_ledgers
from test_fast_decode_props import value_of

from cdp_ray.processors import get_processor
from cdp_ray.processors import operation_details as od
from cdp_ray.processors.base import column_array, table_from_dicts, table_from_rows
from cdp_ray.processors.common import TIMESTAMP, GoFloat, g_strkey, go_json, muxed_account
from cdp_ray.processors.contract_events import transaction_events
from cdp_ray.processors.operation_details import operation_details
from cdp_ray.processors.operations import _TR_FIELD
from cdp_ray.processors.scval import scval_json, scval_to_json, to_json
from cdp_ray.processors.token_transfers import _change_groups
from cdp_ray.processors.transactions import _raw_balance_change, account_balance_change
from cdp_ray.xdr import decode_ledger, fast

needs_fast = pytest.mark.skipif(not fast.available(), reason=f"fast engine not built: {fast.unavailable_reason()}")


def _ledgers(stellar_data):
    for group in _groups():
        for _, passphrase, raw in real_ledgers(stellar_data, group):
            yield decode_ledger(raw, passphrase, engine="fast")


@needs_fast
def test_transactions_and_contract_events_materialize_no_entry_changes(stellar_data, monkeypatch):
    from cdp_ray.xdr.fast import codec

    materialized = []
    real = codec._materialize
    monkeypatch.setattr(codec, "_materialize", lambda obj: materialized.append(obj) or real(obj))
    processors = [get_processor("transactions"), get_processor("contract_events")]
    soroban = 0
    for ledger in _ledgers(stellar_data):
        for p in processors:
            p.process([ledger])
        soroban += sum(1 for t in ledger.transactions if getattr(t.tx, "ext", None) is not None and t.tx.ext.v == 1)
        assert materialized == [], ledger.sequence
    assert soroban > 1000  # fee refunds were read from raw changes, not skipped
    ledger.transactions[0].fee_changes.ledger_entry_changes  # noqa: B018  (the counter does count)
    assert len(materialized) == 1


@needs_fast
def test_raw_balance_scan_matches_the_object_walk(stellar_data):
    """Every change group of every real transaction, for every account in it (and a muxed fee account)."""
    checked = 0
    for ledger in _ledgers(stellar_data):
        for tx in ledger.transactions:
            for group in _change_groups(tx):
                raw = group.to_xdr_bytes()
                changes = group.ledger_entry_changes
                keys = {
                    e.data.account.account_id.account_id.ed25519.uint256
                    for c in changes
                    for e in (c.created, c.updated, c.state, c.restored)
                    if e is not None and e.data.account is not None
                }
                assert _raw_balance_change([raw], None) == (0, 0)
                for key in keys:
                    address = g_strkey(key)
                    assert _raw_balance_change([raw], key) == account_balance_change(changes, address)
                    assert _raw_balance_change([raw, raw], key) == account_balance_change(changes + changes, address)
                    checked += 1
    assert checked > 30_000


@needs_fast
def test_scval_json_text_matches_the_rendered_objects(stellar_data):
    """Topics and data of every event, and keys and values of every contract data entry change."""
    seen_types = set()
    count = 0
    for ledger in _ledgers(stellar_data):
        for tx in ledger.transactions:
            tx_events, op_events, diagnostic = transaction_events(tx)
            events = [e.event for e in tx_events] + [e for es in op_events for e in es] + [d.event for d in diagnostic]
            values = [v for e in events for v in (*e.body.v0.topics, e.body.v0.data)]
            for group in _change_groups(tx):
                for c in group.ledger_entry_changes:
                    entry = c.created or c.updated or c.state or c.restored
                    if entry is not None and entry.data.contract_data is not None:
                        values += [entry.data.contract_data.key, entry.data.contract_data.val]
            for v in values:
                assert scval_json(v) == to_json(scval_to_json(v))
                seen_types.add(v.type)
                count += 1
    assert count > 100_000
    assert {xdr.SCValType.SCV_MAP, xdr.SCValType.SCV_VEC, xdr.SCValType.SCV_I128, xdr.SCValType.SCV_ADDRESS,
            xdr.SCValType.SCV_SYMBOL, xdr.SCValType.SCV_STRING, xdr.SCValType.SCV_BYTES,
            xdr.SCValType.SCV_CONTRACT_INSTANCE} <= seen_types


SCHEMA = pa.schema([pa.field("id", pa.int64()), pa.field("name", pa.string()), pa.field("at", TIMESTAMP)])
T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
T1 = datetime(2025, 1, 2, 3, 4, 10, tzinfo=timezone.utc)


def test_table_from_dicts_fills_missing_keys_with_null():
    rows = [{"id": 1, "name": "a", "at": T0}, {"id": 2, "at": T1, "extra": 5}]
    assert table_from_dicts(SCHEMA, rows).to_pylist() == [
        {"id": 1, "name": "a", "at": T0},
        {"id": 2, "name": None, "at": T1},
    ]
    assert table_from_dicts(SCHEMA, []).num_rows == 0 and table_from_dicts(SCHEMA, []).schema == SCHEMA
    one = pa.schema([pa.field("id", pa.int64())])
    assert table_from_dicts(one, [{"id": 7}, {}]).column("id").to_pylist() == [7, None]


def test_table_from_rows_takes_tuples_in_schema_order():
    table = table_from_rows(SCHEMA, [(1, "a", T0), (2, None, None)])
    assert table.schema == SCHEMA
    assert table.to_pylist() == [{"id": 1, "name": "a", "at": T0}, {"id": 2, "name": None, "at": None}]
    assert table_from_rows(SCHEMA, []).num_rows == 0


def test_timestamps_converted_once_per_value_equal_the_plain_conversion():
    values = [T0] * 10 + [None] + [T1] * 10 + [T0, datetime(2025, 1, 2, 3, 4, 5)]
    converted = column_array(values, TIMESTAMP)
    assert converted.equals(pa.array(values, type=TIMESTAMP))
    assert converted.to_pylist()[9:12] == [T0, None, T1]
    one_ledger = column_array([T1] * 20, TIMESTAMP)  # a single distinct value: repeated, not converted per row
    assert one_ledger.type == TIMESTAMP and one_ledger.to_pylist() == [T1] * 20
    assert column_array([None] * 20, TIMESTAMP).equals(pa.nulls(20, TIMESTAMP))


def _plain_floats(value, found: list):
    """``value`` with each :class:`GoFloat` made a plain float (counted in ``found``), failing on plain ones."""
    if type(value) is GoFloat:
        found.append(value)
        return float(value)
    assert type(value) is not float, value
    if isinstance(value, dict):
        return {k: _plain_floats(v, found) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_floats(v, found) for v in value]
    return value


@needs_fast
def test_details_maps_mark_every_float_for_go_json(stellar_data):
    """``operations`` writes details with ``floats_marked``: every float of every real operation's map must be a
    GoFloat, and the text must equal go_json's walk over the same map with plain floats."""
    found: list = []
    ops = 0
    for ledger in _ledgers(stellar_data):
        for t in ledger.transactions:
            for i, op in enumerate(t.operations):
                d = operation_details(op, i, t, ledger.protocol_version, ledger.network_passphrase)
                text = go_json(d, floats_marked=True)
                assert text == go_json(_plain_floats(d, found)), (ledger.sequence, t.hash.hex(), i)
                ops += 1
    assert ops > 20_000 and len(found) > 30_000
    assert "1e-7" in {go_json(f) for f in found}  # the spelling the walk would otherwise have to fix


needs_details = pytest.mark.skipif(
    od.read_operation is None or not fast.available(), reason="details or fast-engine extension not built"
)
OT = xdr.OperationType
CLASSIC = {
    OT.CREATE_ACCOUNT, OT.PAYMENT, OT.PATH_PAYMENT_STRICT_RECEIVE, OT.PATH_PAYMENT_STRICT_SEND, OT.MANAGE_SELL_OFFER,
    OT.MANAGE_BUY_OFFER, OT.CREATE_PASSIVE_SELL_OFFER, OT.CREATE_CLAIMABLE_BALANCE,
}


def _typed(value):
    """``value`` with every leaf paired with its type, so that 1 and 1.0, float and GoFloat differ."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return type(value).__name__, value


def _check_read(op: xdr.Operation, tx_source: xdr.MuxedAccount, rules_tx, index: int, op_xdr: bytes,
                result_xdr: bytes | None) -> bool:
    """``read_operation`` of an operation's XDR (and its result's) against the Python rules over its values;
    ``rules_tx``: the transaction they read (its success and results). Whether C built the details map;
    where the rules raise, C must decline."""
    got = od.read_operation(op_xdr, tx_source.to_xdr_bytes(), result_xdr, rules_tx.successful)
    source = op.source_account if op.source_account is not None else tx_source
    assert got[:3] == (*muxed_account(source), op.body.type)
    result = None if result_xdr is None else xdr.OperationResult.from_xdr_bytes(result_xdr)
    tr = None if result is None else result.tr
    assert got[4:] == (
        None if result is None else result.code,
        None if tr is None else tr.type,
        None if tr is None else getattr(tr, _TR_FIELD[tr.type]).code,
    )
    if got[3] is None and op.body.type not in CLASSIC:
        return False
    try:
        py = od.details_in_python(op.body, source, index, rules_tx, None, None)
    except Exception as exc:  # noqa: BLE001  (compared: C must then decline)
        assert got[3] is None, exc
        return False
    assert got[3] is not None, py
    assert _typed(got[3]) == _typed(py)
    return True


@needs_details
def test_operations_read_from_xdr_equal_the_python_rules_on_real_operations(stellar_data):
    """Every real operation with its result: source, type and result codes equal the values', and the details
    map of the eight common classic types equals the Python rules' map value for value and type for type."""
    built = Counter()
    for ledger in _ledgers(stellar_data):
        for t in ledger.transactions:
            results = t.operation_results
            for i, op in enumerate(t.operations):
                result_xdr = fast.kept_xdr(results[i]) if i < len(results) else None
                if _check_read(op, od.transaction_source(t), t, i, fast.kept_xdr(op), result_xdr):
                    built[op.body.type] += 1
    assert set(built) == CLASSIC - {OT.CREATE_PASSIVE_SELL_OFFER}  # none in the real ledgers: generated below
    assert sum(built.values()) > 19_000


def _result_strategy(op_type: OT) -> st.SearchStrategy:
    """Successful ``OperationResult`` values of an operation type: any value of its result type."""
    from cdp_ray.xdr.fast.codec import load_schema

    _, _, _, arms, cases = load_schema()["OperationResultTr"]
    arm = dict(cases)[op_type]
    return value_of(dict(arms)[arm][1]).map(
        lambda r: xdr.OperationResult(
            code=xdr.OperationResultCode.opINNER, tr=xdr.OperationResultTr(type=op_type, **{arm: r})
        )
    )


_ARMS = {
    OT.CREATE_ACCOUNT: "CreateAccountOp", OT.PAYMENT: "PaymentOp",
    OT.PATH_PAYMENT_STRICT_RECEIVE: "PathPaymentStrictReceiveOp",
    OT.PATH_PAYMENT_STRICT_SEND: "PathPaymentStrictSendOp",
    OT.MANAGE_SELL_OFFER: "ManageSellOfferOp", OT.MANAGE_BUY_OFFER: "ManageBuyOfferOp",
    OT.CREATE_PASSIVE_SELL_OFFER: "CreatePassiveSellOfferOp", OT.CREATE_CLAIMABLE_BALANCE: "CreateClaimableBalanceOp",
}
_classic_bodies = st.sampled_from(sorted(_ARMS)).flatmap(
    lambda t: value_of(_ARMS[t]).map(lambda o: xdr.OperationBody(type=t, **{f"{od.OPERATION_TYPE_NAMES[t]}_op": o}))
)


@needs_details
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.deferred(lambda: _classic_bodies),
    source=st.deferred(lambda: st.none() | value_of("MuxedAccount")),
    tx_source=st.deferred(lambda: value_of("MuxedAccount")),
    other=st.deferred(lambda: value_of("OperationResult")),
    outcome=st.sampled_from(["failed", "failed with a result", "succeeded", "no result", "another result"]),
    data=st.data(),
)
def test_operations_read_from_xdr_equal_the_python_rules_on_generated_operations(
    body, source, tx_source, other, outcome, data
):
    """Any value of the eight operation types (muxed accounts, 4- and 12-character codes with NULs and bad
    UTF-8, extreme amounts and prices, nested claim predicates), with or without its own source, of a failed
    transaction (with or without a result), a successful one (any result of its type: offers of several
    assets), one whose results lack the operation, or with any other result: equal reads, or C declines
    where the Python rules raise."""
    result = {
        "failed": None,
        "failed with a result": other,
        "succeeded": data.draw(_result_strategy(body.type)) if outcome == "succeeded" else None,
        "no result": None,
        "another result": other,
    }[outcome]
    results = [result] if result else []
    rules_tx = SimpleNamespace(successful=not outcome.startswith("failed"), operation_results=results)
    op = xdr.Operation(source_account=source, body=body)
    _check_read(op, tx_source, rules_tx, 0, op.to_xdr_bytes(), result.to_xdr_bytes() if result else None)


def test_without_the_details_extension_the_python_rules_build_every_map(stellar_data):
    """With ``_details`` not importable, the operations table of real ledgers is the same, built in Python."""
    import subprocess
    import sys

    group = "wallet-backend"  # the protocol-26 pubnet ledgers
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'cdp_ray.processors._details': raise ImportError('no compiler')\n"
        "sys.meta_path.insert(0, Block())\n"
        "sys.path.insert(0, 'tests')\n"
        "from pathlib import Path\n"
        "from cdp_ray.processors import get_processor, operation_details\n"
        "from cdp_ray.xdr import decode_ledger\n"
        "from test_fast_decode import real_ledgers\n"
        f"ledgers = real_ledgers(Path({str(stellar_data)!r}), {group!r})\n"
        "table = get_processor('operations').process([decode_ledger(r, p) for _, p, r in ledgers])\n"
        "print(operation_details.read_operation, table.num_rows, table.column('details').to_pylist())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    ledgers = [decode_ledger(r, p) for _, p, r in real_ledgers(stellar_data, group)]
    table = get_processor("operations").process(ledgers)
    assert od.read_operation is not None or not fast.available()
    assert out.strip() == f"None {table.num_rows} {table.column('details').to_pylist()}"
    assert table.num_rows > 1000
