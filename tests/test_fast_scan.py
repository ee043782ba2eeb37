"""The C scanners over raw ledger entry changes and the C strkey encoder, against the Python code they replace.

``balance_changes`` feeds token transfer verification and ``created_sponsors`` the operations' ``sponsor``
on fast-engine values; the Python paths stay for stellar-sdk objects. Both must agree on every real
ledger, check their input like the decoder, and leave the changes undecoded. ``Codec.ends`` splits raw
values (contract events' topics and data) and must check its input like the decoder too.
"""

from __future__ import annotations

import functools
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stellar_sdk import Address, Keypair, SignerKey, StrKey, xdr

from cdp_ray.lake.formats import split_ledgers
from cdp_ray.processors import common, get_processor
from cdp_ray.processors import operation_details as od
from cdp_ray.processors import token_transfers as tt
from cdp_ray.processors.scval import event_summary
from cdp_ray.xdr import decode_ledger, fast
from conftest import PUBNET
from test_fast_decode import _groups, real_ledgers
from test_fast_source import _events

pytestmark = pytest.mark.skipif(not fast.available(), reason=f"fast engine not built: {fast.unavailable_reason()}")

if fast.available():
    from cdp_ray.xdr.fast import _fastxdr, balance_changes, codec, created_sponsors

    SCVAL_ENDS = functools.partial(codec.CODEC.ends, codec.TIDS["SCVal"])

P26 = "wallet-backend/ledger-63092990.xdr.gz"  # accounts, trustlines, claimable balances and pools change


def _ledger(stellar_data, rel: str = P26):
    (raw,) = split_ledgers((stellar_data / rel).read_bytes(), rel)
    return decode_ledger(raw, PUBNET, engine="fast")


def _deltas(groups) -> dict:
    out: dict = {}
    tt._groups_deltas(groups, out)
    return {k: v for k, v in out.items() if v}


def _is_lazy(value) -> bool:
    return "_xdr_raw" in value.__dict__


# --- balance contributions ------------------------------------------------------------------------


@pytest.mark.parametrize("group", _groups())
def test_balance_changes_match_python_on_sdk_objects(stellar_data, group):
    """Per transaction, the C contributions of the fast engine's raw changes add up to exactly the deltas
    the Python path computes from the same changes decoded by stellar-sdk (zero deltas dropped, as
    verification does). Only the changes are decoded with the SDK: the rest of the ledger is not read."""
    nonzero = 0
    for seq, passphrase, raw in real_ledgers(stellar_data, group):
        for tx in decode_ledger(raw, passphrase, engine="fast").transactions:
            fast_groups = tt._change_groups(tx)
            assert all(_is_lazy(g) for g in fast_groups)
            sdk_groups = [xdr.LedgerEntryChanges.from_xdr_bytes(g.to_xdr_bytes()) for g in fast_groups]
            assert all(fast.raw_xdr(g) is None for g in sdk_groups)
            expected = _deltas(sdk_groups)
            assert _deltas(fast_groups) == expected, (seq, tx.hash.hex())
            assert all(_is_lazy(g) for g in fast_groups), "the C path must not decode the changes"
            nonzero += len(expected)
    assert nonzero > 0


def test_balance_changes_cover_every_holder_type(stellar_data):
    ledger = _ledger(stellar_data)
    seen = {}
    for tx in ledger.transactions:
        for g in tt._change_groups(tx):
            for t, holder, asset, amount in balance_changes(g.to_xdr_bytes()):
                seen.setdefault(t, (holder, asset, amount))
                assert amount != 0 and isinstance(amount, int)
    assert seen.keys() == {0, 1, 4, 5}  # LedgerEntryType: account, trustline, claimable balance, pool
    assert len(seen[0][0]) == 32 and seen[0][1] is None  # account: ed25519 key, lumens
    assert len(seen[4][0]) == 33 and seen[4][0][0] == 0  # claimable balance: type byte + hash
    assert len(seen[5][0]) == 32 and seen[5][1] is not None  # pool id, a reserve's asset


