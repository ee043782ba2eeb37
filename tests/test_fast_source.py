"""Kept source bytes: values of ``SOURCE_TYPES`` hold the XDR they were decoded from, read by ``source_xdr``.

On every real ledger the kept bytes of envelopes, results, metas, transaction bodies and contract events
must be what stellar-sdk encodes for the same values; changing a value changes ``to_xdr_bytes()`` but not
what was decoded; pickles and copies leave the source out; bytes in a non-canonical form (which the SDK
reads but re-encodes differently) are neither kept nor left lazy; the transactions and contract_events
tables and transaction hashes are built without re-encoding anything.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
import pickle

import pytest
from stellar_sdk import StrKey, xdr

from cdp_ray.processors import get_processor
from cdp_ray.processors import contract_events as ce
from cdp_ray.processors.contract_events import transaction_events
from cdp_ray.processors.operations import _TR_FIELD
from cdp_ray.processors.scval import scval_texts
from cdp_ray.xdr import decode_ledger, fast
from cdp_ray.xdr.fast import source_xdr
from conftest import PUBNET
from test_fast_decode import WALKED_PER_GROUP, _groups, real_ledgers

pytestmark = pytest.mark.skipif(not fast.available(), reason=f"fast engine not built: {fast.unavailable_reason()}")

if fast.available():
    from cdp_ray.xdr.fast import _fastxdr, codec

_ENV = xdr.EnvelopeType


def _kept(value) -> bytes | None:
    return vars(value).get("_xdr_src")


def _type_name(value) -> str:
    """The XDR type of a fast-engine value, lazy or not."""
    return type(value).__name__.removeprefix("Lazy")


def _body(env):
    """The body a transaction hash is computed over: ``Transaction``, ``FeeBumpTransaction`` or ``TransactionV0``."""
    if env.type == _ENV.ENVELOPE_TYPE_TX_FEE_BUMP:
        return env.fee_bump.tx
    return (env.v1 if env.type == _ENV.ENVELOPE_TYPE_TX else env.v0).tx


def _events(tx) -> list:
    """Every contract event of a transaction: transaction-level, operations', diagnostic."""
    tx_events, op_events, diagnostic = transaction_events(tx)
    return [e.event for e in tx_events] + [e for es in op_events for e in es] + [d.event for d in diagnostic]


def _kept_values(fst, sdk):
    """(fast value, sdk value) of every kept type in two decodes of one ledger."""
    for f, s in zip(fst.envelopes, sdk.envelopes):
        yield f, s
        yield _body(f), _body(s)
        if f.type == _ENV.ENVELOPE_TYPE_TX_FEE_BUMP:
            yield f.fee_bump.tx.inner_tx.v1.tx, s.fee_bump.tx.inner_tx.v1.tx
    for f, s in zip(fst.transactions, sdk.transactions):
        yield f.result.result, s.result.result
        yield f.meta, s.meta
        yield from zip(_events(f), _events(s))


@pytest.fixture(scope="module")
def p26_raw(stellar_data) -> bytes:
    return gzip.decompress((stellar_data / "wallet-backend" / "ledger-63092982.xdr.gz").read_bytes())


@pytest.mark.parametrize("group", _groups())
def test_kept_sources_are_the_sdk_encoding(stellar_data, group):
    """Every kept value of every ledger holds its own encoding, compared with the C encoder over the fast
    graph (which test_fast_decode proves equal to stellar-sdk's encoder on every ledger); the first
    ledgers of each group are also decoded and encoded by stellar-sdk itself (about 0.1 s per ledger)."""
    seen: dict[str, int] = {}
    for i, (seq, passphrase, raw) in enumerate(real_ledgers(stellar_data, group)):
        fst = decode_ledger(raw, passphrase, engine="fast")
        if i < WALKED_PER_GROUP:
            sdk = decode_ledger(raw, passphrase, engine="sdk")
            for f, s in _kept_values(fst, sdk):
                assert source_xdr(f) == s.to_xdr_bytes() == source_xdr(s) and _kept(s) is None, seq
        for f, _ in _kept_values(fst, fst):
            name = _type_name(f)
            src = fast.kept_xdr(f)  # contract events are still lazy: their raw bytes
            assert src is not None and source_xdr(f) is src, (seq, name)
            assert src == fast.encode(f), (seq, name)
            seen[name] = seen.get(name, 0) + 1
    if fst.transactions:  # every kind but fee bumps and v0 bodies occurs in each group with transactions
        assert {"TransactionEnvelope", "Transaction", "TransactionResult", "TransactionMeta"} <= seen.keys()


