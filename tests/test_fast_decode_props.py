"""Property tests of the fast XDR codec, and its engine switch, lazy values and packaging.

Values are generated from the schema (any XDR type, bounded depth and sizes) as stellar-sdk objects,
encoded by the SDK, decoded by the fast codec (lazy and eager) and compared with the SDK's own
decode; mutated real XDR must be accepted or rejected by both decoders alike.
"""

from __future__ import annotations

import base64
import copy
import functools
import gzip
import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stellar_sdk import xdr

from cdp_ray.errors import ConfigError, CorruptLedgerFileError
from cdp_ray.xdr import decode_ledger, fast

pytestmark = pytest.mark.skipif(not fast.available(), reason=f"fast engine not built: {fast.unavailable_reason()}")

if fast.available():
    from cdp_ray.xdr.fast.codec import CLASSES, load_schema

    SCHEMA = load_schema()
PUBNET = "Public Global Stellar Network ; September 2015"
_INT = {"i32": (-(2**31), 2**31 - 1), "u32": (0, 2**32 - 1), "i64": (-(2**63), 2**63 - 1), "u64": (0, 2**64 - 1)}
MAX_DEPTH = 4


def _expr(e: tuple, depth: int) -> st.SearchStrategy:
    kind = e[0]
    if kind == "ref":
        return st.deferred(lambda: value_of(e[1], min(depth + 1, MAX_DEPTH)))
    if kind in _INT:
        return st.integers(*_INT[kind])
    if kind == "bool":
        return st.booleans()
    if kind == "opaque":
        return st.binary(min_size=e[1], max_size=e[1])
    if kind in ("vopaque", "string"):
        return st.binary(max_size=min(e[1], 12))
    if kind == "array":
        top = 0 if depth >= MAX_DEPTH else min(e[2] or 3, 3)
        return st.lists(_expr(e[1], depth), max_size=top)
    if kind == "farray":
        return st.lists(_expr(e[1], depth), min_size=e[2], max_size=e[2])
    if kind == "opt":
        return st.none() if depth >= MAX_DEPTH else st.none() | _expr(e[1], depth)
    raise AssertionError(e)


def _leafy(expr: tuple | None) -> bool:
    """Whether an arm ends recursion: void, a primitive, an enum or a fixed-size typedef."""
    if expr is None or expr[0] != "ref":
        return expr is None or expr[0] not in ("array", "opt", "farray")
    entry = SCHEMA[expr[1]]
    return entry[0] == "enum" or (entry[0] == "typedef" and entry[2][0] != "ref")


@functools.lru_cache(maxsize=None)
def value_of(name: str, depth: int = 0) -> st.SearchStrategy:
    """SDK objects of XDR type ``name``; past MAX_DEPTH, arrays are empty and unions take leafy arms."""
    cls = getattr(xdr, name)
    entry = SCHEMA[name]
    if entry[0] == "enum":
        return st.sampled_from(list(cls))
    if entry[0] == "typedef":
        return st.builds(cls, _expr(entry[2], depth))
    if entry[0] == "struct":
        return st.fixed_dictionaries({attr: _expr(e, depth) for attr, e in entry[1]}).map(lambda kw: cls(**kw))
    _, disc, disc_expr, arms, cases = entry
    arm_type = dict(arms)
    options = []
    leafy_only = depth >= MAX_DEPTH and any(_leafy(arm_type.get(attr)) for _, attr in cases)
    for value, attr in cases:
        if leafy_only and not _leafy(arm_type.get(attr)):
            continue
        if disc_expr[0] == "ref" and SCHEMA[disc_expr[1]][0] == "enum":
            d = getattr(xdr, disc_expr[1])(value)
        elif disc_expr[0] == "ref":  # a typedef'd integer
            d = getattr(xdr, disc_expr[1])(value)
        else:
            d = value
        if attr is None:
            options.append(st.just(cls(**{disc: d})))
        else:
            options.append(_expr(arm_type[attr], depth).map(lambda v, d=d, a=attr: cls(**{disc: d, a: v})))
    return st.one_of(options)


ROUND_TRIP_TYPES = [
    "TransactionEnvelope",
    "TransactionResult",
    "TransactionMeta",
    "LedgerEntryChanges",
    "LedgerEntry",
    "LedgerKey",
    "SCVal",
    "ContractEvent",
    "LedgerHeader",
    "SorobanTransactionData",
    "Operation",
]