def test_balance_changes_of_a_list_of_groups(stellar_data):
    """A list of groups is scanned group by group: bytes, lazy values (their kept bytes, left lazy), decoded
    fast values and stellar-sdk values (encoded) give the per-group contributions, concatenated."""
    ledger = _ledger(stellar_data)
    tx = max(ledger.transactions, key=lambda t: len(tt._change_groups(t)))
    groups = tt._change_groups(tx)
    per_group = [balance_changes(g.to_xdr_bytes()) for g in groups]
    expected = [c for contributions in per_group for c in contributions]
    assert len(groups) >= 3 and len(expected) >= 3
    assert balance_changes(groups) == expected
    assert all(_is_lazy(g) for g in groups)
    groups[1].ledger_entry_changes  # noqa: B018  (materialized: no kept bytes, encoded instead)
    assert not _is_lazy(groups[1])
    sdk = xdr.LedgerEntryChanges.from_xdr_bytes(groups[2].to_xdr_bytes())
    mixed = (groups[0].to_xdr_bytes(), groups[1], sdk, *groups[3:])
    assert balance_changes(mixed) == expected
    assert balance_changes([]) == []
    with pytest.raises(EOFError):
        balance_changes([groups[0], groups[1].to_xdr_bytes()[:-1]])
    with pytest.raises(AttributeError, match="ledger_entry_changes"):  # not a group: fails as the encoder does
        balance_changes([groups[0], 7])


def _entry(data: xdr.LedgerEntryData, sponsor: str | None = None) -> xdr.LedgerEntry:
    ext = xdr.LedgerEntryExt(0)
    if sponsor is not None:
        ext = xdr.LedgerEntryExt(
            1,
            xdr.LedgerEntryExtensionV1(
                xdr.SponsorshipDescriptor(Keypair.from_public_key(sponsor).xdr_account_id()),
                xdr.LedgerEntryExtensionV1Ext(0),
            ),
        )
    return xdr.LedgerEntry(xdr.Uint32(7), data, ext)


def _account(key: str, balance: int, sponsor: str | None = None) -> xdr.LedgerEntry:
    acc = xdr.AccountEntry(
        Keypair.from_public_key(key).xdr_account_id(), xdr.Int64(balance), xdr.SequenceNumber(xdr.Int64(1)),
        xdr.Uint32(0), None, xdr.Uint32(0), xdr.String32(b""), xdr.Thresholds(b"\1\0\0\0"), [],
        xdr.AccountEntryExt(0),
    )
    return _entry(xdr.LedgerEntryData(xdr.LedgerEntryType.ACCOUNT, account=acc), sponsor)


def _trustline(key: str, code: bytes, issuer: str, balance: int, sponsor: str | None = None) -> xdr.LedgerEntry:
    asset = xdr.TrustLineAsset(
        xdr.AssetType.ASSET_TYPE_CREDIT_ALPHANUM4,
        alpha_num4=xdr.AlphaNum4(xdr.AssetCode4(code), Keypair.from_public_key(issuer).xdr_account_id()),
    )
    tl = xdr.TrustLineEntry(
        Keypair.from_public_key(key).xdr_account_id(), asset, xdr.Int64(balance), xdr.Int64(10**12), xdr.Uint32(1),
        xdr.TrustLineEntryExt(0),
    )
    return _entry(xdr.LedgerEntryData(xdr.LedgerEntryType.TRUSTLINE, trust_line=tl), sponsor)


def _changes(*changes: tuple[int, xdr.LedgerEntry]) -> xdr.LedgerEntryChanges:
    arms = {0: "created", 1: "updated", 3: "state", 4: "restored"}
    return xdr.LedgerEntryChanges(
        [xdr.LedgerEntryChange(xdr.LedgerEntryChangeType(t), **{arms[t]: e}) for t, e in changes]
    )


A, B, C = (Keypair.from_raw_ed25519_public_key(bytes([i]) * 32).public_key for i in (1, 2, 3))