def test_every_kept_type_occurs_in_the_real_ledgers(stellar_data):
    seen = set()
    for group in ("stellar-go-ttp", "wallet-backend"):
        for seq, passphrase, raw in real_ledgers(stellar_data, group)[:40]:
            ledger = decode_ledger(raw, passphrase, engine="fast")
            for env in ledger.envelopes:
                seen |= {type(env).__name__, type(_body(env)).__name__}
            for t in ledger.transactions:
                seen |= {type(t.result.result).__name__, type(t.meta).__name__}
                seen |= {_type_name(e) for e in _events(t)}
    assert seen == set(codec.SOURCE_TYPES)


def test_a_changed_value_encodes_its_change(p26_raw):
    ledger = decode_ledger(p26_raw, PUBNET, engine="fast")
    env = ledger.transactions[0].envelope
    decoded = source_xdr(env)
    assert env.to_xdr_bytes() == decoded
    env.v1.tx.fee = xdr.Uint32(env.v1.tx.fee.uint32 + 1)
    sdk = xdr.TransactionEnvelope.from_xdr_bytes(decoded)
    sdk.v1.tx.fee = xdr.Uint32(sdk.v1.tx.fee.uint32 + 1)
    assert env.to_xdr_bytes() == sdk.to_xdr_bytes() != decoded
    assert env.v1.tx.to_xdr_bytes() == sdk.v1.tx.to_xdr_bytes() != source_xdr(env.v1.tx)
    assert source_xdr(env) == decoded, "source_xdr is the value as decoded"
    meta = ledger.transactions[0].meta
    meta.v4.tx_changes_before = xdr.LedgerEntryChanges([])
    assert meta.to_xdr_bytes() != source_xdr(meta)
    assert xdr.TransactionMeta.from_xdr_bytes(meta.to_xdr_bytes()).v4.tx_changes_before.ledger_entry_changes == []


def test_pickles_and_copies_leave_the_source_out(p26_raw):
    ledger = decode_ledger(p26_raw, PUBNET, engine="fast")
    t = ledger.transactions[0]
    sdk = xdr.TransactionMeta.from_xdr_bytes(source_xdr(t.meta))
    for value in (t.envelope, t.result.result, t.meta):
        src = _kept(value)
        pickled = pickle.dumps(value)
        assert src not in pickled
        for clone in (pickle.loads(pickled), copy.deepcopy(value), copy.copy(value)):
            assert type(clone) is type(value) and _kept(clone) is None
            assert clone == value and source_xdr(clone) == src
        assert _kept(value) is src, "pickling must not change the original"
    assert t.meta == sdk and sdk == t.meta and repr(t.meta) == repr(sdk)


def _count_encodes(monkeypatch) -> list[str]:
    """The type names of the values the codec encodes from now on (``to_xdr_bytes`` of fast objects)."""
    calls = []

    class Counting:
        def __getattr__(self, name):
            return getattr(real, name)

        def encode(self, tid, value):
            calls.append(type(value).__name__)
            return real.encode(tid, value)

    real = codec.CODEC
    monkeypatch.setattr(codec, "CODEC", Counting())
    return calls


def test_transactions_and_hashes_encode_only_the_ledger_header(p26_raw, monkeypatch):
    calls = _count_encodes(monkeypatch)
    ledger = decode_ledger(p26_raw, PUBNET, engine="fast")
    table = get_processor("transactions").process([ledger])
    assert table.num_rows == len(ledger.transactions) == 305
    assert calls == ["LedgerHeader"], "only the header hash (once per ledger) encodes"
    rows = table.select(["tx_envelope", "tx_result", "tx_meta", "tx_fee_meta"]).to_pylist()
    for t, row in zip(ledger.transactions, rows):
        values = (t.envelope, t.result.result, t.meta, t.fee_changes)
        assert [base64.b64decode(v) for v in row.values()] == [source_xdr(v) for v in values]
    assert calls == ["LedgerHeader"]