@pytest.mark.parametrize("name", ROUND_TRIP_TYPES)
def test_generated_values_round_trip(name):
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(value_of(name))
    def check(value):
        raw = value.to_xdr_bytes()
        for lazy in (True, False):
            got = fast.decode(name, raw, lazy=lazy)
            assert isinstance(got, getattr(xdr, name)) and got == value and value == got
            assert got.to_xdr_bytes() == raw
        assert fast.encode(value) == raw
        assert got == getattr(xdr, name).from_xdr_bytes(raw)

    check()


@pytest.fixture(scope="module")
def small_lcm(stellar_data) -> bytes:
    from cdp_ray.lake.formats import split_ledgers

    path = stellar_data / "stellar-go-testbucket" / "FFFFFC19--998.xdr.zstd"
    (raw,) = split_ledgers(path.read_bytes(), path.name)
    return raw


def _outcome(decode, raw):
    try:
        return decode(raw)
    except Exception as exc:  # the SDK raises ValueError, EOFError, struct.error...
        return exc


def test_mutated_xdr_is_accepted_or_rejected_alike(small_lcm):
    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def check(data):
        raw = bytearray(small_lcm)
        for _ in range(data.draw(st.integers(1, 3))):
            at = data.draw(st.integers(0, len(raw) - 1))
            raw[at] = data.draw(st.sampled_from([0, 1, 2, 3, 0x7F, 0xFF, raw[at] ^ 1]))
        cut = data.draw(st.sampled_from([len(raw), len(raw) - 4, data.draw(st.integers(0, len(raw)))]))
        raw = bytes(raw[:cut])
        expected = _outcome(xdr.LedgerCloseMeta.from_xdr_bytes, raw)
        for lazy in (True, False):
            got = _outcome(lambda r: fast.decode("LedgerCloseMeta", r, lazy=lazy), raw)
            if isinstance(expected, Exception):
                assert isinstance(got, (ValueError, EOFError)), f"sdk rejected ({expected!r}), fast gave {got!r}"
            else:
                assert not isinstance(got, Exception), f"sdk decoded it, fast raised {got!r}"
                assert got == expected and got.to_xdr_bytes() == expected.to_xdr_bytes()

    check()


def test_schema_is_current_for_the_installed_sdk():
    from cdp_ray.xdr.fast import generate

    assert generate.main(["--check"]) == 0
    assert len(SCHEMA) > 400 and SCHEMA["Hash"] == ("typedef", "hash", ("opaque", 32))
    assert SCHEMA["TransactionMeta"][4] == ((0, "operations"), (1, "v1"), (2, "v2"), (3, "v3"), (4, "v4"))


def test_engine_switch(monkeypatch, small_lcm):
    monkeypatch.delenv(fast.ENV_VAR, raising=False)
    assert fast.resolve_engine() == "native"
    assert fast.resolve_engine("sdk") == "sdk"
    monkeypatch.setenv(fast.ENV_VAR, "sdk")
    assert fast.resolve_engine() == "sdk"
    assert type(decode_ledger(small_lcm, "Test SDF Network ; September 2015").lcm) is xdr.LedgerCloseMeta
    monkeypatch.setenv(fast.ENV_VAR, "rust")
    with pytest.raises(ConfigError, match="unknown XDR engine 'rust'"):
        fast.resolve_engine()
    ledger = decode_ledger(small_lcm, "Test SDF Network ; September 2015", engine="fast")
    assert type(ledger.lcm) is CLASSES["LedgerCloseMeta"] and isinstance(ledger.lcm, xdr.LedgerCloseMeta)
    assert ledger.sequence == 998 and len(ledger.transactions) == 7
    lazy = decode_ledger(small_lcm, "Test SDF Network ; September 2015", engine="native")
    assert lazy.index is not None and "transactions" not in vars(lazy)
    assert lazy.sequence == 998 and lazy.transactions == ledger.transactions and lazy.lcm == ledger.lcm