def test_balance_changes_pairing():
    """CREATED and RESTORED count +post, UPDATED post - pre of the change before, STATE nothing alone."""
    group = _changes(
        (3, _account(A, 100)), (1, _account(A, 70)),                  # -30
        (0, _trustline(B, b"USD\0", C, 5)),                           # +5
        (4, _account(C, 40)), (1, _account(C, 45)),                   # +40, then +5
        (3, _account(B, 1)),                                          # nothing
    )
    raw = group.to_xdr_bytes()
    got = [(t, StrKey.encode_ed25519_public_key(h), a, n) for t, h, a, n in balance_changes(raw)]
    usd = xdr.Asset(xdr.AssetType.ASSET_TYPE_CREDIT_ALPHANUM4,
                    alpha_num4=xdr.AlphaNum4(xdr.AssetCode4(b"USD\0"), Keypair.from_public_key(C).xdr_account_id()))
    assert got == [(0, A, None, -30), (1, B, usd.to_xdr_bytes(), 5), (0, C, None, 40), (0, C, None, 5)]
    expected = {(A, "native"): -30, (B, f"USD:{C}"): 5, (C, "native"): 45}
    assert _deltas([fast.decode("LedgerEntryChanges", raw)]) == _deltas([group]) == expected


# --- sponsors of created entries --------------------------------------------------------------------


def _python_sponsors(group) -> list[str]:
    return [s for pre, post in od._pairs(group) if pre is None and (s := common.sponsoring_id(post)) is not None]


def test_created_sponsors_match_python_on_every_real_ledger(stellar_data):
    positives = 0
    for name in _groups():
        for _, passphrase, raw in real_ledgers(stellar_data, name):
            for tx in decode_ledger(raw, passphrase, engine="fast").transactions:
                for g in tt._change_groups(tx):
                    raw_changes = g.to_xdr_bytes()
                    got = [common.g_strkey(k) for k in created_sponsors(raw_changes)]
                    assert got == _python_sponsors(fast.decode("LedgerEntryChanges", raw_changes, lazy=False))
                    positives += bool(got)
    assert positives > 100  # claimable balances are always sponsored: plenty in the protocol 26 ledgers


def _set_options_op(signer: bool) -> xdr.Operation:
    key = xdr.Signer(SignerKey.ed25519_public_key(C).to_xdr_object(), xdr.Uint32(1)) if signer else None
    body = xdr.OperationBody(
        xdr.OperationType.SET_OPTIONS,
        set_options_op=xdr.SetOptionsOp(None, None, None, None, None, None, None, None, key),
    )
    return xdr.Operation(None, body)


@pytest.mark.parametrize(
    "changes, sponsor",
    [
        ([(0, _trustline(A, b"USD\0", C, 0))], None),
        ([(0, _trustline(A, b"USD\0", C, 0, sponsor=B))], B),
        ([(3, _account(A, 9, sponsor=C)), (1, _account(A, 8, sponsor=C))], None),  # updated, not created
        ([(4, _account(A, 9, sponsor=C))], C),
        # two hits: the first by ledger key (account before trustline), whatever the change order
        ([(0, _trustline(A, b"USD\0", C, 0, sponsor=B)), (0, _account(C, 5, sponsor=A))], A),
    ],
)
def test_sponsor_same_on_fast_and_sdk_objects(changes, sponsor):
    group = _changes(*changes)
    lazy = fast.decode("TransactionMetaV2", xdr.TransactionMetaV2(
        xdr.LedgerEntryChanges([]), [xdr.OperationMeta(group)], xdr.LedgerEntryChanges([])
    ).to_xdr_bytes()).operations[0].changes
    assert _is_lazy(lazy)
    op, set_options = _set_options_op(signer=False), xdr.OperationType.SET_OPTIONS
    assert od._sponsor(op, set_options, group) == od._sponsor(op, set_options, lazy) == sponsor
    assert _is_lazy(lazy) == (len(_python_sponsors(group)) < 2)  # decoded only to sort two hits
    assert od._sponsor(_set_options_op(signer=True), set_options, lazy) == sponsor  # signer ops walk the changes