def test_contract_events_encode_no_value(p26_raw, monkeypatch):
    """The contract_events table slices topics, data and event XDR out of the events' kept bytes (memos
    emptied first) and equals the sdk engine's table, built from encoded values."""
    calls = _count_encodes(monkeypatch)
    monkeypatch.setattr(ce, "_FAST_ENCODE_SCVAL", lambda value: calls.append(type(value).__name__))
    for memo in (ce._event_values, ce.topics_texts, scval_texts):
        memo.cache_clear()
    proc = get_processor("contract_events")
    table = proc.process([decode_ledger(p26_raw, PUBNET, engine="fast")])
    assert calls == ["LedgerHeader"] and table.num_rows == 1988
    assert table.equals(proc.process([decode_ledger(p26_raw, PUBNET, engine="sdk")]))


# --- non-canonical input -------------------------------------------------------------------------


def _data_change(name: bytes) -> xdr.LedgerEntryChanges:
    entry = xdr.LedgerEntry(
        last_modified_ledger_seq=xdr.Uint32(7),
        data=xdr.LedgerEntryData(
            type=xdr.LedgerEntryType.DATA,
            data=xdr.DataEntry(
                account_id=xdr.AccountID(
                    xdr.PublicKey(xdr.PublicKeyType.PUBLIC_KEY_TYPE_ED25519, xdr.Uint256(b"\x01" * 32))
                ),
                data_name=xdr.String64(name),
                data_value=xdr.DataValue(b"v"),
                ext=xdr.DataEntryExt(0),
            ),
        ),
        ext=xdr.LedgerEntryExt(0),
    )
    change = xdr.LedgerEntryChange(type=xdr.LedgerEntryChangeType.LEDGER_ENTRY_STATE, state=entry)
    return xdr.LedgerEntryChanges([change])


def _meta(name: bytes) -> bytes:
    v1 = xdr.TransactionMetaV1(tx_changes=_data_change(name), operations=[])
    return xdr.TransactionMeta(v=1, v1=v1).to_xdr_bytes()


def test_canonical_bytes_are_kept_and_changes_stay_lazy():
    raw = _meta(b"abc")
    meta = fast.decode("TransactionMeta", raw)
    assert _kept(meta) == raw and source_xdr(meta) == raw
    assert type(meta.v1.tx_changes).__name__ == "LazyLedgerEntryChanges"


@pytest.mark.parametrize(
    "find, replace",
    [
        (b"abc\x00", b"abc\x07"),  # non-zero padding of a string
        (b"\x00\x00\x00\x01v\x00\x00\x00", b"\x00\x00\x00\x01v\x00\xff\x00"),  # of an opaque
    ],
)
def test_non_canonical_bytes_are_neither_kept_nor_lazy(find, replace):
    canonical = _meta(b"abc")
    assert canonical.count(find) == 1
    raw = canonical.replace(find, replace)
    sdk = xdr.TransactionMeta.from_xdr_bytes(raw)
    assert sdk.to_xdr_bytes() == canonical != raw
    meta = fast.decode("TransactionMeta", raw)
    assert _kept(meta) is None and source_xdr(meta) == canonical
    changes = meta.v1.tx_changes
    assert type(changes).__name__ == "LedgerEntryChanges" and "_xdr_raw" not in vars(changes)
    assert changes.to_xdr_bytes() == sdk.v1.tx_changes.to_xdr_bytes() and meta == sdk


_SYM = xdr.SCVal(xdr.SCValType.SCV_SYMBOL, sym=xdr.SCSymbol(b"transfer"))
_ADDR = xdr.SCVal(
    xdr.SCValType.SCV_ADDRESS,
    address=xdr.SCAddress(
        xdr.SCAddressType.SC_ADDRESS_TYPE_CONTRACT, contract_id=xdr.ContractID(xdr.Hash(b"\x05" * 32))
    ),
)
_AMOUNT = xdr.SCVal(xdr.SCValType.SCV_I128, i128=xdr.Int128Parts(xdr.Int64(-1), xdr.Uint64(7)))