@pytest.mark.parametrize("engine", ["native", "fast", "sdk"])
def test_corrupt_ledger_is_a_typed_error_on_both_engines(small_lcm, engine):
    with pytest.raises(CorruptLedgerFileError, match="undecodable LedgerCloseMeta"):
        decode_ledger(small_lcm[:-7], PUBNET, key="bad.xdr", engine=engine)
    with pytest.raises(CorruptLedgerFileError, match="trailing 4 bytes"):
        decode_ledger(small_lcm + b"\0\0\0\0", PUBNET, key="bad.xdr", engine=engine)


@pytest.fixture(scope="module")
def p26_lcm(stellar_data) -> bytes:
    return gzip.decompress((stellar_data / "wallet-backend" / "ledger-63092982.xdr.gz").read_bytes())


def test_lazy_changes_keep_raw_xdr_until_read(p26_lcm):
    lcm = fast.decode("LedgerCloseMeta", p26_lcm)
    trm = lcm.v2.tx_processing[0]
    fees = trm.fee_processing
    assert type(fees).__name__ == "LazyLedgerEntryChanges" and isinstance(fees, xdr.LedgerEntryChanges)
    assert set(vars(fees)) == {"_xdr_raw"}
    raw = fees.to_xdr_bytes()
    assert set(vars(fees)) == {"_xdr_raw"}, "encoding must not decode"
    expected = xdr.LedgerEntryChanges.from_xdr_bytes(raw)
    assert base64.b64decode(fees.to_xdr()) == raw
    # pickling and copying keep it lazy; reading decodes it in place
    for clone in (pickle.loads(pickle.dumps(fees)), copy.deepcopy(fees), copy.copy(fees)):
        assert set(vars(clone)) == {"_xdr_raw"} and clone == expected
    changes = fees.ledger_entry_changes
    assert set(vars(fees)) == {"ledger_entry_changes"} and len(changes) == len(expected.ledger_entry_changes) == 2
    assert changes[0].type == xdr.LedgerEntryChangeType.LEDGER_ENTRY_STATE
    assert fees == expected and expected == fees
    # a write decodes first, so the other attributes are kept and the encoding follows the write
    other = fast.decode("LedgerCloseMeta", p26_lcm).v2.tx_processing[0].fee_processing
    other.ledger_entry_changes = changes[:1]
    assert other.to_xdr_bytes() == xdr.LedgerEntryChanges(changes[:1]).to_xdr_bytes()
    with pytest.raises(AttributeError):
        fees.no_such_field


def test_fast_objects_behave_like_sdk_objects(p26_lcm):
    lcm = fast.decode("LedgerCloseMeta", p26_lcm, lazy=False)
    sdk = xdr.LedgerCloseMeta.from_xdr_bytes(p26_lcm)
    env = lcm.v2.tx_set.v1_tx_set.phases[0].v0_components[0].txs_maybe_discounted_fee.txs[0]
    sdk_env = sdk.v2.tx_set.v1_tx_set.phases[0].v0_components[0].txs_maybe_discounted_fee.txs[0]
    assert type(env).__name__ == "TransactionEnvelope" and type(env).__mro__[1] is xdr.TransactionEnvelope
    assert env == sdk_env and sdk_env == env and repr(env) == repr(sdk_env)
    assert env.to_xdr() == sdk_env.to_xdr() and env.to_json_dict() == sdk_env.to_json_dict()
    # unselected union arms read None, as the SDK sets them
    assert env.type == xdr.EnvelopeType.ENVELOPE_TYPE_TX and env.v0 is None and env.fee_bump is None
    assert type(env).from_xdr(sdk_env.to_xdr()) == sdk_env
    assert pickle.loads(pickle.dumps(lcm.v2.ledger_header)) == sdk.v2.ledger_header
    assert lcm.v2.ledger_header.header.ledger_seq.uint32 == 63092982


def test_without_the_extension_the_sdk_engine_is_used():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'cdp_ray.xdr.fast._fastxdr': raise ImportError('no compiler')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from cdp_ray.errors import ConfigError\n"
        "from cdp_ray.xdr import fast\n"
        "print(fast.available(), fast.resolve_engine())\n"
        "try:\n"
        "    fast.resolve_engine('fast')\n"
        "except ConfigError as exc:\n"
        "    print(exc.message)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["False sdk", "the fast XDR engine is not built (ImportError: no compiler)"]