def test_operations_decode_only_the_changes_they_need(stellar_data):
    """Only liquidity pool deposits/withdrawals, SET_OPTIONS with a signer and ops creating two or more
    sponsored entries decode their changes; the rest stay raw."""
    ledger = _ledger(stellar_data, "wallet-backend/ledger-63093000.xdr.gz")
    get_processor("operations").process([ledger])
    decoded = needed = sponsored_lazy = 0
    for t in ledger.transactions:
        for i, op in enumerate(t.operations):
            group = od._operation_group(t, i, ledger.protocol_version)
            if group is None:
                continue
            ty = op.body.type
            needs = t.successful and ty in (xdr.OperationType.LIQUIDITY_POOL_DEPOSIT,
                                             xdr.OperationType.LIQUIDITY_POOL_WITHDRAW)
            needs |= ty == xdr.OperationType.SET_OPTIONS and op.body.set_options_op.signer is not None
            needs |= len(created_sponsors(group.to_xdr_bytes())) > 1
            decoded += not _is_lazy(group)
            needed += needs
            sponsored_lazy += _is_lazy(group) and len(created_sponsors(group.to_xdr_bytes())) == 1
            assert _is_lazy(group) != needs, (t.hash.hex(), i, ty)
    assert decoded == needed > 0
    assert sponsored_lazy > 0  # a sponsor found without decoding


# --- checks on the input ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def samples(stellar_data) -> list[bytes]:
    """Raw changes of the P26 ledger, one holding each holder type, and one with a sponsored entry."""
    picked: dict = {}
    for tx in _ledger(stellar_data).transactions:
        for g in tt._change_groups(tx):
            raw = g.to_xdr_bytes()
            for t, *_ in balance_changes(raw):
                picked.setdefault(t, raw)
            if created_sponsors(raw):
                picked.setdefault("sponsored", raw)
    assert len(picked) == 5
    return list(picked.values())


def test_scanners_reject_bad_input(samples):
    raw = min(samples, key=len)
    count, change_type = struct.unpack_from(">II", raw)
    assert count >= 1 and change_type != 2  # the first change holds a LedgerEntry
    for scan in (balance_changes, created_sponsors):
        with pytest.raises(EOFError):
            scan(raw[:-1])
        with pytest.raises(EOFError):
            scan(b"")
        with pytest.raises(ValueError, match="Unexpected trailing 4 bytes"):
            scan(raw + bytes(4))
        with pytest.raises(ValueError, match="7 is not a valid LedgerEntryChangeType"):
            scan(raw[:4] + struct.pack(">I", 7) + raw[8:])
        with pytest.raises(ValueError, match="99 is not a valid LedgerEntryType"):
            scan(raw[:12] + struct.pack(">I", 99) + raw[16:])  # count, change type, lastModified, data type
        with pytest.raises(ValueError, match="array length"):
            scan(struct.pack(">I", len(raw)) + raw[4:])
        with pytest.raises(TypeError):
            scan("not bytes")
    updated = _changes((1, _account(A, 1))).to_xdr_bytes()  # an update with no state before it
    with pytest.raises(ValueError, match="must follow the entry's state"):
        balance_changes(updated)
    assert created_sponsors(updated) == []


def _mutated(raw: bytes, data) -> bytes:
    """``raw`` with one byte set to a drawn value, or cut to a drawn shorter length."""
    out = bytearray(raw)
    if data.draw(st.booleans()):
        out[data.draw(st.integers(0, len(out) - 1))] = data.draw(st.integers(0, 255))
        return bytes(out)
    return bytes(out[: data.draw(st.integers(0, len(out) - 1))])


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_scanners_accept_and_reject_mutations_like_the_decoder(samples, data):
    raw = _mutated(data.draw(st.sampled_from(samples)), data)
    try:
        decoded = fast.decode("LedgerEntryChanges", raw, lazy=False)
    except (ValueError, EOFError) as exc:
        for scan in (balance_changes, created_sponsors):
            with pytest.raises(type(exc)):
                scan(raw)
        return
    assert [common.g_strkey(k) for k in created_sponsors(raw)] == _python_sponsors(decoded)
    try:
        contributions = balance_changes(raw)
    except ValueError:  # a mutated change type broke the pairing the Python path relies on too
        assert any(
            c.type in (od._UPDATED, od._REMOVED)
            and (i == 0 or decoded.ledger_entry_changes[i - 1].type not in (od._STATE, od._RESTORED))
            for i, c in enumerate(decoded.ledger_entry_changes)
        ) or _update_changes_type(decoded)
        return
    assert all(amount for *_, amount in contributions)
    assert _deltas([fast.decode("LedgerEntryChanges", raw)]) == _deltas([decoded])