@pytest.mark.parametrize("topics", [[], [_SYM], [_SYM, _ADDR, _AMOUNT]])
@pytest.mark.parametrize("contract", [None, xdr.ContractID(xdr.Hash(b"\x09" * 32))])
def test_contract_event_rows_from_kept_encoded_and_non_canonical_bytes(topics, contract):
    """An event's row is the same from its kept bytes, from the SDK's encoding and (no bytes kept) from the
    fast encoder; the symbol data ``abc`` carries non-zero padding in the non-canonical form."""
    data = xdr.SCVal(xdr.SCValType.SCV_SYMBOL, sym=xdr.SCSymbol(b"abc"))
    body = xdr.ContractEventBody(0, v0=xdr.ContractEventV0(topics, data))
    event = xdr.ContractEvent(xdr.ExtensionPoint(0), contract, xdr.ContractEventType.CONTRACT, body)
    canonical = event.to_xdr_bytes()
    assert canonical.endswith(b"abc\0")
    kept, odd = fast.decode("ContractEvent", canonical), fast.decode("ContractEvent", canonical[:-1] + b"\7")
    assert _kept(kept) == canonical and _kept(odd) is None and odd == kept == event

    class _Ledger:
        sequence, closed_at = 60_000_000, None

    class _Tx:
        index, hash, successful = 3, bytes(32), True

    def row_of(e, ok: bool) -> dict:
        for memo in (ce._event_values, ce.topics_texts, scval_texts):
            memo.cache_clear()
        return ce.event_row(_Ledger(), _Tx(), e, ok, source="diagnostic", index=0)

    for ok in (True, False):
        rows = [row_of(e, ok) for e in (event, kept, odd)]
        assert rows[0] == rows[1] == rows[2]
        row = rows[0]
        assert base64.b64decode(row["contract_event_xdr"]) == xdr.DiagnosticEvent(ok, event).to_xdr_bytes()
        assert row["topics"] == [t.to_xdr() for t in topics] and row["data"] == data.to_xdr()
        assert row["data_decoded"] == '{"symbol":"abc"}' and len(json.loads(row["topics_decoded"])) == len(topics)
        assert row["contract_id"] == ("" if contract is None else StrKey.encode_contract(b"\x09" * 32))


def test_non_canonical_optional_flags_are_not_kept():
    op = xdr.Operation(
        source_account=xdr.MuxedAccount(xdr.CryptoKeyType.KEY_TYPE_ED25519, ed25519=xdr.Uint256(b"\x02" * 32)),
        body=xdr.OperationBody(xdr.OperationType.INFLATION),
    )
    tx = xdr.Transaction(
        source_account=xdr.MuxedAccount(xdr.CryptoKeyType.KEY_TYPE_ED25519, ed25519=xdr.Uint256(b"\x03" * 32)),
        fee=xdr.Uint32(100),
        seq_num=xdr.SequenceNumber(xdr.Int64(5)),
        cond=xdr.Preconditions(xdr.PreconditionType.PRECOND_NONE),
        memo=xdr.Memo(xdr.MemoType.MEMO_NONE),
        operations=[op],
        ext=xdr.TransactionExt(0),
    )
    env = xdr.TransactionEnvelope(_ENV.ENVELOPE_TYPE_TX, v1=xdr.TransactionV1Envelope(tx=tx, signatures=[]))
    canonical = env.to_xdr_bytes()
    flag = b"\x00\x00\x00\x01" + b"\x00" * 4 + b"\x02" * 32  # the operation's source account: present
    assert canonical.count(flag) == 1
    raw = canonical.replace(flag, b"\x00\x00\x00\x05" + flag[4:])
    assert xdr.TransactionEnvelope.from_xdr_bytes(raw).to_xdr_bytes() == canonical
    got = fast.decode("TransactionEnvelope", raw)
    assert _kept(got) is None and _kept(got.v1.tx) is None
    assert source_xdr(got) == canonical and source_xdr(got.v1.tx) == tx.to_xdr_bytes()
    assert _kept(fast.decode("TransactionEnvelope", canonical)) == canonical