def _update_changes_type(group) -> bool:
    changes = group.ledger_entry_changes
    return any(c.type == od._UPDATED and changes[i - 1].type in (od._STATE, od._RESTORED)
               and (changes[i - 1].state or changes[i - 1].restored).data.type != c.updated.data.type
               for i, c in enumerate(changes) if i)


# --- verification on the fast engine -------------------------------------------------------------------


def test_tampered_event_fails_verification_on_the_fast_engine(stellar_data):
    ledger = _ledger(stellar_data)
    rows = tt.ledger_token_transfers(ledger, tt.TokenTransfersConfig(verify=False))
    tt.verify_token_transfers(ledger, rows)
    assert all(_is_lazy(g) for tx in ledger.transactions for g in tt._change_groups(tx))
    transfer = next(i for i, r in enumerate(rows) if r["event_topic"] == "transfer" and r["from"].startswith("G"))
    for i in (0, transfer):
        tampered = [dict(r) for r in rows]
        tampered[i]["amount_raw"] = str(int(rows[i]["amount_raw"]) + 1)
        holder = rows[i]["from"]
        with pytest.raises(tt.TokenTransferMismatchError, match=f"{rows[i]['transaction_hash']}.*{holder}"):
            tt.verify_token_transfers(ledger, tampered)


def test_verification_python_path_on_fast_objects(stellar_data, monkeypatch):
    """Without the C scanner (extension not built) the same ledger verifies through the Python path."""
    ledger = _ledger(stellar_data)
    rows = tt.ledger_token_transfers(ledger, tt.TokenTransfersConfig(verify=False))
    monkeypatch.setattr(tt, "raw_xdr", lambda value: None)  # what cdp_ray.xdr.fast gives without the extension
    tt.verify_token_transfers(ledger, rows)
    assert not all(_is_lazy(g) for tx in ledger.transactions for g in tt._change_groups(tx))


# --- splitting raw values ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def events(stellar_data) -> list[tuple[bytes, int, list]]:
    """``(kept XDR, offset of the topics' count, topics and data)`` of every contract event of the P26 ledger."""
    out = []
    for tx in _ledger(stellar_data).transactions:
        for ev in _events(tx):
            src = fast.source_xdr(ev)
            out.append((src, 48 if ev.contract_id is not None else 16, ev.body.v0.topics + [ev.body.v0.data]))
    return out


def test_ends_split_contract_events_into_their_values(events):
    """Topics (an XDR array) and topics plus data (a count of values) of every event, against each value's
    encoding."""
    assert len(events) == 1259
    for src, at, values in events:
        sizes = [len(fast.encode(v)) for v in values]
        ends = [at + 4 + sum(sizes[: i + 1]) for i in range(len(values))]
        assert SCVAL_ENDS(src, at) == tuple(ends[:-1])
        assert SCVAL_ENDS(src, at + 4, len(values)) == tuple(ends) and ends[-1] == len(src)
        assert SCVAL_ENDS(bytearray(src), at + 4, 1) == tuple(ends[:1]) and SCVAL_ENDS(src, len(src), 0) == ()