def test_non_canonical_booleans_and_flags_below_the_top_are_decoded_at_once():
    """Lazy values are skipped (skip() in C) rather than decoded: it must spot the same forms as decoding."""
    descs, tids, _ = codec._Compiler(codec.load_schema(), ("SCVal",), ("SCVal", "SCVec")).compile()
    own = _fastxdr.Codec(descs)
    u32 = lambda *v: b"".join(x.to_bytes(4, "big") for x in v)  # noqa: E731
    true, odd_true, odd_vec = u32(0, 1), u32(0, 2), u32(16, 5, 0)  # SCV_BOOL true; SCV_VEC, flag, no items
    canonical = own.decode(tids["SCVec"], u32(2) + true + u32(16, 1, 0))
    assert _kept(canonical) == u32(2) + true + u32(16, 1, 0)
    assert [type(v).__name__ for v in canonical.sc_vec] == ["LazySCVal", "LazySCVal"]
    for odd in (odd_true, odd_vec):
        got = own.decode(tids["SCVec"], u32(2) + true + odd)
        assert _kept(got) is None and [type(v).__name__ for v in got.sc_vec] == ["LazySCVal", "SCVal"]
        assert got == xdr.SCVec.from_xdr_bytes(u32(2) + true + odd)
        assert _kept(got.sc_vec[1]) is None and _kept(own.decode(tids["SCVal"], odd)) is None
    assert own.decode(tids["SCVal"], odd_true).b is True


# --- the codec table ----------------------------------------------------------------------------


def test_a_lazy_type_that_keeps_its_source_keeps_its_raw_bytes():
    schema = codec.load_schema()
    descs, tids, _ = codec._Compiler(schema, ("LedgerEntryChanges",), ("LedgerEntryChanges",)).compile()
    own = _fastxdr.Codec(descs)
    raw = _meta(b"abcd")
    changes = own.decode(tids["TransactionMeta"], raw).v1.tx_changes
    lazy_raw = vars(changes)["_xdr_raw"]
    assert set(vars(changes)) == {"_xdr_raw"} and source_xdr(changes) == lazy_raw
    assert own.materialize(tids["LedgerEntryChanges"], changes) is True
    assert vars(changes)["_xdr_src"] is lazy_raw and len(changes.ledger_entry_changes) == 1
    eager = own.decode(tids["TransactionMeta"], raw, lazy=False).v1.tx_changes
    assert _kept(eager) == lazy_raw == _data_change(b"abcd").to_xdr_bytes()


def test_a_lazy_union_decodes_on_reading_an_arm(p26_raw):
    """Unselected union arms read None from the class; on a lazy value still raw, reading any arm (before
    the discriminant) must decode it first, not read that None."""
    descs, tids, _ = codec._Compiler(codec.load_schema(), ("OperationResult",)).compile()
    own = _fastxdr.Codec(descs)
    pairs = []
    for t in decode_ledger(p26_raw, PUBNET, engine="sdk").transactions:
        got = own.decode(tids["TransactionResult"], t.result.result.to_xdr_bytes()).result.results or []
        pairs += [(res, want) for res, want in zip(got, t.operation_results) if want.tr is not None]
    assert len(pairs) > 100 and all(type(res).__name__ == "LazyOperationResult" for res, _ in pairs)
    for res, want in pairs:
        assert "_xdr_raw" in vars(res)
        tr = res.tr  # an arm first: decodes
        assert "_xdr_raw" not in vars(res) and tr == want.tr and res.code == want.code
        assert getattr(tr, _TR_FIELD[tr.type]) == getattr(want.tr, _TR_FIELD[want.tr.type])
    bad_auth = b"\xff\xff\xff\xff"  # opBAD_AUTH: no tr
    (res,) = own.decode(tids["TransactionResultResult"], bad_auth + b"\0\0\0\1" + bad_auth).results
    assert type(res).__name__ == "LazyOperationResult" and res.tr is None and "_xdr_raw" not in vars(res)
    assert res == xdr.OperationResult.from_xdr_bytes(bad_auth) and type(res).tr is None


def test_only_struct_union_and_typedef_values_keep_their_source():
    schema = codec.load_schema()
    for bad in (("EnvelopeType",), ("NoSuchType",)):
        with pytest.raises(ValueError, match="only struct, union and typedef types can keep their source"):
            codec._Compiler(schema, (), bad).compile()
    with pytest.raises(TypeError, match="u32: only struct, union and typedef values keep their source"):
        _fastxdr.Codec(((_fastxdr.U32, "u32", None, 0, -1, (), (), (), None, None, True),))


def test_the_sdk_engine_keeps_nothing(p26_raw):
    env = decode_ledger(p26_raw, PUBNET, engine="sdk").transactions[0].envelope
    fast_env = decode_ledger(p26_raw, PUBNET, engine="fast").transactions[0].envelope
    assert type(env) is xdr.TransactionEnvelope and _kept(env) is None
    assert source_xdr(env) == env.to_xdr_bytes() == _kept(fast_env)