def test_ends_rejects_bad_input():
    values = [xdr.SCVal(xdr.SCValType.SCV_U32, u32=xdr.Uint32(7)), xdr.SCVal(xdr.SCValType.SCV_VOID)]
    raw = xdr.SCVec(values).to_xdr_bytes()
    assert SCVAL_ENDS(raw, 0) == (12, 16) == SCVAL_ENDS(raw, 4, 2)
    with pytest.raises(EOFError):
        SCVAL_ENDS(raw[:-1], 0)
    with pytest.raises(EOFError):
        SCVAL_ENDS(raw[:3], 0)
    with pytest.raises(ValueError, match="99 is not a valid SCValType"):
        SCVAL_ENDS(raw[:4] + struct.pack(">I", 99) + raw[8:], 0)
    with pytest.raises(EOFError):
        SCVAL_ENDS(struct.pack(">I", 5) + raw[4:], 0)
    with pytest.raises(ValueError, match="array length 13 exceeds remaining input length 12"):
        SCVAL_ENDS(struct.pack(">I", 13) + raw[4:], 0)
    with pytest.raises(ValueError, match="array length 13 exceeds remaining input length 12"):
        SCVAL_ENDS(raw, 4, 13)
    with pytest.raises(ValueError, match="negative count"):
        SCVAL_ENDS(raw, 4, -1)
    with pytest.raises(ValueError, match="offset 17 outside the data"):
        SCVAL_ENDS(raw, 17)
    with pytest.raises(ValueError, match="unknown type index"):
        codec.CODEC.ends(len(codec.TIDS) * 10, raw, 0)
    with pytest.raises(TypeError):
        SCVAL_ENDS("not bytes", 0)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_ends_accepts_and_rejects_mutations_like_the_decoder(events, data):
    """An event's topics array, mutated or cut: split where and only where the decoder reads an ``SCVec``."""
    src, at, _ = data.draw(st.sampled_from(events))
    raw = _mutated(src[at:], data)
    try:
        vec, end = fast.decode_prefix("SCVec", raw)
    except (ValueError, EOFError) as exc:
        with pytest.raises(type(exc)):
            SCVAL_ENDS(raw, 0)
        return
    ends = SCVAL_ENDS(raw, 0)
    assert len(ends) == len(vec.sc_vec) and (ends[-1] if ends else 4) == end
    assert all(fast.decode_prefix("SCVal", raw, a)[1] == b for a, b in zip((4, *ends), ends))


# --- contract event summaries ----------------------------------------------------------------------------


def _values_summary(raw: bytes) -> tuple:
    """``event_summary`` from the values: of stellar-sdk's own decode of ``raw``, which keeps no bytes."""
    return event_summary(xdr.ContractEvent.from_xdr_bytes(raw))


def test_event_summary_matches_the_values_for_every_real_event(stellar_data):
    seen = {"transfer": 0, "fee": 0, "map data": 0, "no contract": 0, "named": 0, "muxed": 0}
    for group in _groups():
        for _, passphrase, raw in real_ledgers(stellar_data, group):
            for tx in decode_ledger(raw, passphrase).transactions:
                for ev in _events(tx):
                    kept = fast.kept_xdr(ev)
                    summary = fast.event_summary(kept)
                    assert summary == _values_summary(kept), kept.hex()
                    assert _is_lazy(ev)  # read without decoding the event
                    contract, _, n, symbol, first, second, name, data_type, amount = summary
                    seen["transfer"] += symbol == "transfer" and n == 4 and None not in (first, second, amount)
                    seen["fee"] += symbol == "fee" and contract is not None and first is not None
                    seen["map data"] += data_type == xdr.SCValType.SCV_MAP
                    seen["no contract"] += contract is None
                    seen["named"] += name is not None
                    seen["muxed"] += any(a is not None and a.startswith("M") for a in (first, second))
    assert all(seen[k] > 0 for k in seen if k != "muxed"), seen


@pytest.mark.parametrize(
    "address",
    [
        StrKey.encode_ed25519_public_key(bytes(range(32))),
        StrKey.encode_contract(bytes(range(1, 33))),
        StrKey.encode_med25519_public_key(bytes(range(2, 42))),
        StrKey.encode_claimable_balance(bytes(range(33))),
        StrKey.encode_liquidity_pool(bytes(range(3, 35))),
    ],
)
def test_event_summary_reads_every_address_type(address):
    topic = xdr.SCVal(xdr.SCValType.SCV_ADDRESS, address=Address(address).to_xdr_sc_address())
    symbol = xdr.SCVal(xdr.SCValType.SCV_SYMBOL, sym=xdr.SCSymbol(b"transfer"))
    body = xdr.ContractEventBody(0, v0=xdr.ContractEventV0([symbol, topic, topic, topic], symbol))
    raw = xdr.ContractEvent(xdr.ExtensionPoint(0), None, xdr.ContractEventType.CONTRACT, body).to_xdr_bytes()
    assert fast.event_summary(raw) == (None, 1, 4, "transfer", address, address, None, 15, None) == _values_summary(raw)


def test_event_summary_rejects_bad_input(events):
    raw = events[0][0]
    with pytest.raises(EOFError):
        fast.event_summary(raw[:-1])
    with pytest.raises(ValueError, match="trailing 4 bytes"):
        fast.event_summary(raw + bytes(4))
    with pytest.raises(ValueError, match="is not a valid ContractEventType"):
        fast.event_summary(raw[:4] + b"\0\0\0\0" + struct.pack(">i", 7) + raw[12:] if raw[7] == 0 else
                           raw[:40] + struct.pack(">i", 7) + raw[44:])
    with pytest.raises(TypeError):
        fast.event_summary("not bytes")


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_event_summary_accepts_and_rejects_mutations_like_the_decoder(events, data):
    raw = _mutated(data.draw(st.sampled_from(events))[0], data)
    try:
        fast.decode("ContractEvent", raw)
    except (ValueError, EOFError) as exc:
        with pytest.raises(type(exc)):
            fast.event_summary(raw)
        return
    assert fast.event_summary(raw) == _values_summary(raw)


# --- strkeys ---------------------------------------------------------------------------------------------


def test_c_strkey_is_the_encoder_in_use():
    assert common._encode_strkey is _fastxdr.strkey


@pytest.mark.parametrize("prefix", sorted(common._STRKEY_VERSION))
def test_c_strkey_matches_python_for_every_prefix_and_length(prefix):
    version = common._STRKEY_VERSION[prefix]
    for n in range(0, 80):
        payload = os.urandom(n)
        assert _fastxdr.strkey(version, payload) == common._encode_strkey_py(version, payload), n
    assert common.encode_strkey(prefix, bytes(32))[0] == prefix


def test_c_strkey_matches_stellar_sdk():
    key, payload = os.urandom(32), os.urandom(40)
    v = common._STRKEY_VERSION
    assert _fastxdr.strkey(v["G"], key) == StrKey.encode_ed25519_public_key(key)
    assert _fastxdr.strkey(v["M"], key + bytes(8)) == StrKey.encode_med25519_public_key(key + bytes(8))
    assert _fastxdr.strkey(v["C"], key) == StrKey.encode_contract(key)
    assert _fastxdr.strkey(v["T"], key) == StrKey.encode_pre_auth_tx(key)
    assert _fastxdr.strkey(v["X"], key) == StrKey.encode_sha256_hash(key)
    assert _fastxdr.strkey(v["L"], key) == StrKey.encode_liquidity_pool(key)
    assert _fastxdr.strkey(v["B"], b"\0" + key) == StrKey.encode_claimable_balance(b"\0" + key)
    assert _fastxdr.strkey(v["P"], payload) == StrKey.encode_ed25519_signed_payload(payload)
    assert _fastxdr.strkey(18 << 3, key) == StrKey.encode_ed25519_secret_seed(key)
    assert _fastxdr.strkey(v["G"], memoryview(key)) == _fastxdr.strkey(v["G"], bytearray(key))


def test_c_strkey_rejects_bad_arguments():
    for version in (-1, 256):
        with pytest.raises(ValueError, match="not in range"):
            _fastxdr.strkey(version, b"")
    with pytest.raises(TypeError):
        _fastxdr.strkey(48, "text")


@settings(max_examples=500, deadline=None)
@given(version=st.integers(0, 255), payload=st.binary(max_size=200))
def test_c_strkey_matches_python_on_random_payloads(version, payload):
    assert _fastxdr.strkey(version, payload) == common._encode_strkey_py(version, payload)
